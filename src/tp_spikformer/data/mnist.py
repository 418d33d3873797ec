"""MNIST and Fashion-MNIST from IDX files, held in memory (see :class:`.in_memory.InMemoryImages`).

Fashion-MNIST's default root is where the Debian package ``dataset-fashion-mnist`` installs it
(``apt-get install dataset-fashion-mnist``); any folder with the four IDX files (plain or ``.gz``,
also under ``raw/`` as torchvision stores them) works.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import UsageError, UsageTypeError
from .errors import DatasetNotFoundError, bad_format
from .idx import IMAGES_MAGIC, LABELS_MAGIC, find_idx_file, read_idx
from .in_memory import InMemoryImages

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# Pixel statistics of the 60k training images after scaling to [0, 1].
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def idx_layout(name: str) -> str:
    files = ", ".join(f"{stem}[.gz]" for pair in IDX_FILES.values() for stem in pair)
    return f"{name} IDX layout: {files}"


def read_idx_split(root: str | os.PathLike, split: str, name: str = "MNIST") -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 [N, H, W], labels uint8 [N])`` of the ``train`` or ``test`` split in ``root``."""
    if split not in IDX_FILES:
        raise UsageError(f"unknown split '{split}'; valid: {sorted(IDX_FILES)}")
    root = os.fspath(os.path.expanduser(root))
    layout = idx_layout(name)
    if not os.path.isdir(root):
        raise DatasetNotFoundError(f"{name} root {root} does not exist (expected {layout})")
    img_path = find_idx_file(root, IDX_FILES[split][0], layout)
    lbl_path = find_idx_file(root, IDX_FILES[split][1], layout)
    images = read_idx(img_path, IMAGES_MAGIC, layout)
    labels = read_idx(lbl_path, LABELS_MAGIC, layout)
    if images.ndim != 3:
        raise bad_format(img_path, f"expected images [N, H, W], got shape {images.shape}", layout)
    if labels.ndim != 1:
        raise bad_format(lbl_path, f"expected labels [N], got shape {labels.shape}", layout)
    if images.shape[0] != labels.shape[0]:
        raise bad_format(
            img_path,
            f"{images.shape[0]} images but {labels.shape[0]} labels in {os.path.basename(lbl_path)}",
            layout,
        )
    return images, labels


class MNIST(InMemoryImages):
    """MNIST digits (``root`` holds the IDX files; no default location).

    ``split``: "train" (60k) or "test" (10k). Preprocessing options as in
    :class:`.in_memory.InMemoryImages`: ``size`` (e.g. 32 or 64), ``channels`` (1 or 3),
    ``mean``/``std``, or ``normalize=True`` for the dataset's own statistics; ``limit`` keeps the
    first images only. Use :meth:`with_data_config` to match a model's configuration.
    """

    NAME = "MNIST"
    CLASSES: Sequence[str] = tuple(str(i) for i in range(10))
    MEAN, STD = MNIST_MEAN, MNIST_STD
    DEFAULT_ROOT: str | None = None
    INSTALL_HINT = ""

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        split: str = "train",
        *,
        size: int | tuple[int, int] | None = None,
        channels: int | None = None,
        normalize: bool = False,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        interpolation: str = "bilinear",
        crop_pct: float | None = None,
        limit: int | None = None,
        transform: Any = None,
    ):
        if root is None:
            if self.DEFAULT_ROOT is None:
                raise UsageTypeError(
                    f"{self.NAME} has no default location: pass root= (the folder with the IDX files)"
                )
            root = self.DEFAULT_ROOT
        root = os.fspath(os.path.expanduser(root))
        try:
            images, labels = read_idx_split(root, split, self.NAME)
        except DatasetNotFoundError as exc:
            if self.INSTALL_HINT and os.path.abspath(root) == os.path.abspath(self.DEFAULT_ROOT or ""):
                raise DatasetNotFoundError(f"{exc}; {self.INSTALL_HINT}") from None
            raise
        if len(labels) and int(labels.max()) >= len(self.CLASSES):
            raise bad_format(
                root,
                f"label {int(labels.max())} in split '{split}' but {self.NAME} has "
                f"{len(self.CLASSES)} classes",
                idx_layout(self.NAME),
            )
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        if normalize and mean is None:
            mean, std = self.MEAN, self.STD
        super().__init__(
            images,
            labels,
            classes=list(self.CLASSES),
            size=size,
            channels=channels,
            mean=mean,
            std=std,
            interpolation=interpolation,
            crop_pct=crop_pct,
            transform=transform,
            source=f"{root} ({split})",
        )
        self.root, self.split = root, split


class FashionMNIST(MNIST):
    """Fashion-MNIST (Zalando): 10 clothing classes, 28x28 grey; default root
    ``/usr/share/datasets/fashion-mnist`` (Debian ``dataset-fashion-mnist``)."""

    NAME = "Fashion-MNIST"
    CLASSES = FASHION_MNIST_CLASSES
    MEAN, STD = FASHION_MNIST_MEAN, FASHION_MNIST_STD
    DEFAULT_ROOT = FASHION_MNIST_ROOT
    INSTALL_HINT = (
        "install it with `apt-get install dataset-fashion-mnist` or pass root= a folder with the IDX files"
    )
