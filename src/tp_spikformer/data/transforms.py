"""Callable transform objects built on :mod:`.functional` (the torchvision ``transforms`` we need).

Each class takes a PIL image or a tensor (see the layout convention in :mod:`.functional`) and returns
the same kind, except :class:`ToTensor`. Random transforms take an optional ``torch.Generator``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..errors import UsageError
from . import functional as TF


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Callable[[Any], Any]]):
        self.transforms = list(transforms)

    def __call__(self, x: Any) -> Any:
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self) -> str:
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"{type(self).__name__}([{inner}\n])"


class Resize:
    """Resize the shorter side to ``size`` (int) or to exactly ``(h, w)`` (see :func:`.functional.resize`)."""

    def __init__(self, size: TF.Size, interpolation: str = "bilinear"):
        self.size = size
        self.interpolation = interpolation

    def __call__(self, img: Any) -> Any:
        return TF.resize(img, self.size, self.interpolation)

    def __repr__(self) -> str:
        return f"Resize(size={self.size}, interpolation='{self.interpolation}')"


class CenterCrop:
    """Crop the centre ``size`` box (int or ``(h, w)``)."""

    def __init__(self, size: TF.Size):
        self.size = size

    def __call__(self, img: Any) -> Any:
        return TF.center_crop(img, self.size)

    def __repr__(self) -> str:
        return f"CenterCrop(size={self.size})"


class ToTensor:
    """PIL / HWC numpy uint8 -> float32 CHW tensor in [0, 1] (uint8 CHW tensors are scaled too)."""

    def __call__(self, pic: Any) -> torch.Tensor:
        return TF.to_tensor(pic)

    def __repr__(self) -> str:
        return "ToTensor()"


class ToChannels:
    """Give a ``[..., C, H, W]`` tensor ``channels`` channels (grey -> RGB repeats the channel)."""

    def __init__(self, channels: int):
        self.channels = channels

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return TF.to_channels(x, self.channels)

    def __repr__(self) -> str:
        return f"ToChannels({self.channels})"


class Normalize:
    """Per-channel ``(x - mean) / std`` on a float tensor."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return TF.normalize(x, self.mean, self.std)

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


class RandomCrop:
    """Zero-pad by ``padding`` on every side, then crop a random ``size`` box (CIFAR-style)."""

    def __init__(self, size: TF.Size, padding: int = 0, generator: torch.Generator | None = None):
        self.size = TF._pair(size)
        self.padding = padding
        self.generator = generator

    def __call__(self, img: Any) -> Any:
        if self.padding:
            img = TF.pad(img, self.padding)
        h, w = TF.image_size(img)
        ch, cw = self.size
        if ch > h or cw > w:
            raise UsageError(f"RandomCrop size {self.size} is larger than the padded image {h}x{w}")
        top = int(torch.randint(0, h - ch + 1, (1,), generator=self.generator))
        left = int(torch.randint(0, w - cw + 1, (1,), generator=self.generator))
        return TF.crop(img, top, left, ch, cw)

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomResizedCrop:
    """Crop a random area/aspect box and resize it to ``size`` (torchvision's sampling rule)."""

    def __init__(
        self,
        size: TF.Size,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        interpolation: str = "bilinear",
        generator: torch.Generator | None = None,
    ):
        self.size = TF._pair(size)
        self.scale = scale
        self.ratio = ratio
        self.interpolation = interpolation
        self.generator = generator

    def __call__(self, img: Any) -> Any:
        h, w = TF.image_size(img)
        top, left, ch, cw = TF.random_resized_crop_params(h, w, self.scale, self.ratio, self.generator)
        return TF.resize(TF.crop(img, top, left, ch, cw), self.size, self.interpolation)

    def __repr__(self) -> str:
        return (
            f"RandomResizedCrop(size={self.size}, scale={self.scale}, "
            f"ratio={tuple(round(r, 4) for r in self.ratio)}, interpolation='{self.interpolation}')"
        )


class RandomHorizontalFlip:
    """Mirror left-right with probability ``p`` (works on PIL images and any ``[..., W]`` tensor)."""

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None):
        self.p = p
        self.generator = generator

    def __call__(self, img: Any) -> Any:
        if self.p > 0 and float(torch.rand(1, generator=self.generator)) < self.p:
            return TF.hflip(img)
        return img

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class ResizeFrames:
    """Resize event frames ``[T, 2, H, W]`` to ``size`` (see :func:`..events.resize_frames`)."""

    def __init__(self, size: TF.Size, mode: str = "bilinear", antialias: bool = False):
        self.size = TF._pair(size)
        self.mode = mode
        self.antialias = antialias

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        from .events import resize_frames

        return resize_frames(frames, self.size, self.mode, self.antialias)

    def __repr__(self) -> str:
        return f"ResizeFrames(size={self.size}, mode='{self.mode}', antialias={self.antialias})"


# ---- batch augmentation for in-memory tensors [B, C, H, W] (no per-item Python work) ----


def random_crop_batch(
    x: torch.Tensor, padding: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Zero-pad a ``[B, C, H, W]`` batch by ``padding`` and crop every image at its own random offset."""
    if padding <= 0:
        return x
    b, c, h, w = x.shape
    xp = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None].expand(b, c, h, w + 2 * padding)
    xr = torch.gather(xp, 2, rows.to(x.device))
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :].expand(b, c, h, w)
    return torch.gather(xr, 3, cols.to(x.device))


def random_hflip_batch(
    x: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Mirror each image of a ``[B, ..., W]`` batch with probability ``p``."""
    if p <= 0:
        return x
    flip = torch.rand(x.shape[0], generator=generator) < p
    if not bool(flip.any()):
        return x
    out = x.clone()
    out[flip] = x[flip].flip(-1)
    return out


class BatchAugment:
    """Random crop with padding + horizontal flip on ``[B, C, H, W]`` batches (for training loops)."""

    def __init__(self, padding: int = 4, hflip: float = 0.5, generator: torch.Generator | None = None):
        self.padding = padding
        self.hflip = hflip
        self.generator = generator

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = random_crop_batch(x, self.padding, self.generator)
        return random_hflip_batch(x, self.hflip, self.generator)

    def __repr__(self) -> str:
        return f"BatchAugment(padding={self.padding}, hflip={self.hflip})"
