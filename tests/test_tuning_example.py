"""examples/tuning_results.py runs as the README says (in smoke mode) and writes its results."""

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("optuna")

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_tuning_results_smoke(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("tuning_results", ROOT / "examples" / "tuning_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--smoke", "--output", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    (row,) = json.loads((tmp_path / "results.json").read_text())
    assert row["dataset"] == "gun_point" and row["trials"] == 2
    # 2 seeds each, scored on GunPoint's 150 test series: every accuracy is a count / 150.
    for label in ("default", "tuned"):
        assert len(row[label]) == 2 and all(abs(a * 150 - round(a * 150)) < 1e-3 for a in row[label])
    assert "| gun_point |" in printed
    assert (tmp_path / "gun_point" / "best.yaml").is_file() and (tmp_path / "gun_point" / "study.db").is_file()
