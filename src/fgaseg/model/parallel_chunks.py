"""Independent chunks of the head run side by side on CPU threads at inference.

The Swin blocks (chunks of classes) and the class attention (chunks of pixels) write each
chunk into its own slice of one output buffer. Their per-chunk operations are small, and at 2
intra-op threads they ran only 1.1–1.3× faster than at 1 (issue 17, docs/speed.md). So on CPU,
with more than one intra-op thread and no autograd, the chunks are handed to a pool of that
many worker threads, each running its chunk with 1 intra-op thread (OpenMP and MKL thread
counts are per thread). Every chunk does the same arithmetic as before; results agree with
the serial loop within float rounding.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, List, Optional, TypeVar

import torch

R = TypeVar("R")
# switch for tools that follow one thread of control (e.g. per-stage timers); True by default
ENABLED = True
_lock = threading.Lock()
_pool: Optional[ThreadPoolExecutor] = None
_pool_size = 0


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size != workers:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fgaseg-chunk")
            _pool_size = workers
        return _pool


def _run(fn: Callable[[int], R], start: int, inference: bool, autocast: Optional[torch.dtype]) -> R:
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)  # this worker's OpenMP / MKL thread count
    # grad, inference mode and autocast are thread-local: carry the caller's over
    with torch.inference_mode(inference), torch.no_grad(), \
            torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=autocast is not None):
        return fn(start)


def _serial_only(device: torch.device) -> bool:
    from torch.utils._python_dispatch import _get_current_dispatch_mode

    # dispatch modes (flop counters, fake tensors) are thread-local: workers would escape them
    return bool(not ENABLED or device.type != "cpu" or torch.is_grad_enabled()
                or _get_current_dispatch_mode() is not None
                or torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting())


def map_chunks(fn: Callable[[int], R], starts: Iterable[int], device: torch.device) -> List[R]:
    """``[fn(start) for start in starts]``, the calls side by side on worker threads; ``fn``
    must only write its own chunk's outputs.

    Serial on GPU, under autograd, graph capture or a dispatch mode, with 1 intra-op thread,
    or when ``ENABLED`` is False. CPU autocast is carried over to the workers.
    """
    starts = list(starts)
    threads = torch.get_num_threads()
    if threads < 2 or len(starts) < 2 or _serial_only(device):
        return [fn(start) for start in starts]
    inference = torch.is_inference_mode_enabled()
    autocast = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
    futures = [_executor(threads).submit(_run, fn, start, inference, autocast) for start in starts]
    try:
        return [future.result() for future in futures]
    finally:
        # a worker's set_num_threads(1) also changed the count new threads start with
        torch.set_num_threads(threads)


def for_each_chunk(fn: Callable[[int], None], starts: Iterable[int], device: torch.device) -> None:
    """:func:`map_chunks` for functions that write into a shared output buffer."""
    map_chunks(fn, starts, device)
