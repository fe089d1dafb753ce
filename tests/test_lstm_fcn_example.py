"""examples/lstm_fcn.py runs as the README says (in smoke mode) and prints its table."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow]

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "lstm_fcn.py"


def test_the_smoke_run_prints_a_row_per_model_and_writes_every_run(tmp_path):
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--datasets", "gun_point", "--json", str(tmp_path / "runs.json")],
        env=environment, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-4000:]
    rows = [line for line in completed.stdout.splitlines() if line.startswith("| LSTM")]
    assert [row.split("|")[1].strip() for row in rows] == [
        "LSTM (last step)", "LSTM + mean summary", "LSTM + attention summary", "LSTM-FCN",
        "LSTM-FCN, dimension shuffle"]
    for row in rows:
        assert re.search(r"\| \d+\.\d ± 0\.0 \| \d+\.\d s \|$", row), row
    runs = json.loads((tmp_path / "runs.json").read_text())["results"]["gun_point"]
    for name, results in runs.items():
        assert len(results) == 1 and 0.0 <= results[0]["accuracy"] <= 1.0, name
        assert f"{100 * results[0]['accuracy']:.1f} ± 0.0" in next(row for row in rows if f"| {name} |" in row)
    table = subprocess.run([sys.executable, str(SCRIPT), "--table-from", str(tmp_path / "runs.json")],
                           env=environment, capture_output=True, text=True, timeout=120)
    assert table.returncode == 0 and [line for line in table.stdout.splitlines() if line.startswith("| LSTM")] == rows
