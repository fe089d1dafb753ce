"""The suite's one pip install: both example technique packages, installed as a user would, then
listed and stacked by name from YAML next to the built-ins."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gradient_noise_package", "training_recipes_package")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A folder holding both packages, installed by one pip call, and the environment using it."""
    work = tmp_path_factory.mktemp("third_party")
    sources = []
    for package in PACKAGES:
        source = work / package
        shutil.copytree(ROOT / "examples" / package, source,
                        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        sources.append(str(source))
    target = work / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), *sources],
        check=True, capture_output=True, timeout=300,
    )
    environment = {**os.environ, "OMP_NUM_THREADS": "1",
                   "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    return work, environment


@pytest.mark.slow
def test_installed_packages_are_listed_with_their_distribution(installed):
    _, environment = installed
    listing = subprocess.run([sys.executable, "-m", "lstm_plugins", "plugins"], env=environment,
                             capture_output=True, text=True, check=True, timeout=120).stdout
    rows = {line.split()[0]: line for line in listing.splitlines()[1:] if line.strip()}
    assert "lstm-plugins-gradient-noise 0.1.0" in rows["gradient_noise"] and "Neelakantan" in rows["gradient_noise"]
    for name in ("label_smoothing", "mixup", "ema"):
        assert "lstm-plugins-training-recipes 0.1.0" in rows[name]
    assert "lstm-plugins " in rows["gradient_clipping"]  # the built-ins, from the same registry


@pytest.mark.slow
def test_installed_techniques_are_stacked_by_name_from_yaml(installed):
    work, environment = installed
    config = work / "recipes.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"hidden_size": 8, "techniques": [
            {"gradient_noise": {"eta": 0.01}}, {"gradient_clipping": {"threshold": 1.0}}, {"mixup": {"alpha": 0.2}},
            "label_smoothing", {"ema": {"decay": 0.9}}]},
        "trainer": {"max_epochs": 1, "enable_progress_bar": False, "logger": False,
                    "enable_checkpointing": False},
    }))
    script = (
        "import sys, yaml, lstm_plugins.cli as c\n"
        "from lstm_plugins import LSTMClassifier\n"
        "techniques = yaml.safe_load(open(sys.argv[1]))['model']['techniques']\n"
        "model = LSTMClassifier(12, 9, techniques=techniques)\n"
        "print([type(t).__module__ + '.' + type(t).__name__ for t in model.techniques])\n"
        "raise SystemExit(c.main(['fit', '--config', sys.argv[1]]))\n"
    )
    run = subprocess.run([sys.executable, "-c", script, str(config)], env=environment, cwd=work,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert ("['lstm_plugins_gradient_noise.GradientNoise', 'lstm_plugins.plugins.gradient_clipping.GradientClipping', "
            "'lstm_plugins_training_recipes.Mixup', 'lstm_plugins_training_recipes.LabelSmoothing', "
            "'lstm_plugins_training_recipes.WeightAverage']") in run.stdout
    assert "accuracy" in run.stdout
