"""Every CLI error is one clear line plus the technique that raised; checkpoints are checked before use."""

import io

import pytest
import torch

from lstm_plugins import LSTMClassifier, cli
from lstm_plugins.cli._errors import error_report, exit_status, keyed_error
from lstm_plugins.training._checkpoint_check import check_checkpoint, check_resume, read_checkpoint

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--trainer.logger", "false", "--trainer.max_steps", "1", "--data.batch_size", "64",
         "--model.hidden_size", "8"]


def _lines(capsys):
    return capsys.readouterr().err.strip().splitlines()


def test_an_error_raised_in_a_technique_hook_shows_the_technique_and_the_hook(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    techniques = "[{adaptive_clipping: {exclude: [haed.*]}}]"
    assert cli.main(["fit", *QUIET, "--model.techniques", techniques]) == 2
    lines = [line for line in _lines(capsys) if line.startswith(("lstm-plugins", "  "))]
    assert lines[0].startswith("lstm-plugins: error: Technique `adaptive_clipping`: `exclude` pattern(s) 'haed.*' "
                               "match no parameter; parameter names are: lstm.weight_ih_l0, ")
    assert lines[1] == "  (raised by technique `adaptive_clipping` in hook `on_fit_setup`)"
    assert not list(tmp_path.rglob("*.ckpt"))  # refused before the first step


def test_the_note_survives_the_config_key_prefix():
    error = ValueError("Expected `threshold` to be a positive float, but got -1.")
    error.add_note("(raised by technique `gradient_clipping` in hook `configure_network`)")
    try:
        raise error
    except ValueError as exc:
        keyed = keyed_error(exc, "classification_data")
    assert str(keyed) == "model.threshold: Expected `threshold` to be a positive float, but got -1."
    assert keyed.__notes__ == ["(raised by technique `gradient_clipping` in hook `configure_network`)"]


def test_notes_of_the_error_it_was_raised_from_are_shown_once():
    inner = RuntimeError("step failed")
    inner.add_note("(raised by technique `x` in hook `on_train_step_end`)")
    outer = ValueError("training stopped")
    outer.__cause__ = inner
    outer.add_note("(raised by technique `x` in hook `on_train_step_end`)")
    assert error_report(outer).splitlines() == [
        "lstm-plugins: error: training stopped", "  (raised by technique `x` in hook `on_train_step_end`)"]


def test_an_unexpected_error_is_one_line_with_its_type_exit_1_and_how_to_see_the_traceback(monkeypatch, capsys):
    def broken() -> int:
        raise KeyError("momentum")

    monkeypatch.setattr(cli, "_plugins", broken)
    monkeypatch.delenv(cli.TRACEBACK_VARIABLE, raising=False)
    assert cli.main(["plugins"]) == 1
    lines = _lines(capsys)
    assert lines[0] == "lstm-plugins: error: KeyError: 'momentum'"
    assert "--traceback" in lines[1] and "Traceback" not in "\n".join(lines)
    with pytest.raises(KeyError):
        cli.main(["plugins", "--traceback"])
    monkeypatch.setenv(cli.TRACEBACK_VARIABLE, "1")
    with pytest.raises(KeyError):
        cli.main(["plugins"])


def test_an_error_message_is_bounded():
    report = error_report(ValueError("x" * 100_000))
    assert len(report) < 2100 and report.endswith("(100000 characters)")
    assert exit_status(ValueError()) == 2 and exit_status(OSError()) == 2 and exit_status(RuntimeError()) == 1


def test_a_parse_error_still_exits_2_with_one_line(capsys):
    assert cli.main(["fit", "--trainer.epochs", "3"]) == 2
    lines = _lines(capsys)
    assert lines[-2].startswith("lstm-plugins: error: Unknown key 'epochs' in `trainer`. Allowed keys: ")


# --- checkpoints ------------------------------------------------------------------------------------


def _checkpoint(model):
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                  "pytorch-lightning_version": "2.6.0"}
    model.on_save_checkpoint(checkpoint)
    return checkpoint


def test_read_checkpoint_returns_what_was_saved(tmp_path):
    model = LSTMClassifier(12, 9, hidden_size=8)
    torch.save(_checkpoint(model), tmp_path / "a.ckpt")
    loaded = read_checkpoint(tmp_path / "a.ckpt")
    assert all(torch.equal(loaded["state_dict"][key], value) for key, value in model.state_dict().items())


@pytest.mark.parametrize("cut", [1, 100, 1000, 10_000])
def test_a_checkpoint_cut_anywhere_is_refused_naming_the_file(tmp_path, cut):
    buffer = io.BytesIO()
    torch.save(_checkpoint(LSTMClassifier(12, 9, hidden_size=8)), buffer)
    assert cut < len(buffer.getvalue())
    (tmp_path / "cut.ckpt").write_bytes(buffer.getvalue()[:cut])
    with pytest.raises(ValueError, match=rf"^Checkpoint '.*cut\.ckpt' \({cut} bytes\) cannot be read: it is truncated"):
        read_checkpoint(tmp_path / "cut.ckpt")


def test_weights_that_do_not_fit_are_refused_naming_the_missing_and_unexpected_keys():
    model = LSTMClassifier(12, 9, hidden_size=8)
    checkpoint = _checkpoint(model)
    checkpoint["state_dict"]["extra.weight"] = torch.zeros(1)
    del checkpoint["state_dict"]["head.bias"]
    with pytest.raises(ValueError) as error:
        check_checkpoint(checkpoint, model, path="x.ckpt")
    assert str(error.value) == ("Checkpoint 'x.ckpt' does not fit this model: it lacks `head.bias`; it has "
                                "`extra.weight`, which this model does not (was it written with other techniques, "
                                "layers or sizes?).")
    check_checkpoint(_checkpoint(model), model, path="x.ckpt", resume=True)  # its own checkpoint fits


def _tensors(count):
    return [torch.zeros(1, requires_grad=True) for _ in range(count)]


def test_optimizer_groups_that_differ_are_refused_before_torch_sees_them():
    model = LSTMClassifier(12, 9, hidden_size=8, optimizer="adamw", techniques=[{"weight_decay": {}}])
    groups = torch.optim.AdamW([{"params": _tensors(4)}, {"params": _tensors(2)}]).state_dict()
    checkpoint = {"hyper_parameters": {"optimizer": "adamw"}, "optimizer_states": [groups],
                  "lstm_plugins": {"techniques": ["weight_decay"]}}
    # weight_decay decays the 3 weight matrices and leaves the 3 biases: groups of 3 and 3, not 4 and 2.
    with pytest.raises(ValueError, match=r"^The checkpoint: optimizer parameter group 0 holds 4 parameter\(s\) in "
                                         r"the checkpoint but 3 in this model\.$"):
        check_resume(checkpoint, model)
    sgd_groups = torch.optim.SGD([{"params": _tensors(3)}, {"params": _tensors(3)}], lr=0.1)
    checkpoint["optimizer_states"] = [sgd_groups.state_dict()]
    checkpoint["hyper_parameters"] = {}  # no optimizer name: the group keys tell
    with pytest.raises(ValueError, match=r"the optimizer state lacks `amsgrad`, `betas`, `eps`.*different optimizer"):
        check_resume(checkpoint, model)


def test_a_library_error_that_is_not_a_bad_input_names_its_type_without_the_bug_report_hint():
    from lstm_plugins.plugins import NonFiniteStepError

    error = NonFiniteStepError("5 consecutive steps were skipped")
    error.add_note("(raised by technique `nonfinite_guard` in hook `on_train_step_end`)")
    assert error_report(error).splitlines() == [
        "lstm-plugins: error: NonFiniteStepError: 5 consecutive steps were skipped",
        "  (raised by technique `nonfinite_guard` in hook `on_train_step_end`)"]
    assert exit_status(error) == 1


@pytest.mark.parametrize("subcommand", ["test", "predict"])
def test_tampered_technique_state_is_refused_naming_the_checkpoint_file(subcommand, tmp_path, monkeypatch, capsys):
    from bad_input_catalogue import _edited, _set

    monkeypatch.chdir(tmp_path)
    tampered = _edited(lambda c: _set(c, "lstm_plugins/state/gradient_clipping/clipped", 0))
    (tmp_path / "model.ckpt").write_bytes(tampered)
    arguments = [subcommand, "--ckpt_path", "model.ckpt", "--trainer.logger", "false",
                 "--trainer.enable_progress_bar", "false"]
    assert cli.main(arguments) == 2
    lines = [line for line in _lines(capsys) if line.startswith(("lstm-plugins", "  ("))]
    assert lines == ["lstm-plugins: error: Checkpoint state of technique `gradient_clipping`, key `clipped` is not a "
                     "key this technique stores.", "  (checkpoint 'model.ckpt')"]
    assert not (tmp_path / "predictions.csv").exists()
