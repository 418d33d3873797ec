"""Plain vs optimized (``tp_spikformer.optimize``) models, dense and TP-pruned, timed interleaved; JSON out.

For each model (random weights, BatchNorm statistics drawn so that neurons fire) four variants run
interleaved in one timing loop (``measure.benchmark``: warm-up, repeats, median and quartiles):

* ``plain``     / ``plain_tp``: today's model, dense and with ``apply_tp(keep="official")``;
* ``optimized`` / ``optimized_tp``: the same weights after ``optimize(model, compile=...)``, dense and pruned.

Reported per model: what optimize did and its compile time (separately: the seconds ``optimize`` spent
compiling or loading the kernels from inductor's cache, and the first forward after it), float32
agreement of the optimized model with the plain one (max |logit diff|, same argmax, same kept tokens),
counted MACs dense / pruned (the ideal TP speedup); per batch size the medians, the optimized/plain
speedups (dense and TP, of the medians and paired per round), and pruned/dense for both models next to the
ideal. ``--cpu-time`` adds per-variant medians of the thread's CPU time (robust to other processes on a
shared machine; one extra interleaved loop).

Usage: python benchmarks/optimize_speed.py [--models ...] [--batch-sizes 1 8] [--repeats 5] [--threads 1]
       [--no-compile] [--cpu-time] [--out file.json]
Targets (issue 17): optimized/plain dense >= 1.3x (sdt_v3_l), >= 1.2x (SDT-V1-8-512, QKFormer-10-512);
pruned/dense of the optimized model >= 0.9 x ideal.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time

import torch

from tp_spikformer import create_model
from tp_spikformer.measure import benchmark, count_ops
from tp_spikformer.measure.benchmark import default_input
from tp_spikformer.measure.variants import make_neurons_fire
from tp_spikformer.optimize import optimization_report, optimize
from tp_spikformer.pruning import apply_tp

DEFAULT_MODELS = ["sdt_v3_l", "sdt_8_512_imagenet", "qkformer_10_512_imagenet"]
VARIANTS = ("plain", "plain_tp", "optimized", "optimized_tp")


def cpu_times(models: dict, x: torch.Tensor, repeats: int) -> dict:
    """Median thread CPU time (ms) per forward of each model, interleaved round-robin."""
    times = {name: [] for name in models}
    with torch.inference_mode():
        for i in range(repeats):
            names = list(models)
            names = names[i % len(names) :] + names[: i % len(names)]
            for name in names:
                t0 = time.thread_time()
                models[name](x)
                times[name].append(1e3 * (time.thread_time() - t0))
    return {name: round(statistics.median(v), 3) for name, v in times.items()}


def run_case(
    name: str, batch_sizes, repeats: int, warmup: int, compile: bool, cpu_time: bool, keep: str
) -> dict:
    torch.manual_seed(0)
    plain = create_model(name).eval()
    make_neurons_fire(plain)
    plain_tp = copy.deepcopy(plain)
    state_plain = apply_tp(plain_tp, keep=keep, scorer="official")
    optimized = copy.deepcopy(plain)
    t0 = time.perf_counter()
    optimize(optimized, compile=compile, cpu_allocator=False)  # process-wide: optimize_process_speed.py
    optimize_seconds = time.perf_counter() - t0
    report = optimization_report(optimized)
    optimized_tp = copy.deepcopy(optimized)
    state_opt = apply_tp(optimized_tp, keep=keep, scorer="official")

    x1 = default_input(plain, 1, torch.Generator().manual_seed(1))
    with torch.inference_mode():
        t0 = time.perf_counter()
        out_opt = optimized(x1)
        first_forward = time.perf_counter() - t0
        out_plain = plain(x1)
        out_plain_tp, out_opt_tp = plain_tp(x1), optimized_tp(x1)
    same_tokens = all(  # the same kept sets (the order of tied scores may differ)
        torch.equal(a.indices.sort(1).values, b.indices.sort(1).values)
        for a, b in zip(state_plain.records, state_opt.records)
    )
    macs_dense = count_ops(plain, x1).dense_macs()
    macs_tp = count_ops(plain_tp, x1).dense_macs()
    ideal = macs_dense / macs_tp

    models = {"plain": plain, "plain_tp": plain_tp, "optimized": optimized, "optimized_tp": optimized_tp}
    timing = benchmark(models, batch_sizes=batch_sizes, warmup=warmup, repeats=repeats, memory=True)
    cases = []
    for bs in batch_sizes:
        r = {v: timing.get(v, bs) for v in VARIANTS}
        med = {v: r[v]["latency_ms"]["median"] for v in VARIANTS}
        case = {
            "batch_size": bs,
            "latency_ms": {v: r[v]["latency_ms"] for v in VARIANTS},
            "img_per_s": {v: round(r[v]["throughput_per_s"], 3) for v in VARIANTS},
            "peak_memory_bytes": {v: r[v].get("peak_memory_bytes") for v in VARIANTS},
            "optimized_over_plain_dense": round(med["plain"] / med["optimized"], 4),
            "optimized_over_plain_tp": round(med["plain_tp"] / med["optimized_tp"], 4),
            "optimized_over_plain_dense_paired": round(
                r["plain"]["paired_ratio_median"] / r["optimized"]["paired_ratio_median"], 4
            ),
            "pruned_over_dense_plain": round(med["plain"] / med["plain_tp"], 4),
            "pruned_over_dense_optimized": round(med["optimized"] / med["optimized_tp"], 4),
            "ideal_from_macs": round(ideal, 4),
            "optimized_pruned_realised_over_ideal": round(med["optimized"] / med["optimized_tp"] / ideal, 4),
        }
        if cpu_time:
            xb = default_input(plain, bs, torch.Generator().manual_seed(2))
            cpu = cpu_times(models, xb, repeats)
            case["cpu_ms"] = cpu
            case["cpu_optimized_over_plain_dense"] = round(cpu["plain"] / cpu["optimized"], 4)
            case["cpu_optimized_over_plain_tp"] = round(cpu["plain_tp"] / cpu["optimized_tp"], 4)
        cases.append(case)
    return {
        "model": name,
        "keep": str(state_plain.keep),
        "optimize": report.to_dict(),
        "optimize_seconds": round(optimize_seconds, 3),
        "first_forward_seconds": round(first_forward, 3),
        "float32_agreement": {
            "dense_max_abs_logit_diff": float((out_opt - out_plain).abs().max()),
            "dense_same_argmax": bool(torch.equal(out_opt.argmax(-1), out_plain.argmax(-1))),
            "tp_max_abs_logit_diff": float((out_opt_tp - out_plain_tp).abs().max()),
            "tp_same_kept_tokens": same_tokens,
        },
        "macs_dense_per_image": macs_dense,
        "macs_tp_per_image": macs_tp,
        "cases": cases,
        "cpu_load_others": timing.cpu_load,
        "environment": timing.environment,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument(
        "--keep", default="official", help="keep schedule of the TP variants (default: official k_values)"
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-compile", action="store_true", help="optimize(compile=False): plain fused kernels")
    p.add_argument("--cpu-time", action="store_true", help="also report thread CPU time per forward")
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {
        "benchmark": "optimize_speed",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "compile": not args.no_compile,
        "runs": [],
    }
    for name in args.models:
        print(f"[optimize_speed] {name} ...", file=sys.stderr, flush=True)
        results["runs"].append(
            run_case(
                name,
                args.batch_sizes,
                args.repeats,
                args.warmup,
                not args.no_compile,
                args.cpu_time,
                args.keep,
            )
        )
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
