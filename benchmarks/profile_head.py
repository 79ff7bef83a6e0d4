"""Per-module profile of FGAseg inference: GMAC, seconds and GMAC/s of every stage.

    python benchmarks/profile_head.py                      # 150 and 847 classes, plain + fast
    python benchmarks/profile_head.py --classes 150 --decoders plain --reps 3 --detail
    python benchmarks/profile_head.py --ref main     # before -> after, interleaved in one process

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

``--ref REV``: also profile the implementation of git revision ``REV`` (loaded next to this
checkout's, see ``compare_impl.py``) with the same weights, alternating the two rep by rep, and
print both side by side with the per-stage speed-up (on a shared machine the only fair way to
compare stages of two implementations).
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


def instrument(model: Any, timer: StageTimer, detail: bool, dec: Any = None) -> None:
    """Wrap every stage of ``model`` (an ``FGASeg``) and of the decoder module's helpers
    (``dec``: the ``fgaseg.model.decoder`` module the model was built from)."""
    if dec is None:
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
    if hasattr(head, "decoder_shares"):  # the Up-blocks' guidance convs, once per image
        timer.wrap(head, "decoder_shares", "guidance projections")
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


def build(decoder: str, classes: int, seed: int = 0, pkg: Optional[Dict[str, Any]] = None):
    """``(run_once, model)`` for a decoder kind ("plain" / "fast") and a class count; ``pkg``: a
    package loaded by ``compare_impl.load_package`` (default: the importable ``fgaseg``)."""
    import torch

    if pkg is None:
        from fgaseg.model import fgaseg_vitb16_384
        from fgaseg.model.fgaseg import FGASeg
    else:
        FGASeg, fgaseg_vitb16_384 = pkg["FGASeg"], pkg["model"].fgaseg_vitb16_384
    torch.manual_seed(seed)
    config = (fgaseg_vitb16_384(decoder_mode="plain", topk=None) if decoder == "plain"
              else fgaseg_vitb16_384(decoder_mode="fast", topk=16))
    model = FGASeg(config).eval()
    torch.manual_seed(seed + 1)
    image = torch.rand(1, 3, 384, 384)
    names = class_names(classes)
    with torch.inference_mode():
        model.encode_classes(names)

    def run_once():
        return model.segment_logits(image, names)

    return run_once, model


def _one_rep(run_once: Callable[[], Any], timer: StageTimer) -> Tuple[float, Dict[str, float]]:
    timer.reset()
    start = time.perf_counter()
    out = run_once()
    wall = time.perf_counter() - start
    del out
    rep = dict(timer.seconds)
    rep[OTHER] = wall - sum(rep.values())
    return wall, rep


def _summarise(decoder: str, classes: int, timer: StageTimer, gmac_total: float,
               gmac: Dict[str, float], walls: List[float], per_rep: List[Dict[str, float]],
               calls: Dict[str, int]) -> Dict[str, Any]:
    names = list(dict.fromkeys([*per_rep[0].keys(), *gmac.keys()]))
    rows = [{"stage": name, "calls": calls.get(name, 0), "gmac": gmac.get(name, 0.0),
             "s": statistics.median(r.get(name, 0.0) for r in per_rep)} for name in names]
    return {"decoder": decoder, "classes": classes, "wall": statistics.median(walls), "walls": walls,
            "gmac_total": gmac_total, "rows": rows}


def profile(decoder: str, classes: int, reps: int, detail: bool) -> Dict[str, Any]:
    run_once, model = build(decoder, classes)
    timer = StageTimer()
    instrument(model, timer, detail)
    gmac_total = count_flops(run_once, timer)
    gmac = {k: v / 2e9 for k, v in timer.flops.items()}
    run_once()  # warm-up (the flop pass is not one: it decomposes some ops)
    walls, per_rep = [], []
    for _ in range(reps):
        wall, rep = _one_rep(run_once, timer)
        walls.append(wall)
        per_rep.append(rep)
    return _summarise(decoder, classes, timer, gmac_total, gmac, walls, per_rep, dict(timer.calls))


def profile_pair(decoder: str, classes: int, reps: int, detail: bool, ref: str) -> List[Dict[str, Any]]:
    """Reference revision and this checkout, same weights, reps alternated."""
    import tempfile

    import torch

    from compare_impl import extract, load_package, run_with

    with tempfile.TemporaryDirectory() as tmp:
        pkgs = [load_package(extract(ref, Path(tmp))), load_package(Path(__file__).resolve().parents[1] / "src")]
        built = [run_with(p, lambda p=p: build(decoder, classes, pkg=p)) for p in pkgs]
        built[1][1].load_state_dict(built[0][1].state_dict())  # (clears its text cache)
        with torch.inference_mode():
            run_with(pkgs[1], lambda: built[1][1].encode_classes(class_names(classes)))
        state = []
        for pkg, (run_once, model) in zip(pkgs, built):
            timer = StageTimer()
            instrument(model, timer, detail, pkg["modules"]["fgaseg.model.decoder"])
            run = (lambda pkg=pkg, run_once=run_once: run_with(pkg, run_once))
            total = count_flops(run, timer)
            state.append({"run": run, "timer": timer, "total": total, "walls": [], "reps": [],
                          "gmac": {k: v / 2e9 for k, v in timer.flops.items()}})
            run()  # warm-up
        for r in range(reps):
            for st in (state if r % 2 == 0 else state[::-1]):
                wall, rep = _one_rep(st["run"], st["timer"])
                st["walls"].append(wall)
                st["reps"].append(rep)
                st["calls"] = dict(st["timer"].calls)
        return [_summarise(decoder, classes, st["timer"], st["total"], st["gmac"], st["walls"], st["reps"],
                           st["calls"]) for st in state]


def render_pair(before: Dict[str, Any], after: Dict[str, Any], ref: str) -> str:
    """Both profiles as one table: GMAC, seconds and GMAC/s before -> after, and the speed-up."""
    b_rows = {r["stage"]: r for r in before["rows"]}
    a_rows = {r["stage"]: r for r in after["rows"]}
    names = list(dict.fromkeys([*b_rows, *a_rows]))
    tower = [n for n in names if n.startswith("CLIP image tower")]
    rest = sorted((n for n in names if n not in tower), key=lambda n: -b_rows.get(n, {"s": 0})["s"])

    def rate(r: Optional[Dict[str, Any]]) -> str:
        return f"{r['gmac'] / r['s']:.0f}" if r and r["s"] > 0 and r["gmac"] >= 0.05 else ""

    tower_s = [r[tower[0]]["s"] if tower else 0.0 for r in (b_rows, a_rows)]
    lines = [f"### {after['decoder']} decoder, {after['classes']} classes: {before['wall']:.2f} s → "
             f"{after['wall']:.2f} s ({before['wall'] / after['wall']:.2f}×; {before['gmac_total']:.0f} → "
             f"{after['gmac_total']:.0f} GMAC; "
             + (f"{before['wall'] / tower_s[0]:.2f}× → {after['wall'] / tower_s[1]:.2f}× the tower's time"
                if all(tower_s) else "") + f"), medians of {len(after['walls'])} alternated reps",
             "", f"| stage | GMAC {ref} → now | s {ref} → now | GMAC/s {ref} → now | speed-up |",
             "|---|---|---|---|---|"]
    for n in tower + rest:
        b, a = b_rows.get(n), a_rows.get(n)
        bs, as_ = (b["s"] if b else 0.0), (a["s"] if a else 0.0)
        up = f"{bs / as_:.2f}×" if bs > 0.005 and as_ > 0.005 else ""
        lines.append(f"| {n} | {b['gmac'] if b else 0:.2f} → {a['gmac'] if a else 0:.2f} | {bs:.3f} → {as_:.3f} | "
                     f"{rate(b)} → {rate(a)} | {up} |")
    return "\n".join(lines)


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
    parser.add_argument("--ref", default=None, help="git revision to profile alongside (before -> after)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    import fgaseg.model.parallel_chunks as parallel_chunks

    # the stage timers follow one thread of control: chunks stay on the calling thread
    parallel_chunks.ENABLED = False
    load0 = os.getloadavg()
    parts = []
    for classes in args.classes:
        for decoder in args.decoders:
            if args.ref:
                before, after = profile_pair(decoder, classes, args.reps, args.detail, args.ref)
                parts.append(render_pair(before, after, args.ref))
            else:
                parts.append(render(profile(decoder, classes, args.reps, args.detail)))
            print(parts[-1] + "\n", flush=True)
    load1 = os.getloadavg()
    header = (f"Profile of `segment_logits` (ViT-B/16 384², 1 view, random weights, fp32, torch "
              f"{torch.__version__}, {args.threads} thread(s), OMP_WAIT_POLICY="
              f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}); load average (1/5/15 min) before "
              f"{load0[0]:.2f}/{load0[1]:.2f}/{load0[2]:.2f}, after {load1[0]:.2f}/{load1[1]:.2f}/{load1[2]:.2f} "
              f"on {os.cpu_count()} cores. Times are exclusive (nested stages subtracted), medians "
              f"over the reps; GMAC from torch's flop counter." + (f" Before = git revision `{args.ref}`, "
              "loaded next to this checkout, same weights, reps alternated." if args.ref else ""))
    print(header)
    if args.out:
        args.out.write_text("# Per-stage profile (`python benchmarks/profile_head.py`)\n\n" + header + "\n\n"
                            + "\n\n".join(parts) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
