"""Classification accuracy of a model on a dataset: top-1/top-5, loss, per-class, single process or DDP.

``evaluate(model, dataset, batch_size, device)`` works on

* our in-memory image sets (:class:`tp_spikformer.data.InMemoryImages`: Fashion-MNIST, MNIST, CIFAR,
  ``.npz`` slices): batches are built with ``dataset.get_batch`` (tensor ops, no DataLoader);
* any map-style dataset whose items are ``(input, label)`` (``ImageFolder``, event-frame sets, ...):
  read through a ``DataLoader`` (``num_workers`` workers).

Under ``torch.distributed`` (initialised, world size > 1) each rank evaluates one contiguous shard of the
indices, ``[n * rank // world, n * (rank + 1) // world)``, without padding or repetition, and the counts
(correct top-1 / top-5, summed loss, samples, per-class counts) are ``all_reduce``-summed: every sample is
counted exactly once whatever ``len(dataset) % world`` is, and all ranks return the same numbers. Shards
may differ by one sample, so ranks may run different numbers of batches: the only collective is the final
``all_reduce`` (a ``DistributedDataParallel`` wrapper is unwrapped first, since its forward would
broadcast buffers on every batch).

Outputs ``[T, B, classes]`` (SDT-V1 with ``TET=True``) are averaged over T before scoring; a tuple output
(the official SDT-V1 ``(logits, hook)``) is read from its first element.

Accuracies are percentages (``87.5`` means 87.5 %). Note for QKFormer in its official ``batch_coupled``
``proj_lif`` mode: its outputs depend on the batch composition, so the numbers depend on ``batch_size`` and
on sharding (evaluate single-process with the official batch size to reproduce published numbers).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .errors import UsageError
from .runtime import autocast_context

__all__ = ["check_labels", "evaluate", "logits_of", "main", "shard_range"]


def shard_range(n: int, rank: int, world: int) -> range:
    """The contiguous, non-overlapping shard of ``range(n)`` that ``rank`` of ``world`` evaluates.

    The shards of all ranks partition ``range(n)`` exactly (sizes differ by at most one; no padding).
    """
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"invalid rank {rank} for world size {world}")
    return range(n * rank // world, n * (rank + 1) // world)


def logits_of(output: Any) -> torch.Tensor:
    """Class scores ``[B, classes]`` from a model output: first element of a tuple/list, and the mean over
    time of a ``[T, B, classes]`` (TET) output."""
    if isinstance(output, (tuple, list)):
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"the model returned {type(output).__name__}, expected logits as a tensor")
    if output.dim() == 3:
        output = output.mean(0)
    if output.dim() != 2:
        raise ValueError(f"expected logits [B, classes] or [T, B, classes], got shape {list(output.shape)}")
    return output


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _unwrap(model: nn.Module) -> nn.Module:
    from torch.nn.parallel import DataParallel, DistributedDataParallel

    while isinstance(model, (DistributedDataParallel, DataParallel)):
        model = model.module
    return model


def _model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def _iter_batches(dataset: Any, indices: range, batch_size: int, num_workers: int):
    """``(inputs, labels)`` batches over ``indices`` (a contiguous range), in order."""
    if len(indices) == 0:
        return
    if hasattr(dataset, "get_batch") and hasattr(dataset, "targets"):  # in-memory fast path
        for start in range(indices.start, indices.stop, batch_size):
            stop = min(start + batch_size, indices.stop)
            yield dataset.get_batch(slice(start, stop)), torch.as_tensor(dataset.targets[start:stop])
        return
    from torch.utils.data import DataLoader, Subset

    loader = DataLoader(
        Subset(dataset, list(indices)),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        drop_last=False,
    )
    for batch in loader:
        if isinstance(batch, dict):
            x, y = batch.get("image", batch.get("input")), batch.get("label", batch.get("target"))
        else:
            x, y = batch[0], batch[1]
        yield x, torch.as_tensor(y)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Any,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    *,
    amp: str | None = None,
    distributed: bool | None = None,
    num_workers: int = 0,
    topk: Sequence[int] = (1, 5),
    per_class: bool = False,
    num_classes: int | None = None,
    limit: int | None = None,
    log_every: int = 0,
) -> dict[str, Any]:
    """Evaluate ``model`` on ``dataset``; returns a dict of plain Python numbers.

    Args:
        model: returns logits ``[B, classes]`` (or ``[T, B, classes]``, averaged over T). Put in eval mode
            for the call and restored to its previous mode afterwards. A DDP wrapper is unwrapped.
        dataset: an in-memory image set (``get_batch``/``targets``) or any map-style ``(x, y)`` dataset.
        batch_size: samples per forward (per rank under DDP).
        device: where to run; default the model's device. The model is NOT moved: pass one already there.
        amp: ``"fp16"``/``"bf16"`` autocast, ``None`` for full precision.
        distributed: shard over the initialised process group (``None``: when one is initialised with
            world size > 1). ``False`` makes every rank evaluate the whole set.
        num_workers: DataLoader workers for generic datasets (the in-memory path uses none).
        topk: the k's reported as ``top{k}`` (k larger than the class count counts every sample correct).
        per_class: also report ``per_class`` = ``{"n": [...], "top1": [...]}`` per label.
        num_classes: size of the per-class table (default: from the logits).
        limit: evaluate only the first ``limit`` samples.
        log_every: print progress every that many batches (rank 0; 0: never).

    Returns:
        ``{"top1": %, "top5": %, "n": samples, "correct1": int, "correct5": int, "loss": mean cross-entropy,
        "seconds": wall time, "images_per_s": float, "world_size": int}`` (+ ``per_class``).
    """
    model = _unwrap(model)
    device = torch.device(device) if device is not None else _model_device(model)
    rank, world = _world()
    if distributed is None:
        distributed = world > 1
    if not distributed:
        rank, world = 0, 1
    n_total = len(dataset) if limit is None else min(int(limit), len(dataset))
    if n_total == 0:
        raise UsageError(
            f"nothing to evaluate: the dataset is empty ({_describe(dataset)}); check the data "
            "folder, the split and the limit"
        )
    shard = shard_range(n_total, rank, world)
    ks = sorted({int(k) for k in topk})
    if not ks or ks[0] < 1:
        raise ValueError(f"topk must hold positive ints, got {topk}")

    was_training = model.training
    model.eval()
    correct = torch.zeros(len(ks), dtype=torch.float64)
    loss_sum = torch.zeros((), dtype=torch.float64)
    seen = 0
    class_n: torch.Tensor | None = None
    class_ok: torch.Tensor | None = None
    t0 = time.perf_counter()
    try:
        for i, (x, y) in enumerate(_iter_batches(dataset, shard, batch_size, num_workers)):
            x = x.to(device, non_blocking=True)
            y = y.to(device=device, dtype=torch.long, non_blocking=True)
            with autocast_context(device, amp):
                out = logits_of(model(x))
            out = out.float()
            loss_sum += F.cross_entropy(out, y, reduction="sum").double().cpu()
            kmax = min(ks[-1], out.shape[1])
            pred = out.topk(kmax, dim=1).indices  # [B, kmax]
            hit = pred.eq(y[:, None])  # [B, kmax]
            for j, k in enumerate(ks):
                correct[j] += hit[:, : min(k, kmax)].any(dim=1).sum().double().cpu()
            if per_class:
                c = num_classes or out.shape[1]
                if class_n is None:
                    class_n = torch.zeros(c, dtype=torch.float64)
                    class_ok = torch.zeros(c, dtype=torch.float64)
                yc = y.cpu()
                class_n += torch.bincount(yc, minlength=c)[:c].double()
                class_ok += torch.bincount(yc[hit[:, 0].cpu()], minlength=c)[:c].double()
            seen += int(y.shape[0])
            if log_every and rank == 0 and (i + 1) % log_every == 0:
                print(f"  eval batch {i + 1}: {seen}/{len(shard)} samples", flush=True)
    finally:
        model.train(was_training)
    seconds = time.perf_counter() - t0

    counts = torch.cat([correct, loss_sum.view(1), torch.tensor([float(seen)], dtype=torch.float64)])
    if distributed and world > 1:
        counts = _all_reduce(counts, device)
        if per_class:
            width = torch.tensor([0 if class_n is None else class_n.numel()], dtype=torch.float64)
            width = int(_all_reduce(width, device, op="max").item())
            pair = torch.zeros(2, width, dtype=torch.float64)
            if class_n is not None:
                pair[0, : class_n.numel()], pair[1, : class_n.numel()] = class_n, class_ok
            pair = _all_reduce(pair, device)
            class_n, class_ok = (pair[0], pair[1]) if width else (None, None)
        secs = _all_reduce(torch.tensor([seconds], dtype=torch.float64), device, op="max")
        seconds = float(secs.item())
    n = int(round(float(counts[-1])))
    if n != n_total:
        raise RuntimeError(f"evaluated {n} samples but the dataset has {n_total}; shards are inconsistent")
    result: dict[str, Any] = {}
    for j, k in enumerate(ks):
        result[f"top{k}"] = 100.0 * float(counts[j]) / n if n else math.nan
        result[f"correct{k}"] = int(round(float(counts[j])))
    result.update(
        n=n,
        loss=float(counts[-2]) / n if n else math.nan,
        seconds=seconds,
        images_per_s=n / seconds if seconds > 0 else math.nan,
        world_size=world,
    )
    if per_class and class_n is not None:
        result["per_class"] = {
            "n": [int(v) for v in class_n.tolist()],
            "top1": [
                100.0 * ok / cnt if cnt else math.nan for ok, cnt in zip(class_ok.tolist(), class_n.tolist())
            ],
        }
    return result


def _all_reduce(t: torch.Tensor, device: torch.device, op: str = "sum") -> torch.Tensor:
    """All-reduce a float64 CPU tensor (moved to the device for nccl, which has no CPU tensors)."""
    backend = dist.get_backend()
    work = t.to(device) if backend == "nccl" else t.clone()
    dist.all_reduce(work, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return work.cpu()


def _describe(dataset: Any) -> str:
    return getattr(dataset, "source", None) or type(dataset).__name__


def _targets(dataset: Any):
    """All labels of ``dataset`` without decoding any input (None when it cannot say)."""
    from torch.utils.data import Subset

    if isinstance(dataset, Subset):
        inner = _targets(dataset.dataset)
        return None if inner is None else torch.as_tensor(inner)[list(dataset.indices)]
    targets = getattr(dataset, "targets", None)
    return None if targets is None else torch.as_tensor(targets)


def check_labels(dataset: Any, num_classes: int | None, what: str = "dataset") -> None:
    """Refuse a dataset whose labels fall outside ``0 .. num_classes - 1`` (or that has more class folders
    than the model has classes), when the data is loaded rather than at the first bad batch."""
    if not num_classes:
        return
    classes = getattr(dataset, "classes", None)
    if classes is not None and len(classes) > num_classes:
        raise UsageError(
            f"the {what} set has {len(classes)} classes ({_describe(dataset)}) but the model has "
            f"{num_classes}; build the model with num_classes={len(classes)} (--set num_classes=...)"
        )
    targets = _targets(dataset)
    if targets is None or targets.numel() == 0:
        return
    low, high = int(targets.min()), int(targets.max())
    if low < 0 or high >= num_classes:
        raise UsageError(
            f"the {what} set has labels {low}..{high} ({_describe(dataset)}) but the model has "
            f"{num_classes} classes (labels 0..{num_classes - 1})"
        )


# -- command line --------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    from . import options

    options.add_model_args(p)
    options.add_tp_args(p, default_keep=None)
    options.add_data_args(p, default="fashion_mnist", batch_size=256)
    g = p.add_argument_group("evaluation")
    g.add_argument("--amp", default="none", choices=["none", "fp16", "bf16"])
    g.add_argument("--per-class", action="store_true")
    g.add_argument(
        "--json", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )  # old spelling: a results file
    options.add_output_args(p, "evaluate")
    options.add_runtime_args(p, threads_default=0, optimize=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tp_spikformer.evaluate",
        description="Top-1/top-5 of a registered model on a dataset, optionally with TP token pruning. Works "
        "under torchrun (each sample counted once).",
    )
    add_arguments(p)
    p.set_defaults(parser=p)
    return p


def run_args(args: argparse.Namespace) -> int:
    """Evaluate arguments parsed by :func:`build_parser` (options it would not read are refused); rank 0
    prints the result and writes ``<out>/results.json``."""
    from . import options, runtime
    from .data import load_dataset
    from .jsonio import dumps, write_json
    from .models import create_model, load_checkpoint
    from .pruning import apply_tp

    parser = args.parser
    options.check_model_args(args, parser)
    options.check_data_args(args, parser)
    if args.keep is None and args.scorer is None:
        options.refuse_unused(
            args,
            parser,
            ["window", "mode", "cumulative", "gather_order"],
            "without --keep or --scorer (no token pruning runs); give --keep or leave {them} out",
        )
    info = runtime.setup_distributed(args.device)
    try:
        runtime.set_threads(args.threads, info)
        device = runtime.resolve_device(args.device, info)
        out = options.output_dir(args.out, "evaluate") if info.main and "json" not in vars(args) else None
        options.check_optimize(args)
        overrides = options.parse_overrides(args.set)
        model = create_model(
            args.model, pretrained=args.pretrained, official_arithmetic=args.official_arithmetic, **overrides
        )
        if args.checkpoint:
            load_checkpoint(model, args.checkpoint, use_ema=args.use_ema, trusted=args.trust_checkpoint)
        if args.keep is not None or args.scorer is not None:
            scorer = {"scorer": args.scorer} if args.scorer is not None else {}  # default: the model's
            apply_tp(model, keep=args.keep or "official", **scorer, **options.tp_options(args))
        model = options.maybe_optimize(model.to(device).eval(), args)
        dataset = load_dataset(
            args.dataset, args.split, args.data_root, model.config.data, limit=args.limit, T=args.frames
        )
        check_labels(dataset, model.num_classes)
        res = evaluate(
            model.to(device), dataset, args.batch_size, device, amp=args.amp, per_class=args.per_class
        )
        res = {"model": args.model, "dataset": args.dataset, "split": args.split, **res}
        if info.main:
            print(dumps(res))
            path = vars(args).get("json") or os.path.join(out, "results.json")
            write_json(path, res)
    finally:
        runtime.cleanup_distributed(info)
    return 0


def main(argv: list[str] | None = None) -> int:
    from .options import run_main

    prog = "python -m tp_spikformer.evaluate"
    return run_main(lambda: run_args(build_parser().parse_args(argv)), prog)


if __name__ == "__main__":
    sys.exit(main())
