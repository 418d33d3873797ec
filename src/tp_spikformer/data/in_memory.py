"""Small image sets held as one uint8 tensor, transformed a batch at a time with tensor ops.

Fashion-MNIST, MNIST and CIFAR are this (60k images: per-item PIL work would dominate a CPU training
step). Also the compressed ``.npz`` slice format used to ship a few test images inside the package.
"""

from __future__ import annotations

import copy
import json
import os
import zipfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import UsageError, UsageTypeError
from . import functional as TF
from ._config import data_spec
from .errors import DatasetFormatError, bad_format, not_found
from .presets import eval_resize_size

NPZ_LAYOUT = (
    "image slice .npz: 'images' uint8 [N, C, H, W] or [N, H, W], 'labels' int [N], "
    "optional 'classes' str [K] and 'meta' JSON string"
)

Index = int | slice | Sequence[int] | torch.Tensor | np.ndarray


def _as_uint8_nchw(images: Any, where: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if t.dtype != torch.uint8:
        raise bad_format(where, f"images must be uint8, got {t.dtype}", NPZ_LAYOUT)
    if t.dim() == 3:
        t = t.unsqueeze(1)
    if t.dim() != 4:
        raise bad_format(
            where, f"images must be [N, H, W] or [N, C, H, W], got shape {tuple(t.shape)}", NPZ_LAYOUT
        )
    return t.contiguous()


class InMemoryImages(Dataset):
    """Images ``[N, C, H, W]`` uint8 + labels, with batched preprocessing.

    Preprocessing of a batch (all optional): to float [0, 1]; ``channels`` (grey -> RGB repeat);
    resize to ``size`` (int: square, or (h, w); ``interpolation`` as in :func:`.functional.resize`),
    or with ``crop_pct`` resize to ``floor(size / crop_pct)`` and centre-crop ``size`` (timm's eval
    rule); ``augment`` (a batch callable, e.g. :class:`.transforms.BatchAugment`, on [0, 1] values);
    normalise with ``mean``/``std``. A per-item ``transform`` instead receives each uint8 ``[C, H, W]``
    tensor (slow path, for arbitrary transforms). Items are ``(float [C, H, W] tensor, int label)``.
    """

    def __init__(
        self,
        images: Any,
        labels: Any,
        *,
        classes: Sequence[str] | None = None,
        size: int | tuple[int, int] | None = None,
        channels: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        interpolation: str = "bilinear",
        crop_pct: float | None = None,
        transform: Callable[[torch.Tensor], Any] | None = None,
        source: str = "<memory>",
    ):
        self.images = _as_uint8_nchw(images, source)
        labels_t = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
        if labels_t.dim() != 1 or labels_t.shape[0] != self.images.shape[0]:
            raise bad_format(
                source,
                f"{self.images.shape[0]} images but labels of shape {tuple(labels_t.shape)}",
                NPZ_LAYOUT,
            )
        self.targets = labels_t.to(torch.int64)
        n_cls = int(self.targets.max()) + 1 if len(self.targets) else 0
        self.classes = list(classes) if classes is not None else [str(i) for i in range(n_cls)]
        self.size = TF._pair(size) if size is not None else None
        self.channels = channels
        if (mean is None) != (std is None):
            raise UsageError("mean and std must both be given or both be None")
        self.mean = None if mean is None else tuple(float(m) for m in mean)
        self.std = None if std is None else tuple(float(s) for s in std)
        self.interpolation = interpolation
        self.crop_pct = crop_pct
        self.transform = transform
        self.source = source

    # ---- configuration -------------------------------------------------------------------------

    def with_options(self, **options: Any) -> InMemoryImages:
        """A shallow copy (sharing the image tensor) with some preprocessing options replaced."""
        valid = {"size", "channels", "mean", "std", "interpolation", "crop_pct", "transform", "classes"}
        unknown = sorted(set(options) - valid)
        if unknown:
            raise UsageTypeError(f"unknown option(s) {unknown}; valid: {sorted(valid)}")
        new = copy.copy(self)
        for k, v in options.items():
            if k == "size":
                v = TF._pair(v) if v is not None else None
            elif k in ("mean", "std") and v is not None:
                v = tuple(float(x) for x in v)
            setattr(new, k, v)
        if (new.mean is None) != (new.std is None):
            raise UsageError("mean and std must both be given or both be None")
        return new

    def with_data_config(self, data_cfg: Any) -> InMemoryImages:
        """Preprocess as a model's data configuration says: input size, channels, crop_pct,
        interpolation, mean/std (duck-typed, see :func:`._config.data_spec`)."""
        spec = data_spec(data_cfg)
        if spec.event_frames:
            raise UsageError("an event-frame configuration cannot be used with a static image set")
        return self.with_options(
            size=spec.hw,
            channels=spec.channels,
            mean=spec.mean,
            std=spec.std,
            interpolation=spec.interpolation,
            crop_pct=spec.crop_pct,
        )

    def subset(self, index: Index) -> InMemoryImages:
        """A copy holding only ``index`` (e.g. ``slice(0, 1000)``), same options."""
        new = copy.copy(self)
        idx = self._index(index)
        new.images = self.images[idx]
        new.targets = self.targets[idx]
        return new

    # ---- access -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the preprocessed items."""
        c = self.channels or int(self.images.shape[1])
        h, w = self.size or (int(self.images.shape[2]), int(self.images.shape[3]))
        return c, h, w

    def _index(self, index: Index) -> Any:
        if isinstance(index, (int, slice)):
            return index
        return torch.as_tensor(index, dtype=torch.int64)

    def get_batch(
        self, index: Index, augment: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Preprocessed float images ``[B, C, H, W]`` for ``index`` (int -> B = 1)."""
        idx = self._index(index)
        raw = self.images[idx]
        if raw.dim() == 3:
            raw = raw.unsqueeze(0)
        if self.transform is not None:
            x = torch.stack([torch.as_tensor(self.transform(img)) for img in raw])
            return augment(x) if augment is not None else x
        x = raw.float().div_(255.0)
        # Fewer channels: convert first; more (grey -> RGB): repeat last, so resizing and
        # augmentation run on one channel.
        expand_late = self.channels is not None and self.channels > x.shape[1]
        if self.channels is not None and not expand_late:
            x = TF.to_channels(x, self.channels)
        if self.size is not None:
            if self.crop_pct is None:
                x = TF.resize(x, self.size, self.interpolation)
            else:
                scale = eval_resize_size(self.size, self.crop_pct)
                x = TF.center_crop(TF.resize(x, scale, self.interpolation), self.size)
        if augment is not None:
            x = augment(x)
        if expand_late and self.mean is not None and len(self.mean) > 1:  # per-channel stats: expand now
            x, expand_late = TF.to_channels(x, self.channels), False  # type: ignore[arg-type]
        if self.mean is not None:
            x = TF.normalize(x, self.mean, self.std, inplace=True)  # type: ignore[arg-type]
        if expand_late:
            x = TF.to_channels(x, self.channels)  # type: ignore[arg-type]
        return x.contiguous()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.get_batch([index])[0], int(self.targets[index])

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, int]]:
        # DataLoader fetches a whole batch through this in one call (tensor ops, not per item).
        x = self.get_batch(list(indices))
        return [(x[i], int(self.targets[j])) for i, j in enumerate(indices)]

    def batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Iterate ``(images [B, C, H, W], labels [B] int64)`` without a DataLoader."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            idx = order[start : start + batch_size]
            yield self.get_batch(idx, augment=augment), self.targets[idx]

    # ---- npz slices ---------------------------------------------------------------------------

    def save_npz(self, path: str | os.PathLike, n: int | None = None, start: int = 0, **meta: Any) -> str:
        """Save raw images ``[start, start + n)`` and their labels as a compressed ``.npz``."""
        stop = len(self) if n is None else min(len(self), start + n)
        return save_npz_slice(
            path,
            self.images[start:stop].numpy(),
            self.targets[start:stop].numpy(),
            classes=self.classes,
            source=self.source,
            start=start,
            **meta,
        )

    @classmethod
    def from_npz(cls, path: str | os.PathLike, **options: Any) -> InMemoryImages:
        """Load a slice written by :func:`save_npz_slice` (options as in the constructor)."""
        data = load_npz_slice(path)
        obj = cls.__new__(cls)
        InMemoryImages.__init__(
            obj, data["images"], data["labels"], classes=data["classes"], source=os.fspath(path), **options
        )
        obj.meta = data["meta"]
        return obj

    def __repr__(self) -> str:
        c, h, w = self.output_shape
        return (
            f"{type(self).__name__}(n={len(self)}, raw={tuple(self.images.shape[1:])}, out=({c}, {h}, {w}), "
            f"normalized={self.mean is not None}, source='{self.source}')"
        )


def save_npz_slice(
    path: str | os.PathLike, images: Any, labels: Any, classes: Sequence[str] | None = None, **meta: Any
) -> str:
    """Write uint8 images ``[N, C, H, W]`` / ``[N, H, W]`` and labels ``[N]`` to a compressed ``.npz``
    (no pickled objects: loads with ``allow_pickle=False``). Returns the path written."""
    path = os.fspath(path)
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.dtype != np.uint8:
        raise UsageError(f"images must be uint8, got {images.dtype}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise UsageError(f"{images.shape[0]} images but labels of shape {labels.shape}")
    arrays: dict[str, Any] = {"images": images, "labels": labels.astype(np.int64)}
    if classes is not None:
        arrays["classes"] = np.asarray(list(classes), dtype=str)
    arrays["meta"] = np.asarray(json.dumps(meta, default=str))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:  # a file object: numpy does not append ".npz" to the name
        np.savez_compressed(f, **arrays)
    return path


def load_npz_slice(path: str | os.PathLike) -> dict[str, Any]:
    """Read a slice written by :func:`save_npz_slice`: ``images``, ``labels``, ``classes`` (list or
    None), ``meta`` (dict)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise not_found(f"the file {os.path.basename(path)}", os.path.dirname(path) or ".", NPZ_LAYOUT)
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            missing = {"images", "labels"} - files
            if missing:
                raise bad_format(
                    path, f"missing array(s) {sorted(missing)}, found {sorted(files)}", NPZ_LAYOUT
                )
            out = {
                "images": z["images"],
                "labels": z["labels"],
                "classes": [str(c) for c in z["classes"]] if "classes" in files else None,
                "meta": json.loads(str(z["meta"])) if "meta" in files else {},
            }
    except DatasetFormatError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise bad_format(path, f"not a readable npz file: {exc}", NPZ_LAYOUT) from exc
    if out["images"].dtype != np.uint8 or out["images"].ndim not in (3, 4):
        raise bad_format(
            path,
            f"images must be uint8 [N, (C,) H, W], got {out['images'].dtype} {out['images'].shape}",
            NPZ_LAYOUT,
        )
    if out["labels"].ndim != 1 or out["labels"].shape[0] != out["images"].shape[0]:
        raise bad_format(
            path, f"{out['images'].shape[0]} images but {out['labels'].shape} labels", NPZ_LAYOUT
        )
    return out
