"""Shared helpers of the trainer tests: a tiny folder dataset and a tiny config."""

from pathlib import Path

from fgaseg.data.prepare.toy_shapes import write_toy_dataset
from fgaseg.train.config import config_from_dict


def toy_root(tmp_path: Path) -> Path:
    return write_toy_dataset(tmp_path / "toy", images=12, size=32, val_images=2, seed=1)


def tiny_config(root: Path, out: Path, **top):
    values = {
        "data": {"dataset": "folder", "root": str(root), "split": "train", "crop_size": 24,
                 "min_size": 28, "max_size": 64, "num_workers": 0},
        "model": {"preset": "standin"},
        "optim": {"lr": 1e-2, "grad_clip": 1.0},
        "max_iters": 6, "batch_size": 4, "checkpoint_every": 3, "tensorboard": False,
        "progress": False, "save_pretrained": False, "log_every": 1, "out_dir": str(out),
    }
    values.update(top)
    return config_from_dict(values)
