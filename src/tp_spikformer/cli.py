"""The ``tp-spikformer`` command: models, scorers, eval, sweep, bench, calibrate, visualize, train, finetune,
demo, make-scenes.

Every command speaks one vocabulary (``tp_spikformer.options``). Commands that produce results write them to
``--out`` (default: a new ``tp-spikformer-out/<command>-<time>`` folder) as JSON and CSV beside
``config.json``, the resolved configuration of the run. A bad argument prints a message that says what to
do and exits with 2 (a :class:`~tp_spikformer.errors.UsageError`); any other error is a bug and shows its
traceback (exit 1). ``TP_SPIKFORMER_DEBUG=1`` shows tracebacks of usage errors too.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time

import torch

from . import options
from .errors import UsageError

PROG = "tp-spikformer"


# -- building blocks -----------------------------------------------------------------------------


def _load_model(args) -> torch.nn.Module:
    from .models import create_model, load_checkpoint
    from .runtime import resolve_device

    device = resolve_device(args.device)
    options.check_optimize(args)
    model = create_model(
        args.model,
        pretrained=args.pretrained,
        official_arithmetic=args.official_arithmetic,
        **options.parse_overrides(args.set),
    )
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint, use_ema=args.use_ema, trusted=args.trust_checkpoint)
    return options.maybe_optimize(model.to(device).eval(), args)


def _load_data(args, model):
    task = getattr(args, "task", "classification")
    if task != "classification":
        from .api import task_spec

        spec = task_spec(task)
        return spec.load_dataset(
            args.dataset, root=args.data_root, split=args.split, model=model, limit=args.limit
        )
    from .data import load_dataset

    return load_dataset(
        args.dataset, split=args.split, root=args.data_root, data_cfg=model, limit=args.limit, T=args.frames
    )


def _refuse_unused(args) -> None:
    """Refuse the options this run would not read (eval, sweep, bench, calibrate, visualize), before any
    work: what is given is applied or refused, never dropped."""
    p = args.parser
    options.check_model_args(args, p)
    if args.command == "bench":
        return
    if getattr(args, "image", None):
        options.refuse_unused(
            args,
            p,
            ["dataset", "data_root", "split", "limit", "frames", "indices"],
            "with --image (the images are the files given); leave {them} out, or drop --image to draw "
            "dataset samples",
        )
        return
    options.check_data_args(args, p, getattr(args, "task", "classification"))
    if args.command in ("eval", "sweep"):
        _refuse_unused_measurements(args, p)
    elif args.command == "calibrate":
        if args.search_scorers and args.scorer is not None:
            raise UsageError(
                "--scorer and --search-scorers exclude each other (--search-scorers searches among the "
                "scorers it lists); put the --scorer one in that list, or drop --search-scorers"
            )
        if args.metric != "latency":
            options.refuse_unused(
                args, p, ["latency_repeats"], "without --metric latency (only latency is timed); leave it out"
            )


def _refuse_unused_measurements(args, p: argparse.ArgumentParser) -> None:
    """eval/sweep: speed options without a benchmark, energy options without an energy count."""
    from .api import task_spec

    if task_spec(args.task).timed_by_evaluate:
        options.refuse_unused(
            args,
            p,
            ["no_speed", "speed_batch_size", "repeats"],
            f"with --task {args.task}: its own loop measures the frames per second; leave {{them}} out",
        )
    elif args.no_speed:
        options.refuse_unused(
            args,
            p,
            ["speed_batch_size", "repeats"],
            "with --no-speed (no throughput benchmark runs); drop --no-speed or leave {them} out",
        )
    if args.energy_batches == 0:
        options.refuse_unused(
            args,
            p,
            ["energy_preset", "e_mac", "e_ac", "first_layer", "integer_inputs", "no_attention_products"],
            "with --energy-batches 0 (no SOPs or energy are counted); give --energy-batches N or leave "
            "{them} out",
        )


def _add_measure_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("measurement")
    g.add_argument(
        "--energy-batches",
        type=options.non_negative_int,
        default=4,
        help="batches used to count SOPs/energy (0: skip)",
    )
    g.add_argument(
        "--energy-preset", default="45nm_fp32", help="45nm_fp32 (4.6/0.9 pJ), 45nm_fp16, 45nm_int8 ..."
    )
    g.add_argument(
        "--e-mac", type=options.positive_float, default=None, help="pJ per MAC (overrides the preset)"
    )
    g.add_argument(
        "--e-ac", type=options.positive_float, default=None, help="pJ per AC (overrides the preset)"
    )
    g.add_argument("--first-layer", choices=["auto", "mac", "ac"], default="auto")
    g.add_argument(
        "--integer-inputs",
        choices=["mac", "per_level", "per_event"],
        default="mac",
        help="how non-binary integer inputs (sums of spikes) are charged",
    )
    g.add_argument("--no-attention-products", action="store_true", help="do not charge attention products")
    g.add_argument("--no-speed", action="store_true", help="skip the throughput benchmark")
    g.add_argument("--speed-batch-size", type=options.positive_int, default=32)
    g.add_argument("--repeats", type=options.positive_int, default=5, help="timed rounds of the benchmark")


def _add_calibrate_args(p: argparse.ArgumentParser) -> None:
    from .calibrate import DEFAULT_LEVELS, OBJECTIVES
    from .pruning import scorer_names

    g = p.add_argument_group("search")
    g.add_argument(
        "--budget",
        type=float,
        required=True,
        help="allowed cost as a fraction of the dense model's (0 < budget <= 1), e.g. 0.5",
    )
    g.add_argument(
        "--metric",
        choices=["macs", "sops", "latency"],
        default="macs",
        help="counted MACs or SOPs per image, or measured latency (noisy)",
    )
    g.add_argument(
        "--objective",
        choices=list(OBJECTIVES),
        default=None,
        help="accuracy (labelled data; segmentation: pixel accuracy), logits_kl or features (unlabelled: "
        "closeness to the dense model); default: accuracy, features for detection",
    )
    g.add_argument(
        "--calibration-size",
        type=options.positive_int,
        default=256,
        help="calibration samples drawn (seeded) from the dataset (default 256)",
    )
    g.add_argument("--seed", type=options.non_negative_int, default=0)
    g.add_argument(
        "--levels",
        type=float,
        nargs="+",
        default=list(DEFAULT_LEVELS),
        help="keep fractions a block may take (default 1.0 0.9 ... 0.1)",
    )
    g.add_argument("--refine-rounds", type=options.non_negative_int, default=3)
    g.add_argument(
        "--search-scorers",
        nargs="+",
        default=None,
        choices=scorer_names(),
        metavar="SCORER",
        help="search the scorer too, among these (default: --scorer only)",
    )
    g.add_argument(
        "--latency-repeats",
        type=options.positive_int,
        default=15,
        help="timing rounds per latency measurement (--metric latency)",
    )


def _conventions(args):
    from .measure import energy_preset

    changes = {
        "first_layer": args.first_layer,
        "integer_inputs": args.integer_inputs,
        "count_products": not args.no_attention_products,
    }
    if args.e_mac is not None:
        changes["e_mac_pj"] = args.e_mac
    if args.e_ac is not None:
        changes["e_ac_pj"] = args.e_ac
    return energy_preset(args.energy_preset, **changes)


def _write_config(out: str, args, model=None, extra: dict | None = None) -> str:
    """``config.json``: the command's arguments and the resolved model configuration."""
    from .jsonio import write_json

    resolved = {
        "command": args.command,
        "arguments": {k: v for k, v in vars(args).items() if k not in ("func", "argv", "parser")},
        "torch": torch.__version__,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    cfg = getattr(model, "config", None)
    report = getattr(model, "__dict__", {}).get("_opt_report")
    if report is not None:
        resolved["optimize"] = report.to_dict()
    if cfg is not None:
        resolved["model"] = {
            "name": cfg.name,
            "family": cfg.family,
            "variant": cfg.variant,
            "T": cfg.T,
            "num_classes": cfg.num_classes,
            "kwargs": cfg.kwargs,
            "data": cfg.data.__dict__,
            "source": cfg.source,
            "notes": cfg.notes,
        }
    resolved.update(extra or {})
    return write_json(os.path.join(out, "config.json"), resolved)


# -- commands ------------------------------------------------------------------------------------


def _cmd_models(args) -> int:
    from .models import get_model_config, list_models

    names = list_models(args.pattern, include_tiny=not args.official_only)
    if not names:
        raise UsageError(f"no model matches '{args.pattern}'; try `tp-spikformer models` for the full list")
    for name in names:
        cfg = get_model_config(name)
        weights = " [weights shipped]" if cfg.weights else ""
        task = "" if cfg.task == "classification" else f" [{cfg.task}]"
        print(f"{name:32s} {cfg.family:10s} {cfg.description}{task}{weights}")
    return 0


def _cmd_scorers(args) -> int:
    from .pruning import describe_scorers

    width = max(len(n) for n, _ in describe_scorers())
    for name, line in describe_scorers():
        print(f"{name:{width}s}  {line}")
    return 0


def _cmd_eval(args) -> int:
    from .api import compare

    return _run_comparison(
        args,
        "results",
        lambda model, data, kw: compare(model, data, keep=args.keep, scorer=args.scorer, **kw),
    )


def _cmd_sweep(args) -> int:
    from .api import sweep

    return _run_comparison(
        args,
        "sweep",
        lambda model, data, kw: sweep(model, data, keeps=args.keeps, scorers=args.scorers, **kw),
        plots=True,
    )


def _run_comparison(args, stem: str, run, plots: bool = False) -> int:
    """Check the output folder, load model and data, run ``run(model, data, kwargs)``, write the files."""
    from .api import save_sweep_plots

    _refuse_unused(args)
    out = options.output_dir(args.out, args.command)
    model = _load_model(args)
    data = _load_data(args, model)
    _check_task(args, model)
    kwargs = {
        "task": args.task,
        "out_dir": out if args.task != "classification" else None,
        "batch_size": args.batch_size,
        "limit": args.limit,
        "energy_batches": args.energy_batches or None,
        "conventions": _conventions(args),
        "speed": not args.no_speed,
        "speed_batch_size": args.speed_batch_size,
        "speed_repeats": args.repeats,
        "progress": not args.no_progress,
        "tp_kwargs": options.tp_options(args),
        "dataset_name": args.dataset,
    }
    result = run(model, data, kwargs)
    print(result)
    result.to_json(os.path.join(out, f"{stem}.json"))
    result.to_csv(os.path.join(out, f"{stem}.csv"))
    written = [f"{stem}.json", f"{stem}.csv"]
    if plots:
        written += [os.path.basename(p) for p in save_sweep_plots(result, out)]
    _write_config(out, args, model)
    print(f"\nwrote {out}/: " + ", ".join(written + ["config.json"]))
    return 0


def _check_task(args, model) -> None:
    """The model must be one of the task's (a detector for --task detection, ...)."""
    task = getattr(getattr(model, "config", None), "task", "classification")
    if task != args.task:
        raise UsageError(
            f"--model {args.model} is a {task} model; run it with --task {task} (or pick a "
            f"{args.task} model: `tp-spikformer models` marks each model's task)"
        )


def _cmd_bench(args) -> int:
    from .api import bench
    from .runtime import resolve_device

    _refuse_unused(args)
    out = options.output_dir(args.out, "bench")
    model = _load_model(args)
    result = bench(
        model,
        keeps=args.keeps,
        scorers=args.scorers,
        batch_sizes=args.batch_sizes,
        repeats=args.repeats,
        warmup=args.warmup,
        device=resolve_device(args.device),
        **options.tp_options(args),
    )
    print(result.to_markdown())
    result.to_json(os.path.join(out, "bench.json"))
    with open(os.path.join(out, "bench.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["variant", "batch_size", "median_ms", "iqr_ms", "img_per_s", "speedup", "peak_memory_bytes"]
        )
        for r in result.results:
            lat = r["latency_ms"]
            w.writerow(
                [
                    r["variant"],
                    r["batch_size"],
                    lat["median"],
                    lat.get("iqr"),
                    r["throughput_per_s"],
                    r["speedup"],
                    r.get("peak_memory_bytes"),
                ]
            )
    _write_config(out, args, model)
    print(f"\nwrote {out}/bench.json, bench.csv, config.json")
    return 0


def _cmd_calibrate(args) -> int:
    from .calibrate import calibrate
    from .runtime import resolve_device

    if args.keep is not None:
        raise UsageError(
            "calibrate searches the keep schedule, so --keep is not used; give --budget (a fraction of "
            "the dense model's cost) and apply the result with --keep <out>/schedule.json"
        )
    _refuse_unused(args)
    spec = None
    if args.task != "classification":
        from .api import task_spec

        spec = task_spec(args.task)
        if spec.calibration_inputs is None:
            raise UsageError(
                f"calibrate has no schedule search for --task {args.task}; it supports classification, "
                "segmentation and detection"
            )
    out = options.output_dir(args.out, "calibrate")
    model = _load_model(args)
    _check_task(args, model)
    data = _load_data(args, model)
    objective, size = args.objective or "accuracy", args.calibration_size
    if spec is not None:
        # a task model takes normalised (letterboxed) tensors: the task prepares the drawn images
        from .calibrate.samples import pick_indices

        n = len(data) if args.limit is None else min(args.limit, len(data))  # --limit: the first n
        data = spec.calibration_inputs(model, data, pick_indices(n, size, args.seed))
        objective, size = args.objective or spec.calibration_objective, None
    result = calibrate(
        model,
        data,
        budget=args.budget,
        metric=args.metric,
        objective=objective,
        scorers=args.search_scorers or args.scorer or "official",
        calibration_size=size,
        batch_size=args.batch_size,
        seed=args.seed,
        levels=args.levels,
        refine_rounds=args.refine_rounds,
        latency_repeats=args.latency_repeats,
        device=resolve_device(args.device),
        verbose=False,
        **options.tp_options(args),
    )
    print(result)
    result.save(os.path.join(out, "schedule.json"))
    result.save_report(os.path.join(out, "calibration_report.json"))
    _write_config(out, args, model)
    print(f"\nwrote {out}/: schedule.json, calibration_report.json, config.json")
    print(f"apply it with: --keep {os.path.join(out, 'schedule.json')} --scorer {result.scorer}")
    return 0


def _cmd_visualize(args) -> int:
    from .api import visualize

    _refuse_unused(args)
    out = options.output_dir(args.out, "visualize")
    model = _load_model(args)
    if args.image:
        from .data import pil_loader
        from .data.presets import build_eval_transform

        transform = build_eval_transform(model.config.data)
        images = torch.stack([transform(pil_loader(p)) for p in args.image])
        names = [os.path.splitext(os.path.basename(p))[0] + "_tokens" for p in args.image]
    else:
        data = _load_data(args, model)
        bad = [i for i in args.indices if i >= len(data)]
        if bad:
            raise UsageError(
                f"--indices {bad[0]} is out of range: the dataset has {len(data)} samples (0..{len(data) - 1})"
            )
        images = torch.stack([data[i][0] for i in args.indices])
        names = [f"sample{i}_tokens" for i in args.indices]
    device = next(model.parameters()).device
    paths = visualize(
        model,
        images.to(device),
        out,
        keep=args.keep,
        scorer=args.scorer,
        names=names,
        **options.tp_options(args),
    )
    _write_config(out, args, model, {"outputs": paths})
    print("\n".join(paths))
    return 0


def _cmd_train(args) -> int:
    from .train import finalize, run_args

    argv = args.argv[1:]
    return run_args(finalize(args, args.command == "finetune", f"{PROG} {args.command}", argv), argv=argv)


def _cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(out=args.out, quick=args.quick, progress=not args.no_progress)


def _cmd_make_scenes(args) -> int:
    from .data.scene_writers import make_scenes
    from .jsonio import dumps

    out = options.output_dir(args.out, "make-scenes")
    h, w = _size(args.size)
    summary = make_scenes(
        out,
        formats=tuple(args.formats),
        train=args.train,
        val=args.val,
        height=h,
        width=w,
        min_objects=args.min_objects,
        max_objects=args.max_objects,
        seed=args.seed,
        source=args.source,
        root=args.data_root,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    print(dumps(summary))
    return 0


def _cmd_make_tracking(args) -> int:
    from .data.tracking_synth import make_tracking_dataset
    from .jsonio import dumps

    out = options.output_dir(args.out, "make-tracking")
    h, w = _size(args.size)
    summary = make_tracking_dataset(
        out,
        train=args.train,
        test=args.test,
        frames=args.frames,
        height=h,
        width=w,
        seed=args.seed,
        source=args.source,
        root=args.data_root,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        event_format=args.event_format,
    )
    print(dumps(summary))
    return 0


def _size(text: str) -> tuple[int, int]:
    """``128`` or ``96x160`` (height x width)."""
    parts = text.lower().split("x")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        raise UsageError(f"--size {text!r}: give N or HxW, e.g. 128 or 96x160") from None
    if len(sizes) not in (1, 2) or min(sizes) < 8:
        raise UsageError(f"--size {text!r}: give N or HxW with sides >= 8, e.g. 128 or 96x160")
    return (sizes[0], sizes[-1])


# -- parser ----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from . import train

    p = argparse.ArgumentParser(
        prog=PROG,
        description="Training-free token pruning (TP-Spikformer) for pretrained spiking transformers.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    m = sub.add_parser("models", help="list registered model configurations")
    m.add_argument("pattern", nargs="?", default="*", help="shell-style pattern, e.g. 'qkformer*'")
    m.add_argument("--official-only", action="store_true", help="hide the tiny test configurations")
    m.set_defaults(func=_cmd_models)

    s = sub.add_parser("scorers", help="the token scorers and what each computes")
    s.set_defaults(func=_cmd_scorers)

    for name, multi, func, text in (
        ("eval", False, _cmd_eval, "dense vs pruned: top-1/top-5, SOPs, energy, throughput, memory"),
        (
            "sweep",
            True,
            _cmd_sweep,
            "sweep keep schedules and scorers; table + accuracy/energy/throughput plots",
        ),
    ):
        e = sub.add_parser(name, help=text)
        (
            options.add_model_args(e),
            options.add_task_arg(e),
            options.add_tp_args(e, multi=multi),
            options.add_data_args(e),
        )
        _add_measure_args(e), options.add_output_args(e, name), options.add_runtime_args(e, optimize=True)
        e.set_defaults(func=func, parser=e)

    b = sub.add_parser("bench", help="latency/throughput/memory, dense and pruned interleaved")
    options.add_model_args(b), options.add_tp_args(b, multi=True)
    b.add_argument("--batch-sizes", nargs="+", type=options.positive_int, default=[1, 8])
    b.add_argument("--repeats", type=options.positive_int, default=10)
    b.add_argument("--warmup", type=options.non_negative_int, default=2)
    options.add_output_args(b, "bench"), options.add_runtime_args(b, optimize=True)
    b.set_defaults(func=_cmd_bench, keeps=["official"], scorers=["official"], parser=b)

    c = sub.add_parser(
        "calibrate",
        help="search per-block keep fractions for a MACs/SOPs/latency budget; writes "
        "schedule.json for --keep",
    )
    options.add_model_args(c)
    options.add_task_arg(c)
    options.add_tp_args(c, default_keep=None, title="token pruning (the keep schedule is searched)")
    options.add_data_args(c, split="train")
    _add_calibrate_args(c)
    options.add_output_args(c, "calibrate"), options.add_runtime_args(c)
    c.set_defaults(func=_cmd_calibrate, parser=c)

    v = sub.add_parser(
        "visualize", help="kept-token masks per block and the token-depth map over the input (PNG)"
    )
    options.add_model_args(v), options.add_tp_args(v), options.add_data_args(v)
    v.add_argument(
        "--indices",
        nargs="+",
        type=options.non_negative_int,
        default=[0, 1, 2, 3],
        help="dataset samples to draw",
    )
    v.add_argument("--image", nargs="+", default=None, help="image files instead of dataset samples")
    options.add_output_args(v, "visualize"), options.add_runtime_args(v, optimize=True)
    v.set_defaults(func=_cmd_visualize, parser=v)

    for name in ("train", "finetune"):
        t = sub.add_parser(
            name, help=f"{name} a model, TP on or off", formatter_class=argparse.ArgumentDefaultsHelpFormatter
        )
        train.add_arguments(t, finetune=name == "finetune")
        t.set_defaults(func=_cmd_train)

    d = sub.add_parser("demo", help="the main job, offline: dense vs TP on the shipped models and data")
    d.add_argument("--out", default=None, help="output folder (default: tp-spikformer-demo)")
    d.add_argument("--quick", action="store_true", help="fewer images and repeats (a smoke run)")
    d.add_argument("--no-progress", action="store_true")
    d.add_argument(
        "--threads",
        type=options.non_negative_int,
        default=None,
        help="torch CPU threads (0: the cores divided among local processes; default: torch's)",
    )
    d.set_defaults(func=_cmd_demo)

    ms = sub.add_parser(
        "make-scenes",
        help="generate scenes of Fashion-MNIST objects on textured backgrounds "
        "(ADE20K, COCO and classification layouts)",
    )
    ms.add_argument(
        "--formats",
        nargs="+",
        default=["ade20k", "coco", "classification"],
        choices=["ade20k", "coco", "classification"],
    )
    ms.add_argument("--train", type=options.non_negative_int, default=2000, help="training scenes")
    ms.add_argument("--val", type=options.non_negative_int, default=500, help="validation scenes")
    ms.add_argument("--size", default="128", help="canvas size N or HxW (default 128)")
    ms.add_argument("--min-objects", type=options.positive_int, default=1)
    ms.add_argument("--max-objects", type=options.positive_int, default=4)
    ms.add_argument("--seed", type=options.non_negative_int, default=0)
    ms.add_argument(
        "--source",
        choices=["idx", "shipped"],
        default=None,
        help="Fashion-MNIST objects: the IDX files (default; train split for training scenes, test "
        "split for validation) or the shipped 2,000-image slice (offline)",
    )
    ms.add_argument("--data-root", default=None, help="folder of the Fashion-MNIST IDX files")
    ms.add_argument("--overwrite", action="store_true", help="replace scenes already in --out")
    options.add_output_args(ms, "make-scenes")
    ms.set_defaults(func=_cmd_make_scenes)

    mt = sub.add_parser(
        "make-tracking",
        help="generate event-camera tracking sequences (ESIM-style events of moving "
        "Fashion-MNIST objects over panning textures) in the FE108 layout",
    )
    mt.add_argument("--train", type=options.non_negative_int, default=300, help="training sequences")
    mt.add_argument("--test", type=options.non_negative_int, default=40, help="test sequences")
    mt.add_argument("--frames", type=options.positive_int, default=48, help="annotated frames per sequence")
    mt.add_argument("--size", default="128", help="sensor size N or HxW (default 128)")
    mt.add_argument("--seed", type=options.non_negative_int, default=0)
    mt.add_argument(
        "--source",
        choices=["idx", "shipped"],
        default=None,
        help="Fashion-MNIST objects: IDX files (default) or the shipped slice (offline)",
    )
    mt.add_argument("--data-root", default=None, help="folder of the Fashion-MNIST IDX files")
    mt.add_argument("--event-format", choices=["npz", "aedat4"], default="npz")
    mt.add_argument("--overwrite", action="store_true", help="replace sequences already in --out")
    options.add_output_args(mt, "make-tracking")
    mt.set_defaults(func=_cmd_make_tracking)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``tp-spikformer``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv

    def run() -> int:
        threads = getattr(args, "threads", None)
        if threads is not None and args.command not in ("train", "finetune"):  # training sets its own
            from .runtime import set_threads  # 0: the cores divided among local processes

            set_threads(threads)
        return args.func(args)

    return options.run_main(run, f"{PROG} {args.command}")


if __name__ == "__main__":
    raise SystemExit(main())
