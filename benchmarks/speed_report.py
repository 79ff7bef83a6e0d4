"""Markdown table and target checks of ``benchmarks/speed.py`` (pure functions of the rows)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Dict, List, Optional

NOTES_MARKER = "<!-- notes -->"
LABELS = {
    "floor": "(a) CLIP dense features (floor)",
    "baseline": "(b) baseline (CAT-Seg: switches off, plain decoder)",
    "full": "(c) full FGAseg, plain decoder, no TopK",
    "fast+topk": "(d) full FGAseg, fast decoder + TopK 16 (random weights)",
    "fast+topk (ctrl)": "(d') full FGAseg, fast decoder + TopK, controlled keep",
    "sliding": "(e) = (c) with the sliding window: 5 views of a 640² image",
}
Row = Dict[str, Any]


def label(row: Row) -> str:
    return (LABELS[row["config"]] + (" [bf16 autocast]" if row["bf16"] else "")
            + (" [torch.compile]" if row.get("compile") else ""))


def _find(rows: List[Row], kind: str, n: int, bf16: bool = False, compiled: bool = False) -> Optional[Row]:
    return next((r for r in rows if r["config"] == kind and r["classes"] == n and r["bf16"] == bf16
                 and bool(r.get("compile")) == compiled), None)


def render(rows: List[Row], settings: Dict[str, Any], meta: Dict[str, Any]) -> str:
    """The part of ``results.md`` above the notes marker."""
    floors = {(r["classes"], r["bf16"]): r["median_s"] for r in rows
              if r["config"] == "floor" and not r.get("compile")}
    lines = [
        "# Inference speed and memory (`python benchmarks/speed.py`)", "",
        f"Run {meta['date']} on `{meta['cpu']}`, torch {meta['torch']}, {settings['threads']} threads, "
        f"1 view 384², batch 1, random weights, fp32 unless marked, `inference_mode`, "
        f"OMP_WAIT_POLICY={settings['omp_wait_policy']}; "
        f"{settings['warmup']} warm-up + median of {settings['reps']} interleaved reps per cell. "
        f"Load average (1 min) before/after: {meta['load_before']:.1f} / {meta['load_after']:.1f} "
        f"on {meta['cores']} cores; `cpu` = CPU time / wall time of the worker (≈ {settings['threads']} "
        f"when it had its cores to itself). `GMAC` = multiply-accumulates of the GEMMs, convolutions "
        f"and attentions of one image (torch's flop counter), `GMAC/s` = GMAC / median time. "
        f"Total run time {meta['total_s'] / 60:.1f} min.", "",
        "| configuration | N | s / image (median) | min | images / s | × fp32 floor | GMAC | GMAC/s | "
        "peak RSS GiB | Δ RSS GiB | cpu | kept (TopK stages 0/1/2) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        floor = floors.get((r["classes"], False))
        ratio = f"{r['median_s'] / floor:.2f}" if floor else "n/a"
        if r["bf16"] and floors.get((r["classes"], True)):  # also against the bf16 floor
            ratio += f" ({r['median_s'] / floors[(r['classes'], True)]:.2f} vs bf16 floor)"
        kept = "/".join(str(k) for k in r["kept"]) if r.get("kept") else ""
        gmac = r.get("gmac")
        gmac_cells = f"{gmac:.0f} | {gmac / r['median_s']:.0f}" if gmac else " | "
        lines.append(
            f"| {label(r)} | {r['classes']} | {r['median_s']:.2f} | {r['min_s']:.2f} | "
            f"{1 / r['median_s']:.2f} | {ratio} | {gmac_cells} | {r['peak_mib'] / 1024:.2f} | "
            f"{(r['peak_mib'] - r['rss_loaded_mib']) / 1024:.2f} | {r['cpu_util']:.2f} | {kept} |")
    lines += ["", "Text encoding (once per class list, not in the per-image times; CLIP text tower, "
              "1 template):", ""]
    text: Dict[int, List[float]] = {}
    for r in rows:
        if r.get("text_s") is not None and not r["bf16"]:
            text.setdefault(r["classes"], []).append(r["text_s"])
    lines += [", ".join(f"N = {n}: {statistics.median(v):.2f} s" for n, v in sorted(text.items())), ""]
    lines += ["## Targets", ""] + targets(rows, settings["keep"]) + [""]
    return "\n".join(lines)


def targets(rows: List[Row], keep: int) -> List[str]:
    """One bullet per target of the issue (and the bf16 / arithmetic context)."""
    out = []
    for kind, note in (("fast+topk (ctrl)", f"controlled keep = {keep}"),
                       ("fast+topk", "real TopK rule, random weights")):
        a, b = _find(rows, kind, 847), _find(rows, kind, 20)
        if a and b:
            ratio = a["median_s"] / b["median_s"]
            out.append(f"- FGAseg + TopK, time at 847 / time at 20 classes ({note}): **{ratio:.2f}×** "
                       f"(target ≤ 1.5×: {'met' if ratio <= 1.5 else 'not met'})")
    for n, target in ((150, 5.5), (847, 8.0)):  # issue 17 (847: the official 256-class pre-selection)
        full_n, floor_n = _find(rows, "full", n), _find(rows, "floor", n)
        if full_n and floor_n:
            ratio = full_n["median_s"] / floor_n["median_s"]
            out.append(f"- full FGAseg (plain decoder) at {n} classes / CLIP floor: **{ratio:.2f}×** "
                       f"(issue 17's target ≤ {target}×: {'met' if ratio <= target else 'not met'})")
    sliding, one = _find(rows, "sliding", 150), _find(rows, "full", 150)
    if sliding and one:
        ratio = sliding["median_s"] / one["median_s"]
        out.append(f"- sliding window, 5 views of a 640² image / one 384² view (150 classes): **{ratio:.2f}×** "
                   f"(issue 17's target ≤ 4×: {'met' if ratio <= 4 else 'not met'})")
    compiled = _find(rows, "full", 150, compiled=True)
    if compiled and one:
        out.append(f"- torch.compile (opt-in), full FGAseg at 150 classes: **{compiled['median_s'] / one['median_s']:.2f}×** "
                   "the eager time")
    full, floor = _find(rows, "full", 150), _find(rows, "floor", 150)
    if full and floor:
        if full.get("gmac") and floor.get("gmac"):
            arith = full["gmac"] / floor["gmac"]
            out.append(f"- arithmetic of full FGAseg at 150 classes / arithmetic of the floor: "
                       f"**{arith:.2f}×** ({full['gmac']:.0f} / {floor['gmac']:.0f} GMAC): the time ratio "
                       f"that computing these products at the floor's own speed "
                       f"({floor['gmac'] / floor['median_s']:.0f} GMAC/s) would give; the model ran at "
                       f"{full['gmac'] / full['median_s']:.0f} GMAC/s")
    a, b = _find(rows, "fast+topk (ctrl)", 847, True), _find(rows, "fast+topk (ctrl)", 20, True)
    if a and b:
        out.append(f"- with bf16 autocast (opt-in), FGAseg + TopK 847 / 20 classes (controlled): "
                   f"**{a['median_s'] / b['median_s']:.2f}×**")
    full16, floor16 = _find(rows, "full", 150, True), _find(rows, "floor", 150, True)
    if full16 and floor:
        extra = f", or {full16['median_s'] / floor16['median_s']:.2f}× the bf16 floor" if floor16 else ""
        out.append(f"- with bf16 autocast (opt-in), full FGAseg at 150 classes: "
                   f"**{full16['median_s'] / floor['median_s']:.2f}× the fp32 floor**{extra}")
    peaks = [r for r in rows if r["classes"] == 847 and not r["bf16"] and r["config"] != "floor"]
    if peaks:
        worst = max(peaks, key=lambda r: r["peak_mib"])
        gib = worst["peak_mib"] / 1024
        out.append(f"- peak memory at 847 classes (worst configuration, {worst['config']}): **{gib:.2f} GiB** "
                   f"(target < 4 GiB: {'met' if gib < 4 else 'not met'})")
    return out


def write_results(text: str, path: Path) -> None:
    """Replace the generated part of ``path``; keep everything from the notes marker on."""
    notes = ""
    if path.exists():
        old = path.read_text()
        if NOTES_MARKER in old:
            notes = old[old.index(NOTES_MARKER):]
    path.write_text(text + "\n" + (notes or NOTES_MARKER + "\n"))
