"""Read a data configuration by duck typing (no import of ``tp_spikformer.models``).

Accepted: any object with the attributes of ``models.DataConfig`` (``input_size`` (C, H, W),
``crop_pct``, ``interpolation``, ``mean``, ``std``, ``event_frames``), a mapping with those keys, or an
object whose ``.data`` or ``.config.data`` is one (a ``ModelConfig`` or a built model).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError, UsageTypeError

_FIELDS = ("input_size", "crop_pct", "interpolation", "mean", "std", "event_frames")


@dataclass(frozen=True)
class DataSpec:
    """The fields the data package reads from a configuration."""

    input_size: tuple[int, int, int]
    crop_pct: float | None = None
    interpolation: str = "bicubic"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    event_frames: bool = False

    @property
    def channels(self) -> int:
        return self.input_size[0]

    @property
    def hw(self) -> tuple[int, int]:
        return self.input_size[1], self.input_size[2]


def _get(obj: Any, name: str, default: Any) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def data_spec(cfg: Any) -> DataSpec:
    """Normalise ``cfg`` (DataConfig-like, mapping, ModelConfig or model) to a :class:`DataSpec`."""
    if isinstance(cfg, DataSpec):
        return cfg
    for _ in range(3):  # model -> model.config -> config.data
        if _get(cfg, "input_size", None) is not None:
            break
        nxt = _get(cfg, "data", None)
        if nxt is None:
            nxt = _get(cfg, "config", None)
        if nxt is None:
            break
        cfg = nxt
    size = _get(cfg, "input_size", None)
    if size is None:
        raise UsageTypeError(
            f"expected a data configuration with input_size (C, H, W) and optionally {_FIELDS[1:]}, "
            f"got {type(cfg).__name__}"
        )
    size = tuple(int(s) for s in size)
    if len(size) != 3:
        raise UsageError(f"input_size must be (C, H, W), got {size}")
    mean, std = _get(cfg, "mean", None), _get(cfg, "std", None)
    if (mean is None) != (std is None):
        raise UsageError(f"mean and std must both be given or both be None, got mean={mean}, std={std}")
    crop_pct = _get(cfg, "crop_pct", None)
    return DataSpec(
        input_size=size,  # type: ignore[arg-type]
        crop_pct=None if crop_pct is None else float(crop_pct),
        interpolation=str(_get(cfg, "interpolation", "bicubic") or "bicubic"),
        mean=None if mean is None else tuple(float(m) for m in mean),
        std=None if std is None else tuple(float(s) for s in std),
        event_frames=bool(_get(cfg, "event_frames", False)),
    )
