"""Evaluation of segmentation models: mIoU, aAcc, mAcc and per-class IoU with mmseg's accumulation
(:class:`.metrics.SegmentationMeter`), mmseg's ``whole`` inference (padding to the backbone's input
multiple, logits resized to each label's size), optional prediction PNGs."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...data.scene_writers import encode_image
from .inputs import device_of, equal_size_batches, input_normalization, normalize_images
from .metrics import SegmentationMeter
from .semfpn import resize_logits


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
    device = torch.device(device) if device is not None else device_of(model)
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
            for group in equal_size_batches(dataset, range(n), batch_size):
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
