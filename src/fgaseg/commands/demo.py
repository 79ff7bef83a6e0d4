"""``fgaseg demo``: the synthetic open-vocabulary benchmark, end to end on CPU."""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

HELP = "synthetic open-vocabulary benchmark: pretrain tiny CLIP, train FGAseg, evaluate"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"),
                        help="output folder for results.json, results.md, overlays/ (default: outputs/demo)")
    parser.add_argument("--no-cache", action="store_true",
                        help="retrain the tiny CLIP even if a cached copy exists (and overwrite it)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the segmentation stage (default 0)")
    parser.add_argument("--clip-seed", type=int, default=0, help="seed of the tiny CLIP (default 0)")
    parser.add_argument("--clip-steps", type=int, default=None, help="contrastive pretraining steps")
    parser.add_argument("--steps", type=int, default=None, help="FGAseg training steps")
    parser.add_argument("--test-scenes", type=int, default=None, help="held-out scenes to evaluate on")
    parser.add_argument("--ablations", action="store_true",
                        help="instead: full model, baseline and each part off, over several seeds "
                             "(4800 steps a run by default: ~17 h on 2 idle cores with --jobs 2)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4],
                        help="ablation seeds, paired across variants (default 0 1 2 3 4)")
    parser.add_argument("--variants", nargs="+", default=None, metavar="NAME",
                        help="ablation variants to train (default all): full baseline no-p2tformer "
                             "no-t2ploss no-gcs no-lcs plain-decoder")
    parser.add_argument("--jobs", type=int, default=1,
                        help="ablation runs at once, in worker processes sharing --threads (default 1; "
                             "on 2 cores, 2 finishes ~1.5x more runs an hour)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--save-model", action="store_true",
                        help="also save the trained FGAseg to OUT/model (usable with `fgaseg segment`)")
    parser.add_argument("--smoke", action="store_true", help="a seconds-long run with tiny sizes (checks only)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    from fgaseg.commands.outputs import add_overwrite_argument

    add_overwrite_argument(parser, "an earlier demo's results in --out (ablations resume instead)")


def run(args: argparse.Namespace) -> int:
    # Spinning OpenMP workers make torch ~10x slower when other processes share the cores;
    # passive waiting costs nothing measurable on an idle machine. Must precede `import torch`.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from fgaseg.errors import ConfigError
    from fgaseg.synth.ablation import ABLATION_STEPS, ABLATION_TEST_SCENES, ablation_config, run_ablations
    from fgaseg.synth.benchmark import demo_config, plan, run_benchmark, smoke_config

    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    config = smoke_config() if args.smoke else demo_config()
    if args.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {args.jobs}")
    for value, what in ((args.seed, "--seed"), (args.clip_seed, "--clip-seed"), (min(args.seeds), "--seeds")):
        if value < 0:
            raise ConfigError(f"{what} must be 0 or more, got {value}")
    args.seeds = list(dict.fromkeys(args.seeds))  # a seed named twice is one run per variant
    from fgaseg.synth.ablation import VARIANT_KEYS

    unknown = [v for v in args.variants or () if v not in VARIANT_KEYS]
    if unknown:
        raise ConfigError(f"unknown --variants {' '.join(unknown)}; choose from {' '.join(VARIANT_KEYS)}")
    variants = [VARIANT_KEYS[v] for v in dict.fromkeys(args.variants)] if args.variants else None
    for value, what in ((args.clip_steps, "--clip-steps"), (args.steps, "--steps"), (args.test_scenes, "--test-scenes")):
        if value is not None and value < (0 if what == "--clip-steps" else 1):
            raise ConfigError(f"{what} must be positive, got {value}")
    if args.clip_steps is not None:
        config = dataclasses.replace(config, pretrain=dataclasses.replace(config.pretrain, steps=args.clip_steps))
    config = dataclasses.replace(config, seed=args.seed, clip_seed=args.clip_seed, save_model=args.save_model)
    progress = not args.quiet
    if not args.ablations and not args.overwrite:
        # the one rule for commands that write (docs/usage.md); an ablation run with the same
        # settings resumes from its ablations.json instead
        from fgaseg.commands.outputs import refuse_existing

        out = args.out
        refuse_existing([out / "results.json", out / "results.md", out / "learning_curves.png",
                         out / "overlays", out / "model"], "--out")
    start = time.time()
    if args.ablations:
        if not args.smoke:
            config = ablation_config(config, args.steps or ABLATION_STEPS, args.test_scenes or ABLATION_TEST_SCENES)
        from fgaseg.synth.ablation import conflicts_with_previous

        if conflicts_with_previous(args.out, config) and not args.overwrite:
            raise ConfigError(f"{args.out} holds an ablation (results or unfinished runs) made with other "
                              "settings; pass --overwrite to replace it, or choose another --out")
        state = run_ablations(config, args.out, seeds=args.seeds, variants=variants, use_cache=not args.no_cache,
                              progress=progress, jobs=args.jobs)
        print((args.out / "ablations.md").read_text())
        print(f"ablations finished in {time.time() - start:.0f} s; see {args.out}/ablations.json")
        return 0 if state.get("runs") else 1
    if args.steps is not None:
        config = dataclasses.replace(config, segtrain=dataclasses.replace(config.segtrain, steps=args.steps))
    if args.test_scenes is not None:
        config = dataclasses.replace(config, num_test_scenes=args.test_scenes)
    from fgaseg.folder_lock import folder_lock

    with folder_lock(args.out, "fgaseg demo"):  # (the ablation takes its folder's lock itself)
        print(plan(config, use_cache=not args.no_cache), flush=True)
        run_benchmark(config, args.out, use_cache=not args.no_cache, progress=progress)
    print((args.out / "results.md").read_text())
    print(f"demo finished in {time.time() - start:.0f} s")
    return 0
