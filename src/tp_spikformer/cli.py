"""The ``tp-spikformer`` command: models, eval, sweep, bench, visualize, train, finetune, demo.

Every command that produces results writes them to ``--out`` (JSON and CSV) beside ``config.json``, the
resolved configuration of the run. Bad arguments print a message that says what to do and exit with 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import torch

EXIT_USAGE = 2


class UsageError(Exception):
    """A user mistake: printed without a traceback, exit code 2."""


# -- shared options ----------------------------------------------------------------------------------


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", required=True, help="registered configuration (see `tp-spikformer models`)")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="official or tp-spikformer checkpoint file (loaded strictly)")
    src.add_argument("--pretrained", action="store_true", help="the weights shipped with the package")
    g.add_argument("--use-ema", action="store_true", help="load state_dict_ema from a timm checkpoint")
    g.add_argument("--trust-checkpoint", action="store_true",
                   help="allow full unpickling of the checkpoint (only for files you trust)")
    g.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override constructor arguments, e.g. T=2 proj_lif_mode=per_sample")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")


def _add_tp_args(p: argparse.ArgumentParser, multi: bool = False) -> None:
    g = p.add_argument_group("token pruning")
    if multi:
        g.add_argument("--keeps", nargs="+", default=["1.0", "0.9", "0.75", "0.5"],
                       help="keep schedules to sweep (fractions, 'official', or rule:values)")
        g.add_argument("--scorers", nargs="+", default=["official", "paper", "random"])
    else:
        g.add_argument("--keep", default="official",
                       help="fraction (0.5), 'official', or rule:values e.g. side_ratio:0.9,0.8 (default official)")
        g.add_argument("--scorer", default="official", help="official, paper, spatial, temporal, random, ...")
    g.add_argument("--window", type=int, default=None, help="spatial window (default: the family's official one)")
    g.add_argument("--mode", choices=["stop", "drop"], default="stop")
    g.add_argument("--cumulative", action="store_true", help="a stopped token stays stopped in later blocks")
    g.add_argument("--gather-order", choices=["auto", "score", "raster"], default="auto")


def _add_data_args(p: argparse.ArgumentParser, default: str = "shipped") -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default=default,
                   help="shipped (packaged Fashion-MNIST slice), fashion_mnist, mnist, cifar10, cifar100, "
                        "imagefolder, cifar10dvs, dvs128_gesture, npz:<path>, synthetic[:n]")
    g.add_argument("--data-root", default=None, help="dataset folder")
    g.add_argument("--split", default="test")
    g.add_argument("--limit", type=int, default=None, help="use only the first N samples")
    g.add_argument("--frames", type=int, default=None, help="T for event datasets (default: the model's)")
    g.add_argument("--batch-size", type=int, default=64)


def _add_measure_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("measurement")
    g.add_argument("--energy-batches", type=int, default=4, help="batches used to count SOPs/energy (0: skip)")
    g.add_argument("--energy-preset", default="45nm_fp32", help="45nm_fp32 (4.6/0.9 pJ), 45nm_fp16, 45nm_int8 ...")
    g.add_argument("--e-mac", type=float, default=None, help="pJ per MAC (overrides the preset)")
    g.add_argument("--e-ac", type=float, default=None, help="pJ per AC (overrides the preset)")
    g.add_argument("--first-layer", choices=["auto", "mac", "ac"], default="auto")
    g.add_argument("--integer-inputs", choices=["mac", "per_level", "per_event"], default="mac",
                   help="how non-binary integer inputs (sums of spikes) are charged")
    g.add_argument("--no-attention-products", action="store_true", help="do not charge attention products")
    g.add_argument("--no-speed", action="store_true", help="skip the throughput benchmark")
    g.add_argument("--speed-batch-size", type=int, default=32)
    g.add_argument("--repeats", type=int, default=5, help="timed rounds of the benchmark")


def _add_out_args(p: argparse.ArgumentParser, command: str) -> None:
    p.add_argument("--out", default=None, help=f"output folder (default: tp-spikformer-out/{command}-<time>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")


# -- building blocks -----------------------------------------------------------------------------


def _overrides(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _device(name: str | None) -> torch.device:
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return dev


def _load_model(args) -> torch.nn.Module:
    from .models import create_model, load_checkpoint

    try:
        model = create_model(args.model, pretrained=args.pretrained, **_overrides(args.set))
    except TypeError as err:
        raise UsageError(str(err)) from None
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint, use_ema=args.use_ema, trusted=args.trust_checkpoint)
    return model.to(_device(args.device)).eval()


def _load_data(args, model):
    from .data import load_dataset

    return load_dataset(args.dataset, split=args.split, root=args.data_root, data_cfg=model, limit=args.limit,
                        T=args.frames)


def _conventions(args):
    from .measure import energy_preset

    changes = {"first_layer": args.first_layer, "integer_inputs": args.integer_inputs,
               "count_products": not args.no_attention_products}
    if args.e_mac is not None:
        changes["e_mac_pj"] = args.e_mac
    if args.e_ac is not None:
        changes["e_ac_pj"] = args.e_ac
    return energy_preset(args.energy_preset, **changes)


def _tp_kwargs(args) -> dict[str, Any]:
    return {"window": args.window, "mode": args.mode, "cumulative": args.cumulative, "gather_order": args.gather_order}


def _out_dir(args, command: str) -> str:
    out = args.out or os.path.join("tp-spikformer-out", f"{command}-{time.strftime('%Y%m%d-%H%M%S')}")
    os.makedirs(out, exist_ok=True)
    return out


def _write_config(out: str, args, model=None, extra: dict | None = None) -> str:
    """``config.json``: the command's arguments and the resolved model configuration."""
    resolved = {"command": args.command, "arguments": {k: v for k, v in vars(args).items() if k != "func"},
                "torch": torch.__version__, "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    cfg = getattr(model, "config", None)
    if cfg is not None:
        resolved["model"] = {"name": cfg.name, "family": cfg.family, "variant": cfg.variant, "T": cfg.T,
                             "num_classes": cfg.num_classes, "kwargs": cfg.kwargs, "data": cfg.data.__dict__,
                             "source": cfg.source, "notes": cfg.notes}
    resolved.update(extra or {})
    path = os.path.join(out, "config.json")
    with open(path, "w") as f:
        json.dump(resolved, f, indent=2, default=str)
    return path


def _evaluate_kwargs(args, conventions) -> dict[str, Any]:
    return {"batch_size": args.batch_size, "limit": args.limit, "energy_batches": args.energy_batches or None,
            "conventions": conventions, "speed": not args.no_speed, "speed_batch_size": args.speed_batch_size,
            "speed_repeats": args.repeats, "progress": not args.no_progress, "tp_kwargs": _tp_kwargs(args),
            "dataset_name": args.dataset}


# -- commands ------------------------------------------------------------------------------------


def _cmd_models(args) -> int:
    from .models import get_model_config, list_models

    names = list_models(args.pattern, include_tiny=not args.official_only)
    if not names:
        raise UsageError(f"no model matches '{args.pattern}'; try `tp-spikformer models` for the full list")
    for name in names:
        cfg = get_model_config(name)
        weights = " [weights shipped]" if cfg.weights else ""
        print(f"{name:32s} {cfg.family:10s} {cfg.description}{weights}")
    return 0


def _cmd_eval(args) -> int:
    from .api import compare

    return _run_comparison(args, "results", lambda model, data, kw: compare(
        model, data, keep=args.keep, scorer=args.scorer, **kw))


def _cmd_sweep(args) -> int:
    from .api import sweep

    return _run_comparison(args, "sweep", lambda model, data, kw: sweep(
        model, data, keeps=args.keeps, scorers=args.scorers, **kw), plots=True)


def _run_comparison(args, stem: str, run, plots: bool = False) -> int:
    """Load model and data, run ``run(model, data, kwargs)``, print the table, write the files."""
    from .api import save_sweep_plots

    model = _load_model(args)
    data = _load_data(args, model)
    out = _out_dir(args, args.command)
    result = run(model, data, _evaluate_kwargs(args, _conventions(args)))
    print(result)
    result.to_json(os.path.join(out, f"{stem}.json"))
    result.to_csv(os.path.join(out, f"{stem}.csv"))
    written = [f"{stem}.json", f"{stem}.csv"]
    if plots:
        written += [os.path.basename(p) for p in save_sweep_plots(result, out)]
    _write_config(out, args, model)
    print(f"\nwrote {out}/: " + ", ".join(written + ["config.json"]))
    return 0


def _cmd_bench(args) -> int:
    from .api import bench

    model = _load_model(args)
    out = _out_dir(args, "bench")
    result = bench(model, keeps=args.keeps, scorer=args.scorer, batch_sizes=args.batch_sizes, repeats=args.repeats,
                   warmup=args.warmup, device=_device(args.device), **_tp_kwargs(args))
    print(result.to_markdown())
    result.to_json(os.path.join(out, "bench.json"))
    _write_bench_csv(result, os.path.join(out, "bench.csv"))
    _write_config(out, args, model)
    print(f"\nwrote {out}/bench.json, bench.csv, config.json")
    return 0


def _write_bench_csv(result, path: str) -> None:
    import csv

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["variant", "batch_size", "median_ms", "iqr_ms", "img_per_s", "speedup", "peak_memory_bytes"])
        for r in result.results:
            lat = r["latency_ms"]
            w.writerow([r["variant"], r["batch_size"], lat["median"], lat.get("iqr"), r["throughput_per_s"],
                        r["speedup"], r.get("peak_memory_bytes")])


def _cmd_visualize(args) -> int:
    from .api import visualize

    model = _load_model(args)
    out = _out_dir(args, "visualize")
    if args.image:
        from PIL import Image

        from .data.presets import build_eval_transform

        transform = build_eval_transform(model.config.data)
        images = torch.stack([transform(Image.open(p).convert("RGB")) for p in args.image])
        names = [os.path.splitext(os.path.basename(p))[0] + "_tokens" for p in args.image]
    else:
        data = _load_data(args, model)
        idx = args.indices
        if max(idx) >= len(data):
            raise UsageError(f"--indices {max(idx)} is out of range: the dataset has {len(data)} samples")
        images = torch.stack([data[i][0] for i in idx])
        names = [f"sample{i}_tokens" for i in idx]
    paths = visualize(model, images.to(_device(args.device)), out, keep=args.keep, scorer=args.scorer,
                      names=names, **_tp_kwargs(args))
    _write_config(out, args, model, {"outputs": paths})
    print("\n".join(paths))
    return 0


def _cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(out=args.out, quick=args.quick, progress=not args.no_progress)


# -- parser ----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tp-spikformer", description="Training-free token pruning (TP-Spikformer) "
                                "for pretrained spiking transformers.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    m = sub.add_parser("models", help="list registered model configurations")
    m.add_argument("pattern", nargs="?", default="*", help="shell-style pattern, e.g. 'qkformer*'")
    m.add_argument("--official-only", action="store_true", help="hide the tiny test configurations")
    m.set_defaults(func=_cmd_models)

    e = sub.add_parser("eval", help="dense vs pruned: top-1/top-5, SOPs, energy, throughput, memory")
    _add_model_args(e), _add_tp_args(e), _add_data_args(e), _add_measure_args(e), _add_out_args(e, "eval")
    e.set_defaults(func=_cmd_eval)

    s = sub.add_parser("sweep", help="sweep keep schedules and scorers; table + accuracy/energy/throughput plots")
    _add_model_args(s), _add_tp_args(s, multi=True), _add_data_args(s), _add_measure_args(s)
    _add_out_args(s, "sweep")
    s.set_defaults(func=_cmd_sweep)

    b = sub.add_parser("bench", help="latency/throughput/memory, dense and pruned interleaved")
    _add_model_args(b)
    g = b.add_argument_group("token pruning")
    g.add_argument("--keeps", nargs="+", default=["official"], help="keep schedules to time beside dense")
    g.add_argument("--scorer", default="official")
    g.add_argument("--window", type=int, default=None)
    g.add_argument("--mode", choices=["stop", "drop"], default="stop")
    g.add_argument("--cumulative", action="store_true")
    g.add_argument("--gather-order", choices=["auto", "score", "raster"], default="auto")
    b.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    b.add_argument("--repeats", type=int, default=10)
    b.add_argument("--warmup", type=int, default=2)
    _add_out_args(b, "bench")
    b.set_defaults(func=_cmd_bench)

    v = sub.add_parser("visualize", help="kept-token masks per block and the token-depth map over the input (PNG)")
    _add_model_args(v), _add_tp_args(v), _add_data_args(v)
    v.add_argument("--indices", nargs="+", type=int, default=[0, 1, 2, 3], help="dataset samples to draw")
    v.add_argument("--image", nargs="+", default=None, help="image files instead of dataset samples")
    _add_out_args(v, "visualize")
    v.set_defaults(func=_cmd_visualize)

    for name in ("train", "finetune"):  # listed for --help; main() hands them to tp_spikformer.train
        sub.add_parser(name, help=f"{name} a model, TP on or off (tp-spikformer {name} --help)", add_help=False)

    d = sub.add_parser("demo", help="the main job, offline: dense vs TP on the shipped models and data")
    d.add_argument("--out", default=None, help="output folder (default: tp-spikformer-demo)")
    d.add_argument("--quick", action="store_true", help="fewer images and repeats (a smoke run)")
    d.add_argument("--no-progress", action="store_true")
    d.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    d.set_defaults(func=_cmd_demo)
    return p


def _user_errors() -> tuple:
    """Exceptions that mean "the user asked for something impossible": message only, exit 2."""
    from .data.errors import DatasetFormatError, DatasetNotFoundError
    from .models.checkpoint import CheckpointError

    return (UsageError, ValueError, KeyError, TypeError, FileNotFoundError, CheckpointError,
            DatasetNotFoundError, DatasetFormatError)


def main(argv: list[str] | None = None) -> int:
    """Entry point. Set ``TP_SPIKFORMER_DEBUG=1`` to see tracebacks of user errors too."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("train", "finetune"):  # the training script parses its own options
        from . import train

        return train.main(argv[1:], finetune=argv[0] == "finetune")
    args = build_parser().parse_args(argv)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    try:
        return args.func(args)
    except _user_errors() as err:
        if os.environ.get("TP_SPIKFORMER_DEBUG"):
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"tp-spikformer {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
