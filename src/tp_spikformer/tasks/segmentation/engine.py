"""Train and evaluate segmentation models: the library entry points (the command line wires them).

* :func:`train_segmentation`: the official recipe's shape (``configs/EFSDTv2/fpn_sdtv3_512x512_*.py``),
  sized by the caller: AdamW with ``decode_head`` at ``head_lr_mult`` x the learning rate (official
  ``custom_keys={'head': dict(lr_mult=2.)}``, which on these models matches the decode head's parameters
  only), linear warm-up from ``1e-6`` x lr then poly decay per iteration (``training.poly_lr``: mmengine's
  ``LinearLR`` + ``PolyLR``), cross-entropy with ignore index 255 on logits resized to the label
  (:func:`.losses.segmentation_loss`), random resize / crop / flip through
  :class:`~tp_spikformer.data.SegmentationTrainTransform`; a resumable checkpoint per epoch and the final
  weights (``training.export_weights``'s format).
* :func:`.evaluation.evaluate_segmentation`: mIoU, aAcc, mAcc, per-class IoU, prediction PNGs.

Deviation: the shared optimiser (``training.make_optimizer``) puts no weight decay on biases, norms and
layer scales; the official ``optim_wrapper`` sets no decay multipliers, so mmseg decays every parameter.

Images come from the datasets in [0, 1] (``ADE20KDataset``, ``MaskFolderDataset``: ``(image, label, stem)``;
``SceneDataset``: ``(image, label)``); the engine normalises them with the model configuration's
mean/std (``model.config.data``; none when the model has no configuration).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ...data.segmentation_transforms import SegmentationTrainTransform, random_hflip
from ...errors import UsageError, check_int
from ...jsonio import plain, write_json
from ...training.checkpoints import CHECKPOINT_NAME, METRICS_NAME, WEIGHTS_NAME, atomic_save, export_weights
from ...training.optim import epoch_seed, make_optimizer, poly_lr, set_lr
from .evaluation import evaluate_segmentation
from .inputs import input_normalization, normalize_images, split_item, stack_pairs
from .losses import segmentation_loss

LOG_NAME = "log.txt"
SUMMARY_KEYS = ("mIoU", "aAcc", "mAcc")


def _log_to_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def head_lr_multiplier(factor: float) -> Callable[[str], float]:
    """``name -> factor`` for ``decode_head.*`` parameters, 1 for the rest (``make_optimizer``'s ``lr_mult``)."""
    return lambda name: factor if name.startswith("decode_head.") else 1.0


def _augmentation(crop_size, ratio_range, flip, cat_max_ratio, ignore_index, seed):
    """``(image, label) -> (image, label)`` and a ``reseed(seed)``: resize + crop + flip with ``crop_size``,
    else the flip alone; None when there is nothing to do."""
    if crop_size is not None:
        t = SegmentationTrainTransform(
            crop_size,
            ratio_range,
            flip_p=0.5 if flip else 0.0,
            ignore_index=ignore_index,
            cat_max_ratio=cat_max_ratio,
            seed=seed,
        )
        return t, t.generator.manual_seed
    if not flip:
        return None, None
    generator = torch.Generator().manual_seed(seed)
    return (lambda image, label: random_hflip(image, label, 0.5, generator)), generator.manual_seed


def _training_batch(dataset: Any, indices: Sequence[int], augment) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``[B, C, H, W]`` and labels ``[B, H, W]`` of ``indices``, each pair augmented."""
    images, labels = [], []
    for i in indices:
        image, label, _ = split_item(dataset[i], i, dataset)
        if augment is not None:
            image, label = augment(image, label)
        images.append(image)
        labels.append(label)
    return stack_pairs(images, labels, "training")


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
    val_limit: int | None = None,
    device: str | torch.device = "cpu",
    threads: int | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = _log_to_stderr,
    log_every: int = 50,
    out_dir: str | os.PathLike | None = None,
    resume: bool = True,
    max_steps: int | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``model`` (a :class:`.semfpn.SpikingSegmenter`) on ``train_set``.

    Args:
        epochs / batch_size: ``epochs * (len(train_set) // batch_size)`` iterations (the last partial
            batch of an epoch is dropped, as mmseg's infinite sampler never yields one).
        lr / weight_decay / head_lr_mult: AdamW; the decode head at ``head_lr_mult`` x lr.
        warmup_iters / warmup_start / poly_power: linear warm-up from ``warmup_start`` x lr, then poly decay
            to 0 (official: 1500 iterations, 1e-6, power 1.0); the warm-up is capped at a tenth of the run
            (logged) when the run is shorter than ten warm-ups.
        crop_size / ratio_range / flip / cat_max_ratio: with ``crop_size``, per sample a random resize by
            ``ratio_range`` of its own size, a random crop (label padded with ``ignore_index``; mmseg's
            ``cat_max_ratio``) and a horizontal flip; without, the flip alone (images must share one size).
            A dataset with its own ``transform`` is refused then (no double augmentation).
        ignore_index / avg_non_ignore: the loss (:func:`.losses.segmentation_loss`).
        val_set / eval_every / eval_batch_size / val_limit / num_classes: evaluated every ``eval_every``
            epochs and after the last (:func:`.evaluation.evaluate_segmentation`).
        device / threads: where to train; ``torch.set_num_threads`` for the run (restored afterwards).
        seed: data order and augmentation, re-seeded per epoch (``training.epoch_seed``), so a resumed run
            continues as if uninterrupted.
        log / log_every: a ``str -> None`` callable (None: silent; default stderr) and its interval.
        out_dir: ``log.txt``, ``checkpoint.pt`` after every epoch (weights, optimiser, epoch, history;
            continued when ``resume`` and it exists), ``model.pt`` at the end (``{"model": float32
            state_dict, "meta": ...}``, loadable with ``create_model(name, checkpoint=...)``), ``metrics.json``.
        max_steps: stop after this many iterations in total (probes); the schedule then spans them.
        meta: extra entries for the weights file's ``meta``.

    Returns ``history`` (per epoch: loss, lr, seconds, images/s, validation mIoU/aAcc/mAcc), ``val`` (the
    last evaluation), ``iterations``, ``train_seconds``, ``recipe`` and the written paths.
    """
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("eval_every", eval_every)):
        check_int(name, value)
    check_int("warmup_iters", warmup_iters, minimum=0)
    if lr <= 0:
        raise UsageError(f"lr must be positive, got {lr}")
    if len(train_set) < batch_size:
        raise UsageError(
            f"the training set has {len(train_set)} samples, fewer than one batch of {batch_size}; lower "
            "batch_size"
        )
    augment, reseed = _augmentation(crop_size, ratio_range, flip, cat_max_ratio, ignore_index, seed)
    if augment is not None and getattr(train_set, "transform", None) is not None:
        raise UsageError(
            "the training set has its own transform and train_segmentation augments too; build the dataset "
            "without transform=, or pass crop_size=None, flip=False to keep only the dataset's"
        )
    device = torch.device(device)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    out_dir = os.fspath(out_dir) if out_dir is not None else None
    ckpt_path = os.path.join(out_dir, CHECKPOINT_NAME) if out_dir else None
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)

    def say(text: str) -> None:
        if log is not None:
            log(text)
        if out_dir:
            with open(os.path.join(out_dir, LOG_NAME), "a") as f:
                f.write(text + "\n")

    model.to(device)
    norm = input_normalization(model)
    num_classes = int(num_classes or model.num_classes)
    per_epoch = len(train_set) // batch_size
    total = epochs * per_epoch if max_steps is None else min(epochs * per_epoch, int(max_steps))
    warmup = int(warmup_iters)
    if warmup * 10 > total:
        warmup = total // 10
        say(
            f"warm-up shortened from {warmup_iters} to {warmup} iterations (a tenth of the {total}-iteration run)"
        )
    optimizer = make_optimizer(model, lr, weight_decay, lr_mult=head_lr_multiplier(head_lr_mult))
    history: list[dict[str, Any]] = []
    step, first_epoch, train_seconds, val_metrics = 0, 0, 0.0, None
    if ckpt_path and resume and os.path.isfile(ckpt_path):
        ck = torch.load(ckpt_path, map_location=device, weights_only=True)
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        step, first_epoch, history = int(ck["iteration"]), int(ck["epoch"]), list(ck["history"])
        train_seconds = float(ck["train_seconds"])
        say(f"resumed from {ckpt_path} after epoch {first_epoch} (iteration {step})")
    say(
        f"training {_config_name(model)}: {len(train_set)} samples, {epochs} epochs x {per_epoch} iterations "
        f"of {batch_size} ({total} in all), lr {lr:g} (decode head x{head_lr_mult:g}), wd {weight_decay:g}, "
        f"warm-up {warmup}, poly power {poly_power:g}, crop {crop_size}, {torch.get_num_threads()} thread(s) "
        f"on {device}"
    )
    try:
        for epoch in range(first_epoch, epochs):
            if step >= total:
                break
            model.train()
            if reseed is not None:
                reseed(epoch_seed(seed, epoch, stream=1))
            order = torch.randperm(
                len(train_set), generator=torch.Generator().manual_seed(epoch_seed(seed, epoch))
            )
            t0, seen, loss_sum, current = time.perf_counter(), 0, 0.0, lr
            for b in range(per_epoch):
                if step >= total:
                    break
                x, y = _training_batch(
                    train_set, order[b * batch_size : (b + 1) * batch_size].tolist(), augment
                )
                x, y = normalize_images(x.to(device), norm), y.to(device)
                current = poly_lr(step, total, warmup, lr, power=poly_power, warmup_start=warmup_start)
                set_lr(optimizer, current)
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
                if log_every and (step % log_every == 0 or step == total):
                    say(
                        f"epoch {epoch + 1}/{epochs} iter {step}/{total} loss {value:.4f} lr {current:.3g} "
                        f"{seen / (time.perf_counter() - t0):.1f} img/s"
                    )
            seconds = time.perf_counter() - t0
            train_seconds += seconds
            row: dict[str, Any] = {
                "epoch": epoch + 1,
                "iteration": step,
                "loss": loss_sum / max(1, seen),
                "lr": current,
                "seconds": round(seconds, 2),
                "images_per_s": round(seen / seconds, 2) if seconds > 0 else None,
            }
            last = epoch + 1 == epochs or step >= total
            if val_set is not None and ((epoch + 1) % eval_every == 0 or last):
                val_metrics = evaluate_segmentation(
                    model,
                    val_set,
                    batch_size=eval_batch_size or batch_size,
                    device=device,
                    num_classes=num_classes,
                    ignore_index=ignore_index,
                    limit=val_limit,
                )
                row["val"] = {k: val_metrics[k] for k in SUMMARY_KEYS}
            history.append(row)
            say(
                f"epoch {epoch + 1}/{epochs}: loss {row['loss']:.4f}, {seconds:.0f} s"
                + (
                    f", val mIoU {_pct(row['val']['mIoU'])} aAcc {_pct(row['val']['aAcc'])}"
                    if "val" in row
                    else ""
                )
            )
            if ckpt_path:
                atomic_save(
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "epoch": epoch + 1,
                        "iteration": step,
                        "history": plain(history),
                        "train_seconds": train_seconds,
                    },
                    ckpt_path,
                )
    finally:
        torch.set_num_threads(old_threads)
    recipe = {
        "epochs": epochs,
        "batch_size": batch_size,
        "train_samples": len(train_set),
        "lr": lr,
        "weight_decay": weight_decay,
        "head_lr_mult": head_lr_mult,
        "warmup_iters": warmup,
        "warmup_start": warmup_start,
        "poly_power": poly_power,
        "crop_size": crop_size,
        "ratio_range": ratio_range if crop_size is not None else None,
        "flip": flip,
        "cat_max_ratio": cat_max_ratio,
        "avg_non_ignore": avg_non_ignore,
        "seed": seed,
    }
    result: dict[str, Any] = {
        "history": history,
        "iterations": step,
        "train_seconds": round(train_seconds, 2),
        "val": val_metrics,
        "recipe": recipe,
    }
    if out_dir:
        info = {
            "model": getattr(getattr(model, "config", None), "name", None),
            **recipe,
            "iterations": step,
            "train_seconds": result["train_seconds"],
            "val": None if val_metrics is None else {k: val_metrics[k] for k in SUMMARY_KEYS},
            **(meta or {}),
        }
        result["weights"] = export_weights(model, os.path.join(out_dir, WEIGHTS_NAME), info)
        result["checkpoint"] = ckpt_path
        write_json(os.path.join(out_dir, METRICS_NAME), result)
    return result


def _config_name(model: nn.Module) -> str:
    cfg = getattr(model, "config", None)
    return f"'{cfg.name}'" if cfg is not None else type(model).__name__


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f} %"
