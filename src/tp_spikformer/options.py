"""The one command-line vocabulary: argument groups shared by every ``tp-spikformer`` command and by the
``python -m tp_spikformer.train`` / ``.evaluate`` entry points, the KEY=VALUE parser, output folders, and
the error policy (a :class:`~tp_spikformer.errors.UsageError` prints its message and exits with 2; any
other exception is a bug and keeps its traceback).

Groups: model (``--model --checkpoint --pretrained --use-ema --trust-checkpoint --set
--official-arithmetic``), data (``--dataset --data-root --split --limit --frames --batch-size``), TP
(``--keep --scorer --window --mode --cumulative --gather-order``), output (``--out --no-progress``) and
runtime (``--device --threads``, and ``--optimize`` for the commands that run models for inference).
An option a run would not read is refused (:func:`refuse_unused`), never dropped.
Spellings of earlier releases (``--data``, ``--tp-keep``, ``--tp-scorer``, ``--tp-window``, ``--tp-mode``,
``--output``, ``--test-data``) are accepted as hidden aliases.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from .errors import UsageError

EXIT_USAGE = 2


# -- value types ------------------------------------------------------------------------------------------


def _int_at_least(minimum: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer {what}, got {value}")
        return value

    parse.__name__ = f"integer {what}"
    return parse


positive_int = _int_at_least(1, ">= 1")
non_negative_int = _int_at_least(0, ">= 0")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` strings -> dict. A value is read as JSON (``true``, ``2``, ``[1, 2]``, ``null``), else as
    a Python literal (``True``, ``(1, 2)``, ``None``), else kept as a string."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            try:
                out[key] = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                out[key] = value
    return out


def _alias(group, flag: str, dest: str, **kwargs) -> None:
    """A hidden spelling of an option (kept for one release)."""
    group.add_argument(flag, dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)


# -- argument groups ---------------------------------------------------------------------------------------


def add_model_args(
    p: argparse.ArgumentParser, *, pretrained_help: str = "the weights shipped with the package"
) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", required=True, help="registered configuration (see `tp-spikformer models`)")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="official or tp-spikformer checkpoint file (loaded strictly)")
    src.add_argument("--pretrained", action="store_true", help=pretrained_help)
    g.add_argument("--use-ema", action="store_true", help="load state_dict_ema from a timm checkpoint")
    g.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow full unpickling of the checkpoint (only for files you trust)",
    )
    g.add_argument(
        "--set",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="override constructor arguments, e.g. --set T=2 proj_lif_mode=per_sample",
    )
    g.add_argument(
        "--official-arithmetic",
        action="store_true",
        help="float32 outputs as the official code computes them: NCHW, no --optimize, the "
        "official_literal scorer by default (use it to reproduce a published number)",
    )


TASKS = ("classification", "segmentation", "detection", "tracking")


def add_task_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--task",
        choices=TASKS,
        default="classification",
        help="what the model does; selects the metrics, the datasets and the files written per variant",
    )


def add_data_args(
    p: argparse.ArgumentParser,
    default: str | None = "shipped",
    batch_size: int | None = 64,
    split: str | None = "test",
    limit: bool = True,
) -> None:
    """``split=None`` / ``limit=False`` leave those options out (training has its own)."""
    g = p.add_argument_group("data")
    g.add_argument(
        "--dataset",
        default=default,
        help="classification: shipped (packaged Fashion-MNIST slice), fashion_mnist, mnist, cifar10, cifar100, "
        "imagefolder, cifar10dvs, dvs128_gesture, scenes, npz:<path>, synthetic[:n]; --task segmentation: "
        "ade20k, scenes[:n]; detection: coco, scenes[:n]; tracking: fe108, visevent, felt, synthetic[:n]",
    )
    _alias(g, "--data", "dataset")
    g.add_argument("--data-root", default=None, help="dataset folder")
    if split is not None:
        g.add_argument("--split", default=split, help=f"dataset split (default {split})")
    if limit:
        g.add_argument("--limit", type=positive_int, default=None, help="use only the first N samples")
    g.add_argument(
        "--frames", type=positive_int, default=None, help="T for event datasets (default: the model's)"
    )
    g.add_argument("--batch-size", type=positive_int, default=batch_size)


def add_tp_args(
    p: argparse.ArgumentParser,
    *,
    multi: bool = False,
    default_keep: str | None = "official",
    title: str = "token pruning",
) -> None:
    from .pruning import scorer_names

    g = p.add_argument_group(title)
    names = scorer_names()
    if multi:
        g.add_argument(
            "--keeps",
            nargs="+",
            default=["1.0", "0.9", "0.75", "0.5"],
            help="keep schedules to sweep (fractions, 'official', rule:values or a schedule.json)",
        )
        g.add_argument(
            "--scorers",
            nargs="+",
            default=["official", "paper", "random"],
            choices=names,
            metavar="SCORER",
            help=f"scorers to sweep: {', '.join(names)}",
        )
    else:
        what = "(default: official)" if default_keep == "official" else "(default: no pruning)"
        g.add_argument(
            "--keep",
            default=default_keep,
            help=f"fraction (0.5), 'official', rule:values e.g. side_ratio:0.9,0.8, or a schedule.json {what}",
        )
        g.add_argument(
            "--scorer",
            default=None,
            choices=names,
            metavar="SCORER",
            help=f"one of {', '.join(names)} (`tp-spikformer scorers` says what each computes; "
            "default: official, or official_literal with --official-arithmetic)",
        )
        _alias(g, "--tp-keep", "keep")
        _alias(g, "--tp-scorer", "scorer")
    g.add_argument(
        "--window", type=positive_int, default=None, help="spatial window (default: the model's own)"
    )
    g.add_argument("--mode", choices=["stop", "drop"], default="stop")
    g.add_argument("--cumulative", action="store_true", help="a stopped token stays stopped in later blocks")
    g.add_argument("--gather-order", choices=["auto", "score", "raster"], default="auto")
    _alias(g, "--tp-window", "window", type=positive_int)
    _alias(g, "--tp-mode", "mode", choices=["stop", "drop"])


def add_output_args(p: argparse.ArgumentParser, command: str) -> None:
    g = p.add_argument_group("output")
    g.add_argument(
        "--out",
        default=None,
        help=f"output folder (default: a new tp-spikformer-out/{command}-<time> folder)",
    )
    _alias(g, "--output", "out")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_runtime_args(
    p: argparse.ArgumentParser, threads_default: int | None = None, *, optimize: bool = False
) -> None:
    """``optimize=True`` adds ``--optimize`` (commands that run models for inference; not training, which
    needs the BatchNorm statistics)."""
    g = p.add_argument_group("runtime")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    g.add_argument(
        "--threads",
        type=non_negative_int,
        default=threads_default,
        help="torch CPU threads (0: the cores divided among local processes)",
    )
    if optimize:
        g.add_argument(
            "--optimize",
            nargs="?",
            const="compile",
            default=None,
            choices=["compile", "plain"],
            help="inference fast path (tp_spikformer.optimize): BatchNorm folded, fused spiking "
            "kernels; 'compile' (default) builds the large-tensor kernels with torch.compile "
            "(cached on disk), 'plain' does not",
        )


def check_optimize(args: argparse.Namespace) -> None:
    """``--optimize`` and ``--official-arithmetic`` exclude each other (checked before any model is built)."""
    if getattr(args, "optimize", None) and getattr(args, "official_arithmetic", False):
        raise UsageError(
            "--optimize changes the float32 arithmetic that --official-arithmetic keeps; pass one of them"
        )


def maybe_optimize(model, args: argparse.Namespace):
    """Apply ``--optimize`` to a model (after its weights are loaded) and print what it did; returns it."""
    mode = getattr(args, "optimize", None)
    if mode is None:
        return model
    check_optimize(args)
    from .optimize import optimization_report, optimize

    optimize(model, compile=mode == "compile")
    print(optimization_report(model).summary(), file=sys.stderr)
    return model


# -- options that would do nothing ---------------------------------------------------------------------------


def flag(dest: str) -> str:
    """The command-line spelling of an option's ``dest`` (``use_ema`` -> ``--use-ema``)."""
    return "--" + dest.replace("_", "-")


def refuse_unused(args: argparse.Namespace, parser: argparse.ArgumentParser, dests, reason: str) -> None:
    """Refuse the options ``dests`` that were given (parsed value differs from ``parser``'s default): the run
    would not read them. ``reason`` follows "--x does nothing", e.g. "without --checkpoint; leave {them}
    out" (``{them}``: "it" or "them")."""
    given = [flag(d) for d in dests if getattr(args, d, None) != _default(parser, d)]
    if given:
        verb, them = ("does", "it") if len(given) == 1 else ("do", "them")
        raise UsageError(f"{', '.join(given)} {verb} nothing {reason.replace('{them}', them)}")


def _default(parser: argparse.ArgumentParser, dest: str) -> Any:
    default = parser.get_default(dest)  # a hidden alias's SUPPRESS stands for its option's None
    return None if default == argparse.SUPPRESS else default


def check_model_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """``--use-ema`` and ``--trust-checkpoint`` need ``--checkpoint``."""
    if not args.checkpoint:
        refuse_unused(
            args,
            parser,
            ["use_ema", "trust_checkpoint"],
            "without --checkpoint (they say how to read it); give --checkpoint FILE or leave {them} out",
        )


def check_data_args(
    args: argparse.Namespace, parser: argparse.ArgumentParser, task: str = "classification"
) -> None:
    """``--frames`` only for the event datasets; no ``--split`` for an ``npz:<path>`` file (one set)."""
    from .data.catalog import EVENT_DATASETS

    if task != "classification" or args.dataset not in EVENT_DATASETS:
        where = f"--task {task}" if task != "classification" else f"--dataset {args.dataset}"
        refuse_unused(
            args,
            parser,
            ["frames"],
            f"with {where}: it sets the frames T of the event datasets {' and '.join(EVENT_DATASETS)} "
            "(classification); leave it out (the model's own time steps: --set T=N)",
        )
    if task == "classification" and args.dataset.startswith("npz:"):
        refuse_unused(
            args,
            parser,
            ["split"],
            "with --dataset npz:<path>: the file is one set of images, with no splits; leave it out",
        )


def tp_options(args: argparse.Namespace) -> dict[str, Any]:
    """The TP options of parsed arguments, as keyword arguments of ``apply_tp`` (without keep/scorer)."""
    return {
        "window": args.window,
        "mode": args.mode,
        "cumulative": args.cumulative,
        "gather_order": args.gather_order,
    }


# -- output folders -----------------------------------------------------------------------------------------


def output_dir(out: str | None, command: str, root: str = "tp-spikformer-out") -> str:
    """Create and return the output folder, checked BEFORE any work is done.

    ``out=None``: a new folder ``<root>/<command>-<YYYYmmdd-HHMMSS>`` (``-2``, ``-3`` ... when that name is
    taken: two runs never share a default folder). A given ``out`` may exist (results files in it are
    replaced) but must be a writable folder.
    """
    if out is None:
        stem = os.path.join(root, f"{command}-{time.strftime('%Y%m%d-%H%M%S')}")
        os.makedirs(root, exist_ok=True)
        for n in range(1, 1000):
            path = stem if n == 1 else f"{stem}-{n}"
            try:
                os.mkdir(path)  # atomic: exactly one run gets each name
                return path
            except FileExistsError:
                continue
        raise UsageError(f"could not find a free output folder name under {root}; pass --out")
    out = os.path.expanduser(out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out} is a file; give a folder")
    parent = os.path.dirname(os.path.abspath(out))
    blocker = _first_file_on_path(parent)
    if blocker is not None:
        raise UsageError(f"--out {out}: {blocker} is a file, so no folder can be made under it")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as err:
        raise UsageError(f"--out {out}: cannot create the folder ({err.strerror})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out} is not writable; choose another folder")
    return out


def _first_file_on_path(path: str) -> str | None:
    while path and not os.path.exists(path):
        path = os.path.dirname(path)
    return path if path and not os.path.isdir(path) else None


# -- entry points -------------------------------------------------------------------------------------------


def run_main(fn: Callable[[], int], prog: str) -> int:
    """Run ``fn``; a :class:`UsageError` prints ``<prog>: error: <message>`` and returns 2 (with
    ``TP_SPIKFORMER_DEBUG=1`` it is re-raised); anything else propagates with its traceback."""
    try:
        return fn()
    except UsageError as err:
        if os.environ.get("TP_SPIKFORMER_DEBUG"):
            raise
        print(f"{prog}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
