"""End to end with the real FGASeg (tiny preset): `fgaseg train` -> resume -> `fgaseg eval`."""

import json
from pathlib import Path

import pytest
import torch

from fgaseg.cli import main
from fgaseg.data.prepare.toy_shapes import write_toy_dataset
from fgaseg.train.checkpoint import load_checkpoint

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "tiny_cpu.yaml"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_train_resume_eval_cli(tmp_path, capsys):
    data = write_toy_dataset(tmp_path / "toy", images=6, size=48, val_images=2, seed=3)
    common = [str(CONFIG), "--opts", f"data.root={data}", "data.crop_size=32",
              "data.min_size=40", "max_iters=2", "checkpoint_every=1", "batch_size=2",
              "image_log_every=1", "keep_checkpoints=2", "log_every=1", "tensorboard=true",
              "progress=false",
              "model.overrides={image_size: 32, sliding_window_size: 32, sliding_resize: 48}"]

    # straight run: 2 steps, checkpoints after each
    assert main(["train", *common[:1], "--out", str(tmp_path / "straight"), *common[1:]]) == 0
    # a run killed after step 1: its folder holds only the step-1 checkpoint; resume it
    first = tmp_path / "resumed"
    (first / "checkpoints").mkdir(parents=True)
    last = load_checkpoint(tmp_path / "straight" / "checkpoints" / "step_0000001.pt")
    torch.save(last, first / "checkpoints" / "last.pt")
    assert main(["train", *common[:1], "--out", str(first), "--resume", *common[1:]]) == 0

    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(first / "checkpoints" / "last.pt")["model"]
    assert a.keys() == b.keys()
    changed = 0
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-6, msg=name)
        changed += int(not torch.equal(a[name], last["model"][name]))
    assert changed > 0  # step 2 did train something
    assert list((tmp_path / "straight" / "tensorboard").iterdir())

    out = tmp_path / "eval.json"
    assert main(["eval", "--dataset", "folder", "--root", str(data), "--split", "val",
                 "--weights", str(tmp_path / "straight" / "final"), "--sliding", "--topk", "2",
                 "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "mIoU" in printed and "red square" in printed
    results = json.loads(out.read_text())
    assert results["num_images"] == 2 and results["sliding"] is True and results["topk"] == 2
    assert 0.0 <= results["mIoU"] <= 100.0
    assert set(results["per_class_iou"]) == {"background", "red square", "green disc",
                                             "blue square", "yellow disc"}
