"""Per-image preprocessing of a detector's inputs and batching.

Datasets give ``(image float [3, H, W] in [0, 1], target)`` with ``boxes`` ``[N, 4]`` xyxy in original
pixels and ``labels`` (``CocoDetection``, ``SceneDataset(mode="detection")``). :class:`DetectionPreprocess`
normalises (the model's mean/std), letterboxes to the model's input size (aspect ratio kept, padded
bottom/right with 0, i.e. the mean colour) and, for training, applies scale jitter and horizontal flips
from its own seeded generator; :func:`make_batch` pads a list of results to one batch whose sides are
multiples of the detector's ``size_divisor``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ...data.detection_transforms import (
    LetterboxInfo,
    collate_detection,
    letterbox,
    random_hflip_detection,
    random_resize_detection,
    unletterbox_boxes,
)


class DetectionPreprocess:
    """``(image, target) -> (image, target)`` for a detector.

    Args:
        size: ``(h, w)`` the image is letterboxed to.
        mean / std: per-channel normalisation (None: none).
        flip_p: probability of a horizontal flip (0 for evaluation).
        scale_range: scale-jitter factors applied after the letterbox (None for evaluation): the image
            and its boxes are resized by a random factor in this range, so a batch mixes sizes.
        seed: seed of the generator that draws flips and scales.

    The returned target carries ``boxes`` in the returned image's pixels, ``letterbox`` (the
    :class:`LetterboxInfo` mapping them back to the original image) and everything else it had.
    """

    def __init__(
        self,
        size: Sequence[int],
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        flip_p: float = 0.0,
        scale_range: tuple[float, float] | None = None,
        seed: int = 0,
    ):
        self.size = (int(size[0]), int(size[1]))
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1) if mean is not None else None
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1) if std is not None else None
        if not 0.0 <= flip_p <= 1.0:
            raise ValueError(f"flip probability must be in [0, 1], got {flip_p}")
        if scale_range is not None and not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {scale_range}")
        self.flip_p, self.scale_range = float(flip_p), scale_range
        self.generator = torch.Generator().manual_seed(int(seed))

    def reseed(self, seed: int) -> None:
        """Restart the random stream (per epoch, so a resumed run draws the same augmentations)."""
        self.generator.manual_seed(int(seed))

    def __call__(self, image: torch.Tensor, target: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        if self.mean is not None:
            image = (image - self.mean) / self.std
        boxes = target["boxes"].float()
        image, boxes, info = letterbox(image, boxes, self.size)
        if self.scale_range is not None:
            image, boxes = random_resize_detection(image, boxes, self.scale_range, self.generator)
        if self.flip_p > 0:
            image, boxes = random_hflip_detection(image, boxes, self.flip_p, self.generator)
        return image, {**target, "boxes": boxes, "letterbox": info}


def make_batch(
    items: Sequence[tuple[torch.Tensor, dict[str, Any]]], size_divisor: int
) -> tuple[torch.Tensor, list[dict[str, Any]], list[tuple[int, int]]]:
    """Pad preprocessed items into ``images [B, 3, H, W]`` (top-left, zeros; sides multiples of
    ``size_divisor``); returns the images, the targets and the unpadded ``(h, w)`` of each image."""
    images, targets, _ = collate_detection(items, size_divisor=size_divisor)
    return images, targets, [t["size"] for t in targets]


def original_boxes(boxes: torch.Tensor, info: LetterboxInfo) -> torch.Tensor:
    """Boxes predicted on a letterboxed image, in the original image's pixels (clipped to it)."""
    return unletterbox_boxes(boxes, info, clip=True)
