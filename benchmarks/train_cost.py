"""What TP saves in training: time per training step and peak memory, dense vs TP (prints JSON).

One training step = forward + cross-entropy + backward + AdamW step, on random inputs of the model's size
(random weights with firing BatchNorm statistics), in train mode. Dense and TP at keep 0.75 / 0.5 / 0.3
(every block keeping that fraction, official scorer) are timed interleaved (round-robin, median of
``--repeats``), one thread; peak memory is the peak of the tensor storages a step creates (forward
activations kept for backward, gradients), tracked per op. The ideal ratio is the counted MACs of the
forward (dense / pruned), which the backward roughly doubles in proportion.

Usage: python benchmarks/train_cost.py [--models ...] [--batch-size 4] [--repeats 7] [--out results.json]
The shipped small models run at their training batch (64) with ``--small``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from tp_spikformer import create_model
from tp_spikformer.jsonio import dumps, write_json
from tp_spikformer.measure import count_ops
from tp_spikformer.measure.benchmark import default_input, environment
from tp_spikformer.measure.tensor_memory import peak_tensor_bytes
from tp_spikformer.measure.variants import make_neurons_fire
from tp_spikformer.pruning import apply_tp

LARGE = ["sdt_8_512_imagenet", "qkformer_10_512_imagenet", "sdt_v3_l"]
SMALL = ["spikformer_fmnist", "sdt_fmnist", "qkformer_fmnist", "sdt_v3_fmnist"]
KEEPS = [0.75, 0.5, 0.3]


def make(name: str, keep: float | None, seed: int = 0):
    torch.manual_seed(seed)
    model = create_model(name).train()
    make_neurons_fire(model, seed=seed)
    for (
        m
    ) in model.modules():  # the official batch-coupled QKFormer mode depends on the batch: train per sample
        if hasattr(m, "proj_lif_mode"):
            m.proj_lif_mode = "per_sample"
    if keep is not None:
        apply_tp(model, keep=keep, scorer="official")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    return model, opt


def step(model, opt, x, y) -> None:
    out = model(x)
    loss = F.cross_entropy(out if out.dim() == 2 else out.mean(0), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def run_model(name: str, batch: int, repeats: int) -> dict:
    variants = {"dense": None, **{f"tp@{k}": k for k in KEEPS}}
    built = {label: make(name, keep) for label, keep in variants.items()}
    x = default_input(built["dense"][0], batch, torch.Generator().manual_seed(1))
    y = torch.randint(0, built["dense"][0].num_classes, (batch,), generator=torch.Generator().manual_seed(2))
    for model, opt in built.values():  # warm-up (allocator, first-call costs)
        step(model, opt, x, y)
    times = {label: [] for label in built}
    labels = list(built)
    for r in range(repeats):
        order = labels[r % len(labels) :] + labels[: r % len(labels)]
        for label in order:
            model, opt = built[label]
            t0 = time.perf_counter()
            step(model, opt, x, y)
            times[label].append(time.perf_counter() - t0)
    rows = {}
    with torch.no_grad():
        dense_macs = count_ops(built["dense"][0].eval(), x).dense_macs()
    for label, (model, opt) in built.items():
        model.train()
        peak, _ = peak_tensor_bytes(lambda m=model, o=opt: step(m, o, x, y))
        with torch.no_grad():
            macs = count_ops(model.eval(), x).dense_macs()
        model.train()
        med = statistics.median(times[label])
        rows[label] = {
            "step_ms_median": 1e3 * med,
            "step_ms_min": 1e3 * min(times[label]),
            "step_ms_iqr": 1e3
            * (statistics.quantiles(times[label], n=4)[2] - statistics.quantiles(times[label], n=4)[0])
            if repeats >= 2
            else 0.0,
            "peak_memory_mib": peak / 2**20,
            "forward_macs": macs,
        }
    base = rows["dense"]
    for row in rows.values():
        row["speedup"] = base["step_ms_median"] / row["step_ms_median"]
        row["ideal_speedup_from_macs"] = dense_macs / row["forward_macs"]
        row["measured_over_ideal"] = row["speedup"] / row["ideal_speedup_from_macs"]
        row["memory_ratio"] = row["peak_memory_mib"] / base["peak_memory_mib"]
    print(
        f"[train_cost] {name} batch {batch}: "
        + ", ".join(
            f"{k} {v['step_ms_median']:.0f} ms x{v['speedup']:.2f} (ideal x{v['ideal_speedup_from_macs']:.2f}) "
            f"{v['peak_memory_mib']:.0f} MiB"
            for k, v in rows.items()
        ),
        file=sys.stderr,
        flush=True,
    )
    return {"batch_size": batch, "repeats": repeats, "variants": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=LARGE)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--small", action="store_true", help="also the shipped small models at batch 64")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = {
        "benchmark": "train_cost",
        "keeps": KEEPS,
        "environment": environment(torch.device("cpu")),
        "models": {},
    }
    runs = [(m, args.batch_size) for m in args.models] + ([(m, 64) for m in SMALL] if args.small else [])
    for name, batch in runs:
        results["models"][f"{name}@bs{batch}"] = run_model(name, batch, args.repeats)
        if args.out:
            write_json(args.out, results)
    print(dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
