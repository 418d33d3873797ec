"""Image + box transforms for detection, and batching of mixed-size images.

Boxes are ``[N, 4]`` float ``(x1, y1, x2, y2)`` in pixel edges (a box covering pixel columns 3..5 has
``x1 = 3, x2 = 6``), as :class:`.coco.CocoDetection` returns them. :func:`letterbox` resizes keeping the
aspect ratio and pads to a fixed size; its :class:`LetterboxInfo` maps predictions back to the
original pixels (:func:`unletterbox_boxes`). :func:`collate_detection` pads a list of differently sized
images into one batch (bottom/right, to a multiple of ``size_divisor``) with a padding mask.
Randomness comes from an explicit ``torch.Generator``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import UsageError
from . import functional as TF


def _check(image: torch.Tensor, boxes: torch.Tensor | None) -> None:
    if image.dim() != 3:
        raise UsageError(f"expected an image [C, H, W], got shape {tuple(image.shape)}")
    if boxes is not None and (boxes.dim() != 2 or boxes.shape[-1] != 4):
        raise UsageError(f"expected boxes [N, 4] (x1, y1, x2, y2), got shape {tuple(boxes.shape)}")


def resize_detection(
    image: torch.Tensor, boxes: torch.Tensor | None, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Resize the image to ``size = (h, w)`` (bilinear) and scale the boxes with it."""
    _check(image, boxes)
    h, w = image.shape[-2:]
    out = TF.resize(image, size, "bilinear")
    if boxes is None:
        return out, None
    sx, sy = size[1] / w, size[0] / h
    return out, boxes * boxes.new_tensor([sx, sy, sx, sy])


def hflip_detection(
    image: torch.Tensor, boxes: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mirror the image left-right; ``x1' = W - x2``, ``x2' = W - x1``."""
    _check(image, boxes)
    if boxes is None:
        return image.flip(-1), None
    w = image.shape[-1]
    flipped = boxes.clone()
    flipped[:, 0], flipped[:, 2] = w - boxes[:, 2], w - boxes[:, 0]
    return image.flip(-1), flipped


def random_hflip_detection(
    image: torch.Tensor, boxes: torch.Tensor | None, p: float = 0.5, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`hflip_detection` with probability ``p``."""
    if float(torch.rand(1, generator=generator)) < p:
        return hflip_detection(image, boxes)
    return image, boxes


def random_resize_detection(
    image: torch.Tensor,
    boxes: torch.Tensor | None,
    ratio_range: tuple[float, float] = (0.75, 1.25),
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scale jitter: resize by a random factor in ``ratio_range`` (aspect ratio kept)."""
    _check(image, boxes)
    r = ratio_range[0] + (ratio_range[1] - ratio_range[0]) * float(torch.rand(1, generator=generator))
    h, w = image.shape[-2:]
    return resize_detection(image, boxes, (max(1, round(h * r)), max(1, round(w * r))))


@dataclass(frozen=True)
class LetterboxInfo:
    """How :func:`letterbox` changed an image: ``scale`` ``(sx, sy)`` (resized / original),
    ``pad`` ``(left, top)`` in output pixels, ``size`` ``(h, w)`` of the output, ``orig_size`` ``(h, w)``."""

    scale: tuple[float, float]
    pad: tuple[int, int]
    size: tuple[int, int]
    orig_size: tuple[int, int]


def letterbox(
    image: torch.Tensor,
    boxes: torch.Tensor | None = None,
    size: int | Sequence[int] = 640,
    fill: float = 0.0,
    center: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, LetterboxInfo]:
    """Resize keeping the aspect ratio so the image fits ``size = (h, w)``, then pad with ``fill`` to
    exactly ``size`` (bottom/right, or equally on both sides with ``center=True``).

    Returns ``(image, boxes, info)``; boxes are mapped into the output, :func:`unletterbox_boxes`
    maps output boxes back to the original image."""
    _check(image, boxes)
    out_h, out_w = TF._pair(size)
    h, w = image.shape[-2:]
    factor = min(out_h / h, out_w / w)
    new_h, new_w = min(out_h, max(1, round(h * factor))), min(out_w, max(1, round(w * factor)))
    resized, boxes = resize_detection(image, boxes, (new_h, new_w))
    pad_w, pad_h = out_w - new_w, out_h - new_h
    left, top = (pad_w // 2, pad_h // 2) if center else (0, 0)
    padded = F.pad(resized, (left, pad_w - left, top, pad_h - top), value=fill)
    if boxes is not None:
        boxes = boxes + boxes.new_tensor([left, top, left, top])
    info = LetterboxInfo((new_w / w, new_h / h), (left, top), (out_h, out_w), (int(h), int(w)))
    return padded, boxes, info


def unletterbox_boxes(boxes: torch.Tensor, info: LetterboxInfo, clip: bool = True) -> torch.Tensor:
    """Map ``[N, 4]`` xyxy boxes of a letterboxed image back to the original pixels (clipped to the
    original image with ``clip``)."""
    left, top = info.pad
    sx, sy = info.scale
    out = (boxes - boxes.new_tensor([left, top, left, top])) / boxes.new_tensor([sx, sy, sx, sy])
    if clip:
        h, w = info.orig_size
        out = torch.stack(
            [out[:, 0].clamp(0, w), out[:, 1].clamp(0, h), out[:, 2].clamp(0, w), out[:, 3].clamp(0, h)],
            dim=1,
        )
    return out


def collate_detection(
    batch: Sequence[tuple[torch.Tensor, dict[str, Any]]], size_divisor: int = 32, fill: float = 0.0
) -> tuple[torch.Tensor, list[dict[str, Any]], torch.Tensor]:
    """Batch ``(image [C, H, W], target)`` items of different sizes.

    Returns ``images [B, C, H', W']`` (each image at the top-left, padded with ``fill`` to the largest
    height/width rounded up to a multiple of ``size_divisor``), the targets (shallow copies with
    ``"size": (h, w)`` of the unpadded image added) and ``padding_mask [B, H', W']`` bool, True on
    padding."""
    if not batch:
        raise UsageError("collate_detection needs at least one item")
    if size_divisor < 1:
        raise UsageError(f"size_divisor must be >= 1, got {size_divisor}")
    channels = {int(img.shape[0]) for img, _ in batch}
    if len(channels) != 1:
        raise UsageError(f"images with different channel counts in one batch: {sorted(channels)}")
    max_h = max(int(img.shape[1]) for img, _ in batch)
    max_w = max(int(img.shape[2]) for img, _ in batch)
    H = math.ceil(max_h / size_divisor) * size_divisor
    W = math.ceil(max_w / size_divisor) * size_divisor
    first = batch[0][0]
    images = first.new_full((len(batch), channels.pop(), H, W), fill)
    mask = torch.ones(len(batch), H, W, dtype=torch.bool)
    targets = []
    for i, (img, target) in enumerate(batch):
        h, w = img.shape[1:]
        images[i, :, :h, :w] = img
        mask[i, :h, :w] = False
        targets.append({**target, "size": (int(h), int(w))})
    return images, targets, mask


class DetectionTrainTransform:
    """Scale jitter (``ratio_range``) then a horizontal flip (``flip_p``) on ``(image, target)``
    pairs (the target's ``boxes`` follow); ``seed`` seeds the transform's own generator."""

    def __init__(self, ratio_range: tuple[float, float] = (0.75, 1.25), flip_p: float = 0.5, seed: int = 0):
        self.ratio_range, self.flip_p = ratio_range, flip_p
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, image: torch.Tensor, target: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        image, boxes = random_resize_detection(image, target["boxes"], self.ratio_range, self.generator)
        image, boxes = random_hflip_detection(image, boxes, self.flip_p, self.generator)
        return image, {**target, "boxes": boxes}

    def __repr__(self) -> str:
        return f"DetectionTrainTransform(ratio_range={self.ratio_range}, flip_p={self.flip_p})"
