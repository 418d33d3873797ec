"""Synthetic scenes: Fashion-MNIST objects on procedural backgrounds, with exact dense annotations.

A scene is a canvas (any size and aspect) with a textured background (:mod:`.textures`: large smooth
redundant regions) and ``min_objects..max_objects`` tinted Fashion-MNIST items (:mod:`.fashion_objects`),
each square with a side of ``scale`` x the shorter canvas side, placed uniformly at random fully inside
the canvas. Objects may overlap: later objects occlude earlier ones, and every annotation describes the
*visible* part only (mask after occlusion, box of that mask, area = its pixel count).

Occlusion rule: an object whose visible part would be smaller than ``min_visible_area`` pixels or than
``min_visible_fraction`` of its own silhouette is removed from the scene altogether (not drawn, not
annotated), and the scene is composed again without it; removing an object only uncovers the others,
so image, semantic map and instances always agree. A scene can therefore hold fewer than
``min_objects`` objects (never zero while the top object is larger than ``min_visible_area``).

Each scene has its own random stream keyed by ``(seed, split, index, min_objects, max_objects)``: with
the same config and objects, scene ``i`` is the same whether generated alone, in any order or by any
worker. Semantic labels: 0 = background, Fashion-MNIST class
``c`` -> ``c + 1`` (11 classes). COCO category ids are ``c + 1`` as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import UsageError
from .coco_rle import mask_bbox
from .fashion_objects import FashionObjects
from .textures import BACKGROUND_KINDS, hsv_to_rgb, render_background

SPLITS = ("train", "test")
SEMANTIC_CLASSES = ("background", *FashionObjects.CLASSES)


@dataclass(frozen=True)
class SceneConfig:
    """How scenes are drawn (see the module docstring).

    ``scale``: (min, max) object side as a fraction of the shorter canvas side. ``split``: "train"
    or "test", the Fashion-MNIST split the objects come from (also part of the random stream).
    ``backgrounds``: the background kinds to draw from. ``min_contrast``: least RGB distance between
    an object's mean colour and the mean background under it (up to 8 tints are tried; the most
    contrasting one is kept when none reaches it).
    """

    height: int = 128
    width: int = 128
    min_objects: int = 1
    max_objects: int = 4
    scale: tuple[float, float] = (0.2, 0.7)
    split: str = "train"
    seed: int = 0
    backgrounds: tuple[str, ...] = BACKGROUND_KINDS
    min_visible_area: int = 16
    min_visible_fraction: float = 0.1
    min_contrast: float = 0.3

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise UsageError(f"canvas size must be positive, got {self.height}x{self.width}")
        if not 0 <= self.min_objects <= self.max_objects:
            raise UsageError(
                f"need 0 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}"
            )
        lo, hi = self.scale
        if not 0 < lo <= hi <= 1:
            raise UsageError(f"scale must be (min, max) with 0 < min <= max <= 1, got {self.scale}")
        if self.split not in SPLITS:
            raise UsageError(f"unknown split {self.split!r}; valid: {SPLITS}")
        bad = [k for k in self.backgrounds if k not in BACKGROUND_KINDS]
        if bad or not self.backgrounds:
            raise UsageError(
                f"backgrounds must be a non-empty subset of {BACKGROUND_KINDS}, got {self.backgrounds}"
            )
        if not 0 <= self.min_visible_fraction <= 1 or self.min_visible_area < 1:
            raise UsageError("min_visible_area must be >= 1 and min_visible_fraction in [0, 1]")

    def object_side_range(self) -> tuple[int, int]:
        """Smallest and largest object side in pixels."""
        short = min(self.height, self.width)
        return max(1, round(self.scale[0] * short)), max(1, round(self.scale[1] * short))


@dataclass
class SceneObject:
    """One visible object: ``category`` 0..9 (Fashion-MNIST class), ``bbox`` ``(x, y, w, h)`` of the
    visible mask in pixel edges, ``mask`` bool ``[H, W]`` (visible part), ``area`` = mask pixels;
    ``item`` the Fashion-MNIST index, ``tint`` RGB, ``placement`` the full sprite box ``(x, y, side, side)``."""

    category: int
    bbox: tuple[float, float, float, float]
    mask: np.ndarray
    area: int
    item: int = -1
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    placement: tuple[int, int, int, int] = (0, 0, 0, 0)

    def bbox_xyxy(self) -> tuple[float, float, float, float]:
        """The box as ``(x1, y1, x2, y2)``."""
        x, y, w, h = self.bbox
        return x, y, x + w, y + h


@dataclass
class Scene:
    """``image`` uint8 ``[H, W, 3]``, ``semantic`` uint8 ``[H, W]`` (0 = background, class c -> c + 1),
    ``instances`` (bottom to top), ``index`` and ``background`` kind."""

    image: np.ndarray
    semantic: np.ndarray
    instances: list[SceneObject] = field(default_factory=list)
    index: int = 0
    background: str = ""

    def boxes_xyxy(self) -> np.ndarray:
        """``[N, 4]`` float32 boxes ``(x1, y1, x2, y2)`` of the instances."""
        return np.asarray([o.bbox_xyxy() for o in self.instances], dtype=np.float32).reshape(-1, 4)

    def categories(self) -> np.ndarray:
        """``[N]`` int64 categories (0..9) of the instances."""
        return np.asarray([o.category for o in self.instances], dtype=np.int64)


def scene_rng(config: SceneConfig, index: int) -> np.random.Generator:
    """The random stream of scene ``index`` (independent of every other index)."""
    if index < 0:
        raise UsageError(f"scene index must be >= 0, got {index}")
    key = [int(config.seed), SPLITS.index(config.split), int(index), config.min_objects, config.max_objects]
    return np.random.default_rng(key)


def _pick_tint(rng: np.random.Generator, background_mean: np.ndarray, min_contrast: float) -> np.ndarray:
    best, best_d = None, -1.0
    for _ in range(8):
        hsv = np.array([rng.random(), rng.uniform(0.45, 1.0), rng.uniform(0.55, 1.0)])
        tint = hsv_to_rgb(hsv).astype(np.float32)
        d = float(np.linalg.norm(tint * 0.75 - background_mean))  # 0.75: mean shading factor of a sprite
        if d > best_d:
            best, best_d = tint, d
        if d >= min_contrast:
            break
    return best  # type: ignore[return-value]


def _compose(
    background: np.ndarray, sprites: list[tuple[np.ndarray, int, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """Paint ``(rgba, y, x)`` sprites in order; returns the canvas and the owner map (-1 = background)."""
    canvas = background.copy()
    owner = np.full(background.shape[:2], -1, dtype=np.int16)
    for k, (rgba, y, x) in enumerate(sprites):
        h, w = rgba.shape[:2]
        on = rgba[..., 3] > 0
        canvas[y : y + h, x : x + w][on] = rgba[..., :3][on]
        owner[y : y + h, x : x + w][on] = k
    return canvas, owner


def generate_scene(
    config: SceneConfig, index: int, objects: FashionObjects, category: int | None = None
) -> Scene:
    """Scene ``index`` of ``config``, objects drawn from ``objects`` (whose split must be the config's).

    ``category`` (0..9): draw every object from that class only (class-balanced single-object
    scenes for classification); None draws items uniformly from all of ``objects``.
    """
    if objects.split != config.split:
        raise UsageError(
            f"the objects come from the {objects.split!r} split but the config says split={config.split!r}; "
            "train scenes must use train items and test scenes test items"
        )
    pool = None if category is None else objects.items_of(category)
    rng = scene_rng(config, index)
    H, W = config.height, config.width
    kind = config.backgrounds[int(rng.integers(len(config.backgrounds)))]
    background = render_background(H, W, rng, kind)
    n = int(rng.integers(config.min_objects, config.max_objects + 1))
    side_lo, side_hi = config.object_side_range()
    placed: list[tuple[np.ndarray, int, int]] = []
    meta: list[tuple[int, np.ndarray, tuple[int, int, int, int]]] = []
    for _ in range(n):
        item = int(rng.integers(objects.num_items)) if pool is None else int(pool[rng.integers(len(pool))])
        side = int(rng.integers(side_lo, side_hi + 1))
        y, x = int(rng.integers(0, H - side + 1)), int(rng.integers(0, W - side + 1))
        under = background[y : y + side, x : x + side].reshape(-1, 3).mean(axis=0)
        tint = _pick_tint(rng, under, config.min_contrast)
        placed.append((objects.sprite(item, side, tint, rng), y, x))
        meta.append((item, tint, (x, y, side, side)))

    canvas, owner = _compose(background, placed)
    full = np.array([int((p[0][..., 3] > 0).sum()) for p in placed], dtype=np.int64)
    visible = np.bincount(owner[owner >= 0].astype(np.int64), minlength=len(placed))
    keep = (visible >= config.min_visible_area) & (visible >= config.min_visible_fraction * full)
    if not keep.all():  # remove slivers and compose again: the others can only become more visible
        placed = [p for p, k in zip(placed, keep) if k]
        meta = [m for m, k in zip(meta, keep) if k]
        canvas, owner = _compose(background, placed)

    semantic = np.zeros((H, W), dtype=np.uint8)
    instances = []
    for k, (item, tint, box) in enumerate(meta):
        mask = owner == k
        category = objects.label(item)
        semantic[mask] = category + 1
        instances.append(
            SceneObject(
                category, mask_bbox(mask), mask, int(mask.sum()), item, tuple(float(t) for t in tint), box
            )
        )
    image = np.clip(np.rint(canvas * 255.0), 0, 255).astype(np.uint8)
    return Scene(image=image, semantic=semantic, instances=instances, index=int(index), background=kind)


def scene_detection_target(scene: Scene) -> dict[str, Any]:
    """The scene's instances in the :class:`.coco.CocoDetection` target format: ``boxes`` ``[N, 4]``
    xyxy float pixels, ``labels`` ``[N]`` int64 (0..9), ``iscrowd`` zeros, ``image_id`` (the scene index),
    ``orig_size`` ``(H, W)``."""
    return {
        "boxes": torch.from_numpy(scene.boxes_xyxy()),
        "labels": torch.from_numpy(scene.categories()),
        "iscrowd": torch.zeros(len(scene.instances), dtype=torch.int64),
        "image_id": scene.index,
        "orig_size": (int(scene.image.shape[0]), int(scene.image.shape[1])),
    }


class SceneDataset(Dataset):
    """Scenes generated on the fly (no disk), deterministic per index.

    ``mode``: ``"segmentation"`` -> ``(image float [3, H, W] in [0, 1], semantic int64 [H, W])``;
    ``"detection"`` -> ``(image, target)`` with the target of :func:`scene_detection_target`;
    ``"scene"`` -> ``(image, semantic, instances)``. ``objects`` defaults to
    ``FashionObjects(config.split, root, source)``. ``transform`` (optional) is applied to
    ``(image, semantic)`` in segmentation mode and ``(image, target)`` in detection mode. ``cache=True``
    keeps every generated scene in memory (multi-epoch training: each scene is drawn once).
    """

    MODES = ("segmentation", "detection", "scene")

    def __init__(
        self,
        config: SceneConfig,
        length: int,
        objects: FashionObjects | None = None,
        *,
        mode: str = "segmentation",
        root: str | None = None,
        source: str | None = None,
        transform: Any = None,
        cache: bool = False,
    ):
        if mode not in self.MODES:
            raise UsageError(f"unknown mode {mode!r}; valid: {self.MODES}")
        if length < 0:
            raise UsageError(f"length must be >= 0, got {length}")
        self.config, self.length, self.mode, self.transform = config, int(length), mode, transform
        self.objects = objects if objects is not None else FashionObjects(config.split, root, source)
        self.classes = list(SEMANTIC_CLASSES)
        self._cache: dict[int, Scene] | None = {} if cache else None

    def __len__(self) -> int:
        return self.length

    def scene(self, index: int) -> Scene:
        """The full :class:`Scene` ``index``."""
        if not 0 <= index < self.length:
            raise IndexError(f"scene index {index} out of range for {self.length} scenes")
        if self._cache is None:
            return generate_scene(self.config, index, self.objects)
        if index not in self._cache:
            self._cache[index] = generate_scene(self.config, index, self.objects)
        return self._cache[index]

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        scene = self.scene(index)
        image = torch.from_numpy(scene.image).permute(2, 0, 1).float().div_(255.0)  # [3, H, W]
        if self.mode == "detection":
            target = scene_detection_target(scene)
            return self.transform(image, target) if self.transform is not None else (image, target)
        semantic = torch.from_numpy(scene.semantic.astype(np.int64))  # [H, W]
        if self.mode == "scene":
            return image, semantic, scene.instances
        return self.transform(image, semantic) if self.transform is not None else (image, semantic)

    def __repr__(self) -> str:
        c = self.config
        return f"SceneDataset({self.length} scenes {c.height}x{c.width}, split={c.split}, seed={c.seed}, mode={self.mode})"
