"""Where a model's CPU time goes, by operator (prints JSON; ``--out`` writes it): torch.profiler self CPU
time of one forward (after warm-up), plain and after ``tp.optimize``, grouped into convolution, GEMM
(matmul / linear / bmm), elementwise and data movement. It bounds what fusing the spiking activations can
still buy: if the GEMMs and convolutions take a share ``g`` of the time, no fusion of the rest can make the
model more than ``1 / g`` times faster.

It also bounds what any kernel work can buy: the counted multiply-accumulates of one forward divided by its
self CPU time give the float32 rate the model runs at, next to the rate of a large square SGEMM (and of a
3x3 convolution) measured on the same core in the same process, the practical peak of this CPU's float32
arithmetic. ``bound_at_reference_peak``: the speed-up over the plain model if every counted MAC ran at the
best reference rate and nothing else took any time.

Usage: python benchmarks/profile_ops.py [--models sdt_v3_l qkformer_10_512_imagenet] [--batch-size 1]
       [--threads 1] [--out file.json]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import torch
from torch.profiler import profile

from tp_spikformer import create_model
from tp_spikformer.jsonio import print_and_write
from tp_spikformer.measure import count_ops
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


def _median_seconds(fn, repeats: int = 7) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.thread_time()
        fn()
        times.append(time.thread_time() - t0)
    return statistics.median(times)


def reference_rates() -> dict[str, float]:
    """GFLOP/s (2 per MAC) of a 2048x2048 float32 SGEMM and of a 3x3 convolution (512 -> 128 channels on
    28x28, channels-last, one of SDT-V3's shapes) on this thread: what float32 kernels reach here."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    x = torch.randn(1, 512, 28, 28).contiguous(memory_format=torch.channels_last)
    w = torch.randn(128, 512, 3, 3).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        sgemm = 2 * 2048**3 / _median_seconds(lambda: a @ b) / 1e9
        conv_flops = 2 * 128 * 512 * 9 * 28 * 28  # 2 x out channels x in channels x 3 x 3 x output pixels
        conv = conv_flops / _median_seconds(lambda: torch.nn.functional.conv2d(x, w, padding=1)) / 1e9
    return {"sgemm_2048_gflops": round(sgemm, 1), "conv3x3_gflops": round(conv, 1)}


def with_rates(entry: dict, macs: float, peak: float) -> dict:
    """Add the float32 rate a profiled forward ran at (counted MACs / self CPU time)."""
    seconds = entry["self_cpu_ms"] / 1000.0
    arithmetic = seconds * (entry["shares"].get("convolution", 0) + entry["shares"].get("gemm", 0))
    entry["gflops"] = round(2 * macs / seconds / 1e9, 1)
    entry["gflops_in_conv_and_gemm"] = round(2 * macs / arithmetic / 1e9, 1)
    entry["share_of_reference_peak"] = round(2 * macs / seconds / 1e9 / peak, 3)
    return entry


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
    rates = reference_rates()
    result["reference_rates"] = rates
    peak = max(rates.values())
    for name in args.models:
        model = create_model(name).eval()
        make_neurons_fire(model, seed=1)
        x = default_input(model, args.batch_size)
        fast = optimize(copy.deepcopy(model), compile=False)
        macs = count_ops(model, x).dense_macs()
        plain = with_rates(profile_once(model, x), macs, peak)
        optimized = with_rates(profile_once(fast, x), macs, peak)
        result["models"][name] = {
            "macs": macs,
            "plain": plain,
            "optimized": optimized,
            "bound_at_reference_peak": round(plain["self_cpu_ms"] / 1000.0 / (2 * macs / peak / 1e9), 3),
        }
        print(f"[profile_ops] {name} done", file=sys.stderr, flush=True)
    print_and_write(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
