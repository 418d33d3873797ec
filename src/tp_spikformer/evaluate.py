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
import json
import math
import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

__all__ = ["evaluate", "logits_of", "shard_range", "autocast_context", "main"]


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


def autocast_context(device: torch.device, amp: str | None):
    """``torch.autocast`` for ``amp`` in {"fp16", "bf16"} (None/"none"/"off": no autocast)."""
    if amp in (None, "none", "off", "fp32"):
        return nullcontext()
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(amp)
    if dtype is None:
        raise ValueError(f"unknown amp mode {amp!r}; choose 'fp16', 'bf16' or 'none'")
    return torch.autocast(device_type=device.type, dtype=dtype)


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
        Subset(dataset, list(indices)), batch_size=batch_size, shuffle=False, num_workers=num_workers,
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
            "top1": [100.0 * ok / cnt if cnt else math.nan for ok, cnt in zip(class_ok.tolist(), class_n.tolist())],
        }
    return result


def _all_reduce(t: torch.Tensor, device: torch.device, op: str = "sum") -> torch.Tensor:
    """All-reduce a float64 CPU tensor (moved to the device for nccl, which has no CPU tensors)."""
    backend = dist.get_backend()
    work = t.to(device) if backend == "nccl" else t.clone()
    dist.all_reduce(work, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return work.cpu()


# -- command line --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tp_spikformer.evaluate",
        description="Top-1/top-5 of a registered model on Fashion-MNIST, MNIST, CIFAR or an .npz slice, "
        "optionally with TP token pruning. Works under torchrun (each sample counted once).",
    )
    p.add_argument("--model", required=True, help="registered configuration name (`tp-spikformer models`)")
    w = p.add_mutually_exclusive_group()
    w.add_argument("--pretrained", action="store_true", help="load the weights shipped with the package")
    w.add_argument("--checkpoint", help="checkpoint file (ours or official)")
    p.add_argument("--trust-checkpoint", action="store_true", help="allow full unpickling of --checkpoint")
    p.add_argument("--data", default="fashion_mnist",
                   help="fashion_mnist | mnist | cifar10 | cifar100 | npz:<path> | shipped (the packaged "
                   "Fashion-MNIST test slice)")
    p.add_argument("--data-root", default=None, help="dataset folder (Fashion-MNIST: Debian's by default)")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=None, help="first N samples only")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    p.add_argument("--amp", default="none", choices=["none", "fp16", "bf16"])
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: cores / local processes)")
    p.add_argument("--tp-keep", default=None, help="TP keep schedule, e.g. 0.5 or side_ratio:0.9,0.8")
    p.add_argument("--tp-scorer", default=None, help="TP scorer name (official, temporal, spatial, ...)")
    p.add_argument("--tp-window", type=int, default=None)
    p.add_argument("--tp-mode", default="stop", choices=["stop", "drop"])
    p.add_argument("--per-class", action="store_true")
    p.add_argument("--json", default=None, help="also write the result to this JSON file (rank 0)")
    return p


def main(argv: list[str] | None = None) -> int:
    from .train import (
        apply_tp_from_args,
        build_dataset,
        cleanup_distributed,
        pick_device,
        set_threads,
        setup_distributed,
    )
    from .models import create_model

    args = build_parser().parse_args(argv)
    dist_info = setup_distributed(args.device)
    set_threads(args.threads, dist_info)
    device = pick_device(args.device, dist_info)
    try:
        model = create_model(args.model, pretrained=args.pretrained, checkpoint=None)
        if args.checkpoint:
            from .models.checkpoint import load_checkpoint

            load_checkpoint(model, args.checkpoint, trusted=args.trust_checkpoint)
        apply_tp_from_args(model, args.tp_keep, args.tp_scorer, args.tp_window, args.tp_mode)
        model.to(device)
        dataset = build_dataset(args.data, args.split, args.data_root, model.config.data, limit=args.limit)
        res = evaluate(model, dataset, args.batch_size, device, amp=args.amp, per_class=args.per_class)
        res = {"model": args.model, "data": args.data, "split": args.split, **res}
        if dist_info.rank == 0:
            print(json.dumps(res, indent=1))
            if args.json:
                with open(args.json, "w") as f:
                    json.dump(res, f, indent=1)
    finally:
        cleanup_distributed(dist_info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
