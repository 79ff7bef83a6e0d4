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


def test_resume_from_a_different_step_differs(tmp_path):
    """Sanity check of the test above: weights after 3 and after 6 steps are not equal."""
    root = toy_root(tmp_path)
    dataset = FolderDataset(root, "train")
    trainer = Trainer(tiny_config(root, tmp_path / "run"), make_model(dropout=0.3), dataset)
    trainer.train()
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


def test_loader_workers_do_not_change_the_result(tmp_path):
    """Augmentation depends on the stream position only, not on which worker made the sample."""
    root = toy_root(tmp_path)
    dataset = FolderDataset(root, "train")
    results = []
    for workers in (0, 2):
        config = tiny_config(root, tmp_path / f"w{workers}", max_iters=2)
        config.data.num_workers = workers
        trainer = Trainer(config, make_model(dropout=0.3), dataset)
        trainer.train()
        results.append(trainer.model.state_dict())
    for name in results[0]:
        torch.testing.assert_close(results[0][name], results[1][name], msg=name)
