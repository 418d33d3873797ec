"""Train and evaluate segmentation models (library functions; the command line wires them).

* :func:`segmentation_loss`: softmax cross-entropy on logits resized bilinearly to the label size, pixels
  labelled ``ignore_index`` (255) excluded. Like mmseg's ``CrossEntropyLoss`` (``avg_non_ignore=False``,
  its default) the mean runs over all pixels, ignored ones counting 0; ``avg_non_ignore=True`` averages
  over the labelled pixels only (PyTorch's ``cross_entropy``).
* :func:`train_segmentation`: the official recipe's shape, sized by the caller: AdamW (betas 0.9/0.999,
  weight decay on every parameter as the official ``optim_wrapper``, which sets no decay multipliers),
  ``decode_head`` at ``head_lr_mult`` x the learning rate (official ``custom_keys={'head': lr_mult 2}``,
  which on these models matches the decode head's parameters only), per-iteration linear warm-up from
  ``warmup_start`` x lr (mmengine ``LinearLR``) then poly decay to 0 (``PolyLR``, power 1.0 officially),
  random resize / crop / flip through :class:`~tp_spikformer.data.SegmentationTrainTransform`.
* :func:`evaluate_segmentation`: mIoU, aAcc, mAcc and per-class IoU with mmseg's accumulation
  (:class:`.metrics.SegmentationMeter`); logits resized to each label's size (mmseg ``whole`` mode);
  optional prediction PNGs.

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

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...data.scene_writers import encode_image, scene_stem
from ...data.segmentation_transforms import SegmentationTrainTransform, random_hflip
from ...jsonio import plain, write_json
from .metrics import SegmentationMeter
from .semfpn import resize_logits

CHECKPOINT_NAME = "checkpoint.pt"
WEIGHTS_NAME = "model.pt"
METRICS_NAME = "metrics.json"
LOG_NAME = "log.txt"


# -- loss, schedule, optimiser ----------------------------------------------------------------------


def segmentation_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int = 255,
    avg_non_ignore: bool = False,
    align_corners: bool = False,
) -> torch.Tensor:
    """Cross-entropy of logits ``[B, K, h, w]`` (any stride) against labels ``[B, H, W]`` (module docstring)."""
    if logits.dim() != 4 or target.dim() != 3 or logits.shape[0] != target.shape[0]:
        raise ValueError(
            f"expected logits [B, K, h, w] and labels [B, H, W], got {tuple(logits.shape)} and "
            f"{tuple(target.shape)}"
        )
    logits = resize_logits(logits, target.shape[-2:], align_corners)  # [B, K, H, W]
    loss = F.cross_entropy(logits.float(), target.long(), ignore_index=ignore_index, reduction="none")
    if avg_non_ignore:
        return loss.sum() / (target != ignore_index).sum().clamp_min(1)
    return loss.mean()


def warmup_poly_lr(
    step: int,
    total_steps: int,
    warmup_steps: int,
    lr: float,
    power: float = 1.0,
    warmup_start: float = 1e-6,
    min_lr: float = 0.0,
) -> float:
    """Learning rate at iteration ``step`` (0-based), mmengine's ``LinearLR`` then ``PolyLR``:
    ``lr * (warmup_start + (1 - warmup_start) * step / warmup_steps)`` during the warm-up, then
    ``(lr - min_lr) * (1 - (step - warmup) / (total - warmup)) ** power + min_lr``."""
    if step < warmup_steps:
        return lr * (warmup_start + (1.0 - warmup_start) * step / warmup_steps)
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return (lr - min_lr) * (1.0 - progress) ** power + min_lr


def segmentation_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    head_lr_mult: float = 2.0,
    betas: tuple[float, float] = (0.9, 0.999),
) -> torch.optim.AdamW:
    """AdamW with two groups: ``decode_head.*`` at ``head_lr_mult`` x ``lr`` and the rest at ``lr``; weight
    decay on every trainable parameter (official). Each group keeps its factor in ``group["lr_mult"]``."""
    groups: dict[float, list[torch.Tensor]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault(head_lr_mult if name.startswith("decode_head.") else 1.0, []).append(p)
    return torch.optim.AdamW(
        [{"params": ps, "lr": lr * m, "lr_mult": m} for m, ps in sorted(groups.items())],
        lr=lr,
        betas=betas,
        weight_decay=weight_decay,
    )


# -- data -------------------------------------------------------------------------------------------


def input_normalization(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(mean, std)`` as ``[1, C, 1, 1]`` tensors from ``model.config.data``, or None (no normalisation)."""
    data = getattr(getattr(model, "config", None), "data", None)
    if data is None or data.mean is None or data.std is None:
        return None
    return torch.tensor(data.mean).view(1, -1, 1, 1), torch.tensor(data.std).view(1, -1, 1, 1)


def normalize_images(images: torch.Tensor, norm: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """``(images - mean) / std`` with ``norm = input_normalization(model)``; unchanged when None."""
    if norm is None:
        return images
    mean, std = norm
    return (images - mean.to(images.device)) / std.to(images.device)


def _split_item(item: Any, index: int, dataset: Any) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``(image, label, stem)`` of a dataset item ``(image, label)`` or ``(image, label, stem)``."""
    if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
        raise TypeError(
            f"segmentation datasets give (image, label) or (image, label, stem) items; {type(dataset).__name__}"
            f"[{index}] gave {type(item).__name__}"
        )
    image, label = item[0], item[1]
    if len(item) == 3:
        stem = str(item[2])
    else:
        stems = getattr(dataset, "stems", None)
        stem = str(stems[index]) if stems is not None else scene_stem(index)  # make_scenes' file names
    if (
        not isinstance(image, torch.Tensor)
        or image.dim() != 3
        or not isinstance(label, torch.Tensor)
        or label.dim() != 2
    ):
        raise TypeError(
            f"item {index} of {type(dataset).__name__}: expected image [C, H, W] and label [H, W] tensors"
        )
    return image, label, stem


def _stack(
    images: list[torch.Tensor], labels: list[torch.Tensor], what: str
) -> tuple[torch.Tensor, torch.Tensor]:
    shapes = {tuple(i.shape) for i in images} | {tuple(x.shape) for x in labels}
    if len({tuple(i.shape) for i in images}) > 1 or len({tuple(x.shape) for x in labels}) > 1:
        raise ValueError(
            f"{what}: the images of a batch differ in size ({sorted(shapes)}); pass crop_size=(h, w) so every "
            "training sample is cropped to one size"
        )
    return torch.stack(images), torch.stack(labels)


# -- training ---------------------------------------------------------------------------------------


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
    device = torch.device(device) if device is not None else _device_of(model)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    lines: list[str] = []
    if out_dir is not None:
        out_dir = os.fspath(out_dir)
        os.makedirs(out_dir, exist_ok=True)

    def say(text: str) -> None:
        lines.append(text)
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
    augment = (
        SegmentationTrainTransform(
            crop_size,
            ratio_range,
            flip_p=0.5 if flip else 0.0,
            ignore_index=ignore_index,
            cat_max_ratio=cat_max_ratio,
            seed=seed,
        )
        if crop_size is not None
        else None
    )
    flip_gen = torch.Generator().manual_seed(seed)
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
                images, labels = [], []
                for i in order[b * batch_size : (b + 1) * batch_size].tolist():
                    image, label, _ = _split_item(train_set[i], i, train_set)
                    if augment is not None:
                        image, label = augment(image, label)
                    elif flip:
                        image, label = random_hflip(image, label, 0.5, flip_gen)
                    images.append(image)
                    labels.append(label)
                x, y = _stack(images, labels, "training")
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


# -- evaluation -------------------------------------------------------------------------------------


def whole_inference(model: nn.Module, x: torch.Tensor, label_size: Sequence[int]) -> torch.Tensor:
    """Logits ``[B, K, H_label, W_label]`` of normalised images ``x`` (mmseg's ``whole`` mode).

    An image whose sides are not multiples of ``model.input_multiple`` (16 for SDT-V3) is padded at the
    bottom/right with 0 (after normalisation, mmseg's ``pad_val``); the logits are resized to the padded
    input, the padding is cropped off, and the rest is resized to the label size (the two bilinear resizes of
    mmseg's ``predict_by_feat`` + ``postprocess_result``; one when the input already has the label size).
    """
    h, w = x.shape[-2:]
    m = int(getattr(model, "input_multiple", 1))
    pad_h, pad_w = -h % m, -w % m
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), value=0.0)
    align = getattr(model, "align_corners", False)
    logits = model(x)  # [B, K, H'/s, W'/s]
    if pad_h or pad_w or (h, w) != tuple(label_size):
        logits = resize_logits(logits, x.shape[-2:], align)[..., :h, :w]  # [B, K, h, w]
    return resize_logits(logits, label_size, align)


def _equal_size_batches(dataset: Any, indices: Sequence[int], batch_size: int):
    """Consecutive items of one image and label size, up to ``batch_size`` per batch (mixed sizes: one by one)."""
    group: list[tuple[torch.Tensor, torch.Tensor, str]] = []
    for i in indices:
        item = _split_item(dataset[i], i, dataset)
        if group and (
            len(group) == batch_size
            or item[0].shape != group[0][0].shape
            or item[1].shape != group[0][1].shape
        ):
            yield group
            group = []
        group.append(item)
    if group:
        yield group


def evaluate_segmentation(
    model: nn.Module,
    dataset: Any,
    *,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    num_classes: int | None = None,
    ignore_index: int = 255,
    save_predictions: str | os.PathLike | None = None,
    reduce_zero_label: bool | None = None,
    class_names: Sequence[str] | None = None,
    limit: int | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """mIoU, aAcc, mAcc, per-class IoU / Acc (percent, :class:`.metrics.SegmentationMeter`) of ``model``
    (eval mode, no grad) on ``dataset`` (or its first ``limit`` items).

    Images of one size are batched (up to ``batch_size``; scenes), others run one by one; the logits are
    resized bilinearly to each label's size before the arg-max. ``save_predictions``: a folder that gets
    one uint8 PNG per image named after its annotation's stem, in the annotations' class-index convention:
    with ``reduce_zero_label`` (read from the dataset when None, e.g. ``ADE20KDataset``) a predicted class
    ``c`` is written as ``c + 1`` (ADE20K: 1..150, 0 = "other" is never predicted), else as ``c``.
    Datasets without stems (``SceneDataset``) are named like ``make_scenes`` files (``scene_000123``).
    """
    num_classes = int(num_classes or model.num_classes)
    if reduce_zero_label is None:
        reduce_zero_label = bool(getattr(dataset, "reduce_zero_label", False))
    offset = 1 if reduce_zero_label else 0
    if save_predictions is not None:
        if num_classes - 1 + offset > 255:
            raise ValueError(
                f"{num_classes} classes do not fit uint8 PNGs; save_predictions needs <= "
                f"{256 - offset} classes"
            )
        save_predictions = os.fspath(save_predictions)
        os.makedirs(save_predictions, exist_ok=True)
    if class_names is None:
        names = getattr(dataset, "classes", None)
        class_names = names if names is not None and len(names) == num_classes else None
    device = torch.device(device) if device is not None else _device_of(model)
    norm = input_normalization(model)
    meter = SegmentationMeter(num_classes, ignore_index, class_names)
    n = len(dataset) if limit is None else min(int(limit), len(dataset))
    was_training = model.training
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    model.eval()
    written = 0
    start = time.perf_counter()
    try:
        with torch.inference_mode():
            for group in _equal_size_batches(dataset, range(n), batch_size):
                x = normalize_images(torch.stack([g[0] for g in group]).to(device), norm)
                y = torch.stack([g[1] for g in group]).to(device)
                logits = whole_inference(model, x, y.shape[-2:])
                pred = logits.argmax(1)  # [B, H, W]
                meter.update(pred, y)
                if save_predictions is not None:
                    for p, (_, _, stem) in zip(pred.to("cpu", torch.uint8) + offset, group):
                        with open(os.path.join(save_predictions, stem + ".png"), "wb") as f:
                            f.write(encode_image(np.ascontiguousarray(p.numpy()), "png"))
                        written += 1
    finally:
        model.train(was_training)
        torch.set_num_threads(old_threads)
    seconds = time.perf_counter() - start
    out = meter.compute()
    out.update(
        seconds=seconds,
        images_per_s=n / seconds if seconds > 0 else None,
        num_classes=num_classes,
        ignore_index=ignore_index,
    )
    if save_predictions is not None:
        out.update(
            predictions=save_predictions,
            predictions_written=written,
            prediction_convention="class index + 1 (reduce_zero_label)" if offset else "class index",
        )
    return out


# -- helpers ----------------------------------------------------------------------------------------


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _config_name(model: nn.Module) -> str:
    cfg = getattr(model, "config", None)
    return f" ('{cfg.name}')" if cfg is not None else ""


def _pct(v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f} %"
