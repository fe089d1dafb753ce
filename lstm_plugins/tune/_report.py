"""What a study leaves for the user: the best config as a ``fit`` config, a table (printed and
CSV) of the best trials, and PNG plots of the optimisation history and parameter importances."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import yaml

from lstm_plugins._files import replaced_atomically

__all__ = ["best_config", "trials_table", "write_outputs"]


def best_config(study: Any) -> dict[str, Any]:
    """The config of the study's best trial, in the format of ``lstm-plugins fit --config``: the
    base config with the best trial's sample (read from the study itself, so any worker or a
    later session can ask).

    Example:
        >>> import optuna
        >>> from lstm_plugins.tune import best_config
        >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
        >>> study = optuna.create_study(direction="maximize")
        >>> study.set_user_attr("base_config", '{"model": {"hidden_size": 8}}')
        >>> study.set_user_attr("search", '{"model": {"learning_rate": {"float": [0.001, 0.01]}}}')
        >>> study.add_trial(optuna.trial.create_trial(
        ...     params={"model.learning_rate": 0.002}, value=0.9,
        ...     distributions={"model.learning_rate": optuna.distributions.FloatDistribution(0.001, 0.01)}))
        >>> best_config(study)["model"]
        {'techniques': [...], 'hidden_size': 8, 'learning_rate': 0.002}
    """
    import optuna

    from lstm_plugins.tune._search import parse_search, sample_config

    try:
        base = json.loads(study.user_attrs["base_config"])
        raw = json.loads(study.user_attrs["search"])
    except KeyError:
        raise ValueError(f"Study `{study.study_name}` was not created by lstm-plugins tune (no base config).") from None
    search = parse_search(raw, base.get("task", "classification"))
    return sample_config(optuna.trial.FixedTrial(study.best_trial.params), search, base)


def _finished(study: Any) -> list[Any]:
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def trials_table(study: Any, top: int = 5) -> str:
    """The ``top`` complete trials, best first: value, fold values, parameters."""
    from optuna.trial import TrialState

    complete = [t for t in _finished(study) if t.state == TrialState.COMPLETE]
    complete.sort(key=lambda t: t.value, reverse=study.direction.name == "MAXIMIZE")
    lines = [f"Best trials of study `{study.study_name}` ({len(complete)} complete, "
             f"{len(_finished(study)) - len(complete)} pruned)"]
    for trial in complete[:top]:
        folds = " ".join(f"{v:.3f}" for v in trial.user_attrs.get("fold_values", []))
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
        lines.append(f"  #{trial.number:<4} {trial.value:.4f}  folds [{folds}]  {params}")
    return "\n".join(lines)


def _write_csv(study: Any, path: Path) -> None:
    trials = study.get_trials(deepcopy=False)
    names = sorted({name for t in trials for name in t.params})
    with replaced_atomically(path) as temporary, temporary.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["number", "state", "value", "fold_values", "seconds", *names])
        for t in trials:
            seconds = "" if t.duration is None else f"{t.duration.total_seconds():.1f}"
            writer.writerow([t.number, t.state.name, "" if t.value is None else t.value,
                             " ".join(f"{v:.6g}" for v in t.user_attrs.get("fold_values", [])), seconds,
                             *(t.params.get(name, "") for name in names)])


def _plots(study: Any, output: Path) -> list[str]:
    notes = []
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from optuna.visualization import matplotlib as views
    except ImportError as exc:
        return [f"no plots ({exc}; pip install 'lstm-plugins[tune]')"]
    import warnings

    for name, draw in (("history.png", views.plot_optimization_history),
                       ("importances.png", views.plot_param_importances)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = draw(study)
            with replaced_atomically(output / name) as temporary:
                axes.figure.savefig(temporary, dpi=100, bbox_inches="tight", format="png")
            plt.close(axes.figure)
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # e.g. importances of < 2 complete trials
            notes.append(f"no {name}: {exc}")
    return notes


def write_outputs(study: Any, output: str | Path, *, echo: bool = True) -> dict[str, Path]:
    """Write ``best.yaml``, ``trials.csv``, ``history.png`` and ``importances.png`` into
    ``output`` and print the table; returns the paths written."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    written = {"trials": output / "trials.csv"}
    _write_csv(study, written["trials"])
    try:
        best = study.best_trial
    except ValueError:
        best = None
    if best is not None:
        config = best_config(study)
        folds = study.user_attrs.get("folds")
        header = (f"# Best of study `{study.study_name}`: trial {best.number}, mean {folds}-fold CV value "
                  f"{best.value:.4f} on the training split.\n# Run it: lstm-plugins fit --config {output / 'best.yaml'}\n")
        written["best"] = output / "best.yaml"
        # Atomic like every output: a resumed study rewrites these, and a failed write keeps the old.
        with replaced_atomically(written["best"]) as temporary:
            temporary.write_text(header + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    notes = _plots(study, output)
    for name in ("history", "importances"):
        if (output / f"{name}.png").is_file():
            written[name] = output / f"{name}.png"
    if echo:
        print(trials_table(study))
        for note in notes:
            print(f"  ({note})")
        print("  written: " + ", ".join(str(path) for path in written.values()))
    return written
