"""Joint transforms of an (image ``[C, H, W]`` float, label ``[H, W]`` int64) pair for segmentation.

Images are resized bilinearly, labels with nearest neighbour (class indices are never blended).
Training (mmseg's ADE20K pipeline, scaled down): :func:`random_resize` (ratio 0.5-2.0),
:func:`random_crop` (label padded with ``ignore_index``, optional ``cat_max_ratio``),
:func:`random_hflip`. Evaluation: :func:`resize_keep_ratio` on the image only; the label keeps its
original size and the prediction is resized to it (mmseg's ``whole`` test mode).

Randomness comes from an explicit ``torch.Generator`` (the global RNG is never touched). The transform
classes own one seeded generator; with several DataLoader workers each worker holds a copy of it, so
seed them per worker (``worker_init_fn``) when that matters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..errors import UsageError
from . import functional as TF

Pair = tuple[torch.Tensor, torch.Tensor]


def _uniform(lo: float, hi: float, generator: torch.Generator | None) -> float:
    return lo + (hi - lo) * float(torch.rand(1, generator=generator))


def _randint(high: int, generator: torch.Generator | None) -> int:
    """Uniform integer in ``[0, high)``."""
    return int(torch.randint(0, high, (1,), generator=generator))


def _check(image: torch.Tensor, label: torch.Tensor) -> None:
    if image.dim() != 3 or label.dim() != 2 or image.shape[1:] != label.shape:
        raise UsageError(
            f"expected image [C, H, W] and label [H, W] of the same size, got {tuple(image.shape)} "
            f"and {tuple(label.shape)}"
        )


def resize_label(label: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of an integer label ``[H, W]`` (or ``[B, H, W]``) to ``size``."""
    if tuple(label.shape[-2:]) == tuple(size):
        return label
    x = label.reshape(-1, 1, *label.shape[-2:]).float()  # exact for labels below 2**24
    y = F.interpolate(x, size=size, mode="nearest")
    return y.to(label.dtype).reshape(*label.shape[:-2], *size)


def resize_pair(image: torch.Tensor, label: torch.Tensor, size: tuple[int, int]) -> Pair:
    """Resize both to ``size = (h, w)``: image bilinear, label nearest."""
    _check(image, label)
    return TF.resize(image, size, "bilinear"), resize_label(label, size)


def _scaled(h: int, w: int, factor: float) -> tuple[int, int]:
    return max(1, int(h * factor + 0.5)), max(1, int(w * factor + 0.5))


def keep_ratio_factor(h: int, w: int, scale: Sequence[int]) -> float:
    """mmseg's keep-ratio rule: the largest factor with the long side <= max(scale) and the short side
    <= min(scale)."""
    return min(max(scale) / max(h, w), min(scale) / min(h, w))


def random_resize(
    image: torch.Tensor,
    label: torch.Tensor,
    ratio_range: tuple[float, float] = (0.5, 2.0),
    scale: Sequence[int] | None = None,
    generator: torch.Generator | None = None,
) -> Pair:
    """Resize by a random ratio in ``ratio_range``: of the image's own size, or with ``scale =
    (long, short)`` to ``ratio x scale`` keeping the aspect ratio (mmseg ``RandomResize``)."""
    _check(image, label)
    h, w = image.shape[-2:]
    r = _uniform(ratio_range[0], ratio_range[1], generator)
    factor = r if scale is None else keep_ratio_factor(h, w, [s * r for s in scale])
    return resize_pair(image, label, _scaled(h, w, factor))


def random_crop(
    image: torch.Tensor,
    label: torch.Tensor,
    size: int | Sequence[int],
    ignore_index: int = 255,
    cat_max_ratio: float = 1.0,
    generator: torch.Generator | None = None,
) -> Pair:
    """A random ``size`` crop; a smaller pair is first padded at the bottom/right (image 0, label
    ``ignore_index``). With ``cat_max_ratio < 1``, up to 10 crops are drawn until no single class covers
    that share of the labelled pixels (mmseg ``RandomCrop``)."""
    _check(image, label)
    ch, cw = TF._pair(size)
    h, w = image.shape[-2:]
    if h < ch or w < cw:
        pad = (0, max(0, cw - w), 0, max(0, ch - h))  # left, right, top, bottom
        image = F.pad(image, pad, value=0.0)
        label = F.pad(label, pad, value=ignore_index)
        h, w = image.shape[-2:]
    for _ in range(10 if cat_max_ratio < 1.0 else 1):
        top, left = _randint(h - ch + 1, generator), _randint(w - cw + 1, generator)
        crop = label[top : top + ch, left : left + cw]
        if cat_max_ratio >= 1.0:
            break
        _, counts = torch.unique(crop[crop != ignore_index], return_counts=True)
        if counts.numel() > 1 and float(counts.max()) / float(counts.sum()) < cat_max_ratio:
            break
    return image[:, top : top + ch, left : left + cw], crop


def hflip_pair(image: torch.Tensor, label: torch.Tensor) -> Pair:
    """Mirror both left-right."""
    return image.flip(-1), label.flip(-1)


def random_hflip(
    image: torch.Tensor, label: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None
) -> Pair:
    """Mirror both with probability ``p``."""
    if float(torch.rand(1, generator=generator)) < p:
        return hflip_pair(image, label)
    return image, label


def resize_keep_ratio(image: torch.Tensor, scale: Sequence[int]) -> torch.Tensor:
    """Resize an image ``[C, H, W]`` with :func:`keep_ratio_factor` (e.g. ``scale=(2048, 512)``)."""
    h, w = image.shape[-2:]
    return TF.resize(image, _scaled(h, w, keep_ratio_factor(h, w, scale)), "bilinear")


class SegmentationTrainTransform:
    """Random resize -> random crop -> random horizontal flip, on (image, label) pairs.

    ``crop_size``: int or (h, w). ``ratio_range`` / ``scale``: as :func:`random_resize`.
    ``seed``: of the transform's own generator.
    """

    def __init__(
        self,
        crop_size: int | Sequence[int],
        ratio_range: tuple[float, float] = (0.5, 2.0),
        scale: Sequence[int] | None = None,
        flip_p: float = 0.5,
        ignore_index: int = 255,
        cat_max_ratio: float = 0.75,
        seed: int = 0,
    ):
        self.crop_size = TF._pair(crop_size)
        self.ratio_range, self.scale, self.flip_p = ratio_range, scale, flip_p
        self.ignore_index, self.cat_max_ratio = ignore_index, cat_max_ratio
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, image: torch.Tensor, label: torch.Tensor) -> Pair:
        g = self.generator
        image, label = random_resize(image, label, self.ratio_range, self.scale, g)
        image, label = random_crop(image, label, self.crop_size, self.ignore_index, self.cat_max_ratio, g)
        return random_hflip(image, label, self.flip_p, g)

    def __repr__(self) -> str:
        return (
            f"SegmentationTrainTransform(crop={self.crop_size}, ratio={self.ratio_range}, "
            f"scale={self.scale}, flip_p={self.flip_p})"
        )


class SegmentationEvalTransform:
    """Evaluation: resize the image keeping its aspect ratio (``scale = (long, short)``; None keeps
    it as is); the label is returned unchanged, at the original size."""

    def __init__(self, scale: Sequence[int] | None = None):
        self.scale = scale

    def __call__(self, image: torch.Tensor, label: torch.Tensor) -> Pair:
        return (resize_keep_ratio(image, self.scale) if self.scale is not None else image), label

    def __repr__(self) -> str:
        return f"SegmentationEvalTransform(scale={self.scale})"
