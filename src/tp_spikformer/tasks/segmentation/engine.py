"""Train and evaluate segmentation models: the library entry points (the command line wires them).

* :func:`train_segmentation`: the official recipe's shape, sized by the caller: AdamW with the decode head
  at 2x the learning rate and weight decay on every parameter, per-iteration linear warm-up then poly
  decay (:mod:`.optim`), cross-entropy with ignore index 255 on logits resized to the label
  (:func:`.optim.segmentation_loss`), random resize / crop / flip through
  :class:`~tp_spikformer.data.SegmentationTrainTransform`; checkpoints and a weights export.
* :func:`.evaluation.evaluate_segmentation`: mIoU, aAcc, mAcc, per-class IoU, prediction PNGs.

Images come from the datasets in [0, 1] (``ADE20KDataset``, ``MaskFolderDataset``: ``(image, label, stem)``;
``SceneDataset``: ``(image, label)``); the engine normalises them with the model configuration's
mean/std (``model.config.data``; none when the model has no configuration).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ...data.segmentation_transforms import SegmentationTrainTransform, random_hflip
from ...jsonio import plain, write_json
from .evaluation import evaluate_segmentation, whole_inference
from .inputs import device_of, input_normalization, normalize_images, split_item, stack_pairs
from .optim import segmentation_loss, segmentation_optimizer, warmup_poly_lr

__all__ = [
    "evaluate_segmentation",
    "export_segmentation_weights",
    "input_normalization",
    "normalize_images",
    "segmentation_loss",
    "segmentation_optimizer",
    "train_segmentation",
    "warmup_poly_lr",
    "whole_inference",
]

CHECKPOINT_NAME = "checkpoint.pt"
WEIGHTS_NAME = "model.pt"
METRICS_NAME = "metrics.json"
LOG_NAME = "log.txt"


def train_segmentation(
    model: nn.Module,
    train_set: Any,
    val_set: Any = None,
    *,
    epochs: int,
    batch_size: int = 16,
    lr: float = 1e-3,
    weight_decay: float = 0.005,
    warmup_iters: int = 1500,
    warmup_start: float = 1e-6,
    poly_power: float = 1.0,
    head_lr_mult: float = 2.0,
    crop_size: int | Sequence[int] | None = None,
    ratio_range: tuple[float, float] = (0.5, 2.0),
    flip: bool = True,
    cat_max_ratio: float = 0.75,
    ignore_index: int = 255,
    avg_non_ignore: bool = False,
    num_classes: int | None = None,
    eval_every: int = 1,
    eval_batch_size: int | None = None,
    device: str | torch.device | None = None,
    threads: int | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = print,
    log_every: int = 50,
    out_dir: str | os.PathLike | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``model`` (a :class:`.semfpn.SpikingSegmenter`) on ``train_set`` for ``epochs`` passes.

    Iterations: ``epochs * (len(train_set) // batch_size)`` (the last partial batch of each epoch is
    dropped, as mmseg's infinite sampler never yields one). The warm-up lasts ``warmup_iters`` iterations
    (capped at a tenth of the run, with a logged notice, when the run is shorter than ten warm-ups).
    Augmentation per sample: with ``crop_size``, random resize by ``ratio_range`` of its own size, random
    crop (label padded with ``ignore_index``, ``cat_max_ratio``) and horizontal flip (``flip``); without,
    the flip only (all images must then share one size). The data order of epoch ``e`` and the
    augmentation come from generators seeded with ``seed`` (the global RNG is not touched by the data).

    ``val_set`` is evaluated every ``eval_every`` epochs and after the last (:func:`evaluate_segmentation`).
    ``out_dir``: writes ``log.txt``, ``checkpoint.pt`` after every epoch (``model``: weights,
    ``optimizer``, ``epoch``, ``iteration``), ``model.pt`` at the end (``{"model": float32 state_dict,
    "meta": ...}``, loadable with ``create_model(name, checkpoint=...)``) and ``metrics.json``.
    Returns the metrics: ``history`` (per epoch: loss, lr, seconds, images/s, validation), ``val`` (the
    last evaluation), ``iterations``, ``seconds``, and the written paths.
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs}, {batch_size}")
    if len(train_set) < batch_size:
        raise ValueError(
            f"train_set has {len(train_set)} samples, fewer than one batch of {batch_size}; lower batch_size"
        )
    device = torch.device(device) if device is not None else device_of(model)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    if out_dir is not None:
        out_dir = os.fspath(out_dir)
        os.makedirs(out_dir, exist_ok=True)

    def say(text: str) -> None:
        if log is not None:
            log(text)
        if out_dir is not None:
            with open(os.path.join(out_dir, LOG_NAME), "a") as f:
                f.write(text + "\n")

    model.to(device)
    norm = input_normalization(model)
    num_classes = int(num_classes or model.num_classes)
    per_epoch = len(train_set) // batch_size
    total = epochs * per_epoch
    warmup = int(warmup_iters)
    if warmup * 10 > total:
        warmup = total // 10
        say(
            f"warm-up shortened from {warmup_iters} to {warmup} iterations (a tenth of the {total}-iteration run)"
        )
    optimizer = segmentation_optimizer(model, lr, weight_decay, head_lr_mult)
    augment = _augmentation(crop_size, ratio_range, flip, cat_max_ratio, ignore_index, seed)
    say(
        f"training {type(model).__name__}{_config_name(model)}: {len(train_set)} samples, {epochs} epochs x "
        f"{per_epoch} iterations of {batch_size}, lr {lr:g} (head x{head_lr_mult:g}), wd {weight_decay:g}, "
        f"warm-up {warmup}, poly power {poly_power:g}, crop {crop_size}, device {device}, "
        f"{torch.get_num_threads()} threads"
    )
    history: list[dict[str, Any]] = []
    val_metrics = None
    step = 0
    start = time.perf_counter()
    try:
        for epoch in range(epochs):
            model.train()
            order = torch.randperm(
                len(train_set), generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            )
            t0, seen, loss_sum = time.perf_counter(), 0, 0.0
            for b in range(per_epoch):
                x, y = _training_batch(
                    train_set, order[b * batch_size : (b + 1) * batch_size].tolist(), augment
                )
                x, y = normalize_images(x.to(device), norm), y.to(device)
                current = warmup_poly_lr(step, total, warmup, lr, poly_power, warmup_start)
                for g in optimizer.param_groups:
                    g["lr"] = current * g["lr_mult"]
                loss = segmentation_loss(model(x), y, ignore_index, avg_non_ignore)
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise FloatingPointError(
                        f"the loss became {value} at iteration {step}; lower lr (now {lr:g})"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                seen += x.shape[0]
                loss_sum += value * x.shape[0]
                if log_every and step % log_every == 0:
                    say(
                        f"epoch {epoch + 1} iter {step}/{total} loss {value:.4f} lr {current:.3g} "
                        f"{seen / (time.perf_counter() - t0):.1f} img/s"
                    )
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "iteration": step,
                "loss": loss_sum / max(1, seen),
                "lr": current,
                "seconds": time.perf_counter() - t0,
                "images_per_s": seen / (time.perf_counter() - t0),
            }
            if val_set is not None and ((epoch + 1) % max(1, eval_every) == 0 or epoch + 1 == epochs):
                val_metrics = evaluate_segmentation(
                    model,
                    val_set,
                    batch_size=eval_batch_size or batch_size,
                    device=device,
                    num_classes=num_classes,
                    ignore_index=ignore_index,
                )
                record["val"] = {k: val_metrics[k] for k in ("mIoU", "aAcc", "mAcc")}
            history.append(record)
            say(
                f"epoch {epoch + 1}/{epochs}: loss {record['loss']:.4f}, {record['seconds']:.0f} s"
                + (
                    f", val mIoU {_pct(val_metrics['mIoU'])} aAcc {_pct(val_metrics['aAcc'])}"
                    if "val" in record
                    else ""
                )
            )
            if out_dir is not None:
                _atomic_save(
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "epoch": epoch + 1,
                        "iteration": step,
                        "meta": plain(meta or {}),
                    },
                    os.path.join(out_dir, CHECKPOINT_NAME),
                )
    finally:
        torch.set_num_threads(old_threads)
    seconds = time.perf_counter() - start
    result: dict[str, Any] = {
        "epochs": epochs,
        "iterations": step,
        "batch_size": batch_size,
        "train_samples": len(train_set),
        "seconds": seconds,
        "history": history,
        "val": val_metrics,
        "recipe": {
            "lr": lr,
            "weight_decay": weight_decay,
            "warmup_iters": warmup,
            "warmup_start": warmup_start,
            "poly_power": poly_power,
            "head_lr_mult": head_lr_mult,
            "crop_size": crop_size,
            "ratio_range": ratio_range,
            "flip": flip,
            "cat_max_ratio": cat_max_ratio,
            "seed": seed,
            "avg_non_ignore": avg_non_ignore,
        },
    }
    if out_dir is not None:
        weights_meta = dict(
            meta or {},
            model=getattr(getattr(model, "config", None), "name", None),
            epochs=epochs,
            iterations=step,
            val=val_metrics and {k: val_metrics[k] for k in ("mIoU", "aAcc")},
        )
        result["weights"] = export_segmentation_weights(
            model, os.path.join(out_dir, WEIGHTS_NAME), weights_meta
        )
        result["checkpoint"] = os.path.join(out_dir, CHECKPOINT_NAME)
        write_json(os.path.join(out_dir, METRICS_NAME), result)
    return result


def _augmentation(crop_size, ratio_range, flip, cat_max_ratio, ignore_index, seed) -> Callable | None:
    """``(image, label) -> (image, label)``: resize + crop + flip with ``crop_size``, else flip only (or None)."""
    if crop_size is not None:
        return SegmentationTrainTransform(
            crop_size,
            ratio_range,
            flip_p=0.5 if flip else 0.0,
            ignore_index=ignore_index,
            cat_max_ratio=cat_max_ratio,
            seed=seed,
        )
    if not flip:
        return None
    generator = torch.Generator().manual_seed(seed)
    return lambda image, label: random_hflip(image, label, 0.5, generator)


def _training_batch(
    dataset: Any, indices: list[int], augment: Callable | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``[B, C, H, W]`` and labels ``[B, H, W]`` of ``indices``, each pair augmented."""
    images, labels = [], []
    for i in indices:
        image, label, _ = split_item(dataset[i], i, dataset)
        if augment is not None:
            image, label = augment(image, label)
        images.append(image)
        labels.append(label)
    return stack_pairs(images, labels, "training")


def export_segmentation_weights(model: nn.Module, path: str, meta: dict[str, Any] | None = None) -> str:
    """Write ``{"model": float32 state_dict, "meta": meta}`` (the format of ``train.py``'s weight export,
    which ``create_model(name, checkpoint=path)`` loads). A stand-in until the shared writer is importable
    from ``tasks``."""
    state = {
        k: (v.detach().to("cpu", torch.float32) if v.is_floating_point() else v.detach().cpu()).clone()
        for k, v in model.state_dict().items()
    }
    return _atomic_save({"model": state, "meta": plain(meta or {})}, path)


def _atomic_save(obj: Any, path: str) -> str:
    tmp = f"{path}.tmp.{os.getpid()}"
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path


def _config_name(model: nn.Module) -> str:
    cfg = getattr(model, "config", None)
    return f" ('{cfg.name}')" if cfg is not None else ""


def _pct(v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f} %"
