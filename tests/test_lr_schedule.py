"""Learning-rate schedules: the rate of every optimizer step of a real ``Trainer.fit`` against
hand-written and torch references, warm-up, plateau patience, resumes, refusals and logging."""

import math

import pytest
import torch
from conftest import RecordingLogger, quiet_trainer
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

from lstm_plugins import LSTMClassifier, Technique, hookimpl
from lstm_plugins.data import JapaneseVowelsDataModule
from lstm_plugins.plugins import DecoupledWeightDecay, LRSchedule
from lstm_plugins.plugins.functional import lr_schedule

LR = 0.01


class _Rates(Callback):
    """The learning rate of each parameter group at each optimizer step, as the step uses it,
    and the monitored value at each epoch's end."""

    def __init__(self):
        self.rates, self.group_rates, self.val_losses = [], [], []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.rates.append(optimizer.param_groups[0]["lr"])
        self.group_rates.append([group["lr"] for group in optimizer.param_groups])

    def on_train_epoch_end(self, trainer, pl_module):
        if "val/loss" in trainer.callback_metrics:
            self.val_losses.append(trainer.callback_metrics["val/loss"].item())


def _fit(schedule, learning_rate=LR, ckpt_path=None, callbacks=(), techniques=(), optimizer="adam", **options):
    torch.manual_seed(0)
    model = LSTMClassifier(12, 9, hidden_size=8, learning_rate=learning_rate, optimizer=optimizer,
                           techniques=[schedule, *techniques])
    rates = _Rates()
    settings = dict(max_steps=10, limit_val_batches=0, num_sanity_val_steps=0)
    settings.update(options)
    trainer = quiet_trainer(callbacks=[rates, *callbacks], **settings)
    trainer.fit(model, datamodule=JapaneseVowelsDataModule(batch_size=64), ckpt_path=ckpt_path)
    return rates, trainer


def _torch_rates(make_scheduler, steps, step_when=lambda index: True, learning_rate=LR):
    """The rates a torch scheduler gives a dummy optimizer, stepped after step ``i`` when
    ``step_when(i)``."""
    optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=learning_rate)
    scheduler = make_scheduler(optimizer)
    rates = []
    for index in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if step_when(index):
            scheduler.step()
    return rates


# --- each kind against a reference ----------------------------------------------------------------


def test_cosine_decays_to_the_floor_over_the_run_in_every_parameter_group():
    rates, _ = _fit(LRSchedule("cosine", min_lr_ratio=0.1), techniques=[DecoupledWeightDecay(0.01)],
                    optimizer="adamw")
    by_hand = [LR * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t / 10))) for t in range(10)]
    assert rates.rates == pytest.approx(by_hand, rel=1e-12)
    reference = _torch_rates(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10, eta_min=0.1 * LR), 10)
    assert rates.rates == pytest.approx(reference, rel=1e-9)
    assert all(len(set(groups)) == 1 and len(groups) == 2 for groups in rates.group_rates)


def test_the_run_length_honours_epochs_and_gradient_accumulation():
    # 3 batches per epoch, 2 per step: ceil(3 / 2) = 2 optimizer steps per epoch, 3 epochs.
    rates, trainer = _fit(LRSchedule("cosine"), max_steps=-1, max_epochs=3, limit_train_batches=3,
                          accumulate_grad_batches=2)
    assert trainer.estimated_stepping_batches == 6 == len(rates.rates)
    assert rates.rates == pytest.approx([LR * 0.5 * (1 + math.cos(math.pi * t / 6)) for t in range(6)], rel=1e-12)


def test_the_warm_up_ramps_linearly_then_the_cosine_starts():
    rates, _ = _fit(LRSchedule("cosine", warmup_steps=4, warmup_start_ratio=0.2))
    ramp = rates.rates[:5]
    assert ramp == pytest.approx([LR * (0.2 + 0.8 * t / 4) for t in range(5)], rel=1e-12)
    assert len({round(b - a, 15) for a, b in zip(ramp, ramp[1:])}) == 1  # equal increments
    assert rates.rates[4:] == pytest.approx([LR * 0.5 * (1 + math.cos(math.pi * t / 6)) for t in range(6)], rel=1e-12)


def test_one_cycle_is_torchs_one_cycle_peaking_at_the_models_learning_rate():
    rates, _ = _fit(LRSchedule("one_cycle", pct_start=0.25))
    reference = _torch_rates(
        lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=LR, total_steps=10, pct_start=0.25), 10)
    assert rates.rates == pytest.approx(reference, rel=1e-12)
    # The peak is reached at step pct_start * total_steps - 1: step 1 of 5 with pct_start=0.4.
    peaked, _ = _fit(LRSchedule("one_cycle", pct_start=0.4), max_steps=5)
    assert peaked.rates[1] == pytest.approx(LR, rel=1e-12) and max(peaked.rates) == peaked.rates[1]
    given, _ = _fit(LRSchedule("one_cycle", pct_start=0.4, max_lr=0.05), max_steps=5)
    assert given.rates == pytest.approx([rate * 5 for rate in peaked.rates], rel=1e-12)


def test_step_decays_every_step_size_epochs():
    rates, _ = _fit(LRSchedule("step", step_size=2, gamma=0.5), max_steps=-1, max_epochs=5, limit_train_batches=2)
    assert rates.rates == pytest.approx([LR] * 4 + [LR / 2] * 4 + [LR / 4] * 2, rel=1e-12)
    reference = _torch_rates(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5), 10,
                             step_when=lambda index: index % 2 == 1)
    assert rates.rates == pytest.approx(reference, rel=1e-12)


def test_step_with_a_warm_up_counts_epochs_in_optimizer_steps():
    # 3 batches, 2 per step: 2 optimizer steps per epoch (the second from a single batch).
    rates, _ = _fit(LRSchedule("step", step_size=1, gamma=0.5, warmup_steps=3), max_steps=-1, max_epochs=3,
                    limit_train_batches=3, accumulate_grad_batches=2)
    warm = [t / 3 for t in range(3)] + [1.0] * 3
    decay = [0.5 ** (t // 2) for t in range(6)]
    assert rates.rates == pytest.approx([LR * w * d for w, d in zip(warm, decay)], rel=1e-12)


def test_plateau_reduces_once_patience_epochs_pass_without_improvement():
    # SGD steps so small that the validation loss cannot improve by torch's threshold (1e-4,
    # relative), with rates far above its `eps` (1e-8), below which a reduction is skipped.
    lr = 1e-6
    rates, _ = _fit(LRSchedule("plateau", patience=1, factor=0.5), learning_rate=lr, optimizer="sgd", max_steps=-1,
                    max_epochs=6, limit_train_batches=2, limit_val_batches=1)
    per_epoch = rates.rates[::2]
    # Epoch 0 sets the best value; epochs 1 and 2 do not improve on it: more than `patience`.
    assert per_epoch == pytest.approx([lr, lr, lr, lr / 2, lr / 2, lr / 4], rel=1e-12)
    fed = _torch_rates(lambda o: _FedPlateau(o, rates.val_losses, patience=1, factor=0.5), 6, learning_rate=lr)
    assert per_epoch == pytest.approx(fed, rel=1e-12)


def test_plateau_follows_torchs_plateau_on_the_logged_validation_loss():
    rates, _ = _fit(LRSchedule("plateau", patience=0, factor=0.5), learning_rate=0.05, max_steps=-1, max_epochs=6,
                    limit_train_batches=2, limit_val_batches=1)
    fed = _torch_rates(lambda o: _FedPlateau(o, rates.val_losses, patience=0, factor=0.5), 6, learning_rate=0.05)
    assert rates.rates[::2] == pytest.approx(fed, rel=1e-12)


class _FedPlateau:
    """torch's ReduceLROnPlateau stepped with recorded values, one per epoch."""

    def __init__(self, optimizer, values, **options):
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, **options)
        self.values = iter(values)

    def step(self):
        self.scheduler.step(next(self.values))


def test_plateau_without_validation_is_refused_before_training():
    rates = _Rates()
    with pytest.raises(ValueError, match="Technique `lr_schedule` with kind 'plateau'.*runs no validation"):
        _fit(LRSchedule("plateau"), callbacks=[rates])
    assert rates.rates == []


# --- resume -----------------------------------------------------------------------------------------


RESUMED = {
    "cosine+warm-up": (lambda: LRSchedule("cosine", warmup_steps=3, min_lr_ratio=0.05), dict(max_steps=10)),
    "one_cycle": (lambda: LRSchedule("one_cycle"), dict(max_steps=10)),
    "step": (lambda: LRSchedule("step", step_size=1, gamma=0.5), dict(max_steps=-1, max_epochs=3, limit_train_batches=3)),
    "step+warm-up": (lambda: LRSchedule("step", step_size=1, gamma=0.5, warmup_steps=2),
                     dict(max_steps=9, limit_train_batches=3)),
}


@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`")
@pytest.mark.parametrize("case", sorted(RESUMED))
def test_a_resumed_fit_continues_the_same_rates(case, tmp_path):
    make, options = RESUMED[case]
    saving = ModelCheckpoint(dirpath=tmp_path, filename="{step}", every_n_train_steps=4, save_top_k=-1)
    full, _ = _fit(make(), callbacks=[saving], enable_checkpointing=True, **options)
    resumed, _ = _fit(make(), ckpt_path=tmp_path / "step=4.ckpt", **options)
    assert len(full.rates) == 9 or len(full.rates) == 10
    assert resumed.rates == full.rates[4:]  # exactly


@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`")
@pytest.mark.parametrize(("saving", "checkpoint"), [
    (dict(every_n_train_steps=5), "step=5.ckpt"),  # mid-epoch
    (dict(every_n_epochs=1), "step=4.ckpt"),  # at the end of an epoch, after its validation
])
def test_a_resumed_plateau_keeps_its_patience_count(saving, checkpoint, tmp_path):
    # Lightning's own plateau stepping would skip the epoch the fit resumes in, and an epoch-end
    # checkpoint would miss that epoch's step: the technique steps after each validation instead.
    options = dict(learning_rate=1e-6, optimizer="sgd", max_steps=-1, max_epochs=6, limit_train_batches=2,
                   limit_val_batches=1)
    saver = ModelCheckpoint(dirpath=tmp_path, filename="{step}", save_top_k=-1, **saving)
    full, _ = _fit(LRSchedule("plateau", patience=1, factor=0.5), callbacks=[saver], enable_checkpointing=True,
                   **options)
    resumed, _ = _fit(LRSchedule("plateau", patience=1, factor=0.5), ckpt_path=tmp_path / checkpoint, **options)
    start = int(checkpoint[5:-5])
    assert len(set(full.rates[start:])) == 3  # both reductions come after the checkpoint
    assert resumed.rates == full.rates[start:]


# --- refusals ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (dict(warmup_steps=-1), "Expected `warmup_steps` to be a non-negative int, but got -1."),
        (dict(warmup_steps=1.5), "Expected `warmup_steps` to be a non-negative int, but got 1.5."),
        (dict(kind="linear"), "Expected `kind` to be one of 'cosine', 'one_cycle', 'plateau', 'step', but got 'linear'."),
        (dict(min_lr_ratio=1.0), "Expected `min_lr_ratio` to be a float in [0, 1), but got 1.0."),
        (dict(warmup_start_ratio=-0.1), "Expected `warmup_start_ratio` to be a float in [0, 1), but got -0.1."),
        (dict(kind="one_cycle", max_lr=0), "Expected `max_lr` to be a positive float, but got 0.0."),
        (dict(pct_start=1.0), "Expected `pct_start` to be a float in (0, 1), but got 1.0."),
        (dict(factor=1.5), "Expected `factor` to be a float in (0, 1), but got 1.5."),
        (dict(patience=-1), "Expected `patience` to be a non-negative int, but got -1."),
        (dict(monitor=""), "Expected `monitor` to be a metric name, but got ''."),
        (dict(mode="lowest"), "Expected `mode` to be one of 'min', 'max', but got 'lowest'."),
        (dict(step_size=0), "Expected `step_size` to be a positive int, but got 0."),
        (dict(gamma=0), "Expected `gamma` to be a float in (0, 1), but got 0.0."),
        (dict(total_steps=0), "Expected `total_steps` to be a positive int or None, but got 0."),
        (dict(log_every_n_steps=0), "Expected `log_every_n_steps` to be a positive int or None, but got 0."),
        (dict(kind="one_cycle", warmup_steps=5), "`warmup_steps` works with kind 'cosine' or 'step', not 'one_cycle': it has its own warm-up"),
        (dict(kind="plateau", warmup_steps=5), "`warmup_steps` works with kind 'cosine' or 'step', not 'plateau'"),
        (dict(kind="cosine", max_lr=0.1), "`max_lr` is for kind 'one_cycle'"),
        (dict(total_steps=5, warmup_steps=5), "`warmup_steps`=5 leaves no step to decay in: the run has 5 optimizer steps"),
    ],
)
def test_bad_arguments_are_refused_at_construction(arguments, message):
    with pytest.raises((ValueError, TypeError)) as raised:
        LRSchedule(**arguments)
    assert message in str(raised.value)


def test_the_function_face_refuses_what_it_cannot_build():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    with pytest.raises(ValueError, match="kind 'cosine' needs `total_steps`"):
        lr_schedule(optimizer, "cosine")
    with pytest.raises(ValueError, match="kind 'step' with a warm-up .* needs `steps_per_epoch`"):
        lr_schedule(optimizer, "step", warmup_steps=2)


def test_a_warm_up_longer_than_the_run_is_refused_at_fit():
    with pytest.raises(ValueError, match="Technique `lr_schedule`: `warmup_steps`=20 leaves no step .* 10 optimizer steps"):
        _fit(LRSchedule("cosine", warmup_steps=20))


def test_an_endless_run_without_total_steps_is_refused_naming_the_technique():
    with pytest.raises(ValueError, match="Technique `lr_schedule` with kind 'cosine' needs the number of optimizer steps"):
        _fit(LRSchedule("cosine"), max_steps=-1, max_epochs=-1)


class _OtherSchedule(Technique):
    """Another technique that schedules the learning rate."""

    name = "other_schedule"

    @hookimpl
    def configure_lr_scheduler(self, optimizer):
        return None


def test_two_schedules_are_refused_naming_both():
    with pytest.raises(ValueError, match=r"`lr_schedule` .* and `other_schedule` .* both take the `lr_scheduler` slot"):
        LSTMClassifier(12, 9, techniques=[LRSchedule(), _OtherSchedule()])


# --- outside a Trainer, and logging -------------------------------------------------------------------


def test_without_a_trainer_no_schedule_is_configured_and_the_function_face_serves_own_loops():
    model = LSTMClassifier(12, 9, hidden_size=8, learning_rate=LR, techniques=[LRSchedule("cosine")])
    optimizer = model.configure_optimizers()
    assert isinstance(optimizer, torch.optim.Optimizer) and optimizer.param_groups[0]["lr"] == LR
    config = lr_schedule(optimizer, "cosine", total_steps=4)
    rates = []
    for _ in range(4):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        config["scheduler"].step()
    assert rates == pytest.approx([LR * 0.5 * (1 + math.cos(math.pi * t / 4)) for t in range(4)], rel=1e-12)


@pytest.mark.parametrize(("technique_interval", "rows"), [(None, [2, 5, 8]), (2, [1, 3, 5, 7, 9])])
def test_the_rate_of_each_logging_step_is_logged_on_lightnings_rows(technique_interval, rows):
    logger = RecordingLogger()
    rates, _ = _fit(LRSchedule("one_cycle", log_every_n_steps=technique_interval), logger=logger, log_every_n_steps=3)
    logged = logger.values("lr_schedule/lr")
    assert [step for step, _ in logged] == rows
    assert [value for _, value in logged] == pytest.approx([rates.rates[step] for step in rows], rel=1e-12)
