"""Inference speed and peak memory of FGAseg on this CPU (issue "Fast inference, measured").

    python benchmarks/speed.py            # full run (< 10 min on a quiet 2-core machine)
    python benchmarks/speed.py --quick    # fewer repetitions
    python benchmarks/speed.py --bf16     # also bf16-autocast rows
    python benchmarks/speed.py --compile  # also torch.compile rows (minutes of compiling first)

Protocol: CLIP ViT-B/16 at 384², one 384² view, batch 1, random (seeded) weights, fp32,
``torch.inference_mode``, ``--threads`` intra-op threads (2), ``OMP_WAIT_POLICY=PASSIVE``. For each class count N the
configurations below run in *separate worker processes* (so each one's peak RSS is its own)
that are kept alive and driven round-robin: rep r of every configuration runs before rep r+1
of any, so a burst of load from other processes hits all of them alike. Each worker warms up
first; the table shows the median (and minimum) wall time per image. Text embeddings are
computed once per class list, before timing, and reported separately.

Configurations:

- ``floor``: CLIP dense features alone (``clip.encode_image_dense`` with the guidance layers);
- ``baseline``: CAT-Seg (all four FGAseg switches off, plain decoder);
- ``full``: FGAseg with the plain decoder, no TopK;
- ``fast+topk``: FGAseg with the streamlined decoder and TopK 16, *real* TopK rule. With random
  weights the aux heads are not confident, so (nearly) every class survives every stage;
- ``fast+topk (ctrl)``: the same, but the TopK rule is replaced by "keep the ``--keep``
  classes with the highest aux score" at each of the three stages: a controlled setting that
  shows the cost when a confident (trained) model keeps few classes. Everything else (aux
  heads, gathers, pre-selection) runs as in the real model;
- ``sliding``: ``full`` on a 640² image with the paper's sliding-window protocol (4 crops of
  384² + the whole image resized, 5 views in one batch, probabilities averaged), at
  ``SLIDING_CLASSES`` only; compared with ``full`` on one 384² view.

Peak memory is ``ru_maxrss`` of the worker process (model weights, the Python/torch runtime
and the largest inference working set, including the ``(1, N, 384, 384)`` logits returned),
plus the growth over the RSS measured after loading the model and encoding the text.

The worker side is ``speed_worker.py``, the table and target checks ``speed_report.py``.
``benchmarks/results.md`` is regenerated above the line ``<!-- notes -->``; anything written
below that line is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from speed_report import label, render, write_results  # noqa: E402

RESULTS = HERE / "results.md"
CLASS_COUNTS = (20, 59, 150, 847)
CONFIGS = ("floor", "baseline", "full", "fast+topk", "fast+topk (ctrl)", "sliding")
SLIDING_CLASSES = (150,)
SETTINGS = ("reps", "warmup", "threads", "keep", "omp_wait_policy")


class Worker:
    """One configuration in its own process (``speed_worker.py``), timed on request."""

    def __init__(self, spec: Dict[str, Any]) -> None:
        self.spec = spec
        env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]), MKL_NUM_THREADS=str(spec["threads"]))
        env.setdefault("OMP_WAIT_POLICY", spec["omp_wait_policy"])
        self.proc = subprocess.Popen([sys.executable, str(HERE / "speed_worker.py"), json.dumps(spec)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.ready = self._expect("READY")
        self.times: List[Dict[str, Any]] = []

    def _expect(self, tag: str) -> Dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(tag + " "):
                return json.loads(line[len(tag) + 1:])
        raise RuntimeError(f"worker {self.spec} exited with {self.proc.wait()} before {tag}")

    def _send(self, cmd: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()

    def run(self) -> None:
        self._send("run")
        self.times.append(self._expect("TIME"))

    def finish(self) -> Dict[str, Any]:
        self._send("quit")
        done = self._expect("DONE")
        self.proc.wait()
        walls = [t["wall"] for t in self.times]
        cpus = [t["cpu"] for t in self.times]
        kept = [t["kept"] for t in self.times if t["kept"]]
        return {
            **self.spec,
            "median_s": statistics.median(walls), "min_s": min(walls), "walls": walls,
            "cpu_util": statistics.median(c / w for c, w in zip(cpus, walls)),
            "peak_mib": done["peak_mib"], "rss_loaded_mib": done["rss_loaded_mib"],
            "text_s": self.ready.get("text_s"), "gmac": done["gmac"],
            "kept": kept[-1] if kept else None,
        }


def measure(classes: int, configs: List[str], args: argparse.Namespace) -> List[Dict[str, Any]]:
    """All configurations at one class count, interleaved rep by rep."""
    specs = []
    for kind in configs:
        if kind == "sliding" and classes not in SLIDING_CLASSES:
            continue
        options = [(False, False)]
        if args.bf16 and kind in ("floor", "full", "fast+topk (ctrl)"):
            options.append((True, False))
        if args.compile and kind == "full":
            options.append((False, True))
        for bf16, compiled in options:
            specs.append({"config": kind, "classes": classes, "threads": args.threads, "bf16": bf16,
                          "compile": compiled, "warmup": args.warmup, "keep": args.keep,
                          "omp_wait_policy": args.omp_wait_policy})
    workers: List[Worker] = []
    try:
        for spec in specs:  # one at a time, so start-up does not compete with anything we time
            workers.append(Worker(spec))
        for rep in range(args.reps):
            for w in workers[rep % len(workers):] + workers[:rep % len(workers)]:
                w.run()
        return [w.finish() for w in workers]
    finally:
        for w in workers:
            if w.proc.poll() is None:
                w.proc.kill()


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 timed reps instead of 5")
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions per cell")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--classes", type=int, nargs="+", default=list(CLASS_COUNTS))
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    parser.add_argument("--keep", type=int, default=16, help="classes kept per stage in the controlled TopK")
    parser.add_argument("--bf16", action="store_true", help="also time bf16 autocast (floor, full, fast ctrl)")
    parser.add_argument("--compile", action="store_true",
                        help="also time full FGAseg with optimize_for_inference(compile=True) (compiles first)")
    parser.add_argument("--omp-wait-policy", default="PASSIVE", choices=("PASSIVE", "ACTIVE"),
                        help="OMP_WAIT_POLICY of the workers unless already set (PASSIVE: idle OpenMP "
                             "threads sleep instead of spinning, which keeps timings sane on a shared machine)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--json", type=Path, default=None, help="also dump the raw numbers here")
    parser.add_argument("--render", type=Path, default=None,
                        help="re-render --out from a --json dump of an earlier run (no timing)")
    args = parser.parse_args(argv)
    args.reps = args.reps or (2 if args.quick else 5)
    args.omp_wait_policy = os.environ.get("OMP_WAIT_POLICY", args.omp_wait_policy)
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    settings = {k: getattr(args, k) for k in SETTINGS}
    if args.render:
        dump = json.loads(args.render.read_text())
        text = render(dump["rows"], {**settings, **dump.get("args", {})}, dump["meta"])
        print(text)
        write_results(text, args.out)
        return 0
    import torch

    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": torch.__version__,
            "cpu": _cpu_name(), "cores": os.cpu_count(), "load_before": os.getloadavg()[0]}
    start = time.perf_counter()
    rows: List[Dict[str, Any]] = []
    for n in args.classes:
        print(f"N = {n} ...", file=sys.stderr, flush=True)
        got = measure(n, args.configs, args)
        for r in got:
            print(f"  {label(r):62s} {r['median_s']:7.2f} s  {r['gmac'] or 0:6.0f} GMAC  peak "
                  f"{r['peak_mib'] / 1024:.2f} GiB  cpu {r['cpu_util']:.2f}  kept {r['kept']}",
                  file=sys.stderr, flush=True)
        rows += got
    meta["load_after"] = os.getloadavg()[0]
    meta["total_s"] = time.perf_counter() - start
    text = render(rows, settings, meta)
    print(text)
    write_results(text, args.out)
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "rows": rows, "args": settings}, indent=1))
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    sys.exit(main())
