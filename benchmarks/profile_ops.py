"""Where a model's CPU time goes, by operator (prints JSON; ``--out`` writes it): torch.profiler self CPU
time of one forward (after warm-up), plain and after ``tp.optimize``, grouped into convolution, GEMM
(matmul / linear / bmm), elementwise and data movement. It bounds what fusing the spiking activations can
still buy: if the GEMMs and convolutions take a share ``g`` of the time, no fusion of the rest can make the
model more than ``1 / g`` times faster.

Usage: python benchmarks/profile_ops.py [--models sdt_v3_l qkformer_10_512_imagenet] [--batch-size 1]
       [--threads 1] [--out file.json]
"""

from __future__ import annotations

import argparse
import copy
import sys

import torch
from torch.profiler import profile

from tp_spikformer import create_model
from tp_spikformer.jsonio import dumps, write_json
from tp_spikformer.measure.benchmark import default_input
from tp_spikformer.measure.variants import make_neurons_fire
from tp_spikformer.optimize import optimize

GROUPS = {
    "convolution": (
        "aten::mkldnn_convolution",
        "aten::_slow_conv2d_forward",
        "aten::convolution_overrideable",
        "aten::thnn_conv2d",
    ),
    "gemm": ("aten::bmm", "aten::addmm", "aten::mm", "aten::baddbmm"),
}


def group_of(name: str) -> str:
    for group, names in GROUPS.items():
        if name in names:
            return group
    if name in ("aten::copy_", "aten::_to_copy", "aten::contiguous", "aten::clone", "aten::cat"):
        return "data_movement"
    return "elementwise_and_other"


def profile_once(model, x) -> dict:
    with torch.inference_mode():
        for _ in range(2):
            model(x)
        with profile() as prof:
            model(x)
    rows = [(e.key, e.self_cpu_time_total) for e in prof.key_averages()]
    total = sum(t for _, t in rows)
    shares: dict[str, float] = {}
    for name, t in rows:
        shares[group_of(name)] = shares.get(group_of(name), 0.0) + t / total
    top = sorted(rows, key=lambda r: -r[1])[:8]
    return {
        "self_cpu_ms": total / 1000.0,
        "shares": {k: round(v, 4) for k, v in sorted(shares.items())},
        "top_ops_ms": {k: round(t / 1000.0, 2) for k, t in top},
        "bound_from_fusing_the_rest": round(1.0 / (shares.get("convolution", 0) + shares.get("gemm", 0)), 3),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["sdt_v3_l", "qkformer_10_512_imagenet"])
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = {
        "benchmark": "profile_ops",
        "torch": torch.__version__,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "command": " ".join(
            ["python benchmarks/profile_ops.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "models": {},
    }
    for name in args.models:
        model = create_model(name).eval()
        make_neurons_fire(model, seed=1)
        x = default_input(model, args.batch_size)
        fast = optimize(copy.deepcopy(model), compile=False)
        result["models"][name] = {"plain": profile_once(model, x), "optimized": profile_once(fast, x)}
        print(f"[profile_ops] {name} done", file=sys.stderr, flush=True)
    print(dumps(result))
    if args.out:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
