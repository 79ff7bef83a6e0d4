"""`fgaseg segment`: segment image files or folders with a class list.

For every image writes ``<stem>_labels.png`` (indexed PNG, class colours as palette),
``<stem>_overlay.png`` (overlay with legend) and ``<stem>.json`` (classes, pixel share, size,
timings) into ``--out``. Exit codes: 0 all images done, 1 some inputs failed (each reported
on one line, the others are still written), 2 usage, class-list, device or weights error.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fgaseg.commands.outputs import add_overwrite_argument, prepare_out_dir, refuse_existing
from fgaseg.errors import ClassNamesError, ConfigError, FGASegError

HELP = "segment images with a class list (trained FGAseg or training-free CLIP)"

_OUTPUT_SUFFIXES = ("_labels.png", "_overlay.png")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("Writes <stem>_labels.png (indexed PNG), <stem>_overlay.png (with legend) and "
                     "<stem>.json per image. Exit codes: 0 all images done; 1 some inputs failed "
                     "(the others are written); 2 usage, class-list, device or weights error.")
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR",
                        help="image files and/or folders (images directly inside are used)")
    names = parser.add_mutually_exclusive_group(required=True)
    names.add_argument("--classes", help='comma-separated class names, e.g. "cat, grass, sky"')
    names.add_argument("--classes-file", metavar="FILE",
                       help="JSON list of names, or a text file with one name per line")
    names.add_argument("--vocab", metavar="NAME",
                       help="a benchmark vocabulary: ade150, ade847, pc59, pc459, voc20, ...")
    parser.add_argument("--weights", required=True, metavar="PATH_OR_NAME",
                        help="FGAseg weights (folder, official checkpoint or hub id); "
                             "with --method training-free a CLIP name or file")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--method", choices=("fgaseg", "training-free"), default="fgaseg")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--topk", type=int, default=None, metavar="K",
                        help="TopK class pruning while decoding (FGAseg fast decoder): keep "
                             "classes in some pixel's top K; 0 = off (default: the model's)")
    parser.add_argument("--protocol", choices=("default", "official"), default="default",
                        help="official: the official code's final scores, quirks included "
                             "(FGAseg only; see docs/checkpoints.md)")
    parser.add_argument("--sliding", action="store_true",
                        help="sliding-window inference (the benchmark protocol; slower)")
    parser.add_argument("--bf16", action="store_true",
                        help="bfloat16 autocast for FGAseg inference (faster on CPUs with "
                             "AVX512-BF16/AMX and on GPUs; scores change slightly)")
    parser.add_argument("--opacity", type=float, default=0.5,
                        help="colour weight in the overlay, in [0, 1] (default 0.5)")
    parser.add_argument("--max-side", type=int, default=None, metavar="PX",
                        help="downscale longer sides to PX for inference (default 640; 0 = off)")
    add_overwrite_argument(parser, "earlier outputs in --out with the same names")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from fgaseg.predict.api import DEFAULT_MAX_SIDE, predict

    if not 0.0 <= args.opacity <= 1.0:
        raise ConfigError(f"--opacity must lie in [0, 1], got {args.opacity}")
    if args.topk is not None and args.topk < 0:
        raise ConfigError(f"--topk must be 0 (no pruning) or positive, got {args.topk}")
    if args.max_side is not None and args.max_side < 0:
        raise ConfigError(f"--max-side must be positive (or 0 for no limit), got {args.max_side}")
    class_names = _class_names(args)
    out_dir = Path(args.out)
    images, missing = collect_images(args.inputs, out_dir)
    if not images and not missing:
        raise ConfigError("no image files found in the given inputs")
    stems = unique_stems(images)
    if not args.overwrite:  # checked before the model is loaded or any image is read
        refuse_existing([target for path in images for target in _targets(out_dir, stems[path])],
                        "--out")
    prepare_out_dir(out_dir)
    segmenter = load_segmenter(args.weights, args.method, args.device)
    if args.bf16:
        if not hasattr(segmenter, "optimize_for_inference"):
            raise ConfigError("--bf16 is only available for --method fgaseg")
        segmenter.optimize_for_inference(bf16=True)

    failures = list(missing)
    for path in missing:
        print(f"failed: {path}: no such file or folder", file=sys.stderr)
    protected = {p.resolve() for p in images}
    done = 0
    max_side = DEFAULT_MAX_SIDE if args.max_side is None else args.max_side
    for path in tqdm(images, desc="segmenting", unit="img", file=sys.stderr,
                     disable=len(images) < 2):
        started = time.perf_counter()
        try:
            targets = _targets(out_dir, stems[path])
            clash = [t for t in targets if t.resolve() in protected]
            if clash:
                raise FGASegError(f"refusing to overwrite input file {clash[0]}")
            result = predict(segmenter, path, class_names, sliding=args.sliding,
                             topk=args.topk, max_side=max_side, allow_duplicates=True,
                             protocol=args.protocol)
            result.timings["total"] = time.perf_counter() - started
            result.save(out_dir, stems[path], opacity=args.opacity,
                        extra={"method": args.method, "weights": str(args.weights)})
            done += 1
        except KeyboardInterrupt:
            raise
        except FGASegError as exc:
            failures.append(path)
            tqdm.write(f"failed: {exc}", file=sys.stderr)
        except Exception as exc:  # one bad image must not lose the rest
            failures.append(path)
            tqdm.write(f"failed: {path}: {type(exc).__name__}: {_one_line(exc)}",
                       file=sys.stderr)
    total = len(images) + len(missing)
    print(f"segmented {done} of {total} image(s) into {out_dir}"
          + (f"; {len(failures)} failed" if failures else ""), file=sys.stderr)
    return 1 if failures else 0


def _targets(out_dir: Path, stem: str) -> list[Path]:
    """The files written for one image."""
    return [out_dir / f"{stem}{suffix}" for suffix in (*_OUTPUT_SUFFIXES, ".json")]


def load_segmenter(weights: str, method: str, device: str):
    """Indirection so tests can substitute a weightless segmenter."""
    from fgaseg.predict.loading import load_segmenter as load

    return load(weights, method, device)


def _class_names(args: argparse.Namespace) -> list[str]:
    from fgaseg.predict.class_names import (parse_class_names, read_class_file,
                                            vocabulary_class_names)

    if args.classes is not None:
        return parse_class_names(args.classes)
    if args.classes_file is not None:
        return read_class_file(args.classes_file)
    if args.vocab is not None:
        return vocabulary_class_names(args.vocab)
    raise ClassNamesError("give --classes, --classes-file or --vocab")


def collect_images(inputs: list[str], out_dir: Path) -> tuple[list[Path], list[Path]]:
    """(image files to process, inputs that do not exist). Folders contribute the image files
    directly inside them; inside the output folder our own outputs are skipped."""
    from fgaseg.predict.image_io import list_images

    images: list[Path] = []
    missing: list[Path] = []
    seen: set[Path] = set()
    out_resolved = out_dir.resolve()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = list_images(path)
            if path.resolve() == out_resolved:
                found = [p for p in found if not p.name.endswith(_OUTPUT_SUFFIXES)]
        elif path.exists():
            found = [path]
        else:
            missing.append(path)
            continue
        for file in found:
            if file.resolve() not in seen:
                seen.add(file.resolve())
                images.append(file)
    return images, missing


def unique_stems(images: list[Path]) -> dict[Path, str]:
    """Output stem per image: the file stem, suffixed ``-2``, ``-3``... when stems repeat."""
    stems: dict[Path, str] = {}
    used: set[str] = set()
    for path in images:
        stem, n = path.stem, 1
        while stem in used:
            n += 1
            stem = f"{path.stem}-{n}"
        used.add(stem)
        stems[path] = stem
    return stems


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]
