"""Evaluation and training pipelines from a model's data configuration.

Static-image pipelines return ``[C, H, W]`` float tensors; the models repeat a static image over T
themselves. Event-frame pipelines take and return ``[T, 2, H, W]`` frames.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..errors import UsageError
from ._config import data_spec
from .transforms import (
    CenterCrop,
    Compose,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    RandomResizedCrop,
    Resize,
    ResizeFrames,
    ToChannels,
    ToTensor,
)


def eval_resize_size(input_hw: tuple[int, int], crop_pct: float) -> int | tuple[int, int]:
    """timm's eval resize: ``floor(size / crop_pct)`` of the shorter side (square input), or of each
    side for a non-square input. A 1e-6 guard keeps ratios like ``224 / 232`` from flooring to 231
    through rounding error."""
    h, w = input_hw
    if not 0 < crop_pct <= 1.0 + 1e-9:
        raise UsageError(f"crop_pct must be in (0, 1], got {crop_pct}")
    if h == w:
        return math.floor(h / crop_pct + 1e-6)
    return math.floor(h / crop_pct + 1e-6), math.floor(w / crop_pct + 1e-6)


def build_eval_transform(data_cfg: Any, frames_mode: str = "bilinear") -> Compose:
    """The official (timm) evaluation preprocessing of a configuration.

    Images (PIL, HWC numpy or CHW tensor): ``crop_pct`` None -> resize straight to the input size only
    if the image differs from it; else resize the shorter side to ``floor(input_size / crop_pct)`` with
    the configured interpolation and centre-crop the input size. Then to float [0, 1], adapt the
    channel count (grey -> RGB repeat) and normalise with mean/std when given.
    Event configurations (``event_frames``): resize ``[T, 2, H, W]`` frames to the input size when
    they differ (``frames_mode``, see :func:`.events.resize_frames`); counts are not normalised.
    """
    spec = data_spec(data_cfg)
    if spec.event_frames:
        return Compose([ResizeFrames(spec.hw, mode=frames_mode)])
    steps: list[Any] = []
    if spec.crop_pct is None:
        steps.append(Resize(spec.hw, spec.interpolation))
    else:
        steps += [Resize(eval_resize_size(spec.hw, spec.crop_pct), spec.interpolation), CenterCrop(spec.hw)]
    steps += [ToTensor(), ToChannels(spec.channels)]
    if spec.mean is not None:
        steps.append(Normalize(spec.mean, spec.std))  # type: ignore[arg-type]
    return Compose(steps)


def build_train_transform(
    data_cfg: Any,
    mode: str = "auto",
    padding: int = 4,
    scale: tuple[float, float] = (0.08, 1.0),
    hflip: float = 0.5,
    generator: torch.Generator | None = None,
    frames_mode: str = "bilinear",
) -> Compose:
    """A simple fine-tuning pipeline: random crop, horizontal flip, the eval normalisation.

    ``mode``: "crop" (resize to the input size if needed, zero-pad by ``padding``, random crop:
    the CIFAR recipe), "resized_crop" (random area ``scale`` / aspect crop resized to the input size:
    the ImageNet recipe) or "auto" (crop when ``crop_pct`` is None, else resized_crop). Event
    configurations: frame resize + horizontal flip.
    """
    spec = data_spec(data_cfg)
    if spec.event_frames:
        return Compose([ResizeFrames(spec.hw, mode=frames_mode), RandomHorizontalFlip(hflip, generator)])
    if mode == "auto":
        mode = "crop" if spec.crop_pct is None else "resized_crop"
    if mode == "crop":
        spatial = [Resize(spec.hw, spec.interpolation), RandomCrop(spec.hw, padding, generator)]
    elif mode == "resized_crop":
        spatial = [
            RandomResizedCrop(spec.hw, scale=scale, interpolation=spec.interpolation, generator=generator)
        ]
    else:
        raise UsageError(f"unknown train transform mode '{mode}'; valid: 'auto', 'crop', 'resized_crop'")
    steps: list[Any] = [
        *spatial,
        RandomHorizontalFlip(hflip, generator),
        ToTensor(),
        ToChannels(spec.channels),
    ]
    if spec.mean is not None:
        steps.append(Normalize(spec.mean, spec.std))  # type: ignore[arg-type]
    return Compose(steps)
