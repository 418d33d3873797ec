"""Training sets of the dense tasks by name, for ``tp-spikformer train --task ...``: generated scenes
(``scenes[:<n>]``: n training scenes of the model's input size, objects from the Fashion-MNIST train split)
or a folder in a real layout."""

from __future__ import annotations

from typing import Any

from ..errors import UsageError


def scene_count(name: str, default: int) -> int | None:
    """n of ``scenes[:<n>]`` (``default`` without it); None when ``name`` is not a scene set."""
    if name != "scenes" and not name.startswith("scenes:"):
        return None
    n = name.partition(":")[2]
    if n and not (n.isdigit() and int(n) >= 1):
        raise UsageError(f"dataset {name!r}: scenes:<n> needs n >= 1, e.g. scenes:4000")
    return int(n) if n else default


def scene_config(model: Any, split: str):
    """The scene layout a task model is trained and evaluated on: its input size and the scene options in
    its configuration's ``extra["scenes"]`` (e.g. ``{"max_objects": 2}``); seed 0."""
    from ..data.scenes import SceneConfig

    _, h, w = model.config.data.input_size
    return SceneConfig(height=h, width=w, split=split, seed=0, **model.config.extra.get("scenes", {}))


TRAIN_SPLITS = ("train", "training")
VALIDATION_SPLITS = ("test", "val", "validation")


def scene_set(model: Any, name: str, split: str, mode: str, root: str | None = None, default: int = 500):
    """The dataset ``scenes[:<n>]`` of a task (``default`` scenes without n): training scenes for a train
    split (e.g. calibration never sees the validation scenes), validation scenes for a validation split
    (:data:`VALIDATION_SPLITS`); None when ``name`` is not a scene set."""
    n = scene_count(name, default)
    if n is None:
        return None
    if split in TRAIN_SPLITS:
        return training_scenes(model, n, mode, root=root)
    if split in VALIDATION_SPLITS:
        return validation_scenes(model, n, mode, root=root)
    raise UsageError(
        f"dataset {name!r} has no split {split!r}; choose a training split {TRAIN_SPLITS} or a "
        f"validation split {VALIDATION_SPLITS} (command line: --split)"
    )


def training_scenes(model: Any, n: int, mode: str, root: str | None = None):
    """``n`` training scenes of ``model`` (:func:`scene_config`), objects from the train split (Fashion-MNIST
    IDX files under ``root`` or Debian's folder), generated once and kept in memory."""
    from ..data.scenes import SceneDataset

    return SceneDataset(scene_config(model, "train"), n, mode=mode, root=root, cache=True)


def validation_scenes(model: Any, n: int, mode: str, root: str | None = None):
    """``n`` validation scenes of ``model`` (:func:`scene_config`), objects from the Fashion-MNIST test split:
    the IDX files under ``root``, or without it the shipped test slice."""
    from ..data.scenes import SceneDataset

    source = None if root is not None else "shipped"
    return SceneDataset(scene_config(model, "test"), n, mode=mode, root=root, source=source)


def init_backbone_from(model: Any, checkpoint: Any) -> dict[str, Any]:
    """``--backbone-checkpoint``: classification weights (a path or a shipped model's name) into
    ``model.backbone`` (a grey classifier's stem is repeated over RGB)."""
    from .detection.backbone_init import init_backbone

    return init_backbone(model, checkpoint)
