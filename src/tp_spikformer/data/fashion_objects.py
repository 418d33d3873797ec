"""Fashion-MNIST items as tinted RGBA sprites for synthetic scenes.

An item's silhouette is its intensity thresholded (crisp alpha, so masks are exact) with small holes
filled (dark specks inside a garment); larger holes such as a bag's handle loop or the gaps between a
sandal's straps stay transparent. The colour is a tint modulated by the item's own shading, so the
texture (seams, prints) survives the tinting.

Sources: the Debian package's IDX files (``apt-get install dataset-fashion-mnist``, default root
``/usr/share/datasets/fashion-mnist``), any folder with the IDX files (``root=``), or the 2,000-image
test slice packaged with tp-spikformer (``source="shipped"``, offline). The shipped slice is split in
two disjoint halves so that training and test scenes never share an item: ``split="train"`` uses
images 0..999 and ``split="test"`` images 1000..1999.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from ..errors import UsageError
from . import functional as TF
from .errors import DatasetNotFoundError
from .mnist import FASHION_MNIST_CLASSES, FASHION_MNIST_ROOT, read_idx_split

SOURCES = ("idx", "shipped")
SHIPPED_HALF = 1000  # the shipped test slice has 2000 images: train half [0, 1000), test half [1000, 2000)


def _grow(seed: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Pixels of ``allowed`` 4-connected to ``seed`` (bool ``[H, W]``), by repeated one-pixel growth."""
    reach = seed & allowed
    while True:
        nxt = reach.copy()
        nxt[1:] |= reach[:-1]
        nxt[:-1] |= reach[1:]
        nxt[:, 1:] |= reach[:, :-1]
        nxt[:, :-1] |= reach[:, 1:]
        nxt &= allowed
        if np.array_equal(nxt, reach):
            return reach
        reach = nxt


def fill_small_holes(mask: np.ndarray, max_hole: int) -> np.ndarray:
    """``mask`` (bool ``[H, W]``) with its holes (background components not connected to the border,
    4-connectivity) of at most ``max_hole`` pixels set to True."""
    border = np.zeros_like(mask)
    border[[0, -1], :] = border[:, [0, -1]] = True
    holes = ~mask & ~_grow(border, ~mask)
    out = mask.copy()
    while holes.any():  # one hole component at a time (items have few)
        seed = np.zeros_like(holes)
        seed.flat[np.flatnonzero(holes)[0]] = True
        component = _grow(seed, holes)
        if int(component.sum()) <= max_hole:
            out |= component
        holes &= ~component
    return out


class FashionObjects:
    """Fashion-MNIST items (``[N, 28, 28]`` uint8 + labels) rendered as RGBA sprites.

    ``split``: "train" or "test". ``root``: a folder with the IDX files (default: the Debian
    package's). ``source``: None/"idx" (IDX files) or "shipped" (the packaged test slice; halves as
    described in the module docstring). ``threshold``: intensity (0..255) from which a pixel belongs to
    the silhouette; ``max_hole``: holes of at most this many source pixels are filled.
    """

    CLASSES: Sequence[str] = FASHION_MNIST_CLASSES

    def __init__(
        self,
        split: str = "train",
        root: str | os.PathLike | None = None,
        source: str | None = None,
        *,
        threshold: int = 8,
        max_hole: int = 6,
    ):
        if split not in ("train", "test"):
            raise UsageError(f"unknown split {split!r}; valid: 'train', 'test'")
        source = source or "idx"
        if source not in SOURCES:
            raise UsageError(f"unknown source {source!r}; valid: None/'idx' (IDX files) or 'shipped'")
        if source == "shipped":
            if root is not None:
                raise UsageError("source='shipped' reads the packaged slice; do not pass root=")
            from .catalog import SHIPPED_SLICE, shipped_path
            from .in_memory import load_npz_slice

            data = load_npz_slice(shipped_path(SHIPPED_SLICE))
            part = slice(0, SHIPPED_HALF) if split == "train" else slice(SHIPPED_HALF, None)
            images, labels = data["images"].reshape(-1, 28, 28)[part], data["labels"][part]
            where = f"shipped Fashion-MNIST test slice ({split} half)"
        else:
            root = os.fspath(os.path.expanduser(root)) if root is not None else FASHION_MNIST_ROOT
            try:
                images, labels = read_idx_split(root, split, "Fashion-MNIST")
            except DatasetNotFoundError as exc:
                raise DatasetNotFoundError(
                    f"{exc}; install the Debian package with `apt-get install dataset-fashion-mnist` "
                    f"(files in {FASHION_MNIST_ROOT}), pass root= a folder with the IDX files, or use "
                    "source='shipped' for the packaged 2,000-image slice"
                ) from None
            where = f"{root} ({split})"
        self._init_arrays(images, labels, split, where, threshold, max_hole)

    def _init_arrays(self, images, labels, split, where, threshold, max_hole) -> None:
        images, labels = np.asarray(images), np.asarray(labels)
        if images.dtype != np.uint8 or images.ndim != 3:
            raise UsageError(f"items must be uint8 [N, H, W], got {images.dtype} {images.shape}")
        if labels.shape != (images.shape[0],):
            raise UsageError(f"{images.shape[0]} items but labels of shape {labels.shape}")
        if len(labels) == 0:
            raise UsageError(f"no items in {where}")
        if int(labels.min()) < 0 or int(labels.max()) >= len(self.CLASSES):
            raise UsageError(
                f"labels must be in 0..{len(self.CLASSES) - 1}, got {labels.min()}..{labels.max()}"
            )
        if not 0 < threshold <= 255:
            raise UsageError(f"threshold must be in 1..255, got {threshold}")
        self.images, self.labels = images, labels.astype(np.int64)
        self.split, self.source = split, where
        self.threshold, self.max_hole = int(threshold), int(max_hole)
        self._masks: dict[int, np.ndarray] = {}

    @classmethod
    def from_arrays(
        cls,
        images: np.ndarray,
        labels: np.ndarray,
        split: str = "train",
        *,
        threshold: int = 8,
        max_hole: int = 6,
    ) -> FashionObjects:
        """Items from arrays (uint8 ``[N, H, W]``, labels ``[N]`` in 0..9), e.g. for tests."""
        obj = cls.__new__(cls)
        obj._init_arrays(images, labels, split, "<arrays>", threshold, max_hole)
        return obj

    @property
    def num_items(self) -> int:
        """Number of items."""
        return int(self.images.shape[0])

    def __len__(self) -> int:
        return self.num_items

    def label(self, index: int) -> int:
        """Class index (0..9) of item ``index``."""
        return int(self.labels[index])

    def items_of(self, category: int) -> np.ndarray:
        """Indices of the items of class ``category`` (raises if there are none)."""
        if not 0 <= category < len(self.CLASSES):
            raise UsageError(f"category must be in 0..{len(self.CLASSES) - 1}, got {category}")
        items = np.flatnonzero(self.labels == category)
        if items.size == 0:
            raise UsageError(f"no items of class {category} ({self.CLASSES[category]}) in {self.source}")
        return items

    def silhouette(self, index: int) -> np.ndarray:
        """Bool mask ``[28, 28]`` of item ``index`` at its source resolution (cached)."""
        m = self._masks.get(index)
        if m is None:
            m = fill_small_holes(self.images[index] >= self.threshold, self.max_hole)
            self._masks[index] = m
        return m

    def sprite(
        self,
        index: int,
        size_hw: int | tuple[int, int],
        tint_rgb: Sequence[float],
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """Item ``index`` as an RGBA float32 sprite ``[h, w, 4]`` in [0, 1].

        Alpha is exactly 0 or 1 (the silhouette resized bilinearly and cut at 0.5); RGB is
        ``tint * (0.3 + 0.7 * shading)`` with the item's intensity as shading, 0 outside the alpha.
        With ``rng``, the sprite is mirrored left-right with probability 0.5.
        """
        h, w = TF._pair(size_hw)
        if h < 1 or w < 1:
            raise UsageError(f"sprite size must be positive, got {size_hw}")
        tint = np.asarray(tint_rgb, dtype=np.float32).reshape(-1)
        if tint.shape != (3,):
            raise UsageError(f"tint_rgb must be 3 values in [0, 1], got {tint_rgb}")
        src = torch.stack(
            [
                torch.from_numpy(self.images[index].astype(np.float32) / 255.0),
                torch.from_numpy(self.silhouette(index).astype(np.float32)),
            ]
        )  # [2, 28, 28]
        shade, alpha = TF.resize(src, (h, w), "bilinear").numpy()
        if rng is not None and rng.random() < 0.5:
            shade, alpha = shade[:, ::-1], alpha[:, ::-1]
        alpha = (alpha >= 0.5).astype(np.float32)
        rgb = tint[None, None, :] * (0.3 + 0.7 * np.clip(shade, 0.0, 1.0))[..., None] * alpha[..., None]
        return np.concatenate([rgb, alpha[..., None]], axis=-1).astype(np.float32)

    def __repr__(self) -> str:
        return f"FashionObjects(items={self.num_items}, source='{self.source}')"
