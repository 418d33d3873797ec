"""``tp-spikformer train`` / ``finetune`` and ``python -m tp_spikformer.train``: train or fine-tune a spiking
transformer, optionally TP-pruned, single process or ``torchrun`` DDP.

    tp-spikformer train --model sdt_fmnist --epochs 3 --out runs/sdt_fmnist
    torchrun --nproc_per_node 2 -m tp_spikformer.train --model sdt_fmnist --epochs 3 --out runs/x
    tp-spikformer finetune --model sdt_fmnist --pretrained --keep 0.5 --scorer official --epochs 1

The options are the shared vocabulary of every command (``tp_spikformer.options``) plus the optimisation
and run groups below; the loop itself is :mod:`tp_spikformer.training.classification`.
"""

from __future__ import annotations

import argparse
import sys

from . import options
from .training import export_weights, run  # noqa: F401  (the public entry points of training)

__all__ = ["add_arguments", "build_parser", "export_weights", "main", "parse_args", "run"]


def add_arguments(p: argparse.ArgumentParser, finetune: bool = False) -> None:
    """The options of ``train`` (``finetune=True``: fine-tuning defaults: lr 1e-4, no warm-up, 1 epoch,
    the shipped weights unless ``--checkpoint`` is given)."""
    options.add_model_args(p)
    options.add_task_arg(p)
    p.add_argument(
        "--finetune",
        action="store_true",
        default=finetune,
        help="fine-tuning defaults (lr 1e-4, no warm-up, 1 epoch, --pretrained if no --checkpoint)",
    )
    p.add_argument(
        "--init-from",
        default=None,
        metavar="WEIGHTS",
        help="start from a classifier's weights: a file or a shipped model's name (e.g. sdt_fmnist); "
        "a grey stem is repeated over RGB; for --task models it initialises the backbone",
    )
    p.add_argument(
        "--unused-params",
        default="freeze",
        choices=["freeze", "find", "error"],
        help="parameters without gradient: freeze them, let DDP find them each step, or fail",
    )
    options.add_tp_args(
        p, default_keep=None, title="token pruning (applied before DDP: the pruned model is trained)"
    )
    options.add_data_args(p, default=None, batch_size=None, split=None, limit=False)
    d = p.add_argument_group("training data")
    d.add_argument(
        "--test-dataset",
        default=None,
        help="evaluation set if not the --dataset test split (e.g. shipped or npz:<path>)",
    )
    d.add_argument("--test-data", dest="test_dataset", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    d.add_argument(
        "--train-limit", type=options.positive_int, default=None, help="first N training images only"
    )
    d.add_argument("--test-limit", type=options.positive_int, default=None, help="first N test images only")
    d.add_argument("--augment", default="crop-flip", choices=["crop-flip", "crop", "flip", "none"])
    d.add_argument(
        "--pad",
        type=options.non_negative_int,
        default=None,
        help="random-crop zero padding (default: input side // 16)",
    )
    d.add_argument("--hflip", type=float, default=0.5)
    o = p.add_argument_group(
        "optimisation (defaults: the task's recipe, see --help of each task in the README)"
    )
    o.add_argument(
        "--epochs",
        type=options.positive_int,
        default=None,
        help="classification 3 (fine-tuning 1), segmentation 5, detection 4, tracking 10",
    )
    o.add_argument(
        "--lr",
        type=options.positive_float,
        default=None,
        help="peak learning rate: classification 2e-3 (fine-tuning 1e-4), segmentation/detection 2e-3, "
        "tracking 1e-3",
    )
    o.add_argument(
        "--min-lr", type=float, default=None, help="classification 1e-5 (fine-tuning 1e-6), else 0"
    )
    o.add_argument("--warmup-epochs", type=float, default=None, help="classification 0.25 (fine-tuning 0)")
    o.add_argument(
        "--warmup-steps",
        type=options.non_negative_int,
        default=None,
        help="overrides --warmup-epochs (segmentation 200, detection 100)",
    )
    o.add_argument(
        "--weight-decay",
        type=float,
        default=None,
        help="classification 0.05, segmentation 0.005, detection 0.05, tracking 1e-4",
    )
    o.add_argument("--label-smoothing", type=float, default=None, help="classification 0.1")
    o.add_argument(
        "--clip-grad", type=options.positive_float, default=None, help="max global grad norm (default: off)"
    )
    o.add_argument("--seed", type=options.non_negative_int, default=0)
    o.add_argument(
        "--amp",
        default="auto",
        choices=["auto", "none", "fp16", "bf16"],
        help="auto: bf16 (or fp16 + GradScaler) autocast on CUDA, none on the CPU",
    )
    o.add_argument("--compile", action="store_true", help="torch.compile the training forward")
    o.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm under DDP")
    t = p.add_argument_group("segmentation, detection and tracking (--task)")
    t.add_argument(
        "--head-lr-mult", type=options.positive_float, default=2.0, help="segmentation: decode head lr factor"
    )
    t.add_argument(
        "--backbone-lr-mult", type=options.positive_float, default=1.0, help="tracking: backbone lr factor"
    )
    t.add_argument(
        "--crop-size", type=options.positive_int, default=None, help="segmentation: random crop side"
    )
    t.add_argument(
        "--scale-jitter",
        type=options.positive_float,
        nargs=2,
        default=None,
        metavar=("LO", "HI"),
        help="detection: resize factors (default 0.75 1.25)",
    )
    t.add_argument(
        "--samples-per-epoch",
        type=options.positive_int,
        default=2000,
        help="tracking: (template, search) pairs per epoch",
    )
    r = p.add_argument_group("run")
    r.add_argument(
        "--resume",
        default=None,
        help="checkpoint.pt (or its folder) to resume; 'auto': <out>/checkpoint.pt if present",
    )
    r.add_argument(
        "--stop-after",
        type=options.positive_int,
        default=None,
        help="leave after this many epochs of THIS invocation (time-sliced jobs; resume later)",
    )
    r.add_argument("--eval-batch-size", type=options.positive_int, default=256)
    r.add_argument(
        "--eval-every",
        type=options.positive_int,
        default=1,
        help="evaluate every N epochs (and after the last)",
    )
    r.add_argument(
        "--log-interval",
        type=options.non_negative_int,
        default=100,
        help="log every N steps (0: epoch lines only)",
    )
    r.add_argument("--deterministic", action="store_true", help="deterministic CUDA kernels")
    options.add_output_args(p, "train")
    options.add_runtime_args(p, threads_default=0)


def build_parser(finetune: bool = False, prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog or "python -m tp_spikformer.train",
        description="Train or fine-tune a spiking transformer (optionally TP-pruned); torchrun for DDP.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_arguments(p, finetune)
    return p


CLASSIFICATION_DEFAULTS = {
    "epochs": 3,
    "batch_size": 64,
    "lr": 2e-3,
    "min_lr": 1e-5,
    "warmup_epochs": 0.25,
    "weight_decay": 0.05,
    "label_smoothing": 0.1,
    "dataset": "fashion_mnist",
}
FINETUNE_DEFAULTS = {"epochs": 1, "lr": 1e-4, "min_lr": 1e-6, "warmup_epochs": 0.0}
TASK_COMMON_DEFAULTS = {"min_lr": 0.0, "warmup_epochs": 0.0, "label_smoothing": 0.0, "dataset": "scenes"}


def finalize(
    args: argparse.Namespace, finetune: bool, prog: str | None = None, argv: list[str] | None = None
) -> argparse.Namespace:
    """Fill the options not given with the task's recipe (fine-tuning defaults with ``finetune`` /
    ``--finetune``); fine-tuning starts from the shipped weights unless a checkpoint is given."""
    finetune = finetune or args.finetune
    if args.task == "classification":
        defaults = {**CLASSIFICATION_DEFAULTS, **(FINETUNE_DEFAULTS if finetune else {})}
    else:
        from .api import task_spec

        spec = task_spec(args.task)
        defaults = {
            **TASK_COMMON_DEFAULTS,
            "dataset": "synthetic" if args.task == "tracking" else "scenes",
            **spec.train_defaults,
        }
    for key, value in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if finetune and not args.pretrained and not args.checkpoint:
        args.pretrained = True
    return args


def parse_args(
    argv: list[str] | None = None, finetune: bool = False, prog: str | None = None
) -> argparse.Namespace:
    argv = list(sys.argv[1:] if argv is None else argv)
    return finalize(build_parser(finetune, prog).parse_args(argv), finetune, prog, argv)


# Options every task trainer reads (``run_task`` or each task's ``train``); a task's own are listed in its
# ``TaskSpec.train_options``. Any other option given with ``--task`` would be ignored, so it is refused.
TASK_TRAIN_COMMON = frozenset(
    {
        "model", "checkpoint", "pretrained", "trust_checkpoint", "set", "task", "finetune", "init_from",
        "keep", "scorer", "window", "mode", "cumulative", "gather_order",
        "dataset", "data_root", "batch_size", "epochs", "lr", "weight_decay", "seed",
        "out", "no_progress", "device", "threads",
    }
)  # fmt: skip
# Options only the task trainers read (classification training refuses them).
TASK_ONLY_OPTIONS = frozenset(
    {"head_lr_mult", "backbone_lr_mult", "crop_size", "scale_jitter", "samples_per_epoch"}
)


def given_options(argv: list[str], finetune: bool = False) -> dict[str, str]:
    """The options present in ``argv`` (abbreviations resolved as argparse does): ``dest -> --option``."""
    p = build_parser(finetune)
    flags = {}
    for action in p._actions:  # argparse has no public list of its actions
        action.default = argparse.SUPPRESS
        if action.option_strings:
            flags[action.dest] = max(action.option_strings, key=len)
    return {dest: flags.get(dest, dest) for dest in vars(p.parse_args(argv))}


def check_options_used(args: argparse.Namespace, argv: list[str]) -> None:
    """Refuse options the chosen trainer would ignore, naming what it does read."""
    given = given_options(argv, bool(args.finetune))
    if args.task == "classification":
        unused = sorted(flag for dest, flag in given.items() if dest in TASK_ONLY_OPTIONS)
        if unused:
            raise options.UsageError(
                f"{', '.join(unused)}: only the --task segmentation / detection / tracking trainers read "
                "(see --help); drop it for classification"
            )
        return
    from .api import task_spec

    reads = TASK_TRAIN_COMMON | task_spec(args.task).train_options
    unused = sorted(flag for dest, flag in given.items() if dest not in reads)
    if unused:
        own = ", ".join("--" + d.replace("_", "-") for d in sorted(task_spec(args.task).train_options))
        raise options.UsageError(
            f"--task {args.task} training does not use {', '.join(unused)} (classification options); "
            f"its own options: {own or 'none'}"
        )


def run_args(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    """Run parsed arguments: options the chosen trainer would ignore are refused and the output folder is
    checked (and made unique) before any work."""
    if argv is not None:
        check_options_used(args, argv)
    args.out = options.output_dir(args.out, f"train-{args.model}")
    if args.task == "classification":
        run(args, argv=argv)
    else:
        run_task(args, argv)
    return 0


def run_task(args: argparse.Namespace, argv: list[str] | None) -> dict:
    """``train --task segmentation|detection|tracking``: the task model (weights from ``--pretrained``,
    ``--checkpoint`` or ``--backbone-checkpoint``; TP fine-tuning with ``--keep``) trained by its engine."""
    from . import runtime
    from .api import task_spec
    from .models import create_model, load_checkpoint
    from .pruning import apply_tp
    from .tasks.training_data import init_backbone_from

    spec = task_spec(args.task)
    runtime.seed_everything(args.seed)
    model = create_model(args.model, pretrained=args.pretrained, **options.parse_overrides(args.set))
    if model.config.task != args.task:
        raise options.UsageError(
            f"--model {args.model} is a {model.config.task} model, not a {args.task} model"
        )
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint, trusted=args.trust_checkpoint)
    if args.init_from:
        init_backbone_from(model, args.init_from)
    if args.keep is not None or args.scorer is not None:
        apply_tp(
            model, keep=args.keep or "official", scorer=args.scorer or "official", **options.tp_options(args)
        )
    args.argv = argv
    args.threads = runtime.thread_count(args.threads)  # --threads 0: automatic, as on every command
    return spec.train(model, args)


def main(argv: list[str] | None = None, *, finetune: bool = False, prog: str | None = None) -> int:
    """``python -m tp_spikformer.train``: bad arguments exit with 2 and a message, bugs with a traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = prog or "python -m tp_spikformer.train"
    return options.run_main(lambda: run_args(parse_args(argv, finetune, prog), argv), prog)


if __name__ == "__main__":
    sys.exit(main())
