"""``root/<class>/**/<image>`` folders (ImageNet validation in class folders, custom sets)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from torch.utils.data import Dataset

from ._pillow import require_pillow
from .errors import DatasetNotFoundError, bad_format, not_found, require_dir
from .functional import to_tensor

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def image_folder_layout(extensions: Sequence[str] = IMG_EXTENSIONS) -> str:
    return f"ImageFolder layout: root/<class>/<image>{{{','.join(extensions)}}}, one folder per class"


def pil_loader(path: str) -> Any:
    """Open an image file with Pillow and convert it to RGB."""
    Image = require_pillow()
    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            return img.convert("RGB")
    except (OSError, SyntaxError, ValueError) as exc:  # Pillow raises UnidentifiedImageError (an OSError)
        raise bad_format(path, f"cannot decode image: {exc}", "an image readable by Pillow") from exc


def find_classes(root: str) -> list[str]:
    """Class folder names of ``root``, sorted (torchvision's order, so label i is the i-th name)."""
    return sorted(e.name for e in os.scandir(root) if e.is_dir())


def make_samples(
    root: str, classes: Sequence[str], extensions: Sequence[str] = IMG_EXTENSIONS, layout: str | None = None
) -> list[tuple[str, int]]:
    """(path, label) for every file with one of ``extensions`` (case-insensitive) under each class
    folder, recursively, in sorted order (``layout`` describes the expected layout in errors). Symbolic
    links to folders are followed, each real folder once (a link loop is not read twice)."""
    layout = layout or image_folder_layout(extensions)
    exts = tuple(e.lower() for e in extensions)
    samples: list[tuple[str, int]] = []
    empty: list[str] = []
    for label, cls in enumerate(classes):
        cls_dir = os.path.join(root, cls)
        if not os.path.isdir(cls_dir):
            raise not_found(f"class folder '{cls}'", root, layout)
        n0 = len(samples)
        seen_dirs: set[str] = set()
        found = []
        for dirpath, dirnames, fnames in os.walk(cls_dir, followlinks=True):
            real = os.path.realpath(dirpath)
            if real in seen_dirs:  # a symlink loop (or a second link to a folder already read)
                dirnames[:] = []
                continue
            seen_dirs.add(real)
            dirnames.sort()
            found += [os.path.join(dirpath, f) for f in fnames if f.lower().endswith(exts)]
        samples += [(path, label) for path in sorted(found)]
        if len(samples) == n0:
            empty.append(cls)
    if empty:
        shown = ", ".join(empty[:5]) + (" ..." if len(empty) > 5 else "")
        raise DatasetNotFoundError(
            f"no {'/'.join(extensions)} files in class folder(s) {shown} of {root} ({layout})"
        )
    return samples


class ImageFolder(Dataset):
    """Images in class folders, decoded with Pillow (RGB).

    Returns ``(transform(image), label)``; without a transform, a float ``[3, H, W]`` tensor in
    [0, 1]. Classes are the sorted folder names (or ``classes`` to pick and order a subset).
    Use ``build_eval_transform(model_config)`` as the transform for the official preprocessing.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        transform: Callable[[Any], Any] | None = None,
        extensions: Sequence[str] = IMG_EXTENSIONS,
        loader: Callable[[str], Any] = pil_loader,
        classes: Sequence[str] | None = None,
    ):
        layout = image_folder_layout(extensions)
        self.root = require_dir(root, layout)
        self.classes = list(classes) if classes is not None else find_classes(self.root)
        if not self.classes:
            raise not_found("at least one class folder", self.root, layout)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples = make_samples(self.root, self.classes, extensions)
        self.targets = [label for _, label in self.samples]
        self.transform = transform
        self.loader = loader

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, label = self.samples[index]
        img = self.loader(path)
        img = self.transform(img) if self.transform is not None else to_tensor(img)
        return img, label

    def __repr__(self) -> str:
        return f"ImageFolder(root='{self.root}', classes={len(self.classes)}, images={len(self)})"
