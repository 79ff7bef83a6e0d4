"""Time and peak memory of the A-847 benchmark path: fast decoder, sliding window, 847 classes.

    python benchmarks/official_a847.py                  # official and default protocol, CPU
    python benchmarks/official_a847.py --protocols official --repeats 3

A ViT-B/16 FGA-seg (fast decoder, TopK 16) with random weights segments one synthetic
512x683 image (ADE20K's typical size: the sliding window resizes it to 640x640 and the scores
come back at 512x683, as in the official evaluation) with the 847 ADE-847 class names. Each
protocol runs in its own process: it builds the model, caches the text embeddings, records the
peak resident memory so far ("model + text"), runs ``segment_logits`` once to warm up and
``--repeats`` more times, and prints the median seconds and the peak resident memory of the
process. With random weights the TopK rule keeps more classes than a trained model would (see
topk_trained.md), so this is an upper bound for the head. Machine load (``os.getloadavg``) is
printed with every number. Results: official_protocol.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def _rss_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def worker(protocol: str, repeats: int, height: int, width: int) -> dict:
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from official_parity import build, class_names, synthetic_image

    torch.set_grad_enabled(False)
    model, official = build("fgaseg", "fast")
    del official
    names = class_names(847)
    image = synthetic_image(height, width)[None]
    model.encode_classes(names)  # cached, as in an evaluation over many images
    base = _rss_peak_mib()
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        scores = model.segment_logits(image, names, sliding=True, protocol=protocol)
        times.append(time.perf_counter() - start)
        del scores
    return {"protocol": protocol, "seconds": statistics.median(times[1:]), "first": times[0],
            "peak_mib": _rss_peak_mib(), "model_mib": base, "threads": torch.get_num_threads(),
            "load": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocols", nargs="+", default=["official", "default"], choices=["official", "default"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--size", type=int, nargs=2, default=[512, 683], metavar=("H", "W"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.repeats, *args.size)))
        return
    print(f"load before: {os.getloadavg()}")
    print("| protocol | image | s / image (median) | first call | peak RSS | model + text alone | "
          "threads | load (1/5/15 min) |")
    print("|---|---|---|---|---|---|---|---|")
    for protocol in args.protocols:
        out = subprocess.run([sys.executable, __file__, "--worker", protocol, "--repeats", str(args.repeats),
                              "--size", *map(str, args.size)], check=True, capture_output=True, text=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        load = "/".join(f"{x:.1f}" for x in r["load"])
        print(f"| {protocol} | {args.size[0]}x{args.size[1]} | {r['seconds']:.1f} s | {r['first']:.1f} s | "
              f"{r['peak_mib'] / 1024:.2f} GiB | {r['model_mib'] / 1024:.2f} GiB | "
              f"{r['threads']} | {load} |", flush=True)


if __name__ == "__main__":
    main()
