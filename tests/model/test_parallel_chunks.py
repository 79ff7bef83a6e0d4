"""Chunks of the head side by side on CPU worker threads (fgaseg.model.parallel_chunks)."""

import threading

import pytest
import torch

from fgaseg.model.parallel_chunks import map_chunks

from model_testing import make_tiny_model, names


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_chunks_run_on_single_threaded_workers_and_come_back_in_order(two_threads):
    def chunk(start):
        return start, threading.current_thread().name, torch.get_num_threads(), torch.is_inference_mode_enabled()

    with torch.inference_mode():
        out = map_chunks(chunk, range(0, 40, 4), torch.device("cpu"))
    assert [o[0] for o in out] == list(range(0, 40, 4))
    assert all(o[1].startswith("fgaseg-chunk") and o[2] == 1 and o[3] for o in out)
    assert torch.get_num_threads() == 2  # the caller's count is untouched


def test_serial_under_autograd_or_one_thread(two_threads):
    here = threading.current_thread().name
    assert {n for n in map_chunks(lambda s: threading.current_thread().name, range(3), torch.device("cpu"))} == {here}
    torch.set_num_threads(1)
    with torch.no_grad():
        assert {n for n in map_chunks(lambda s: threading.current_thread().name, range(3), torch.device("cpu"))} == {here}


def test_workers_carry_the_callers_autocast(two_threads):
    def chunk(start):
        return threading.current_thread().name, torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")

    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        inside = map_chunks(chunk, range(4), torch.device("cpu"))
    with torch.inference_mode():
        outside = map_chunks(chunk, range(4), torch.device("cpu"))
    assert all(name.startswith("fgaseg-chunk") and on and dtype == torch.bfloat16 for name, on, dtype in inside)
    assert not any(on for _, on, _ in outside)


def test_bf16_logits_equal_the_serial_ones(two_threads):
    model = make_tiny_model().optimize_for_inference(bf16=True)
    images, classes = torch.rand(1, 3, 32, 32), names(9)
    parallel = model.segment_logits(images, classes, chunk_size=1)
    torch.set_num_threads(1)
    serial = model.segment_logits(images, classes, chunk_size=1)
    torch.testing.assert_close(parallel, serial, rtol=0, atol=1e-5)


def test_a_failing_chunk_raises_in_the_caller(two_threads):
    def chunk(start):
        if start == 2:
            raise ValueError("chunk 2")
        return start

    with torch.no_grad(), pytest.raises(ValueError, match="chunk 2"):
        map_chunks(chunk, range(4), torch.device("cpu"))
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("mode", ["plain", "fast"])
def test_model_logits_equal_the_serial_ones(two_threads, mode):
    model = make_tiny_model(decoder_mode=mode, topk=2 if mode == "fast" else None)
    images = torch.rand(2, 3, 32, 32)
    classes = names(9)
    parallel = model.segment_logits(images, classes, chunk_size=1)  # 2 threads: chunks on workers
    torch.set_num_threads(1)
    serial = model.segment_logits(images, classes, chunk_size=1)
    torch.testing.assert_close(parallel, serial, rtol=0, atol=1e-5)


def test_a_flop_counter_sees_every_chunk(two_threads):
    from torch.utils.flop_counter import FlopCounterMode

    model = make_tiny_model()
    images, classes = torch.rand(1, 3, 32, 32), names(9)
    model.segment_logits(images, classes)  # text embeddings cached: only the image pass is counted
    counts = []
    for threads in (2, 1):
        torch.set_num_threads(threads)
        counter = FlopCounterMode(display=False)
        with counter:
            model.segment_logits(images, classes, chunk_size=1)
        counts.append(counter.get_total_flops())
    assert counts[0] == counts[1] > 0
