"""Datasets by name, preprocessed for a model's data configuration (used by the CLI, the API and training).

Names: ``fashion_mnist`` | ``mnist`` | ``cifar10`` | ``cifar100`` (in memory, batched preprocessing);
``imagefolder`` (``root/<class>/*.jpg``, decoded per item with the official eval transform);
``cifar10dvs`` | ``dvs128_gesture`` (event files binned into ``T`` frames); ``shipped`` (the Fashion-MNIST
test slice packaged with tp-spikformer); ``npz:<path>`` (a slice saved with ``save_npz``);
``synthetic[:<n>]`` (a small learnable image set for smoke tests); ``scenes[:<n>]`` (single-object scene
classification, 112 x 112: :mod:`.scene_classification`).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from ..errors import MissingPathError, UsageError, check_int
from ._config import data_spec
from .in_memory import InMemoryImages

NAMES = (
    "fashion_mnist",
    "mnist",
    "cifar10",
    "cifar100",
    "imagefolder",
    "cifar10dvs",
    "dvs128_gesture",
    "shipped",
    "npz:<path>",
    "synthetic[:<n>]",
    "scenes[:<n>]",
)
SHIPPED_SLICE = "fashion_mnist/fashion_mnist_test_2000.npz"
EVENT_DATASETS = ("cifar10dvs", "dvs128_gesture")


def shipped_path(relative: str) -> str:
    """Absolute path of a file in the package's ``assets/`` folder."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", relative)
    if not os.path.isfile(path):
        raise MissingPathError(f"packaged asset missing: {path} (reinstall tp-spikformer)")
    return path


def synthetic_dataset(
    n: int = 256, size: int = 16, channels: int = 1, num_classes: int = 10, seed: int = 0
) -> InMemoryImages:
    """A small learnable in-memory image set: class ``k`` is a bright horizontal bar at row
    ``k * size // num_classes`` over uniform noise (uint8). For tests and smoke runs."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % num_classes
    labels = labels[torch.randperm(n, generator=g)]
    images = torch.randint(0, 96, (n, channels, size, size), generator=g, dtype=torch.uint8)
    band = max(1, size // num_classes)
    for k in range(num_classes):
        r = k * size // num_classes
        images[labels == k, :, r : r + band, :] = 255
    return InMemoryImages(images, labels, source=f"synthetic(n={n}, seed={seed})")


def load_dataset(
    name: str,
    split: str = "test",
    root: str | None = None,
    data_cfg: Any = None,
    limit: int | None = None,
    T: int | None = None,
):
    """The dataset ``name`` preprocessed for ``data_cfg`` (a model's ``DataConfig``, or a model).

    ``root`` is the dataset folder (Fashion-MNIST defaults to the Debian package's
    ``/usr/share/datasets/fashion-mnist``; ``shipped``, ``npz:<path>`` and ``synthetic`` take none); ``T``
    the number of frames for event datasets (default: the model's; other datasets refuse it); ``limit``
    keeps the first ``limit`` samples. ``shipped`` is a test slice: it refuses any other ``split``.
    """
    from . import CIFAR10, CIFAR10DVS, CIFAR100, MNIST, DVS128Gesture, FashionMNIST, ImageFolder
    from .presets import build_eval_transform

    spec = data_spec(data_cfg) if data_cfg is not None else None
    if spec is not None and spec.event_frames and name not in ("cifar10dvs", "dvs128_gesture"):
        raise UsageError(
            f"this model takes event frames; use the dataset cifar10dvs or dvs128_gesture, not {name!r}"
        )
    if T is not None and name not in EVENT_DATASETS:
        raise UsageError(
            f"T (command line: --frames) sets the frames of the event datasets "
            f"{' and '.join(EVENT_DATASETS)}; dataset {name!r} does not read it (the model's own time "
            "steps: --set T=N)"
        )
    if root is not None and (name == "shipped" or name.startswith(("npz:", "synthetic"))):
        raise UsageError(
            f"dataset {name!r} reads no folder (it is packaged, a file or generated); leave out root= "
            "(command line: --data-root)"
        )
    if name in EVENT_DATASETS:
        if root is None:
            raise UsageError(
                f"dataset {name} needs its root folder with the event files (root=...; command line: --data-root)"
            )
        t = T or getattr(getattr(data_cfg, "config", data_cfg), "T", None)
        if t is None:
            raise UsageError(f"dataset {name} needs the number of frames T (T=...; command line: --frames)")
        cls = CIFAR10DVS if name == "cifar10dvs" else DVS128Gesture
        ds = cls.from_data_config(data_cfg, root, t, split) if data_cfg is not None else cls(root, t, split)
        return _limit_items(ds, limit)
    if name == "imagefolder":
        if root is None:
            raise UsageError(
                "dataset imagefolder needs its root folder, with one sub-folder per class (root=...; command line: --data-root)"
            )
        folder = os.path.join(root, split) if os.path.isdir(os.path.join(root, split)) else root
        transform = build_eval_transform(data_cfg) if data_cfg is not None else None
        return _limit_items(ImageFolder(folder, transform=transform), limit)
    if name == "fashion_mnist":
        ds = FashionMNIST(root, split) if root else FashionMNIST(split=split)
    elif name == "mnist":
        if root is None:
            raise UsageError(
                "dataset mnist needs its root folder with the IDX files (root=...; command line: --data-root)"
            )
        ds = MNIST(root, split)
    elif name in ("cifar10", "cifar100"):
        if root is None:
            raise UsageError(
                f"dataset {name} needs its root folder with the python batches (root=...; command line: --data-root)"
            )
        ds = (CIFAR10 if name == "cifar10" else CIFAR100)(root, split)
    elif name == "shipped":
        if split != "test":
            raise UsageError(
                f"dataset shipped is a slice of the Fashion-MNIST test split, not a {split!r} split: pass "
                "split='test' (command line: --split test) to use it knowingly, or the dataset fashion_mnist "
                "with the IDX files' folder (--dataset fashion_mnist --data-root DIR) for training images"
            )
        ds = InMemoryImages.from_npz(shipped_path(SHIPPED_SLICE))
    elif name.startswith("npz:"):
        ds = InMemoryImages.from_npz(name[4:])
    elif name == "scenes" or name.startswith("scenes:"):
        from .scene_classification import scene_classification

        _, _, n = name.partition(":")
        if n and not (n.isdigit() and int(n) >= 1):
            raise UsageError(
                f"dataset {name!r}: scenes:<n> needs a number of scenes n >= 1, e.g. scenes:2000"
            )
        ds = scene_classification("train" if split == "train" else "test", int(n) if n else None, root=root)
    elif name.startswith("synthetic"):
        _, _, n = name.partition(":")
        if n and not (n.isdigit() and int(n) >= 1):
            raise UsageError(
                f"dataset {name!r}: synthetic:<n> needs a number of images n >= 1, e.g. synthetic:64"
            )
        c, h, _ = spec.input_size if spec is not None else (1, 16, 16)
        ds = synthetic_dataset(int(n or 512), h, c, seed=0 if split == "train" else 1)
    else:
        raise UsageError(f"unknown dataset {name!r}; choose one of {', '.join(NAMES)}")
    if limit is not None:
        check_int("limit", limit)
        ds = ds.subset(slice(0, limit))
    if len(ds) == 0:
        raise UsageError(
            f"dataset {name!r} (split {split!r}) has no samples ({getattr(ds, 'source', '')}); check "
            "the files and the split"
        )
    return ds.with_data_config(data_cfg) if data_cfg is not None else ds


def _limit_items(ds, limit: int | None):
    if limit is not None:
        check_int("limit", limit)
    if limit is None or limit >= len(ds):
        return ds
    return torch.utils.data.Subset(ds, range(limit))
