"""COCO-format detection data: ``instances_*.json`` + an image folder (COCO 2017, the synthetic scenes of
:func:`.scene_writers.make_scenes`, or any dataset in that format).

Items are ``(image, target)``: the image float ``[3, H, W]`` in [0, 1] and a target dict with
``boxes`` ``[N, 4]`` float ``(x1, y1, x2, y2)`` in pixels (from COCO's ``[x, y, w, h]``), ``labels``
``[N]`` int64 contiguous indices ``0..K-1`` (categories sorted by id), ``iscrowd`` ``[N]``,
``image_id`` (the COCO id, for results files) and ``orig_size`` ``(H, W)``.

Which annotations become targets: crowd regions (``iscrowd = 1``) are left out unless
``include_crowd=True`` (they mark areas a detector is not scored on); boxes of zero width or height
(present in COCO 2017) cannot be learned and are left out too, counted in ``skipped_degenerate``.
Anything else malformed (a negative size, an unknown category or image id, a missing image file, an
image whose size disagrees with the JSON) raises an error naming the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import UsageError
from .detection_transforms import (  # re-exported: the batching and box transforms of this reader
    DetectionTrainTransform,
    LetterboxInfo,
    collate_detection,
    hflip_detection,
    letterbox,
    random_hflip_detection,
    random_resize_detection,
    resize_detection,
    unletterbox_boxes,
)
from .errors import bad_format, not_found, require_dir
from .functional import to_tensor
from .image_folder import pil_loader

COCO_LAYOUT = (
    "COCO layout: <root>/annotations/instances_<split>.json with 'images' (id, file_name, height, width), "
    "'annotations' (id, image_id, category_id, bbox [x, y, w, h], iscrowd) and 'categories' (id, name), "
    "plus the images in <root>/<split>/"
)

__all__ = [
    "COCO_LAYOUT",
    "CocoDetection",
    "DetectionTrainTransform",
    "LetterboxInfo",
    "coco_results",
    "collate_detection",
    "hflip_detection",
    "letterbox",
    "random_hflip_detection",
    "random_resize_detection",
    "resize_detection",
    "unletterbox_boxes",
]


def _require(obj: Any, keys: Sequence[str], path: str, what: str) -> None:
    if not isinstance(obj, dict):
        raise bad_format(
            path, f"each entry of {what} must be an object, got {type(obj).__name__}", COCO_LAYOUT
        )
    missing = [k for k in keys if k not in obj]
    if missing:
        raise bad_format(path, f"an entry of {what} lacks {missing}: {json.dumps(obj)[:120]}", COCO_LAYOUT)


class CocoDetection(Dataset):
    """Detection images and boxes from ``<root>/annotations/instances_<split>.json`` and
    ``<root>/<split>/`` (``split`` e.g. "train", "val" or "val2017"); see :meth:`from_files` for
    other layouts. ``transform(image, target) -> (image, target)``, e.g.
    :class:`DetectionTrainTransform`.

    Category mapping: ``cat_ids`` (sorted COCO ids), ``cat_id_to_label`` and ``label_to_cat_id``;
    ``classes`` the names in label order.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "val",
        transform: Callable[[torch.Tensor, dict[str, Any]], Any] | None = None,
        include_crowd: bool = False,
    ):
        root = require_dir(root, COCO_LAYOUT)
        self._load(
            os.path.join(root, "annotations", f"instances_{split}.json"),
            os.path.join(root, split),
            transform,
            include_crowd,
        )

    @classmethod
    def from_files(
        cls,
        ann_file: str | os.PathLike,
        image_dir: str | os.PathLike,
        transform: Callable[[torch.Tensor, dict[str, Any]], Any] | None = None,
        include_crowd: bool = False,
    ) -> CocoDetection:
        """A dataset from an annotation file and the folder its ``file_name`` entries are relative to."""
        obj = cls.__new__(cls)
        obj._load(os.fspath(ann_file), os.fspath(image_dir), transform, include_crowd)
        return obj

    def _load(self, ann_file: str, image_dir: str, transform: Any, include_crowd: bool) -> None:
        ann_file, image_dir = os.path.expanduser(ann_file), os.path.expanduser(image_dir)
        if not os.path.isfile(ann_file):
            raise not_found(
                f"the annotation file {os.path.basename(ann_file)}", os.path.dirname(ann_file), COCO_LAYOUT
            )
        if not os.path.isdir(image_dir):
            raise not_found(
                f"the image folder {os.path.basename(image_dir)}", os.path.dirname(image_dir), COCO_LAYOUT
            )
        try:
            with open(ann_file) as f:
                doc = json.load(f)
        except (OSError, ValueError) as exc:
            raise bad_format(ann_file, f"not a readable JSON file: {exc}", COCO_LAYOUT) from exc
        if not isinstance(doc, dict):
            raise bad_format(ann_file, "the top level must be an object", COCO_LAYOUT)
        missing = [k for k in ("images", "annotations", "categories") if not isinstance(doc.get(k), list)]
        if missing:
            raise bad_format(ann_file, f"missing list(s) {missing}", COCO_LAYOUT)
        self.ann_file, self.image_dir = ann_file, image_dir
        self.transform, self.include_crowd = transform, bool(include_crowd)

        for c in doc["categories"]:
            _require(c, ("id", "name"), ann_file, "categories")
        cats = sorted(doc["categories"], key=lambda c: int(c["id"]))
        self.cat_ids = [int(c["id"]) for c in cats]
        if len(set(self.cat_ids)) != len(self.cat_ids):
            raise bad_format(ann_file, "duplicate category ids", COCO_LAYOUT)
        self.classes = [str(c["name"]) for c in cats]
        self.cat_id_to_label = {cid: i for i, cid in enumerate(self.cat_ids)}
        self.label_to_cat_id = list(self.cat_ids)

        for im in doc["images"]:
            _require(im, ("id", "file_name", "height", "width"), ann_file, "images")
        self.images = [
            {
                "id": int(im["id"]),
                "file_name": str(im["file_name"]),
                "height": int(im["height"]),
                "width": int(im["width"]),
            }
            for im in doc["images"]
        ]
        if not self.images:
            raise bad_format(ann_file, "the 'images' list is empty", COCO_LAYOUT)
        index_of = {im["id"]: i for i, im in enumerate(self.images)}
        if len(index_of) != len(self.images):
            raise bad_format(ann_file, "duplicate image ids", COCO_LAYOUT)
        absent = [
            im["file_name"]
            for im in self.images
            if not os.path.isfile(os.path.join(image_dir, im["file_name"]))
        ]
        if absent:
            shown = ", ".join(absent[:5]) + (f" and {len(absent) - 5} more" if len(absent) > 5 else "")
            raise not_found(
                f"{len(absent)} image file(s) listed in {os.path.basename(ann_file)} ({shown})",
                image_dir,
                COCO_LAYOUT,
            )

        per_image: list[list[tuple[list[float], int, int]]] = [[] for _ in self.images]
        self.skipped_degenerate = 0
        self.skipped_crowd = 0
        for a in doc["annotations"]:
            _require(a, ("image_id", "category_id", "bbox"), ann_file, "annotations")
            if int(a["image_id"]) not in index_of:
                raise bad_format(
                    ann_file,
                    f"annotation {a.get('id')} refers to unknown image_id {a['image_id']}",
                    COCO_LAYOUT,
                )
            if int(a["category_id"]) not in self.cat_id_to_label:
                raise bad_format(
                    ann_file,
                    f"annotation {a.get('id')} has unknown category_id {a['category_id']}; "
                    f"categories: {self.cat_ids}",
                    COCO_LAYOUT,
                )
            bbox = a["bbox"]
            if not (
                isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)
            ):
                raise bad_format(
                    ann_file, f"annotation {a.get('id')}: bbox must be [x, y, w, h], got {bbox}", COCO_LAYOUT
                )
            if bbox[2] < 0 or bbox[3] < 0:
                raise bad_format(ann_file, f"annotation {a.get('id')}: negative box size {bbox}", COCO_LAYOUT)
            crowd = int(a.get("iscrowd", 0))
            if crowd and not self.include_crowd:
                self.skipped_crowd += 1
                continue
            if bbox[2] == 0 or bbox[3] == 0:
                self.skipped_degenerate += 1
                continue
            per_image[index_of[int(a["image_id"])]].append(
                ([float(v) for v in bbox], self.cat_id_to_label[int(a["category_id"])], crowd)
            )
        self._targets = [self._make_target(anns) for anns in per_image]

    @staticmethod
    def _make_target(anns: list[tuple[list[float], int, int]]) -> dict[str, torch.Tensor]:
        xywh = np.asarray([b for b, _, _ in anns], dtype=np.float32).reshape(-1, 4)
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        return {
            "boxes": torch.from_numpy(xyxy),
            "labels": torch.tensor([c for _, c, _ in anns], dtype=torch.int64),
            "iscrowd": torch.tensor([z for _, _, z in anns], dtype=torch.int64),
        }

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_ids(self) -> list[int]:
        """COCO image ids in dataset order."""
        return [im["id"] for im in self.images]

    def target(self, index: int) -> dict[str, Any]:
        """The untransformed target of item ``index`` (no image decoding)."""
        im = self.images[index]
        t = self._targets[index]
        return {
            "boxes": t["boxes"].clone(),
            "labels": t["labels"].clone(),
            "iscrowd": t["iscrowd"].clone(),
            "image_id": im["id"],
            "orig_size": (im["height"], im["width"]),
        }

    def load_image(self, index: int) -> torch.Tensor:
        """Item ``index``'s image, float ``[3, H, W]`` in [0, 1]; its size must match the JSON."""
        im = self.images[index]
        path = os.path.join(self.image_dir, im["file_name"])
        image = to_tensor(pil_loader(path))
        if tuple(image.shape[1:]) != (im["height"], im["width"]):
            raise bad_format(
                path,
                f"image is {image.shape[1]}x{image.shape[2]} but {os.path.basename(self.ann_file)} says "
                f"{im['height']}x{im['width']} (height x width)",
                COCO_LAYOUT,
            )
        return image

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        image, target = self.load_image(index), self.target(index)
        if self.transform is not None:
            return self.transform(image, target)
        return image, target

    def __repr__(self) -> str:
        return (
            f"CocoDetection(ann_file='{self.ann_file}', images={len(self)}, categories={len(self.cat_ids)}, "
            f"skipped_crowd={self.skipped_crowd}, skipped_degenerate={self.skipped_degenerate})"
        )


def coco_results(
    image_id: int,
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    label_to_cat_id: Sequence[int],
) -> list[dict[str, Any]]:
    """Detections of one image as COCO results entries: ``image_id``, ``category_id`` (the dataset's
    own id), ``bbox`` ``[x, y, w, h]`` (from ``[N, 4]`` xyxy boxes in original image pixels), ``score``."""
    if not (boxes.shape[0] == scores.shape[0] == labels.shape[0]):
        raise UsageError(
            f"boxes, scores and labels differ in length: {boxes.shape[0]}, {scores.shape[0]}, "
            f"{labels.shape[0]}"
        )
    b = boxes.detach().cpu().double()
    xywh = torch.cat([b[:, :2], b[:, 2:] - b[:, :2]], dim=1).tolist()
    return [
        {
            "image_id": int(image_id),
            "category_id": int(label_to_cat_id[int(c)]),
            "bbox": [round(v, 3) for v in box],
            "score": round(float(s), 5),
        }
        for box, s, c in zip(xywh, scores.detach().cpu().tolist(), labels.detach().cpu().tolist())
    ]
