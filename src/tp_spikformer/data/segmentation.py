"""Semantic-segmentation datasets: the ADE20K layout and generic image + PNG-mask folders.

Items are ``(image, label, stem)``: the image float ``[3, H, W]`` in [0, 1] (not normalised: the model
side normalises), the label int64 ``[H, W]`` of class indices (``ignore_index`` where unlabelled) and
the file stem, so that predictions can be written under the annotation's name. Masks must be
single-channel PNGs (Pillow mode ``L`` or ``P``, or 16-bit ``I;16``/``I``) of the image's size; an RGB
colour mask is refused, as is an image without its mask or a mask without its image.

``reduce_zero_label`` follows mmseg: label 0 ("other" in ADE20K) becomes ``ignore_index`` and every
other label ``c`` becomes ``c - 1`` (ADE20K's 1..150 -> 0..149); 255 stays ``ignore_index``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import UsageError
from ._pillow import require_pillow
from .errors import DatasetFormatError, DatasetNotFoundError, bad_format, not_found, require_dir
from .functional import to_tensor
from .image_folder import IMG_EXTENSIONS, pil_loader
from .segmentation_transforms import (  # re-exported: the transforms belong with the datasets
    SegmentationEvalTransform,
    SegmentationTrainTransform,
    hflip_pair,
    random_crop,
    random_hflip,
    random_resize,
    resize_keep_ratio,
)

ADE_SPLITS = {"training": "training", "validation": "validation", "train": "training", "val": "validation"}
ADE_LAYOUT = (
    "ADE20K layout: <root>/images/{training,validation}/<stem>.jpg and "
    "<root>/annotations/{training,validation}/<stem>.png (uint8 class index per pixel, same stem)"
)
MASK_MODES = ("L", "P", "I;16", "I")

__all__ = [
    "ADE20KDataset",
    "MaskFolderDataset",
    "SegmentationEvalTransform",
    "SegmentationTrainTransform",
    "hflip_pair",
    "load_mask",
    "pair_by_stem",
    "random_crop",
    "random_hflip",
    "random_resize",
    "reduce_zero_label",
    "resize_keep_ratio",
]


def _files_by_stem(folder: str, extensions: Sequence[str], layout: str, what: str) -> dict[str, str]:
    exts = tuple(e.lower() for e in extensions)
    found: dict[str, str] = {}
    for name in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(name)
        if ext.lower() not in exts or not os.path.isfile(os.path.join(folder, name)):
            continue
        if stem in found:
            raise bad_format(
                folder,
                f"two {what} files share the stem {stem!r}: {os.path.basename(found[stem])}, {name}",
                layout,
            )
        found[stem] = os.path.join(folder, name)
    return found


def pair_by_stem(
    image_dir: str,
    mask_dir: str,
    layout: str,
    image_extensions: Sequence[str] = IMG_EXTENSIONS,
    mask_extensions: Sequence[str] = (".png",),
) -> list[tuple[str, str, str]]:
    """``(stem, image_path, mask_path)`` for every image, sorted by stem. Raises when the folder is
    missing or empty, or when an image lacks its mask or a mask its image (names the first few)."""
    for folder, what in ((image_dir, "image folder"), (mask_dir, "mask folder")):
        if not os.path.isdir(folder):
            raise not_found(
                f"the {what} {os.path.basename(folder)!r}", os.path.dirname(folder) or ".", layout
            )
    images = _files_by_stem(image_dir, image_extensions, layout, "image")
    masks = _files_by_stem(mask_dir, mask_extensions, layout, "mask")
    if not images:
        raise DatasetNotFoundError(
            f"no {'/'.join(image_extensions)} images in {image_dir} (expected {layout})"
        )
    for missing, have, where, kind in (
        (sorted(set(images) - set(masks)), "image", mask_dir, "mask"),
        (sorted(set(masks) - set(images)), "mask", image_dir, "image"),
    ):
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise DatasetNotFoundError(
                f"{len(missing)} {have}(s) without a {kind} in {where}: {shown} (expected {layout})"
            )
    return [(stem, images[stem], masks[stem]) for stem in sorted(images)]


def load_mask(path: str, layout: str = "a single-channel PNG of class indices") -> np.ndarray:
    """Class-index array ``[H, W]`` (uint8, or int32 for 16-bit PNGs) of a mask file."""
    Image = require_pillow()
    try:
        with Image.open(path) as img:
            mode = img.mode
            if mode not in MASK_MODES:
                raise bad_format(
                    path,
                    f"mask has Pillow mode {mode!r} ({len(img.getbands())} channel(s)); masks must be "
                    f"single-channel class-index images (mode {', '.join(MASK_MODES)}), not colour images",
                    layout,
                )
            arr = np.array(img)  # mode P gives the palette indices
    except DatasetFormatError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:
        raise bad_format(path, f"cannot decode mask: {exc}", layout) from exc
    return arr.astype(np.int32) if arr.dtype != np.uint8 else arr


def reduce_zero_label(label: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """mmseg's ``reduce_zero_label``: 0 and 255 -> ``ignore_index``, ``c`` -> ``c - 1``."""
    out = label - 1
    out[(label == 0) | (label == 255)] = ignore_index
    return out


class _PairedSegmentation(Dataset):
    """Shared item logic of the two datasets (pairs of image and mask files)."""

    def _setup(
        self,
        pairs: list[tuple[str, str, str]],
        layout: str,
        reduce_zero_label: bool,
        ignore_index: int,
        transform: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None,
    ) -> None:
        self.samples = pairs
        self.stems = [s for s, _, _ in pairs]
        self.layout = layout
        self.reduce_zero_label = bool(reduce_zero_label)
        self.ignore_index = int(ignore_index)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        """The untransformed item ``index``."""
        stem, image_path, mask_path = self.samples[index]
        image = to_tensor(pil_loader(image_path))  # [3, H, W]
        mask = load_mask(mask_path, self.layout)
        if tuple(mask.shape) != tuple(image.shape[1:]):
            raise bad_format(
                mask_path,
                f"mask is {mask.shape[0]}x{mask.shape[1]} but its image {os.path.basename(image_path)} is "
                f"{image.shape[1]}x{image.shape[2]} (height x width)",
                self.layout,
            )
        label = torch.from_numpy(mask.astype(np.int64))  # [H, W]
        if self.reduce_zero_label:
            label = reduce_zero_label(label, self.ignore_index)
        return image, label, stem

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        image, label, stem = self.load(index)
        if self.transform is not None:
            image, label = self.transform(image, label)
        return image, label, stem


class ADE20KDataset(_PairedSegmentation):
    """An ADE20K-layout folder: ``root/images/<split>/*.jpg`` + ``root/annotations/<split>/*.png``.

    ``split``: "training" / "validation" (also "train" / "val"). ``reduce_zero_label``: mmseg's option
    (True for the real ADE20K, False for the scenes of :func:`.scene_writers.make_scenes`).
    ``transform(image, label) -> (image, label)``, e.g. :class:`SegmentationTrainTransform`.
    ``classes``: read from ``root/classes.json`` when present (written by ``make-scenes``; without
    the first name under ``reduce_zero_label``), else None.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "validation",
        reduce_zero_label: bool = False,
        ignore_index: int = 255,
        transform: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
    ):
        if split not in ADE_SPLITS:
            raise UsageError(f"unknown split {split!r}; valid: {sorted(ADE_SPLITS)}")
        self.root = require_dir(root, ADE_LAYOUT)
        self.split = ADE_SPLITS[split]
        pairs = pair_by_stem(
            os.path.join(self.root, "images", self.split),
            os.path.join(self.root, "annotations", self.split),
            ADE_LAYOUT,
        )
        self._setup(pairs, ADE_LAYOUT, reduce_zero_label, ignore_index, transform)
        self.classes = self._read_classes()

    def _read_classes(self) -> list[str] | None:
        path = os.path.join(self.root, "classes.json")
        if not os.path.isfile(path):
            return None
        try:
            with open(path) as f:
                classes = [str(c) for c in json.load(f)["classes"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise bad_format(path, f"cannot read the class names: {exc}", '{"classes": [names...]}') from exc
        return classes[1:] if self.reduce_zero_label else classes

    def __repr__(self) -> str:
        return (
            f"ADE20KDataset(root='{self.root}', split={self.split}, images={len(self)}, "
            f"reduce_zero_label={self.reduce_zero_label})"
        )


class MaskFolderDataset(_PairedSegmentation):
    """Images in ``image_dir`` and single-channel PNG masks in ``mask_dir``, paired by file stem
    (options as in :class:`ADE20KDataset`)."""

    def __init__(
        self,
        image_dir: str | os.PathLike,
        mask_dir: str | os.PathLike,
        reduce_zero_label: bool = False,
        ignore_index: int = 255,
        transform: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
        image_extensions: Sequence[str] = IMG_EXTENSIONS,
    ):
        image_dir = os.fspath(os.path.expanduser(image_dir))
        mask_dir = os.fspath(os.path.expanduser(mask_dir))
        layout = f"mask folders: <image_dir>/<stem>{{{','.join(image_extensions)}}} + <mask_dir>/<stem>.png"
        pairs = pair_by_stem(image_dir, mask_dir, layout, image_extensions)
        self._setup(pairs, layout, reduce_zero_label, ignore_index, transform)
        self.image_dir, self.mask_dir = image_dir, mask_dir
        self.classes = None

    def __repr__(self) -> str:
        return (
            f"MaskFolderDataset(image_dir='{self.image_dir}', mask_dir='{self.mask_dir}', images={len(self)})"
        )
