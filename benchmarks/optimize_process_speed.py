"""Today's plain models against ``optimize(model)``, each in a process of its own, interleaved; JSON out.

``optimize_speed.py`` times plain and optimized models in one process, which measures what ``optimize``
does to a model. Its one process-wide part, the CPU allocator setting (``optimize/allocator.py``: glibc
keeps freed memory, so large activations stop costing page faults), would speed up the plain model in the
same process too, so that benchmark switches it off (``cpu_allocator=False``). This one measures what a
user gets: every configuration runs in a fresh process, the processes of one round in rotated order, for
``--rounds`` rounds:

* ``plain``: the model as it runs without ``optimize`` (the default allocator);
* ``plain_kept_memory``: the same with only the allocator setting (its share of the gain);
* ``optimized_no_allocator``: ``optimize(model, cpu_allocator=False)``, dense and TP (official k_values);
* ``optimized``: ``optimize(model)``, dense and TP.

Each process builds the model (random weights, BatchNorm statistics drawn so that neurons fire, seed 0),
runs one warm-up forward per variant, then ``--repeats`` forwards per variant, interleaved, and reports
wall and thread CPU times, page faults during the timed forwards and its peak resident size. Per
configuration: the median over all timed forwards of all rounds, and the spread of the per-process medians;
ratios of those medians and paired per round (median over rounds of the ratio within a round); the ideal
TP speed-up from counted MACs.

Usage: python benchmarks/optimize_process_speed.py [--models ...] [--batch-sizes 1 8] [--rounds 3]
       [--repeats 3] [--threads 1] [--no-compile] [--out file.json]
Targets (issue 17): optimized/plain dense >= 1.3x (sdt_v3_l), >= 1.2x (SDT-V1-8-512, QKFormer-10-512);
pruned/dense of the optimized model >= 0.9 x ideal.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from tp_spikformer.jsonio import print_and_write

DEFAULT_MODELS = ["sdt_v3_l", "sdt_8_512_imagenet", "qkformer_10_512_imagenet"]
CONFIGS = ("plain", "plain_kept_memory", "optimized_no_allocator", "optimized")
KEEP = "official"


def build(name: str, config: str, compile: bool) -> tuple[dict, dict]:
    """The variants of one configuration (``{"dense": model[, "tp": model]}``) and what was done."""
    import copy

    from tp_spikformer import create_model
    from tp_spikformer.measure.variants import make_neurons_fire
    from tp_spikformer.optimize import optimization_report, optimize
    from tp_spikformer.optimize.allocator import keep_freed_memory
    from tp_spikformer.pruning import apply_tp

    torch.manual_seed(0)
    model = create_model(name).eval()
    make_neurons_fire(model)
    info: dict = {}
    if config == "plain_kept_memory":
        info["cpu_allocator"] = keep_freed_memory().detail
    if not config.startswith("optimized"):
        return {"dense": model}, info
    t0 = time.perf_counter()
    optimize(model, compile=compile, cpu_allocator=config == "optimized")
    info["optimize_seconds"] = round(time.perf_counter() - t0, 3)
    info["cpu_allocator"] = optimization_report(model).cpu_allocator
    info["compile_seconds"] = optimization_report(model).compile_seconds
    pruned = copy.deepcopy(model)
    apply_tp(pruned, keep=KEEP, scorer="official")
    return {"dense": model, "tp": pruned}, info


def child(args) -> int:
    """One configuration in this process: prints its timings as JSON."""
    from tp_spikformer.measure.benchmark import default_input

    torch.set_num_threads(args.threads)
    variants, info = build(args.model, args.config, not args.no_compile)
    x = default_input(variants["dense"], args.batch_size, torch.Generator().manual_seed(2))
    wall = {v: [] for v in variants}
    cpu = {v: [] for v in variants}
    with torch.inference_mode():
        for model in variants.values():
            model(x)
        faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for i in range(args.repeats):
            names = list(variants)[i % len(variants) :] + list(variants)[: i % len(variants)]
            for v in names:
                t0, c0 = time.perf_counter(), time.thread_time()
                variants[v](x)
                cpu[v].append(1e3 * (time.thread_time() - c0))
                wall[v].append(1e3 * (time.perf_counter() - t0))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "wall_ms": wall,
        "cpu_ms": cpu,
        "page_faults_per_forward": round((usage.ru_minflt - faults0) / (args.repeats * len(variants))),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        **info,
    }
    print(json.dumps(result))
    return 0


def run_child(model: str, config: str, batch_size: int, args) -> dict:
    cmd = [sys.executable, __file__, "--child", "--model", model, "--config", config]
    cmd += ["--batch-size", str(batch_size), "--repeats", str(args.repeats), "--threads", str(args.threads)]
    cmd += ["--no-compile"] if args.no_compile else []
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def ideal_speedup(name: str) -> float:
    """Dense / TP counted MACs per image at batch 1 (the plain model; optimize does not change MACs)."""
    import copy

    from tp_spikformer import create_model
    from tp_spikformer.measure import count_ops
    from tp_spikformer.measure.benchmark import default_input
    from tp_spikformer.measure.variants import make_neurons_fire
    from tp_spikformer.pruning import apply_tp

    torch.manual_seed(0)
    model = create_model(name).eval()
    make_neurons_fire(model)
    pruned = copy.deepcopy(model)
    apply_tp(pruned, keep=KEEP, scorer="official")
    x = default_input(model, 1, torch.Generator().manual_seed(1))
    return count_ops(model, x).dense_macs() / count_ops(pruned, x).dense_macs()


def summarize(runs: list[dict], key: str, variant: str) -> dict:
    pooled = [t for r in runs for t in r[key][variant]]
    per_process = [statistics.median(r[key][variant]) for r in runs]
    return {
        "median": round(statistics.median(pooled), 2),
        "per_process_medians": [round(t, 2) for t in per_process],
    }


def case(name: str, batch_size: int, args) -> dict:
    runs = {c: [] for c in CONFIGS}
    for r in range(args.rounds):
        for config in CONFIGS[r % len(CONFIGS) :] + CONFIGS[: r % len(CONFIGS)]:
            runs[config].append(run_child(name, config, batch_size, args))
            print(f"[optimize_process_speed] {name} b{batch_size} round {r + 1} {config}", file=sys.stderr)
    out: dict = {"batch_size": batch_size, "configs": {}}
    for config, rs in runs.items():
        variants = list(rs[0]["wall_ms"])
        out["configs"][config] = {
            "wall_ms": {v: summarize(rs, "wall_ms", v) for v in variants},
            "cpu_ms": {v: summarize(rs, "cpu_ms", v) for v in variants},
            "page_faults_per_forward": [r["page_faults_per_forward"] for r in rs],
            "peak_rss_mib": [r["peak_rss_mib"] for r in rs],
            **{k: rs[0][k] for k in ("cpu_allocator", "optimize_seconds", "compile_seconds") if k in rs[0]},
        }
    c = out["configs"]

    def ratio(a: str, b: str, va: str = "dense", vb: str = "dense", key: str = "wall_ms") -> float:
        return round(c[a][key][va]["median"] / c[b][key][vb]["median"], 4)

    def paired(a: str, b: str) -> float:
        pa, pb = (
            c[a]["wall_ms"]["dense"]["per_process_medians"],
            c[b]["wall_ms"]["dense"]["per_process_medians"],
        )
        return round(statistics.median(x / y for x, y in zip(pa, pb)), 4)

    ideal = args.ideal[name]
    out["speedup_over_plain"] = {
        config: {
            "wall": ratio("plain", config),
            "paired": paired("plain", config),
            "cpu": ratio("plain", config, key="cpu_ms"),
        }
        for config in CONFIGS[1:]
    }
    out["pruned_over_dense"] = {
        config: ratio(config, config, "dense", "tp") for config in ("optimized_no_allocator", "optimized")
    }
    out["ideal_from_macs"] = round(ideal, 4)
    out["optimized_pruned_realised_over_ideal"] = round(out["pruned_over_dense"]["optimized"] / ideal, 4)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3, help="timed forwards per variant and process")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--out", default=None)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--config", choices=CONFIGS, help=argparse.SUPPRESS)
    p.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    torch.set_num_threads(args.threads)
    args.ideal = {name: ideal_speedup(name) for name in args.models}
    result = {
        "benchmark": "optimize_process_speed",
        "torch": torch.__version__,
        "threads": args.threads,
        "rounds": args.rounds,
        "repeats": args.repeats,
        "compile": not args.no_compile,
        "keep": KEEP,
        "command": " ".join(
            ["python benchmarks/optimize_process_speed.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "models": {name: [case(name, bs, args) for bs in args.batch_sizes] for name in args.models},
    }
    print_and_write(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
