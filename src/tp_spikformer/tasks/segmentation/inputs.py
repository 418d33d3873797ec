"""Segmentation items and batches for the engine: ``(image, label[, stem])`` items, normalisation with
the model configuration's mean/std, and equal-size batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...data.scene_writers import scene_stem


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


def split_item(item: Any, index: int, dataset: Any) -> tuple[torch.Tensor, torch.Tensor, str]:
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


def stack_pairs(
    images: list[torch.Tensor], labels: list[torch.Tensor], what: str
) -> tuple[torch.Tensor, torch.Tensor]:
    shapes = {tuple(i.shape) for i in images} | {tuple(x.shape) for x in labels}
    if len({tuple(i.shape) for i in images}) > 1 or len({tuple(x.shape) for x in labels}) > 1:
        raise ValueError(
            f"{what}: the images of a batch differ in size ({sorted(shapes)}); pass crop_size=(h, w) so every "
            "training sample is cropped to one size"
        )
    return torch.stack(images), torch.stack(labels)


def equal_size_batches(dataset: Any, indices: Sequence[int], batch_size: int):
    """Consecutive items of one image and label size, up to ``batch_size`` per batch (mixed sizes: one by
    one); each batch is a list of ``(image, label, stem)``."""
    group: list[tuple[torch.Tensor, torch.Tensor, str]] = []
    for i in indices:
        item = split_item(dataset[i], i, dataset)
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


def device_of(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def sample_inputs(model: nn.Module, dataset: Any, batch_size: int, n_batches: int) -> list[torch.Tensor]:
    """``n_batches`` normalised batches ``[batch_size, 3, H, W]`` of the first images (cycled if the set is
    smaller), resized bilinearly to the configuration's input size: inputs for counting SOPs and timing."""
    _, h, w = model.config.data.input_size
    images = []
    for i in range(batch_size * n_batches):
        image = split_item(dataset[i % len(dataset)], i % len(dataset), dataset)[0]
        if tuple(image.shape[-2:]) != (h, w):
            image = F.interpolate(image[None], size=(h, w), mode="bilinear", align_corners=False)[0]
        images.append(image)
    x = normalize_images(torch.stack(images), input_normalization(model))  # [n, 3, H, W]
    return list(x.split(batch_size))
