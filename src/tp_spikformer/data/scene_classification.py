"""Single-object scene classification (the ImageNet-like test bed of the scorer study): one tinted
Fashion-MNIST object (20-70 % of the canvas side) on a textured background, label = its class.

The split is generated deterministically (:func:`scenes.generate_scene` with one object of class
``index % 10``) and held in memory as uint8 (:class:`InMemoryImages`, batched preprocessing for any model);
generated sets are cached as ``.npz`` under ``cache_dir`` (default ``~/.cache/tp_spikformer``), so a
second run loads in a second.

Object sources: training scenes draw items from the Fashion-MNIST train split (the Debian IDX files);
test scenes from the packaged 2,000-image test slice (``source="shipped"``: its second half, items
1000-1999, all from the Fashion-MNIST test split), so the evaluation set is the same on every machine
and needs no download.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from ..errors import UsageError, check_int
from .fashion_objects import FashionObjects
from .in_memory import InMemoryImages, save_npz_slice
from .scenes import SceneConfig, generate_scene

DEFAULTS = {"train": 20_000, "test": 2_000}
SIZE = 112
SEEDS = {"train": 0, "test": 1}


def default_cache_dir() -> str:
    return os.environ.get(
        "TP_SPIKFORMER_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "tp_spikformer")
    )


def scene_classification(
    split: str = "test",
    n: int | None = None,
    size: int = SIZE,
    seed: int | None = None,
    source: str | None = None,
    root: str | None = None,
    cache_dir: str | None = None,
    progress: bool = False,
) -> InMemoryImages:
    """``n`` single-object scenes of ``size`` x ``size`` pixels (uint8, labels 0..9, class-balanced).

    Defaults: 20,000 training scenes (objects from the IDX train split, seed 0) or 2,000 test scenes
    (objects from the shipped slice, seed 1). ``cache_dir=""`` disables the cache.
    """
    if split not in SEEDS:
        raise UsageError(f"unknown split {split!r} for scene classification; choose 'train' or 'test'")
    n = check_int("n", DEFAULTS[split] if n is None else n)
    size = check_int("size", size, minimum=16)
    seed = SEEDS[split] if seed is None else seed
    source = source if source is not None else ("shipped" if split == "test" else None)
    key = f"scene_cls_{split}_{n}_{size}_{seed}_{source or 'idx'}"
    cache_dir = default_cache_dir() if cache_dir is None else cache_dir
    path = os.path.join(cache_dir, key + ".npz") if cache_dir else None
    if path and os.path.isfile(path):
        return InMemoryImages.from_npz(path)
    images, labels = _generate(split, n, size, seed, source, root, progress)
    if path:
        os.makedirs(cache_dir, exist_ok=True)
        save_npz_slice(
            path + f".tmp{os.getpid()}.npz",
            images,
            labels,
            classes=list(FashionObjects.CLASSES),
            note=f"single-object scenes: {key}",
            digest=_digest(images),
        )
        os.replace(path + f".tmp{os.getpid()}.npz", path)
    return InMemoryImages(images, labels, classes=list(FashionObjects.CLASSES), source=key)


def _generate(split, n, size, seed, source, root, progress) -> tuple[np.ndarray, np.ndarray]:
    objects = FashionObjects(split, root=root, source=source)
    config = SceneConfig(height=size, width=size, min_objects=1, max_objects=1, split=split, seed=seed)
    images = np.empty((n, 3, size, size), dtype=np.uint8)
    labels = np.empty(n, dtype=np.int64)
    for i in range(n):
        scene = generate_scene(config, i, objects, category=i % 10)
        images[i] = scene.image.transpose(2, 0, 1)  # [3, H, W]
        labels[i] = scene.instances[0].category if scene.instances else i % 10
        if progress and (i + 1) % 2000 == 0:
            print(f"  scenes {i + 1}/{n}", flush=True)
    return images, labels


def _digest(images: np.ndarray) -> str:
    return hashlib.sha256(images.tobytes()).hexdigest()[:16]
