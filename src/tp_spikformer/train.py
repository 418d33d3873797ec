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
    p.add_argument("--finetune", action="store_true", default=finetune,
                   help="fine-tuning defaults (lr 1e-4, no warm-up, 1 epoch, --pretrained if no --checkpoint)")
    p.add_argument("--unused-params", default="freeze", choices=["freeze", "find", "error"],
                   help="parameters without gradient: freeze them, let DDP find them each step, or fail")
    options.add_tp_args(p, default_keep=None, title="token pruning (applied before DDP: the pruned model is trained)")
    options.add_data_args(p, default="fashion_mnist", batch_size=64, split=None, limit=False)
    d = p.add_argument_group("training data")
    d.add_argument("--test-dataset", default=None, help="evaluation set if not the --dataset test split "
                   "(e.g. shipped or npz:<path>)")
    d.add_argument("--test-data", dest="test_dataset", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    d.add_argument("--train-limit", type=options.positive_int, default=None, help="first N training images only")
    d.add_argument("--test-limit", type=options.positive_int, default=None, help="first N test images only")
    d.add_argument("--augment", default="crop-flip", choices=["crop-flip", "crop", "flip", "none"])
    d.add_argument("--pad", type=options.non_negative_int, default=None,
                   help="random-crop zero padding (default: input side // 16)")
    d.add_argument("--hflip", type=float, default=0.5)
    o = p.add_argument_group("optimisation")
    o.add_argument("--epochs", type=options.positive_int, default=1 if finetune else 3)
    o.add_argument("--lr", type=options.positive_float, default=1e-4 if finetune else 2e-3, help="peak learning rate")
    o.add_argument("--min-lr", type=float, default=1e-6 if finetune else 1e-5)
    o.add_argument("--warmup-epochs", type=float, default=0.0 if finetune else 0.25)
    o.add_argument("--warmup-steps", type=options.non_negative_int, default=None, help="overrides --warmup-epochs")
    o.add_argument("--weight-decay", type=float, default=0.05)
    o.add_argument("--label-smoothing", type=float, default=0.1)
    o.add_argument("--clip-grad", type=options.positive_float, default=None, help="max global grad norm (default: off)")
    o.add_argument("--seed", type=options.non_negative_int, default=0)
    o.add_argument("--amp", default="auto", choices=["auto", "none", "fp16", "bf16"],
                   help="auto: bf16 (or fp16 + GradScaler) autocast on CUDA, none on the CPU")
    o.add_argument("--compile", action="store_true", help="torch.compile the training forward")
    o.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm under DDP")
    r = p.add_argument_group("run")
    r.add_argument("--resume", default=None,
                   help="checkpoint.pt (or its folder) to resume; 'auto': <out>/checkpoint.pt if present")
    r.add_argument("--stop-after", type=options.positive_int, default=None,
                   help="leave after this many epochs of THIS invocation (time-sliced jobs; resume later)")
    r.add_argument("--eval-batch-size", type=options.positive_int, default=256)
    r.add_argument("--eval-every", type=options.positive_int, default=1, help="evaluate every N epochs (and after the last)")
    r.add_argument("--log-interval", type=options.non_negative_int, default=100,
                   help="log every N steps (0: epoch lines only)")
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


def finalize(args: argparse.Namespace, parser_finetune: bool, prog: str | None = None,
             argv: list[str] | None = None) -> argparse.Namespace:
    """Fine-tuning defaults when ``--finetune`` was given to the train parser; shipped weights by default."""
    if args.finetune and not parser_finetune and argv is not None:
        args = build_parser(True, prog).parse_args(argv)
    if args.finetune and not args.pretrained and not args.checkpoint:
        args.pretrained = True
    return args


def parse_args(argv: list[str] | None = None, finetune: bool = False, prog: str | None = None) -> argparse.Namespace:
    argv = list(sys.argv[1:] if argv is None else argv)
    return finalize(build_parser(finetune, prog).parse_args(argv), finetune, prog, argv)


def run_args(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    """Run parsed arguments: the output folder is checked (and made unique) before any work."""
    args.out = options.output_dir(args.out, f"train-{args.model}")
    run(args, argv=argv)
    return 0


def main(argv: list[str] | None = None, *, finetune: bool = False, prog: str | None = None) -> int:
    """``python -m tp_spikformer.train``: bad arguments exit with 2 and a message, bugs with a traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = prog or "python -m tp_spikformer.train"
    return options.run_main(lambda: run_args(parse_args(argv, finetune, prog), argv), prog)


if __name__ == "__main__":
    sys.exit(main())
