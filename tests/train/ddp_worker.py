"""Process entry for the DDP test (module-level so torch.multiprocessing can pickle it)."""

import os
import warnings

from standin_model import make_model


def nan_on_rank1_factory(config):
    """Rank 1 (or the single process) gets a NaN loss on its 2nd forward: every process must
    agree to skip that step, and 2 processes must match 1."""
    model = make_model()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1 or int(os.environ["RANK"]) == 1:
        model.nan_calls = {2}
    return model


def worker(rank, world_size, port, config):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size))
    from fgaseg.train.loop.run import run_training

    warnings.simplefilter("ignore")
    run_training(config, model_factory=nan_on_rank1_factory, device="cpu")
