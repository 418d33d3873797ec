"""Event-camera datasets over per-sample files: items ``(frames [T, 2, H, W] float32, label)``.

Files are read with :func:`.event_io.load_event_sample` (``.npz`` t/x/y/p or frames, ``.npy``
structured, CIFAR10-DVS ``.aedat``) and integrated with :func:`.events.events_to_frames`. The models
take these ``[T, 2, H, W]`` samples batched as ``[B, T, 2, H, W]`` (they move T first themselves).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from ..errors import UsageError
from ._config import data_spec
from .errors import DatasetNotFoundError, bad_format, not_found, require_dir
from .event_io import EVENT_EXTENSIONS, load_event_sample
from .events import events_to_frames, resize_frames
from .image_folder import find_classes, make_samples

EVENT_FOLDER_LAYOUT = (
    "event folder layout: root/<class>/<sample>.npz (t/x/y/p arrays or 'frames'), .npy (structured "
    "t/x/y/p) or .aedat (CIFAR10-DVS); classes are the sorted folder names"
)
CIFAR10DVS_LAYOUT = (
    "CIFAR10-DVS layout: root/<class>/*.npz|*.aedat for the 10 classes airplane..truck "
    "(spikingjelly's root/events_np/<class>/ is found too)"
)
GESTURE_LAYOUT = (
    "DVS128 Gesture layout: root/{train,test}/<class 0..10>/*.npz "
    "(spikingjelly's root/events_np/{train,test}/<class>/ is found too)"
)


class EventFrameFolder(Dataset):
    """Event samples in class folders, turned into ``[T, 2, H, W]`` count frames.

    ``sensor_size`` (H, W) of the recording (128x128 for DVS128 / CIFAR10-DVS); ``frame_size`` resizes
    the frames (e.g. 64 for SDT's CIFAR10-DVS; ``resize_mode``/``antialias`` as in
    :func:`.events.resize_frames`); ``split_by`` "number" (the official setting) or "time".
    Precomputed ``frames`` files must have T frames. ``transform`` gets the float frames.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        T: int,
        *,
        split_by: str = "number",
        sensor_size: int | tuple[int, int] = (128, 128),
        frame_size: int | tuple[int, int] | None = None,
        resize_mode: str = "bilinear",
        antialias: bool = False,
        classes: Sequence[str] | None = None,
        transform: Callable[[torch.Tensor], Any] | None = None,
        extensions: Sequence[str] = EVENT_EXTENSIONS,
        samples: Sequence[tuple[str, int]] | None = None,
        layout: str = EVENT_FOLDER_LAYOUT,
    ):
        if split_by not in ("number", "time"):
            raise UsageError(f"split_by must be 'number' or 'time', got '{split_by}'")
        self.root = require_dir(root, layout)
        self.classes = list(classes) if classes is not None else find_classes(self.root)
        if not self.classes:
            raise not_found("at least one class folder", self.root, layout)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples = (
            list(samples)
            if samples is not None
            else make_samples(self.root, self.classes, extensions, layout)
        )
        self.targets = [label for _, label in self.samples]
        self.T = int(T)
        self.split_by = split_by
        self.sensor_size = (sensor_size, sensor_size) if isinstance(sensor_size, int) else tuple(sensor_size)
        self.frame_size = (frame_size, frame_size) if isinstance(frame_size, int) else frame_size
        self.resize_mode = resize_mode
        self.antialias = antialias
        self.transform = transform
        self.layout = layout

    def __len__(self) -> int:
        return len(self.samples)

    def frames(self, index: int) -> torch.Tensor:
        """The ``[T, 2, H, W]`` frames of sample ``index`` before ``transform``."""
        path, _ = self.samples[index]
        sample = load_event_sample(path)
        if "frames" in sample:
            fr = torch.as_tensor(sample["frames"]).float()
            if fr.dim() != 4 or fr.shape[0] != self.T or fr.shape[1] != 2:
                raise bad_format(
                    path,
                    f"precomputed frames of shape {tuple(fr.shape)}, expected [T={self.T}, 2, H, W]",
                    self.layout,
                )
        else:
            fr = events_to_frames(sample, self.sensor_size, self.T, self.split_by)
        if self.frame_size is not None:
            fr = resize_frames(fr, self.frame_size, self.resize_mode, self.antialias)
        return fr

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        fr = self.frames(index)
        if self.transform is not None:
            fr = self.transform(fr)
        return fr, self.samples[index][1]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root='{self.root}', samples={len(self)}, classes={len(self.classes)}, "
            f"T={self.T}, split_by='{self.split_by}', frame_size={self.frame_size or self.sensor_size})"
        )


def _events_np(root: str | os.PathLike, *parts: str) -> str:
    """``root/events_np/<parts>`` when that exists (spikingjelly's dataset root), else ``root/<parts>``."""
    root = os.fspath(os.path.expanduser(root))
    sj = os.path.join(root, "events_np", *parts)
    return sj if os.path.isdir(sj) else os.path.join(root, *parts)


def per_class_split(
    samples: Sequence[tuple[str, int]], train_ratio: float, split: str
) -> list[tuple[str, int]]:
    """spikingjelly's ``split_to_train_test_set(train_ratio, ..., random_split=False)``: per class,
    in dataset order, the first ``ceil(n * train_ratio)`` samples are train and the rest test."""
    if split == "all":
        return list(samples)
    if split not in ("train", "test"):
        raise UsageError(f"split must be 'train', 'test' or 'all', got '{split}'")
    by_class: dict[int, list[tuple[str, int]]] = {}
    for s in samples:
        by_class.setdefault(s[1], []).append(s)
    out: list[tuple[str, int]] = []
    for label in sorted(by_class):
        items = by_class[label]
        pos = math.ceil(len(items) * train_ratio)
        out.extend(items[:pos] if split == "train" else items[pos:])
    return out


class CIFAR10DVS(EventFrameFolder):
    """CIFAR10-DVS (10 classes, 128x128 sensor, 1000 recordings per class, no official split).

    ``split`` "train"/"test" applies the official scripts' 90/10 per-class split (first 90% of each
    class folder in sorted file order; "all": no split). SDT's configuration resizes frames to 64x64:
    pass ``frame_size=64`` or use :meth:`from_data_config`.
    """

    def __init__(
        self, root: str | os.PathLike, T: int, split: str = "test", train_ratio: float = 0.9, **kwargs: Any
    ):
        folder = _events_np(root)
        if not os.path.isdir(folder):
            raise DatasetNotFoundError(
                f"CIFAR10-DVS root {os.fspath(root)} does not exist ({CIFAR10DVS_LAYOUT})"
            )
        classes = kwargs.pop("classes", None) or find_classes(folder)
        exts = kwargs.pop("extensions", EVENT_EXTENSIONS)
        samples = make_samples(folder, classes, exts, CIFAR10DVS_LAYOUT)
        super().__init__(
            folder,
            T,
            classes=classes,
            samples=per_class_split(samples, train_ratio, split),
            layout=CIFAR10DVS_LAYOUT,
            **kwargs,
        )
        self.split = split

    @classmethod
    def from_data_config(
        cls, data_cfg: Any, root: str | os.PathLike, T: int, split: str = "test", **kwargs: Any
    ):
        """Frames sized as the configuration's input (e.g. 64x64 for SDT)."""
        return cls(root, T, split, frame_size=data_spec(data_cfg).hw, **kwargs)


class DVS128Gesture(EventFrameFolder):
    """DVS128 Gesture (11 classes, 128x128) from ``root/{train,test}/<class>/`` per-sample files.

    Classes are the sorted folder names as strings, so with spikingjelly's folders ``0``..``10`` label 2
    is folder ``10``: the order torchvision's DatasetFolder, hence the official training, used.
    """

    def __init__(self, root: str | os.PathLike, T: int, split: str = "test", **kwargs: Any):
        if split not in ("train", "test"):
            raise UsageError(f"split must be 'train' or 'test', got '{split}'")
        folder = _events_np(root, split)
        if not os.path.isdir(folder):
            raise not_found(f"a '{split}' folder", os.fspath(root), GESTURE_LAYOUT)
        super().__init__(folder, T, layout=GESTURE_LAYOUT, **kwargs)
        self.split = split

    @classmethod
    def from_data_config(
        cls, data_cfg: Any, root: str | os.PathLike, T: int, split: str = "test", **kwargs: Any
    ):
        """Frames sized as the configuration's input (128x128 for the official models)."""
        return cls(root, T, split, frame_size=data_spec(data_cfg).hw, **kwargs)
