"""Worker process of ``benchmarks/speed.py``: builds one configuration and times it on request.

Run by the parent as ``python benchmarks/speed_worker.py '<spec json>'``; speaks a line protocol
on stdin/stdout (``READY``, then ``run`` -> ``TIME``, ``quit`` -> ``DONE``), so that each
configuration's peak memory is its own process's.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

CLIP_LAYERS = (3, 7)  # guidance layers of the ViT-B/16 preset


def class_names(n: int) -> List[str]:
    """ADE-847 / ADE-150 / PC-59 / VOC-20 names when available (realistic token lengths)."""
    files = {20: "voc20.json", 59: "pc59.json", 150: "ade150.json", 847: "ade847.json"}
    try:
        from importlib import resources

        if n in files:
            names = json.loads(resources.files("fgaseg.data.classnames").joinpath(files[n]).read_text())
            if len(names) == n:
                return list(names)
    except Exception:  # pragma: no cover - fall back to synthetic names
        pass
    return [f"object number {i}" for i in range(n)]


def rss_mib() -> float:
    """Current resident set size (MiB) from /proc (Linux); 0 where unavailable."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # pragma: no cover
        return 0.0


def peak_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _sdpa_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of one fused CPU attention call (the flop counter has no formula for it)."""
    b, h, lq, e = query
    return 2 * b * h * lq * key[-2] * (e + value[-1])


def _baddbmm_flops(self, batch1, batch2, *args, out_shape=None, **kwargs) -> int:
    b, m, k = batch1
    return 2 * b * m * k * batch2[-1]


def count_gmac(run_once: Callable[[], Any]) -> float:
    """Multiply-accumulates (G) of the GEMMs, convolutions and attentions of one call."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten
    counter = FlopCounterMode(display=False, custom_mapping={
        aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flops,
        aten.baddbmm_: _baddbmm_flops})  # the counter knows only the out-of-place form
    with counter:
        run_once()
    return counter.get_total_flops() / 2e9


class KeepRecorder:
    """Wraps the decoder's TopK rule: records kept counts; optionally forces a fixed count."""

    def __init__(self, original, forced_keep: Optional[int]) -> None:
        self.original = original
        self.forced_keep = forced_keep
        self.counts: List[int] = []

    def __call__(self, aux_logits, k, first=None):
        import torch

        if self.forced_keep is None:
            # first: copies of a class, tied when ranked (model/topk.py); older rules lack it
            keep = (self.original(aux_logits, k) if first is None
                    else self.original(aux_logits, k, first))
        else:
            n = min(self.forced_keep, aux_logits.shape[1])
            keep = torch.sort(aux_logits.amax(dim=(0, 2, 3)).topk(n).indices).values
        self.counts.append(int(keep.numel()))
        return keep

    def last(self) -> Optional[List[int]]:
        """Kept counts of the three stages of the last call (and forget older calls)."""
        if not self.counts:
            return None
        last = self.counts[-3:]
        self.counts.clear()
        return last


def build(spec: Dict[str, Any]) -> Tuple[Callable[[], Any], Dict[str, Any], Optional[KeepRecorder]]:
    """``(run_once, info, recorder)`` for a worker spec (see ``speed.py`` for the configurations)."""
    import torch

    torch.manual_seed(0)
    kind, n = spec["config"], spec["classes"]
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if spec.get("bf16")
                else torch.autocast("cpu", enabled=False))
    image = torch.rand(1, 3, 384, 384)
    size, sliding = 384, False
    if kind == "sliding":  # the paper's protocol on a 640² image: 4 crops + the whole image
        image, size, sliding = torch.rand(1, 3, 640, 640), 640, True
    if kind == "floor":
        from fgaseg.clip import CLIP_MEAN, CLIP_STD, build_clip

        clip = build_clip("ViT-B/16").eval()
        normalized = (image - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)

        def run_floor():
            with torch.inference_mode(), autocast:
                return clip.encode_image_dense(normalized, layers=CLIP_LAYERS)

        return run_floor, {}, None

    from fgaseg.model import FGASeg, catseg_vitb16_384, fgaseg_vitb16_384

    if kind == "baseline":
        config = catseg_vitb16_384()
    elif kind in ("full", "sliding"):
        config = fgaseg_vitb16_384(decoder_mode="plain", topk=None)
    else:
        config = fgaseg_vitb16_384(decoder_mode="fast", topk=16)
    model = FGASeg(config).eval()
    if spec.get("compile"):
        model.optimize_for_inference(compile=True)
    recorder = None
    if kind.startswith("fast+topk"):
        import fgaseg.model.decoder as decoder_module

        recorder = KeepRecorder(decoder_module.keep_indices, spec["keep"] if kind.endswith("(ctrl)") else None)
        decoder_module.keep_indices = recorder
    names = class_names(n)
    start = time.perf_counter()
    with torch.inference_mode():
        model.encode_classes(names)  # cached per class list from here on
    info = {"text_s": time.perf_counter() - start}

    def run_model():
        with autocast:
            out = model.segment_logits(image, names, sliding=sliding)
        assert out.shape == (1, n, size, size)
        return out

    return run_model, info, recorder


def worker_main(spec: Dict[str, Any]) -> None:
    """Line protocol on stdin/stdout: READY json, then ``run`` -> time json, ``quit`` -> memory json."""
    import torch

    torch.set_num_threads(spec["threads"])
    run_once, info, recorder = build(spec)
    loaded_rss = rss_mib()  # model + text embeddings, before any image
    for _ in range(spec["warmup"]):
        run_once()
    if recorder:
        recorder.last()
    print("READY " + json.dumps({**info, "rss_loaded_mib": loaded_rss, "peak_mib": peak_mib()}), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "run":
            cpu0, wall0 = time.process_time(), time.perf_counter()
            out = run_once()  # freed after the clock stops: dropping 500 MB is not inference
            wall = time.perf_counter() - wall0
            cpu = time.process_time() - cpu0
            del out
            kept = recorder.last() if recorder else None
            print("TIME " + json.dumps({"wall": wall, "cpu": cpu, "kept": kept}), flush=True)
        elif cmd == "quit":
            done = {"peak_mib": peak_mib(), "rss_loaded_mib": loaded_rss}
            # counted last: the flop counter's decompositions raise the peak memory; bf16 does the
            # same products, and the counter fails under autocast
            done["gmac"] = None if spec.get("bf16") or spec.get("compile") else count_gmac(run_once)
            print("DONE " + json.dumps(done), flush=True)
            return


if __name__ == "__main__":
    worker_main(json.loads(sys.argv[1]))
