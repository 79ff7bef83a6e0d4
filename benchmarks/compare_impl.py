"""Exactness and speed of this checkout's FGAseg against another revision, in one process.

    python benchmarks/compare_impl.py --ref main                  # 20 / 150 / 847 classes
    python benchmarks/compare_impl.py --ref main --classes 150 --reps 5 --decoders plain fast
    python benchmarks/compare_impl.py --ref main --sliding --classes 150

The reference revision's ``src/`` is extracted with ``git archive`` and imported next to this
checkout's package: the ``fgaseg`` modules of one are moved out of ``sys.modules`` before the
other is imported, and each model keeps using the functions of the package it was built from.
Both models get the same random (seeded) weights and the same random image; the script prints
the largest absolute logit difference and times the two ``segment_logits`` calls alternately
(rep r of both before rep r+1), median over ``--reps``, with the load average. Run it with
``OMP_WAIT_POLICY=PASSIVE`` on a shared machine.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from speed_worker import class_names  # noqa: E402


def load_package(src: Path) -> Dict[str, Any]:
    """Import ``fgaseg`` from ``src`` and return its modules (then forget them in sys.modules)."""
    for name in [n for n in sys.modules if n == "fgaseg" or n.startswith("fgaseg.")]:
        del sys.modules[name]
    sys.path.insert(0, str(src))
    try:
        importlib.invalidate_caches()
        model_mod = importlib.import_module("fgaseg.model")
        # the package loads its heavy modules lazily: import every model / CLIP module now, while
        # ``src`` is first on the path
        for pkg_name in ("fgaseg.model", "fgaseg.clip"):
            pkg = importlib.import_module(pkg_name)
            for info in pkgutil.iter_modules(pkg.__path__):
                importlib.import_module(f"{pkg_name}.{info.name}")
        importlib.import_module("fgaseg.predict.scores")
        mods = {n: m for n, m in sys.modules.items() if n == "fgaseg" or n.startswith("fgaseg.")}
    finally:
        sys.path.remove(str(src))
    for m in mods.values():
        assert Path(m.__file__).resolve().is_relative_to(src.resolve()), m.__file__
    return {"modules": mods, "model": model_mod, "FGASeg": mods["fgaseg.model.fgaseg"].FGASeg}


def extract(rev: str, into: Path) -> Path:
    """``git archive rev src`` unpacked under ``into``; returns the ``src`` folder."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "src"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def build(pkg: Dict[str, Any], decoder: str, seed: int = 0):
    import torch

    m = pkg["model"]
    torch.manual_seed(seed)
    config = (m.fgaseg_vitb16_384(decoder_mode="plain", topk=None) if decoder == "plain"
              else m.fgaseg_vitb16_384(decoder_mode="fast", topk=16))
    model = pkg["FGASeg"](config).eval()
    # random weights with some spread everywhere: biases, norms and the zero-initialised
    # padding tokens of the head get noise too, so that every path shows up in the difference
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith("clip.") and (p.dim() <= 1 or not p.any()):
                p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return model


def run_with(pkg: Dict[str, Any], fn: Callable[[], Any]) -> Any:
    """Call ``fn`` with ``pkg``'s modules in ``sys.modules`` (for the lazy imports inside)."""
    saved = {n: m for n, m in sys.modules.items() if n == "fgaseg" or n.startswith("fgaseg.")}
    for n in saved:
        del sys.modules[n]
    sys.modules.update(pkg["modules"])
    try:
        return fn()
    finally:
        for n in pkg["modules"]:
            sys.modules.pop(n, None)
        sys.modules.update(saved)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", default="main", help="git revision of the reference implementation")
    parser.add_argument("--classes", type=int, nargs="+", default=[20, 150, 847])
    parser.add_argument("--decoders", nargs="+", default=["plain"], choices=("plain", "fast"))
    parser.add_argument("--reps", type=int, default=0, help="timed reps per implementation (0: check only)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sliding", action="store_true", help="the 5-view protocol on a 640x480 image")
    parser.add_argument("--tol", type=float, default=1e-5)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        ref_pkg = load_package(extract(args.ref, Path(tmp)))
        new_pkg = load_package(REPO / "src")
        torch.manual_seed(123)
        image = torch.rand(1, 3, 480, 640) if args.sliding else torch.rand(1, 3, 384, 384)
        worst = 0.0
        for decoder in args.decoders:
            models = {"ref": run_with(ref_pkg, lambda: build(ref_pkg, decoder)),
                      "new": run_with(new_pkg, lambda: build(new_pkg, decoder))}
            models["new"].load_state_dict(models["ref"].state_dict())  # the very same weights
            pkgs = {"ref": ref_pkg, "new": new_pkg}
            for n in args.classes:
                names = class_names(n)
                outs, times = {}, {"ref": [], "new": []}
                for key in ("ref", "new"):
                    def call(key: str = key) -> torch.Tensor:
                        return models[key].segment_logits(image, names, sliding=args.sliding)
                    outs[key] = run_with(pkgs[key], call)  # also the warm-up
                diff = (outs["ref"] - outs["new"]).abs().max().item()
                worst = max(worst, diff)
                scale = outs["ref"].abs().max().item()
                load0 = os.getloadavg()[0]
                for r in range(args.reps):
                    for key in (("ref", "new") if r % 2 == 0 else ("new", "ref")):
                        def call(key: str = key) -> torch.Tensor:
                            return models[key].segment_logits(image, names, sliding=args.sliding)
                        start = time.perf_counter()
                        out = run_with(pkgs[key], call)
                        times[key].append(time.perf_counter() - start)
                        del out
                line = (f"{decoder:5s} N={n:4d}{' sliding' if args.sliding else ''}: max |diff| {diff:.2e} "
                        f"(logit scale {scale:.1f})")
                if args.reps:
                    ref_s, new_s = statistics.median(times["ref"]), statistics.median(times["new"])
                    line += (f"  ref {ref_s:.2f} s  new {new_s:.2f} s  speed-up {ref_s / new_s:.2f}x  "
                             f"(reps {args.reps}, {args.threads} thread(s), load {load0:.2f} -> "
                             f"{os.getloadavg()[0]:.2f})")
                print(line, flush=True)
        print(f"worst max |diff| {worst:.2e} ({'OK' if worst <= args.tol else 'ABOVE'} tol {args.tol:g})")
        return 0 if worst <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
