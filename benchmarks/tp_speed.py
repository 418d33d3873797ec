"""TP-Spikformer speed benchmark: dense vs pruned at the official k_values, printed as JSON.

For each model (random weights, BN statistics drawn so that neurons fire) and batch size, four variants
run interleaved in one timing loop (warm-up, repeats, median and spread):

* ``dense``        the unpatched model;
* ``tp``           ``apply_tp(keep="official", scorer="official")`` (closed-form O(C*H*W) scorer);
* ``keep_all``     ``apply_tp(keep=1.0)``: overhead of the patch when nothing is pruned;
* ``tp_literal``   the same pruning with the literal official C x C convolution scorer.

Random weights get BatchNorm statistics under which neurons fire (``measure.make_neurons_fire``).

Reported per case: img/s of each variant; the measured speedup dense/tp; the ideal speedup from counted
MACs of what actually ran (conv, linear and attention products, measure.count_ops); realised/ideal; the
scorer's share of the pruned forward (timed around every scorer call); the keep-all overhead, measured end
to end and derived from the patch's own cost per block call (timed on a block without compute); the
tp_literal/tp time ratio with a check that both select the same tokens and give the same logits. Ratios are
given of the medians and as the median of per-round paired ratios (neighbours in time: load drifts cancel).

Usage: python benchmarks/tp_speed.py [--models ...] [--batch-sizes 1 8] [--repeats 5] [--out file.json]
Targets (issue 3): realised >= 0.9 x ideal, scorer <= 1 %, keep-all overhead <= 2 %, >= 1.3x faster than
the literal scorer on QKFormer.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time

import torch
from torch import nn

from tp_spikformer import create_model
from tp_spikformer.measure import benchmark, count_ops
from tp_spikformer.measure.benchmark import default_input
from tp_spikformer.measure.variants import make_neurons_fire
from tp_spikformer.models import TokenBlock
from tp_spikformer.pruning import apply_tp, get_scorer

DEFAULT_MODELS = ["sdt_8_512_imagenet", "qkformer_10_512_imagenet", "sdt_v3_l"]


class TimedScorer:
    """A scorer wrapper that accumulates the wall time of its calls."""

    def __init__(self, name: str):
        self.fn = get_scorer(name)
        self.__name__ = name
        self.seconds = 0.0
        self.calls = 0

    def __call__(self, x, ctx):
        t0 = time.perf_counter()
        out = self.fn(x, ctx)
        if out.is_cuda:
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return out


def scorer_share(model, x, repeats: int) -> dict:
    """Fraction of the pruned forward spent in the scorer (median over repeats)."""
    state = model._tp_state
    original = state._scorer
    shares, totals = [], []
    try:
        with torch.inference_mode():
            for _ in range(repeats):
                timed = TimedScorer(original)
                state.scorer = timed
                t0 = time.perf_counter()
                model(x)
                total = time.perf_counter() - t0
                shares.append(timed.seconds / total)
                totals.append(timed.seconds)
    finally:
        state.scorer = original
    shares.sort()
    totals.sort()
    return {
        "median_share": shares[len(shares) // 2],
        "median_scorer_ms": 1e3 * totals[len(totals) // 2],
        "calls_per_forward": timed.calls,
    }


class _IdentityBlock(TokenBlock):
    """A block whose token-wise part does nothing: timing it measures the patch's own cost."""

    def token_forward(self, tokens):
        return tokens


def patch_overhead_us(chunk: int = 200, rounds: int = 25) -> float:
    """Extra time (microseconds) the keep-all patch adds to one block call.

    Measured on a block with no compute (so model compute and its noise do not enter), plain and
    patched in alternating chunks; the median over rounds of (patched - plain) per call.
    """
    plain = nn.Sequential(_IdentityBlock())
    patched = nn.Sequential(_IdentityBlock())
    apply_tp(patched, keep=1.0)
    x = torch.zeros(1, 1, 4, 2, 2)
    diffs = []
    with torch.inference_mode():
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(chunk):
                plain(x)
            t1 = time.perf_counter()
            for _ in range(chunk):
                patched(x)
            t2 = time.perf_counter()
            diffs.append(((t2 - t1) - (t1 - t0)) / chunk * 1e6)
    diffs.sort()
    return diffs[len(diffs) // 2]


def run_case(name: str, batch_sizes, repeats: int, warmup: int, keep="official") -> dict:
    torch.manual_seed(0)
    dense = create_model(name).eval()
    make_neurons_fire(dense)
    tp = copy.deepcopy(dense)
    state = apply_tp(tp, keep=keep, scorer="official")
    keep_all = copy.deepcopy(dense)
    apply_tp(keep_all, keep=1.0, scorer="official")
    literal = copy.deepcopy(dense)
    lit_state = apply_tp(literal, keep=keep, scorer="official_literal")

    x1 = default_input(dense, 1, torch.Generator().manual_seed(1))
    with torch.inference_mode():
        out_tp, out_lit = tp(x1), literal(x1)
    same_tokens = all(
        torch.equal(a.indices.sort(1).values, b.indices.sort(1).values)
        for a, b in zip(state.records, lit_state.records)
    )
    macs_dense = count_ops(dense, x1).dense_macs()
    macs_tp = count_ops(tp, x1).dense_macs()
    kept = [r.kept for r in state.records]
    grids = [r.grid[0] * r.grid[1] for r in state.records]

    overhead_us = patch_overhead_us()
    timing = benchmark(
        {"dense": dense, "tp": tp, "keep_all": keep_all, "tp_literal": literal},
        batch_sizes=batch_sizes,
        warmup=warmup,
        repeats=repeats,
        memory=True,
    )
    cases = []
    for bs in batch_sizes:
        r = {v: timing.get(v, bs) for v in ("dense", "tp", "keep_all", "tp_literal")}
        med = {v: r[v]["latency_ms"]["median"] for v in r}
        measured = med["dense"] / med["tp"]
        ideal = macs_dense / macs_tp
        xb = default_input(dense, bs, torch.Generator().manual_seed(2))
        cases.append(
            {
                "batch_size": bs,
                "img_per_s": {v: round(r[v]["throughput_per_s"], 3) for v in r},
                "latency_ms": {v: r[v]["latency_ms"] for v in r},
                "peak_memory_bytes": {v: r[v].get("peak_memory_bytes") for v in r},
                "measured_speedup": round(measured, 4),
                "ideal_speedup_from_macs": round(ideal, 4),
                "realised_over_ideal": round(measured / ideal, 4),
                "scorer": scorer_share(tp, xb, max(3, repeats // 2)),
                "keep_all_overhead": round(med["keep_all"] / med["dense"] - 1, 4),
                "keep_all_overhead_paired": round(r["keep_all"]["paired_ratio_median"] - 1, 4),
                "keep_all_overhead_derived": round(overhead_us * len(kept) / (1e3 * med["dense"]), 6),
                "measured_speedup_paired": round(1 / r["tp"]["paired_ratio_median"], 4),
                "literal_over_closed_form": round(med["tp_literal"] / med["tp"], 4),
            }
        )
    return {
        "model": name,
        "keep": str(state.keep),
        "kept_tokens_per_block": kept,
        "tokens_per_block": grids,
        "macs_dense_per_image": macs_dense,
        "macs_tp_per_image": macs_tp,
        "patch_overhead_us_per_block_call": round(overhead_us, 2),
        "literal_equal_outputs": {
            "same_kept_tokens": same_tokens,
            "max_abs_logit_diff": float((out_tp - out_lit).abs().max()),
        },
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
    p.add_argument("--keep", default="official", help="keep schedule (default: the official k_values)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {
        "benchmark": "tp_speed",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "runs": [],
    }
    for name in args.models:
        print(f"[tp_speed] {name} ...", file=sys.stderr, flush=True)
        results["runs"].append(run_case(name, args.batch_sizes, args.repeats, args.warmup, args.keep))
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
