"""Under torchrun the images are sharded and the confusion matrices summed (gloo, 2 processes)."""

import json
import socket

import numpy as np
import pytest
import torch.multiprocessing as mp
from PIL import Image

from eval_ddp_worker import ParitySegmenter, worker
from fgaseg.data import build_dataset
from fgaseg.eval import EvalSettings, evaluate


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_two_process_evaluation_equals_one(tmp_path):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("a\nb\nc\n")
    rng = np.random.default_rng(0)
    for i in range(5):  # an odd count: the shards differ in size
        h = 4 + i
        Image.fromarray(np.zeros((h, 6, 3), np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray(rng.integers(0, 3, (h, 6)).astype(np.uint8)).save(
            root / "masks" / f"{i}.png")
    single = evaluate(ParitySegmenter(), build_dataset("folder", root),
                      EvalSettings(min_size=None, progress=False))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "r.json"
    mp.spawn(worker, args=(2, port, str(root), str(out)), nprocs=2, join=True)
    double = json.loads(out.read_text())
    assert double["confusion_matrix"] == single["confusion_matrix"].tolist()
    assert double["mIoU"] == pytest.approx(single["mIoU"])
    assert double["num_images"] == 5
