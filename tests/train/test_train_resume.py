"""2n steps straight == n steps + crash + resume + n steps (weights, optimizer, schedule, RNG)."""

import pytest
import torch

from fgaseg.data.folder import FolderDataset
from fgaseg.train.checkpoint import find_resume_checkpoint, load_checkpoint
from fgaseg.train.loop.trainer import Trainer
from standin_model import make_model
from train_helpers import tiny_config, toy_root


class Crash(Exception):
    pass


def crash_at(step):
    def callback(trainer, current):
        if current == step:
            raise Crash()
    return callback


@pytest.mark.parametrize("grad_accum", [2])  # accumulation and resume together
def test_resume_matches_straight_run(tmp_path, grad_accum):
    root = toy_root(tmp_path)
    dataset = FolderDataset(root, "train")  # 12 images, batch 4: resume crosses an epoch

    straight_cfg = tiny_config(root, tmp_path / "straight", grad_accum=grad_accum)
    straight_cfg.data.num_workers = 2  # the resumed run uses none: augmentation depends on
                                       # the stream position only, not on the worker
    straight = Trainer(straight_cfg, make_model(dropout=0.3), dataset)
    result = straight.train()
    assert result.step == 6

    cfg = tiny_config(root, tmp_path / "resumed", grad_accum=grad_accum)
    first = Trainer(cfg, make_model(dropout=0.3), dataset, callbacks=[crash_at(3)])
    with pytest.raises(Crash):
        first.train()
    # something changed after the checkpoint (so the test would notice a stale resume)
    path = find_resume_checkpoint(tmp_path / "resumed")
    assert load_checkpoint(path)["step"] == 3
    assert load_checkpoint(path)["data_position"] == 12

    torch.manual_seed(1234)  # a different process state before resuming
    second = Trainer(cfg, make_model(dropout=0.3), dataset)
    result = second.train(resume=path)
    assert result.step == 6

    resumed = second.model.state_dict()
    for name, a in straight.model.state_dict().items():
        b = resumed[name]
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    a_opt = straight.optimizer.state_dict()["state"]
    b_opt = second.optimizer.state_dict()["state"]
    for key in a_opt:
        torch.testing.assert_close(a_opt[key]["exp_avg"], b_opt[key]["exp_avg"])
    assert straight.optimizer.param_groups[0]["lr"] == pytest.approx(
        second.optimizer.param_groups[0]["lr"])


def test_resume_from_a_different_step_differs(tmp_path, capsys):
    """Sanity check of the test above: weights after 3 and after 6 steps are not equal.
    The same run checks the TensorBoard logs and the progress bar."""
    root = toy_root(tmp_path)
    dataset = FolderDataset(root, "train")
    config = tiny_config(root, tmp_path / "run", tensorboard=True, progress=True,
                         image_log_every=3, log_every=1)
    trainer = Trainer(config, make_model(dropout=0.3), dataset)
    trainer.train()
    check_logs(tmp_path / "run" / "tensorboard", capsys.readouterr().err)
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    third = load_checkpoint(tmp_path / "run" / "checkpoints" / "step_0000003.pt")
    assert last["step"] == 6 and third["step"] == 3
    assert not torch.allclose(last["model"]["conv1.weight"], third["model"]["conv1.weight"])


def test_resume_rejects_other_batch_size(tmp_path):
    from fgaseg.errors import ConfigError

    root = toy_root(tmp_path)
    dataset = FolderDataset(root, "train")
    Trainer(tiny_config(root, tmp_path / "run", max_iters=2), make_model(), dataset).train()
    other = Trainer(tiny_config(root, tmp_path / "run", batch_size=2), make_model(), dataset)
    with pytest.raises(ConfigError, match="batch"):
        other.train(resume=tmp_path / "run" / "checkpoints" / "last.pt")


def check_logs(folder, progress_output):
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        return
    events = EventAccumulator(str(folder))
    events.Reload()
    tags = events.Tags()
    assert {"train/loss", "train/loss_seg", "train/grad_norm", "train/lr/0",
            "train/lr/1"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 7))
    image = events.Images("train/example")[0]
    assert image.width == 3 * image.height  # image | ground truth | prediction
    assert "6/6" in progress_output and "loss=" in progress_output and "lr=" in progress_output
