"""2 processes (torchrun-style env, gloo on CPU) == 1 process with the same global batch."""

import socket

import pytest
import torch
import torch.multiprocessing as mp

from fgaseg.train.checkpoint import load_checkpoint
from fgaseg.train.loop.run import run_training
from ddp_worker import nan_on_rank1_factory, worker
from train_helpers import tiny_config, toy_root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_two_processes_match_one(tmp_path):
    root = toy_root(tmp_path)
    common = dict(max_iters=4, batch_size=4, grad_accum=2, checkpoint_every=4)
    single = tiny_config(root, tmp_path / "single", **common)
    with pytest.warns(UserWarning, match="non-finite"):
        run_training(single, model_factory=nan_on_rank1_factory, device="cpu")

    double = tiny_config(root, tmp_path / "double", **common)
    mp.spawn(worker, args=(2, free_port(), double), nprocs=2, join=True)

    a = load_checkpoint(tmp_path / "single" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "double" / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 4 and b["world_size"] == 2 and len(b["rng"]) == 2
    assert not torch.equal(a["model"]["conv1.weight"],
                           nan_on_rank1_factory(None).state_dict()["conv1.weight"])  # it trained
    for name in a["model"]:
        torch.testing.assert_close(a["model"][name], b["model"][name], rtol=1e-4, atol=1e-6,
                                   msg=name)
