"""Checkpoints survive faults during their write, and a crafted checkpoint is refused.

The model installs :class:`lstm_plugins.training.AtomicCheckpointIO` on every Trainer that still has
Lightning's default ``TorchCheckpointIO``: each checkpoint is written to a temporary file beside
its target, synced, and renamed over it. Tested here: a SIGKILL in the middle of a write with the
checkpoint folder on another filesystem than ``$TMPDIR`` (``/dev/shm``, a tmpfs, against ``/tmp``),
a real full disk (a 1.5-checkpoint tmpfs mounted for the test; needs root), a write whose sync
reports ``ENOSPC``, and a checkpoint carrying a pickled ``__reduce__`` payload.
"""

import errno
import math
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import warnings
from pathlib import Path

import pytest
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from checkpoint_kill_script import STEPS, build
from conftest import sigkill_when_marked
from lstm_plugins import LSTMClassifier, _files
from lstm_plugins.training import AtomicCheckpointIO

SCRIPT = Path(__file__).with_name("checkpoint_kill_script.py")
ROOT = Path(__file__).resolve().parents[1]


def _partials(folder):
    return sorted(path.name for path in Path(folder).iterdir() if ".partial" in path.name)


@pytest.fixture
def other_filesystem(tmp_path):
    """A folder on /dev/shm (tmpfs), checked to be another filesystem than ``tmp_path``."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK):
        pytest.skip("/dev/shm is not a writable folder here")
    if os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("/dev/shm and the temporary folder are on the same filesystem here")
    folder = Path(tempfile.mkdtemp(dir=shm, prefix="lstm-plugins-test-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_a_kill_during_a_write_across_filesystems_keeps_the_previous_checkpoint(other_filesystem, tmp_path):
    checkpoints, temporary, marker = other_filesystem / "checkpoints", tmp_path / "tmpdir", tmp_path / "held"
    temporary.mkdir()
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(temporary)}
    process = subprocess.Popen([sys.executable, str(SCRIPT), str(checkpoints), str(marker)], env=environment,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    sigkill_when_marked(process, marker, 240, "the held write", process.stderr.read)
    # Killed with the new last.ckpt written and synced, before the rename: the old one (step 2) is
    # whole and loads; nothing was written to $TMPDIR.
    kind, held = marker.read_text().split(" ", 1)
    assert kind == ("unnamed" if hasattr(os, "O_TMPFILE") else "named")  # tmpfs has O_TMPFILE
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["global_step"] == 2
    assert sorted(os.listdir(temporary)) == []
    if kind == "unnamed":  # Linux's O_TMPFILE: the killed write's file had no name, nothing is left
        assert _partials(checkpoints) == []
    else:  # a named temporary file: SIGKILL cannot be caught, so the next write removes it
        assert Path(held).parent == checkpoints and _partials(checkpoints) == [Path(held).name]
        assert torch.load(held, weights_only=True)["global_step"] == STEPS
    # Resuming from it runs to the end; its writes remove the killed process's temporary file.
    model, datamodule, trainer = build(checkpoints)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*exists and is not empty.*")
        trainer.fit(model, datamodule=datamodule, ckpt_path=checkpoints / "last.ckpt")
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["global_step"] == STEPS
    assert _partials(checkpoints) == []


@pytest.fixture
def small_tmpfs(tmp_path):
    """Mount a tmpfs of ``size`` bytes (rounded up to pages); skip where mounting is not allowed."""
    mounts = []

    def mount(size):
        folder = tmp_path / f"disk{len(mounts)}"
        folder.mkdir()
        pages = math.ceil(size / 4096)
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={pages * 4096}", "tmpfs", str(folder)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here (needs root): {result.stderr.strip()}")
        mounts.append(folder)
        return folder

    yield mount
    for folder in mounts:
        subprocess.run(["umount", str(folder)], capture_output=True)


def _fitted():
    model, datamodule, trainer = build(None)
    trainer.fit(model, datamodule=datamodule)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)  # installed by the model
    return model, trainer


def test_a_full_disk_during_a_write_keeps_the_previous_checkpoint(small_tmpfs, tmp_path):
    model, trainer = _fitted()
    trainer.save_checkpoint(tmp_path / "size.ckpt")
    size = (tmp_path / "size.ckpt").stat().st_size
    disk = small_tmpfs(size * 3 // 2)  # room for one checkpoint, not for two
    trainer.save_checkpoint(disk / "last.ckpt")
    before, weight = (disk / "last.ckpt").read_bytes(), model.head.weight.detach().clone()
    with torch.no_grad():
        model.head.weight.add_(1.0)
    with pytest.raises(OSError) as raised:
        trainer.save_checkpoint(disk / "last.ckpt")
    assert raised.value.errno == errno.ENOSPC
    assert (disk / "last.ckpt").read_bytes() == before
    assert sorted(os.listdir(disk)) == ["last.ckpt"]  # no temporary file left
    restored = LSTMClassifier.load_from_checkpoint(disk / "last.ckpt")
    assert torch.equal(restored.head.weight, weight) and not torch.equal(weight, model.head.weight)


def _lightning(**values):
    """The smallest dict the IO reads back as a Lightning checkpoint."""
    return {"state_dict": {}, "pytorch-lightning_version": "2.6.0", **values}


@pytest.mark.parametrize("way", ["unnamed", "named"])
def test_a_write_whose_sync_reports_enospc_keeps_the_previous_checkpoint(way, tmp_path, monkeypatch):
    if way == "named":  # the way without Linux's O_TMPFILE
        monkeypatch.setattr(_files, "_anonymous_file", lambda folder: None)
    io = AtomicCheckpointIO()
    io.save_checkpoint(_lightning(step=torch.tensor(1)), tmp_path / "last.ckpt")

    def full(path):  # delayed allocation: a full disk often shows only at fsync
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(_files, "_sync_file", full)
    monkeypatch.setattr(_files, "_sync_descriptor", full)
    with pytest.raises(OSError) as raised:
        io.save_checkpoint(_lightning(step=torch.tensor(2)), tmp_path / "last.ckpt")
    monkeypatch.undo()
    assert raised.value.errno == errno.ENOSPC
    assert sorted(os.listdir(tmp_path)) == ["last.ckpt"]
    assert int(io.load_checkpoint(tmp_path / "last.ckpt")["step"]) == 1
    io.save_checkpoint(_lightning(step=torch.tensor(3)), tmp_path / "last.ckpt")  # and the next write works
    assert int(io.load_checkpoint(tmp_path / "last.ckpt")["step"]) == 3 and sorted(os.listdir(tmp_path)) == ["last.ckpt"]


def test_an_unserialisable_checkpoint_touches_no_file(tmp_path):
    io = AtomicCheckpointIO()
    io.save_checkpoint(_lightning(step=1), tmp_path / "last.ckpt")
    with pytest.raises(Exception):
        io.save_checkpoint(_lightning(step=2, bad=lambda: None), tmp_path / "last.ckpt")
    assert sorted(os.listdir(tmp_path)) == ["last.ckpt"] and io.load_checkpoint(tmp_path / "last.ckpt")["step"] == 1


def test_a_users_checkpoint_io_is_left_alone(tmp_path):
    class Mine(TorchCheckpointIO):
        pass

    model, datamodule, trainer = build(None)
    default = type(trainer.strategy.checkpoint_io)
    assert default is TorchCheckpointIO  # Lightning's, before the model is attached
    import pytorch_lightning as pl

    trainer = pl.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         plugins=[Mine()])
    trainer.fit(model, datamodule=datamodule)
    assert type(trainer.strategy.checkpoint_io) is Mine


# --- crafted checkpoints ----------------------------------------------------------------------------


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


@pytest.fixture
def crafted(tmp_path):
    model, datamodule, trainer = build(None)
    path, marker = tmp_path / "crafted.ckpt", tmp_path / "payload-ran"
    trainer.strategy.connect(model)
    checkpoint = {"state_dict": model.state_dict(), "pytorch-lightning_version": "2.6.0", "epoch": 0,
                  "global_step": 0, "hyper_parameters": dict(model.hparams), "extra": _Payload(marker)}
    torch.save(checkpoint, path)
    torch.load(path, weights_only=False)  # the payload works when the file is trusted
    assert marker.exists()
    marker.unlink()
    return path, marker


def test_a_crafted_checkpoint_is_refused_by_every_loading_path(crafted, tmp_path, monkeypatch):
    import pickle

    path, marker = crafted
    refused = "holds a pickled `exec`"  # the file and the class it asks for, never the payload run
    with pytest.raises(ValueError, match=refused):
        LSTMClassifier.load_from_checkpoint(path)
    with pytest.raises(ValueError, match=refused):
        AtomicCheckpointIO().load_checkpoint(path)
    model, datamodule, trainer = build(None)
    with pytest.raises(ValueError, match=refused):
        trainer.fit(model, datamodule=datamodule, ckpt_path=path)  # weights_only=True, explicitly
    from lstm_plugins import cli

    monkeypatch.chdir(tmp_path)
    try:
        status = cli.main(["test", "--ckpt_path", str(path), "--trainer.logger=false",
                           "--trainer.enable_progress_bar=false"])
    except pickle.UnpicklingError:
        status = "raised"
    assert status != 0
    assert not marker.exists()


def test_the_torch_floor_has_weights_only_loading_by_default():
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (torch_line,) = [line for line in dependencies if line.startswith("torch>")]
    floor = tuple(int(part) for part in torch_line.split(">=")[1].split(".")[:2])
    assert floor >= (2, 6)  # torch.load(weights_only=True) is the default from 2.6 on


def test_the_next_write_removes_orphans_of_dead_processes_of_this_machine_only(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(finished.stdout)
    host = _files._host()
    orphan = tmp_path / f".last.ckpt.{host}.{dead}.partial.ckpt"
    other_host = tmp_path / f".last.ckpt.elsewhere.{dead}.partial.ckpt"
    alive = tmp_path / f".last.ckpt.{host}.{os.getppid()}.partial.ckpt"  # a live process's write
    other_target = tmp_path / f".best.ckpt.{host}.{dead}.partial.ckpt"
    for path in (orphan, other_host, alive, other_target):
        path.write_bytes(b"half")
    AtomicCheckpointIO().save_checkpoint({"step": 1}, tmp_path / "last.ckpt")
    assert sorted(os.listdir(tmp_path)) == sorted(["last.ckpt", other_host.name, alive.name, other_target.name])


@pytest.mark.parametrize("save_last", [True, "link"])
def test_lightning_and_cli_checkpoint_callbacks_write_through_the_atomic_io(save_last, tmp_path, monkeypatch):
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint

    from lstm_plugins.training import PeriodicCheckpoint

    writes = []
    original = AtomicCheckpointIO.save_checkpoint

    def recording(self, checkpoint, path, storage_options=None):
        writes.append(Path(path).name)
        original(self, checkpoint, path, storage_options)

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", recording)
    model, datamodule, _ = build(None)
    callbacks = [ModelCheckpoint(dirpath=tmp_path / "steps", every_n_train_steps=2, save_last=save_last,
                                 save_top_k=-1),
                 PeriodicCheckpoint(every_n_epochs=10, dirpath=tmp_path / "periodic")]
    trainer = pl.Trainer(accelerator="cpu", max_steps=STEPS, logger=False, callbacks=callbacks,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model, datamodule=datamodule)
    last = tmp_path / "steps" / "last.ckpt"
    assert last.is_symlink() == (save_last == "link")
    assert torch.load(last, weights_only=True)["global_step"] == STEPS
    assert torch.load(tmp_path / "periodic" / "last.ckpt", weights_only=True)["global_step"] == STEPS
    assert writes.count("epoch=0-step=4.ckpt") == 1 and "last.ckpt" in writes  # each written by the IO
    assert _partials(tmp_path / "steps") == _partials(tmp_path / "periodic") == []
