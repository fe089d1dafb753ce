"""examples/attributions.py runs in smoke mode and writes its two pictures."""

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("captum")
pytest.importorskip("matplotlib")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "attributions.py"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_the_attributions_example_runs_in_smoke_mode(tmp_path, monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("attributions_example", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    monkeypatch.chdir(tmp_path)
    example.main(["--smoke", "--heatmap", "out/heatmap.png", "--gates", "out/gates.png"])
    output = capsys.readouterr().out
    assert "test accuracy" in output
    rows = [line.split() for line in output.splitlines() if line.startswith("  ")]
    assert [row[0] for row in rows] == ["integrated_gradients,", "saliency", "input_x_gradient"]
    assert float(rows[0][-1]) < 1e-3  # the largest delta: integrated gradients stayed complete
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["gates.png", "heatmap.png"]
    assert all(p.read_bytes()[:8] == PNG for p in (tmp_path / "out").iterdir())
