"""Per-module profile of FGAseg inference: GMAC, seconds and GMAC/s of every stage.

    python benchmarks/profile_head.py                      # 150 and 847 classes, plain + fast
    python benchmarks/profile_head.py --classes 150 --decoders plain --reps 3 --detail

Protocol: CLIP ViT-B/16 at 384², one 384² view, batch 1, random (seeded) weights, fp32,
``segment_logits`` under ``inference_mode``, ``--threads`` intra-op threads (default 1, so that
a shared machine disturbs it less). ``plain``: the plain decoder, no TopK; ``fast``: the
streamlined decoder with TopK 16 and the real rule (with random weights most classes survive).

How it measures: the stages (see ``STAGES``) are wrapped by timers that keep *exclusive* time
(a stage's time excludes the stages nested in it), summed per forward pass; the table gives the
median over ``--reps`` passes after a warm-up. Multiply-accumulates are counted in a separate
pass by torch's flop counter (plus the fused CPU attention and in-place ``baddbmm_``, as in
``speed_worker.py``), attributed to the innermost stage running when the op was dispatched.
"other" is the rest of the wall time (layout changes, gathers, Python glue outside any stage).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from speed_worker import _baddbmm_flops, _sdpa_flops, class_names  # noqa: E402

OTHER = "other (layout, glue)"


class StageTimer:
    """Exclusive wall time, calls and GMAC per named stage (stages may nest)."""

    def __init__(self) -> None:
        self.stack: List[List[Any]] = []  # [name, start, time spent in nested stages]
        self.seconds: Dict[str, float] = defaultdict(float)
        self.calls: Dict[str, int] = defaultdict(int)
        self.flops: Dict[str, float] = defaultdict(float)

    def current(self) -> str:
        return self.stack[-1][0] if self.stack else OTHER

    def wrap(self, owner: Any, attr: str, name: str) -> None:
        """Replace ``owner.attr`` (a function or bound method) by a timed version."""
        inner = getattr(owner, attr)

        @functools.wraps(inner)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.stack.append([name, time.perf_counter(), 0.0])
            try:
                return inner(*args, **kwargs)
            finally:
                _, start, nested = self.stack.pop()
                elapsed = time.perf_counter() - start
                self.seconds[name] += elapsed - nested
                self.calls[name] += 1
                if self.stack:
                    self.stack[-1][2] += elapsed

        setattr(owner, attr, timed)

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()


def instrument(model: Any, timer: StageTimer, detail: bool) -> None:
    """Wrap every stage of ``model`` (an ``FGASeg``) and of the decoder module's helpers."""
    import fgaseg.model.decoder as dec

    head = model.head
    timer.wrap(model.clip, "encode_image_dense", "CLIP image tower (floor)")
    for m in (model.upsample1, model.upsample2):
        timer.wrap(m, "forward", "CLIP guidance upsampling")
    if model.p2tformer is not None:
        timer.wrap(model.p2tformer, "forward", "P2Tformer")
    timer.wrap(dec, "cosine_cost_volume", "GCS cosine cost volume")
    timer.wrap(dec, "preselect_classes", "pre-selection (256 classes)")
    timer.wrap(dec, "gather_classes", "pre-selection (256 classes)")
    if head.use_lcs:
        timer.wrap(head.Local_align, "forward", "LCS kernels + conv")
        timer.wrap(head.corr_local_decoder_projection, "forward", "LCS decoder projection")
    timer.wrap(dec, "_embed", "cost embeddings (7x7 convs)")
    timer.wrap(head, "_fuse", "cat fusions")
    for m in [head.guidance_projection, head.text_guidance_projection, *head.decoder_guidance_projection]:
        timer.wrap(m, "forward", "guidance projections")
    for layer in head.layers:
        timer.wrap(layer.swin_block, "forward", "Swin spatial aggregation")
        timer.wrap(layer.attention, "forward", "class aggregation")
        if detail:
            for block in (layer.swin_block.block_1, layer.swin_block.block_2):
                timer.wrap(block.norm1, "forward", "Swin · LayerNorms")
                timer.wrap(block.norm2, "forward", "Swin · LayerNorms")
                timer.wrap(block.mlp, "forward", "Swin · MLP")
                timer.wrap(block.attn.proj, "forward", "Swin · out proj")
            timer.wrap(layer.attention.norm1, "forward", "class agg · LayerNorms")
            timer.wrap(layer.attention.norm2, "forward", "class agg · LayerNorms")
    timer.wrap(head.decoder1, "forward", "Up-block 1")
    timer.wrap(head.decoder2, "forward", "Up-block 2")
    if detail:
        from torch import nn

        for up in (head.decoder1, head.decoder2) + ((head.corr_local_decoder_projection,) if head.use_lcs else ()):
            for m in up.modules():
                if isinstance(m, nn.GroupNorm):
                    timer.wrap(m, "forward", "decoder · GroupNorms")
    for name in ("head", "head_auxi_0", "head_auxi_1", "head_auxi_2"):
        if hasattr(head, name):
            timer.wrap(getattr(head, name), "forward", "3x3 output heads")
    timer.wrap(dec, "keep_indices", "TopK rule")
    timer.wrap(model, "_upsample_scores", "output upsampling (to 384²)")


def count_flops(run_once: Callable[[], Any], timer: StageTimer) -> float:
    """Run once under the flop counter; attribute each op's FLOPs to ``timer.current()``."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    class StageFlops(FlopCounterMode):
        def _count_flops(self, func_packet, out, args, kwargs):  # noqa: ANN001
            if func_packet in self.flop_registry:
                timer.flops[timer.current()] += self.flop_registry[func_packet](*args, **kwargs, out_val=out)
            return super()._count_flops(func_packet, out, args, kwargs)

    aten = torch.ops.aten
    counter = StageFlops(display=False, custom_mapping={
        aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flops, aten.baddbmm_: _baddbmm_flops})
    timer.flops.clear()
    with counter:
        run_once()
    return counter.get_total_flops() / 2e9


def build(decoder: str, classes: int, seed: int = 0):
    """``(run_once, model)`` for a decoder kind ("plain" / "fast") and a class count."""
    import torch

    from fgaseg.model import FGASeg, fgaseg_vitb16_384

    torch.manual_seed(seed)
    config = (fgaseg_vitb16_384(decoder_mode="plain", topk=None) if decoder == "plain"
              else fgaseg_vitb16_384(decoder_mode="fast", topk=16))
    model = FGASeg(config).eval()
    image = torch.rand(1, 3, 384, 384)
    names = class_names(classes)
    with torch.inference_mode():
        model.encode_classes(names)

    def run_once():
        return model.segment_logits(image, names)

    return run_once, model


def profile(decoder: str, classes: int, reps: int, detail: bool) -> Dict[str, Any]:
    import torch  # noqa: F401

    run_once, model = build(decoder, classes)
    timer = StageTimer()
    instrument(model, timer, detail)
    gmac_total = count_flops(run_once, timer)
    gmac = {k: v / 2e9 for k, v in timer.flops.items()}
    run_once()  # warm-up (the flop pass is not one: it decomposes some ops)
    per_rep: List[Dict[str, float]] = []
    walls: List[float] = []
    for _ in range(reps):
        timer.reset()
        start = time.perf_counter()
        out = run_once()
        walls.append(time.perf_counter() - start)
        del out
        rep = dict(timer.seconds)
        rep[OTHER] = walls[-1] - sum(rep.values())
        per_rep.append(rep)
        calls = dict(timer.calls)
    names = list(dict.fromkeys([*per_rep[0].keys(), *gmac.keys()]))
    rows = []
    for name in names:
        seconds = statistics.median(r.get(name, 0.0) for r in per_rep)
        rows.append({"stage": name, "calls": calls.get(name, 0), "gmac": gmac.get(name, 0.0), "s": seconds})
    return {"decoder": decoder, "classes": classes, "wall": statistics.median(walls), "walls": walls,
            "gmac_total": gmac_total, "rows": rows}


def render(result: Dict[str, Any]) -> str:
    wall = result["wall"]
    head_rows = [r for r in result["rows"] if not r["stage"].startswith("CLIP image tower")]
    tower = next((r for r in result["rows"] if r["stage"].startswith("CLIP image tower")), None)
    lines = [f"### {result['decoder']} decoder, {result['classes']} classes: "
             f"{wall:.2f} s (median of {len(result['walls'])}; reps "
             f"{', '.join(f'{w:.2f}' for w in result['walls'])}), {result['gmac_total']:.1f} GMAC"
             + (f", {wall / tower['s']:.2f}× the tower's time in this run" if tower and tower["s"] else ""),
             "",
             "| stage | calls | GMAC | s | GMAC/s | share of time |",
             "|---|---|---|---|---|---|"]
    ordered = ([tower] if tower else []) + sorted(head_rows, key=lambda r: -r["s"])
    for r in ordered:
        rate = f"{r['gmac'] / r['s']:.0f}" if r["s"] > 0 and r["gmac"] >= 0.05 else ""
        lines.append(f"| {r['stage']} | {r['calls']} | {r['gmac']:.2f} | {r['s']:.3f} | {rate} | "
                     f"{100 * r['s'] / wall:.1f} % |")
    head_s = sum(r["s"] for r in head_rows)
    head_g = sum(r["gmac"] for r in head_rows)
    lines.append(f"| **all but the tower** | | {head_g:.1f} | {head_s:.3f} | "
                 f"{head_g / head_s:.0f} | {100 * head_s / wall:.1f} % |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[150, 847])
    parser.add_argument("--decoders", nargs="+", default=["plain", "fast"], choices=("plain", "fast"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--detail", action="store_true", help="also split Swin / class agg / decoder norms")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    parts = []
    for classes in args.classes:
        for decoder in args.decoders:
            result = profile(decoder, classes, args.reps, args.detail)
            parts.append(render(result))
            print(parts[-1] + "\n", flush=True)
    load1 = os.getloadavg()
    header = (f"Profile of `segment_logits` (ViT-B/16 384², 1 view, random weights, fp32, torch "
              f"{torch.__version__}, {args.threads} thread(s), OMP_WAIT_POLICY="
              f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}); load average (1/5/15 min) before "
              f"{load0[0]:.2f}/{load0[1]:.2f}/{load0[2]:.2f}, after {load1[0]:.2f}/{load1[1]:.2f}/{load1[2]:.2f} "
              f"on {os.cpu_count()} cores. Times are exclusive (nested stages subtracted), medians "
              f"over the reps; GMAC from torch's flop counter.")
    print(header)
    if args.out:
        args.out.write_text("# Per-stage profile (`python benchmarks/profile_head.py`)\n\n" + header + "\n\n"
                            + "\n\n".join(parts) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
