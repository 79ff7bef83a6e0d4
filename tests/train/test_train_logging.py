"""TensorBoard scalars + example images, and the progress bar."""

import pytest

from fgaseg.data.folder import FolderDataset
from fgaseg.train.loop.trainer import Trainer
from standin_model import make_model
from train_helpers import tiny_config, toy_root


def test_tensorboard_and_progress(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root = toy_root(tmp_path)
    config = tiny_config(root, tmp_path / "run", max_iters=2, tensorboard=True, progress=True,
                         image_log_every=2, log_every=1)
    Trainer(config, make_model(), FolderDataset(root, "train")).train()
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    tags = events.Tags()
    assert {"train/loss", "train/loss_seg", "train/grad_norm", "train/lr/0",
            "train/lr/1"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2]
    assert "train/example" in tags["images"]
    image = events.Images("train/example")[0]
    assert image.width == 3 * image.height  # image | ground truth | prediction
    err = capsys.readouterr().err
    assert "2/2" in err and "loss=" in err and "lr=" in err
