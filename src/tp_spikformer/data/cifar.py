"""CIFAR-10 / CIFAR-100 from the official "python version" pickles, held in memory.

Layouts (``root`` may be the folder itself or its parent):
``cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` and
``cifar-100-python/{train, test, meta}``. Each batch is a pickled dict with ``b"data"`` (uint8
[N, 3072], channel-major 3x32x32) and ``b"labels"`` (CIFAR-10) or ``b"fine_labels"`` /
``b"coarse_labels"`` (CIFAR-100). Pickles are read with a restricted unpickler that only builds
plain containers and numpy arrays.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import UsageError
from .errors import DatasetFormatError, DatasetNotFoundError, bad_format, not_found
from .in_memory import InMemoryImages

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

CIFAR10_LAYOUT = "CIFAR-10 python layout: cifar-10-batches-py/data_batch_1..data_batch_5, test_batch"
CIFAR100_LAYOUT = "CIFAR-100 python layout: cifar-100-python/train, test (and meta)"

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from a dataset pickle")


def load_pickle(path: str, layout: str) -> dict:
    """Unpickle a CIFAR batch (bytes keys, numpy arrays only) into a dict."""
    try:
        with open(path, "rb") as f:
            obj = _SafeUnpickler(f, encoding="bytes").load()
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        ImportError,
        IndexError,
    ) as exc:
        raise bad_format(path, f"not a CIFAR python pickle: {exc}", layout) from exc
    if not isinstance(obj, dict):
        raise bad_format(path, f"expected a pickled dict, got {type(obj).__name__}", layout)
    return obj


def _field(batch: dict, key: str, path: str, layout: str) -> Any:
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    found = sorted(k.decode() if isinstance(k, bytes) else str(k) for k in batch)
    raise bad_format(path, f"missing key b'{key}' (found {found})", layout)


def _find_dir(root: str, folder: str, first_file: str, layout: str) -> str:
    root = os.fspath(os.path.expanduser(root))
    if not os.path.isdir(root):
        raise DatasetNotFoundError(f"CIFAR root {root} does not exist (expected {layout})")
    for cand in (os.path.join(root, folder), root):
        if os.path.isfile(os.path.join(cand, first_file)):
            return cand
    raise not_found(f"{folder}/{first_file}", root, layout)


def read_cifar_batches(
    root: str | os.PathLike, files: Sequence[str], label_key: str, layout: str
) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate batches: ``(images uint8 [N, 3, 32, 32], labels int64 [N])``."""
    images, labels = [], []
    for name in files:
        path = os.path.join(os.fspath(root), name)
        if not os.path.isfile(path):
            raise not_found(name, root, layout)
        batch = load_pickle(path, layout)
        data = np.asarray(_field(batch, "data", path, layout))
        lab = np.asarray(_field(batch, label_key, path, layout), dtype=np.int64)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise bad_format(path, f"b'data' must be uint8 [N, 3072], got {data.dtype} {data.shape}", layout)
        if lab.ndim != 1 or lab.shape[0] != data.shape[0]:
            raise bad_format(path, f"{data.shape[0]} images but {lab.shape[0]} b'{label_key}'", layout)
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(lab)
    return np.concatenate(images), np.concatenate(labels)


def _meta_names(path: str, key: str, layout: str) -> list[str] | None:
    if not os.path.isfile(path):
        return None
    try:
        names = _field(load_pickle(path, layout), key, path, layout)
    except DatasetFormatError:
        return None
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


class CIFAR10(InMemoryImages):
    """CIFAR-10 ``split`` "train" (50k) or "test" (10k); items ``(float [3, 32, 32], label)``.

    Preprocessing options as in :class:`.in_memory.InMemoryImages` (none by default: values in
    [0, 1]); :meth:`with_data_config` applies a model's mean/std (and size, if it differs).
    """

    FOLDER, LAYOUT, LABEL_KEY = "cifar-10-batches-py", CIFAR10_LAYOUT, "labels"
    SPLITS = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}

    def __init__(self, root: str | os.PathLike, split: str = "test", **options: Any):
        if split not in self.SPLITS:
            raise UsageError(f"unknown split '{split}'; valid: {sorted(self.SPLITS)}")
        folder = _find_dir(os.fspath(root), self.FOLDER, self.SPLITS[split][0], self.LAYOUT)
        images, labels = read_cifar_batches(folder, self.SPLITS[split], self.LABEL_KEY, self.LAYOUT)
        options.setdefault("classes", self._class_names(folder))
        super().__init__(images, labels, source=f"{folder} ({split})", **options)
        self.root, self.split = folder, split

    def _class_names(self, folder: str) -> list[str]:
        return _meta_names(os.path.join(folder, "batches.meta"), "label_names", self.LAYOUT) or list(
            CIFAR10_CLASSES
        )


class CIFAR100(CIFAR10):
    """CIFAR-100 with the 100 fine labels (``coarse=True``: the 20 superclasses)."""

    FOLDER, LAYOUT = "cifar-100-python", CIFAR100_LAYOUT
    SPLITS = {"train": ["train"], "test": ["test"]}

    def __init__(self, root: str | os.PathLike, split: str = "test", coarse: bool = False, **options: Any):
        self.LABEL_KEY = "coarse_labels" if coarse else "fine_labels"
        super().__init__(root, split, **options)

    def _class_names(self, folder: str) -> list[str]:
        key = "coarse_label_names" if self.LABEL_KEY == "coarse_labels" else "fine_label_names"
        n = 20 if self.LABEL_KEY == "coarse_labels" else 100
        return _meta_names(os.path.join(folder, "meta"), key, self.LAYOUT) or [str(i) for i in range(n)]
