"""Write synthetic scenes (:mod:`.scenes`) in real on-disk formats, so that the readers are exercised on
files exactly as they would be on ADE20K, COCO or an image-folder classification set.

Layout written by :func:`make_scenes` under ``out``::

    out/scenes.json                                   what was made (arguments, counts, class names)
    out/ade20k/images/{training,validation}/<stem>.jpg
    out/ade20k/annotations/{training,validation}/<stem>.png    uint8 class index, 0 = background
    out/ade20k/classes.json, out/ade20k/README.txt
    out/coco/annotations/instances_{train,val}.json   boxes, areas, iscrowd 0, RLE segmentation
    out/coco/{train,val}/<stem>.jpg
    out/classification/{train,val}/<k>_<class>/<stem>.png      single-object scenes

ADE20K and COCO hold the same multi-object scenes under the same stems (``scene_000123``). Pillow is
needed to encode JPEG/PNG (``pip install pillow`` or ``pip install tp-spikformer[all]``).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

import numpy as np

from ..errors import UsageError
from ._pillow import require_pillow
from .coco_rle import rle_encode
from .fashion_objects import FashionObjects
from .scenes import SEMANTIC_CLASSES, Scene, SceneConfig, generate_scene

FORMATS = ("ade20k", "coco", "classification")
ADE_SPLITS = {"train": "training", "test": "validation"}
COCO_SPLITS = {"train": "train", "test": "val"}
# COCO supercategories of the Fashion-MNIST classes (category id = class index + 1).
SUPERCATEGORIES = ("clothing",) * 5 + ("footwear", "clothing", "footwear", "accessory", "footwear")


def scene_stem(index: int) -> str:
    """File stem of scene ``index`` (``scene_000123``)."""
    return f"scene_{index:06d}"


def class_folder_names(classes: Sequence[str] = FashionObjects.CLASSES) -> list[str]:
    """Folder names of the classification split: ``<k>_<name>`` with ``/`` and spaces replaced by
    ``_`` (``0_T-shirt_top`` ... ``9_Ankle_boot``), so that sorted order = class index for 10 classes."""
    return [f"{k}_{name.replace('/', '_').replace(' ', '_')}" for k, name in enumerate(classes)]


def encode_image(array: np.ndarray, fmt: str, quality: int = 95) -> bytes:
    """uint8 ``[H, W, 3]`` or ``[H, W]`` array as JPEG or PNG bytes (Pillow)."""
    Image = require_pillow()
    buf = io.BytesIO()
    img = Image.fromarray(np.ascontiguousarray(array))
    if fmt == "jpeg":
        img.save(buf, format="JPEG", quality=quality)
    elif fmt == "png":
        img.save(buf, format="PNG", compress_level=1)  # 3x faster than the default 6, ~40 % larger
    else:
        raise UsageError(f"unknown image format {fmt!r}; valid: 'jpeg', 'png'")
    return buf.getvalue()


def _write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


class ADE20KWriter:
    """``root/images/<split>/<stem>.jpg`` + ``root/annotations/<split>/<stem>.png`` (ADE20K layout)."""

    def __init__(self, root: str):
        self.root = root
        self.counts: dict[str, int] = {}

    def add(self, split: str, stem: str, scene: Scene, jpeg: bytes | None = None) -> None:
        """Write one scene; ``split`` is "training" or "validation"; ``jpeg`` reuses encoded bytes."""
        _write(
            os.path.join(self.root, "images", split, stem + ".jpg"), jpeg or encode_image(scene.image, "jpeg")
        )
        _write(
            os.path.join(self.root, "annotations", split, stem + ".png"), encode_image(scene.semantic, "png")
        )
        self.counts[split] = self.counts.get(split, 0) + 1

    def finish(self) -> dict[str, Any]:
        """Write ``classes.json`` and ``README.txt``; return the paths and counts."""
        meta = {"classes": list(SEMANTIC_CLASSES), "background_index": 0, "ignore_index": 255}
        _write(os.path.join(self.root, "classes.json"), json.dumps(meta, indent=1).encode())
        readme = (
            "Synthetic scenes in the ADE20K layout (tp-spikformer make-scenes).\n"
            "images/<split>/<stem>.jpg, annotations/<split>/<stem>.png: uint8 class index per pixel,\n"
            "0 = background, Fashion-MNIST class c = c + 1 (classes.json lists the 11 names).\n"
            "Read with tp_spikformer.data.ADE20KDataset(root, split, reduce_zero_label=False).\n"
        )
        _write(os.path.join(self.root, "README.txt"), readme.encode())
        return {"root": self.root, **self.counts}


class CocoWriter:
    """``root/annotations/instances_<split>.json`` + ``root/<split>/<stem>.jpg`` (COCO layout), RLE masks."""

    def __init__(self, root: str, info: dict[str, Any] | None = None):
        self.root = root
        self.info = info or {}
        self.images: dict[str, list[dict[str, Any]]] = {}
        self.annotations: dict[str, list[dict[str, Any]]] = {}

    def add(self, split: str, stem: str, scene: Scene, jpeg: bytes | None = None) -> None:
        """Write the image of one scene and record its annotations; ``split`` is "train" or "val"."""
        file_name = stem + ".jpg"
        _write(os.path.join(self.root, split, file_name), jpeg or encode_image(scene.image, "jpeg"))
        images = self.images.setdefault(split, [])
        anns = self.annotations.setdefault(split, [])
        image_id = len(images) + 1
        h, w = scene.semantic.shape
        images.append({"id": image_id, "file_name": file_name, "height": int(h), "width": int(w)})
        for obj in scene.instances:
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": image_id,
                    "category_id": obj.category + 1,
                    "bbox": [float(v) for v in obj.bbox],
                    "area": float(obj.area),
                    "iscrowd": 0,
                    "segmentation": rle_encode(obj.mask),
                }
            )

    def finish(self) -> dict[str, Any]:
        """Write one ``instances_<split>.json`` per split; return the paths and counts."""
        categories = [
            {"id": k + 1, "name": name, "supercategory": SUPERCATEGORIES[k]}
            for k, name in enumerate(FashionObjects.CLASSES)
        ]
        out: dict[str, Any] = {"root": self.root}
        for split, images in self.images.items():
            path = os.path.join(self.root, "annotations", f"instances_{split}.json")
            doc = {
                "info": {"description": "tp-spikformer synthetic scenes", **self.info},
                "licenses": [],
                "images": images,
                "annotations": self.annotations[split],
                "categories": categories,
            }
            _write(path, json.dumps(doc, separators=(",", ":")).encode())
            out[split] = {
                "annotation_file": path,
                "images": len(images),
                "annotations": len(self.annotations[split]),
            }
        return out


class ClassificationWriter:
    """Single-object scenes as ``root/<split>/<k>_<class>/<stem>.png`` (read by :class:`.ImageFolder`)."""

    def __init__(self, root: str):
        self.root = root
        self.folders = class_folder_names()
        self.counts: dict[str, int] = {}

    def add(self, split: str, stem: str, scene: Scene) -> None:
        """Write one scene, which must hold exactly one object; ``split`` is "train" or "val"."""
        if len(scene.instances) != 1:
            raise UsageError(
                f"classification scenes need exactly one object, scene {scene.index} has "
                f"{len(scene.instances)} (use min_objects = max_objects = 1 and objects well above "
                "min_visible_area pixels)"
            )
        folder = self.folders[scene.instances[0].category]
        _write(os.path.join(self.root, split, folder, stem + ".png"), encode_image(scene.image, "png"))
        self.counts[split] = self.counts.get(split, 0) + 1

    def finish(self) -> dict[str, Any]:
        """Return the root, the class folder names and counts."""
        return {"root": self.root, "classes": self.folders, **self.counts}


def _prepare(path: str, overwrite: bool) -> None:
    if os.path.isdir(path) and os.listdir(path):
        if not overwrite:
            raise FileExistsError(
                f"{path} already exists and is not empty; choose another output folder or pass "
                "overwrite=True (--overwrite) to replace it"
            )
        shutil.rmtree(path)


def make_scenes(
    out: str | os.PathLike,
    formats: Sequence[str] = FORMATS,
    train: int = 2000,
    val: int = 500,
    height: int = 128,
    width: int = 128,
    min_objects: int = 1,
    max_objects: int = 4,
    seed: int = 0,
    source: str | None = None,
    root: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Generate ``train`` + ``val`` scenes and write them in ``formats`` under ``out`` (layout in the
    module docstring). Returns a dict of paths and counts (also written to ``out/scenes.json``).

    Training scenes take their objects from the Fashion-MNIST train split, validation scenes from
    the test split (IDX files in ``root``, default the Debian package's). ``source="shipped"`` uses the
    packaged 2,000-image test slice instead (offline): training scenes then draw from its first 1,000
    images and validation scenes from the other 1,000, so the two never share an item. The
    classification split holds ``train`` + ``val`` single-object scenes of the same size, class-balanced
    (scene ``i`` shows class ``i % 10``), so every class folder exists once a split has 10 scenes and
    :class:`.ImageFolder`'s label = the Fashion-MNIST class index.

    Command-line form (``tp-spikformer make-scenes``)::

        make-scenes OUT [--formats ade20k,coco,classification] [--train 2000] [--val 500]
                        [--height 128] [--width 128] [--min-objects 1] [--max-objects 4] [--seed 0]
                        [--source idx|shipped] [--data-root DIR] [--overwrite] [--progress]
    """
    formats = tuple(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise UsageError(f"unknown format(s) {bad}; choose one or more of {FORMATS}")
    if train < 0 or val < 0:
        raise UsageError(f"scene counts must be >= 0, got train={train}, val={val}")
    out = os.fspath(os.path.expanduser(out))
    start = time.perf_counter()
    for fmt in formats:
        _prepare(os.path.join(out, fmt), overwrite)
    base = SceneConfig(
        height=height, width=width, min_objects=min_objects, max_objects=max_objects, seed=seed
    )
    objects = {
        s: FashionObjects(s, root, source) for s in ("train", "test") if (train if s == "train" else val)
    }
    info = {"seed": seed, "source": source or "idx", "height": height, "width": width}
    writers: dict[str, Any] = {}
    if "ade20k" in formats:
        writers["ade20k"] = ADE20KWriter(os.path.join(out, "ade20k"))
    if "coco" in formats:
        writers["coco"] = CocoWriter(os.path.join(out, "coco"), info)
    if "classification" in formats:
        writers["classification"] = ClassificationWriter(os.path.join(out, "classification"))
    total = (train + val) * (("ade20k" in formats or "coco" in formats) + ("classification" in formats))
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress and (done % max(1, total // 20) == 0 or done == total):
            print(f"make-scenes: {done}/{total} scenes", file=sys.stderr, flush=True)

    for split, n in (("train", train), ("test", val)):
        if n == 0:
            continue
        cfg = replace(base, split=split)
        if "ade20k" in writers or "coco" in writers:
            for i in range(n):
                scene = generate_scene(cfg, i, objects[split])
                jpeg = encode_image(scene.image, "jpeg")
                if "ade20k" in writers:
                    writers["ade20k"].add(ADE_SPLITS[split], scene_stem(i), scene, jpeg)
                if "coco" in writers:
                    writers["coco"].add(COCO_SPLITS[split], scene_stem(i), scene, jpeg)
                tick()
        if "classification" in writers:
            single = replace(cfg, min_objects=1, max_objects=1)
            for i in range(n):
                scene = generate_scene(single, i, objects[split], category=i % len(FashionObjects.CLASSES))
                writers["classification"].add(COCO_SPLITS[split], scene_stem(i), scene)
                tick()
    result: dict[str, Any] = {name: w.finish() for name, w in writers.items()}
    result.update(
        out=out,
        train=train,
        val=val,
        config={k: v for k, v in asdict(base).items() if k != "split"},
        source=source or "idx",
        classes=list(SEMANTIC_CLASSES),
        seconds=round(time.perf_counter() - start, 3),
    )
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "scenes.json"), "w") as f:
        json.dump(result, f, indent=1)
    return result
