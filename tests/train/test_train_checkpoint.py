"""Atomic checkpoints: a save that dies half-way leaves the previous checkpoint loadable."""

import os

import pytest
import torch

from fgaseg.errors import WeightsError
from fgaseg.train import checkpoint as ckpt


class Killed(BaseException):
    pass


def test_crash_while_saving_keeps_previous(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    old = {"model": {"w": torch.arange(1000.0)}, "step": 1}
    ckpt.save_checkpoint(old, folder, step=1, keep=2)

    real_save = torch.save

    def dying_save(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a checkpoint")  # some bytes reach the disk ...
        handle.flush()
        raise Killed()                                 # ... then the process dies

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(Killed):
        ckpt.save_checkpoint({"model": {"w": torch.zeros(1000)}, "step": 2}, folder, step=2)
    monkeypatch.setattr(torch, "save", real_save)

    state = ckpt.load_checkpoint(ckpt.find_resume_checkpoint(tmp_path))
    assert state["step"] == 1
    torch.testing.assert_close(state["model"]["w"], old["model"]["w"])
    assert not [p for p in os.listdir(folder) if p.endswith(".tmp")]  # temp file cleaned up
    assert [p.name for p in ckpt.list_checkpoints(folder)] == ["step_0000001.pt"]

    (folder / ".last.pt.abc.tmp").write_bytes(b"left by a SIGKILL")  # no cleanup possible then
    ckpt.save_checkpoint({"model": {}, "step": 3}, folder, step=3)
    assert not list(folder.glob(".*.tmp"))


def test_keeps_only_the_last_numbered_checkpoints(tmp_path):
    for step in range(1, 5):
        ckpt.save_checkpoint({"model": {}, "step": step}, tmp_path, step=step, keep=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_0000003.pt",
                                                                 "step_0000004.pt"]
    assert ckpt.load_checkpoint(tmp_path / "last.pt")["step"] == 4
    assert ckpt.load_checkpoint(tmp_path / "step_0000003.pt")["step"] == 3


def test_truncated_or_foreign_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read"):
        ckpt.load_checkpoint(bad)
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="not an fgaseg training checkpoint"):
        ckpt.load_checkpoint(tmp_path / "other.pt")


CHILD = r"""
import sys, time, torch
from fgaseg.train import checkpoint as ckpt
folder, started = sys.argv[1], sys.argv[2]
ckpt.save_checkpoint({"model": {"w": torch.ones(10)}, "step": 1}, folder, step=1)
def slow_save(obj, handle, *a, **k):
    handle.write(b"PK" * 1000)
    handle.flush()
    open(started, "w").close()
    time.sleep(60)          # killed here, half-way through writing step 2
torch.save = slow_save
ckpt.save_checkpoint({"model": {"w": torch.zeros(10)}, "step": 2}, folder, step=2)
"""


@pytest.mark.timeout(60)
def test_sigkill_while_saving_keeps_previous(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    folder, started = tmp_path / "ckpt", tmp_path / "started"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(folder), str(started)])
    try:
        deadline = time.time() + 50
        while not started.exists():
            assert child.poll() is None and time.time() < deadline, "child did not start saving"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    state = ckpt.load_checkpoint(ckpt.find_resume_checkpoint(folder))
    assert state["step"] == 1 and torch.equal(state["model"]["w"], torch.ones(10))
    assert list(folder.glob(".*.tmp"))  # the half-written temporary file is all that is left
