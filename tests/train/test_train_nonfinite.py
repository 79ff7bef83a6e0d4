"""NaN/inf losses: the step is skipped with a warning; many in a row stop the run."""

import pytest
import torch

from fgaseg.data.folder import FolderDataset
from fgaseg.train.loop.trainer import Trainer, TrainingDivergedError
from standin_model import TinySeg
from train_helpers import tiny_config, toy_root


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_nan_step_is_skipped(tmp_path):
    root = toy_root(tmp_path)
    dataset = FolderDataset(root, "train")
    torch.manual_seed(0)
    model = TinySeg(nan_calls={2})  # the 2nd forward (= step 2) gives a NaN loss
    states = {}
    trainer = Trainer(tiny_config(root, tmp_path / "run", max_iters=3), model, dataset,
                      callbacks=[lambda t, step: states.__setitem__(step, snapshot(t.model))])
    with pytest.warns(UserWarning, match="non-finite"):
        result = trainer.train()
    assert result.step == 3 and result.skipped_steps == 1
    for name in states[1]:  # step 2 changed nothing ...
        torch.testing.assert_close(states[1][name], states[2][name])
    assert not torch.equal(states[2]["conv1.weight"], states[3]["conv1.weight"])  # ... step 3 did
    assert all(torch.isfinite(v).all() for v in states[3].values())


def test_many_nans_in_a_row_stop(tmp_path):
    root = toy_root(tmp_path)
    dataset = FolderDataset(root, "train")
    model = TinySeg(nan_calls=set(range(1, 100)))
    config = tiny_config(root, tmp_path / "run", max_iters=10, max_consecutive_nonfinite=3)
    with pytest.warns(UserWarning):
        with pytest.raises(TrainingDivergedError, match="3 non-finite losses in a row"):
            Trainer(config, model, dataset).train()
