"""A run folder is never silently replaced, and errors on resume are one line (issue #16.2/4/7)."""

import os

import pytest
import torch

from fgaseg.errors import ConfigError, WeightsError
from fgaseg.train import checkpoint as ckpt
from fgaseg.train.config import ModelConfig
from fgaseg.train.factory import model_config_of
from fgaseg.train.loop.run import run_training
from standin_model import TinySeg, make_model
from train_helpers import tiny_config, toy_root


def run(root, out, resume=None, force=False, factory=make_model, **top):
    settings = dict(max_iters=4, checkpoint_every=1, keep_checkpoints=2)
    settings.update(top)
    config = tiny_config(root, out, **settings)
    return run_training(config, resume=resume, model_factory=factory, device="cpu", force=force)


def snapshot(folder):
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_a_second_run_into_the_same_folder_is_refused_and_changes_nothing(tmp_path):
    root = toy_root(tmp_path)
    out = tmp_path / "run"
    run(root, out)
    before = snapshot(out)
    with pytest.raises(ConfigError, match="already holds a training run.*--resume.*--overwrite"):
        run(root, out, max_iters=2)
    assert snapshot(out) == before
    with pytest.raises(ConfigError, match="already holds"):  # resuming another run into it
        run(root, out, resume=tmp_path / "elsewhere" / "last.pt")
    assert snapshot(out) == before


def test_force_replaces_the_earlier_run_entirely(tmp_path):
    root = toy_root(tmp_path)
    out = tmp_path / "run"
    run(root, out)  # steps 1..4: step_0000003.pt, step_0000004.pt kept
    with pytest.warns(UserWarning, match="deleting the earlier run"):
        result = run(root, out, force=True, max_iters=2)
    assert result.step == 2
    names = [p.name for p in ckpt.list_checkpoints(out / "checkpoints")]
    assert names == ["step_0000001.pt", "step_0000002.pt"]  # nothing of the old run survives
    assert ckpt.load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 2


def test_resume_continues_the_run_in_the_folder(tmp_path):
    root = toy_root(tmp_path)
    out = tmp_path / "run"
    run(root, out, max_iters=2)
    assert run(root, out, resume=True).step == 4
    assert run(root, out, resume=out / "checkpoints" / "step_0000004.pt", max_iters=5).step == 5


def test_pruning_never_keeps_a_later_file_over_the_one_just_written(tmp_path):
    folder = tmp_path / "checkpoints"
    ckpt.save_checkpoint({"model": {}, "step": 30}, folder, step=30, keep=1)  # another line
    ckpt.save_checkpoint({"model": {}, "step": 2}, folder, step=2, keep=1)
    ckpt.save_checkpoint({"model": {}, "step": 3}, folder, step=3, keep=1)
    names = [p.name for p in ckpt.list_checkpoints(folder)]
    assert "step_0000003.pt" in names and "step_0000002.pt" not in names


def test_resume_with_a_changed_model_is_one_line(tmp_path):
    root = toy_root(tmp_path)
    out = tmp_path / "run"
    run(root, out, max_iters=2)

    def wider(config):
        torch.manual_seed(0)
        return TinySeg(width=16)

    before = snapshot(out)
    with pytest.raises(ConfigError) as info:
        run(root, out, resume=True, factory=wider)
    assert snapshot(out) == before  # not even config.json was rewritten
    message = str(info.value)
    assert "\n" not in message and str(out / "checkpoints" / "last.pt") in message
    assert "different model" in message and "wrong shape" in message


def test_truncated_last_checkpoint_points_to_the_intact_step_file(tmp_path):
    folder = tmp_path / "checkpoints"
    for step in (1, 2):
        ckpt.save_checkpoint({"model": {}, "step": step}, folder, step=step, keep=2)
    last = folder / "last.pt"
    data = last.read_bytes()
    os.unlink(last)  # last.pt is a hard link of step_0000002.pt: break it, then truncate
    last.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError) as info:
        ckpt.load_checkpoint(last)
    message = str(info.value)
    assert "step_0000002.pt beside it may be intact" in message and "\n" not in message
    assert "cannot read checkpoint" in message and message.split(": ", 1)[1] != "RuntimeError"


@pytest.mark.parametrize("overrides,expected", [
    ({"hidden_dim": "big"}, "model.overrides: 'hidden_dim' expects integer, got 'big'"),
    ({"hidden_size": 3}, "unknown FGASeg config key.*hidden_size"),
    ("big", "model.overrides must be a mapping"),
])
def test_bad_model_overrides_name_the_option(overrides, expected):
    with pytest.raises(ConfigError, match=expected):
        model_config_of(ModelConfig(preset="fgaseg_tiny", overrides=overrides))


def test_cli_bad_override_is_one_line_and_writes_nothing(tmp_path, capsys):
    from pathlib import Path

    from fgaseg.cli import main

    config = Path(__file__).resolve().parents[2] / "configs" / "tiny_cpu.yaml"
    root = toy_root(tmp_path)
    out = tmp_path / "run"
    rc = main(["train", str(config), "--out", str(out), "--device", "cpu", "--opts",
               f"data.root={root}", "model.overrides={hidden_dim: big}"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0
    assert err == "error: model.overrides: 'hidden_dim' expects integer, got 'big'"
    assert not out.exists()
