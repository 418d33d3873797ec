"""Named configurations, ``list_models`` and ``create_model``.

A configuration is data (:class:`ModelConfig`): the family's model class, the official constructor
arguments, T, heads, input size and the evaluation preprocessing of the official code. Family files
register their configurations at import time (``register_model``).
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from torch import nn

from ..errors import UnknownNameError, UsageError, UsageTypeError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)
CIFAR100_STD = (0.2675, 0.2565, 0.2761)


@dataclass(frozen=True)
class DataConfig:
    """Evaluation preprocessing of the official code for a configuration.

    ``crop_pct``: resize the shorter side to ``input_size / crop_pct`` then centre-crop ``input_size``
    (1.0: resize straight to the input size; None: no resize/crop, e.g. 32x32 CIFAR). ``mean``/``std``
    None: no normalisation (event frames are raw counts).
    """

    input_size: tuple[int, int, int]  # (C, H, W)
    crop_pct: float | None = None
    interpolation: str = "bicubic"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    event_frames: bool = False


@dataclass(frozen=True)
class ModelConfig:
    """One named configuration of a family."""

    name: str
    family: str  # "spikformer" | "sdt_v1" | "qkformer" | "sdt_v3"
    variant: str  # which official file/class: e.g. "imagenet", "cifar", "cifar10dvs", "base"
    builder: Callable[..., nn.Module]
    kwargs: dict[str, Any]
    data: DataConfig
    num_classes: int
    T: int | None
    source: str = ""
    description: str = ""
    official_params: int | None = None  # parameter count of the official class (shared/reference/keys)
    tiny: bool = False  # a small test configuration, not an official one
    notes: str = ""
    # weights shipped with the package: a path relative to the package's assets/ folder (pretrained=True)
    weights: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # "classification", or the task of a model built on a backbone ("segmentation", "detection", "tracking")
    task: str = "classification"

    def build_kwargs(self, **overrides: Any) -> dict[str, Any]:
        kwargs = dict(self.kwargs)
        unknown = sorted(k for k in overrides if k not in kwargs)
        if unknown:
            raise UsageTypeError(
                f"unknown override(s) {unknown} for model '{self.name}'; valid: {sorted(kwargs)}"
            )
        kwargs.update(overrides)
        return kwargs


_MODELS: dict[str, ModelConfig] = {}
_OFFICIAL_CLASSES: dict[tuple[str, str], Callable[..., nn.Module]] = {}


def register_model(cfg: ModelConfig) -> ModelConfig:
    """Register a configuration under ``cfg.name`` (names are unique)."""
    if cfg.name in _MODELS:
        raise UsageError(f"model name '{cfg.name}' is already registered")
    _MODELS[cfg.name] = cfg
    return cfg


def register_official_class(family: str, variant: str, cls: Callable[..., nn.Module]) -> None:
    """Declare which of our classes takes the constructor arguments of an official (family, variant) class."""
    _OFFICIAL_CLASSES[(family, variant)] = cls


def build_from_official_kwargs(family: str, variant: str, **kwargs: Any) -> nn.Module:
    """Build our model from the exact keyword arguments the official class was called with.

    This is how the golden reference cases (``shared/reference/*.pt``) are rebuilt.
    """
    try:
        cls = _OFFICIAL_CLASSES[(family, variant)]
    except KeyError:
        known = ", ".join(f"{f}/{v}" for f, v in sorted(_OFFICIAL_CLASSES))
        raise UnknownNameError(
            f"no model class for official family/variant '{family}/{variant}'; known: {known}"
        ) from None
    return cls(**kwargs)


def list_models(pattern: str = "*", include_tiny: bool = True) -> list[str]:
    """Registered configuration names matching a shell-style ``pattern`` (e.g. ``"qkformer*"``), sorted."""
    return sorted(
        n for n, c in _MODELS.items() if fnmatch.fnmatch(n, pattern) and (include_tiny or not c.tiny)
    )


def get_model_config(name: str) -> ModelConfig:
    """The :class:`ModelConfig` of ``name``; unknown names raise with the closest valid names."""
    try:
        return _MODELS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_MODELS), n=5, cutoff=0.4)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownNameError(
            f"unknown model '{name}'.{hint} `tp-spikformer models` or list_models() shows all "
            f"{len(_MODELS)} names."
        ) from None


def create_model(
    name: str,
    checkpoint: Any = None,
    strict: bool = True,
    pretrained: bool = False,
    features_only: bool = False,
    out_indices: Any = None,
    official_arithmetic: bool = False,
    **overrides: Any,
) -> nn.Module:
    """Build a registered model, optionally loading a checkpoint (file path or state dict).

    ``pretrained=True`` loads the weights shipped with the package for this configuration (only the
    small Fashion-MNIST models have some: official weights cannot be redistributed or downloaded here).
    ``overrides`` replace constructor arguments of the named configuration (e.g. ``T=2``,
    ``num_classes=100``); an unknown one raises and lists the valid ones. Loading is strict: any
    missing, unexpected or mis-shaped key raises (see ``tp_spikformer.models.checkpoint``).

    ``features_only=True`` returns the backbone (timm's convention): the classifier is deleted and the
    forward returns the stage outputs ``out_indices`` (None: all; an int n: the last n; a list; or a named
    layout such as SDT-V3's ``"detection"`` / ``"segmentation"``); ``model.feature_info`` describes them. A
    classification checkpoint loads into it (the head keys are dropped and reported), and so does a
    detector/segmenter/tracker checkpoint (its ``backbone.`` keys).

    ``official_arithmetic=True`` makes float32 outputs follow the official code's arithmetic where its own
    kernels allow: NCHW tensors instead of channels-last, no ``tp_spikformer.optimize`` (it refuses such a
    model), and the ``official_literal`` TP scorer by default
    (``SpikingTransformer.set_official_arithmetic``).
    Use it to reproduce published float32 numbers; float64 results are the same either way.
    """
    cfg = get_model_config(name)
    if pretrained:
        if checkpoint is not None:
            raise UsageError("pass either pretrained=True or checkpoint=..., not both")
        if cfg.weights is None:
            shipped = [n for n, c in _MODELS.items() if c.weights]
            raise UsageError(
                f"no weights ship with '{name}'; pass checkpoint=<path to the official file>. "
                f"Configurations with shipped weights: {shipped}"
            )
        checkpoint = asset_path(cfg.weights)
    kwargs = cfg.build_kwargs(**overrides)
    model = cfg.builder(**kwargs)
    if features_only:
        if not hasattr(model, "as_backbone"):
            raise UsageError(
                f"'{name}' has no stage features (features_only=True needs a SpikingTransformer)"
            )
        model.as_backbone(out_indices)
    elif out_indices is not None:
        raise UsageError("out_indices selects backbone stage outputs: pass it with features_only=True")
    if official_arithmetic is not False:
        if not hasattr(model, "set_official_arithmetic"):
            raise UsageError(
                f"'{name}' is not a SpikingTransformer; official_arithmetic applies to those only"
            )
        model.set_official_arithmetic(official_arithmetic)
    model_t = getattr(model, "T", None)  # None for frame models that take T from the input
    model.config = replace(
        cfg,
        kwargs=kwargs,
        T=model_t if model_t is not None else kwargs.get("T", cfg.T),
        num_classes=getattr(model, "num_classes", cfg.num_classes),
    )
    if checkpoint is not None:
        from .checkpoint import load_checkpoint

        load_checkpoint(model, checkpoint, strict=strict)
    return model


def asset_path(relative: str) -> str:
    """Absolute path of a file shipped in the package's ``assets/`` folder (raises if it is missing)."""
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", relative)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"packaged asset missing: {path} (reinstall the package or rebuild the asset)"
        )
    return path
