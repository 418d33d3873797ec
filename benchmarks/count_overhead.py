"""What counting operations costs: one forward of a scene batch, plain and under ``OpCounter`` (what every
SOP / energy figure and the SOP-budget schedule search run), interleaved, medians; JSON out.

Usage: python benchmarks/count_overhead.py [--models sdt_v3_scenes spikformer_scenes] [--batch-size 32]
       [--repeats 3] [--keep 0.5] [--threads 1] [--label NAME] [--out file.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

import tp_spikformer
from tp_spikformer import create_model
from tp_spikformer.jsonio import print_and_write
from tp_spikformer.measure.benchmark import default_input
from tp_spikformer.measure.ops import OpCounter
from tp_spikformer.pruning import apply_tp

MODELS = ["sdt_v3_scenes", "sdt_scenes", "spikformer_scenes", "qkformer_scenes"]


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(name: str, batch_size: int, repeats: int, keep: float) -> dict:
    model = create_model(name, pretrained=True).eval()
    apply_tp(model, keep=keep)
    x = default_input(model, batch_size, torch.Generator().manual_seed(0))

    def counted():
        with OpCounter(model):
            model(x)

    plain, count = [], []
    with torch.inference_mode():
        model(x)
        counted()
        for _ in range(repeats):
            plain.append(timed(lambda: model(x)))
            count.append(timed(counted))
    p, c = statistics.median(plain), statistics.median(count)
    return {"plain_s": round(p, 3), "counted_s": round(c, 3), "counted_over_plain": round(c / p, 3)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--keep", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--label", default=None, help="a name for this code version in the JSON")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = {
        "benchmark": "count_overhead",
        "label": args.label,
        "package": tp_spikformer.__file__,
        "torch": torch.__version__,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "keep": args.keep,
        "repeats": args.repeats,
        "models": {},
    }
    for name in args.models:
        result["models"][name] = run(name, args.batch_size, args.repeats, args.keep)
        print(f"[count_overhead] {name}: {result['models'][name]}", file=sys.stderr, flush=True)
    print_and_write(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
