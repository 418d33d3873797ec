"""Event streams (t, x, y, p) -> frames ``[T, 2, H, W]`` of event counts, spikingjelly's convention.

``split_by="number"``: with N events in file order, frame i holds events ``[i * (N // T), (i + 1) *
(N // T))`` and the last frame also the remainder (spikingjelly's
``cal_fixed_frames_number_segment_index``; with N < T every event lands in the last frame).
``split_by="time"``: with ``dt = (t_last - t_first) // T`` (floor division, as spikingjelly) frame i
holds ``t_first + i * dt <= t < t_first + (i + 1) * dt``, the last frame everything from its start on.
For time-sorted streams both equal spikingjelly's frames exactly; empty slices give empty frames.
Channel 0 counts events with ``p <= 0`` (OFF; 0 in {0, 1} or -1 in {-1, 1} polarity), channel 1 with
``p > 0``; other polarity values are refused. Events outside the sensor (x >= W, y >= H or negative) are
an error, not silently dropped: they mean the sensor size is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UnknownNameError, UsageError

EVENT_FIELDS = ("t", "x", "y", "p")


def event_fields(events: Any) -> dict[str, np.ndarray]:
    """t, x, y, p arrays of a structured numpy array, a mapping (dict, ``np.load`` result) or an
    object with those attributes; all of the same length."""
    if isinstance(events, np.ndarray) and events.dtype.names:
        missing = [k for k in EVENT_FIELDS if k not in events.dtype.names]
        get = events.__getitem__
        found = list(events.dtype.names)
    elif isinstance(events, Mapping) or hasattr(events, "files"):
        keys = list(events.keys()) if hasattr(events, "keys") else list(events.files)
        missing = [k for k in EVENT_FIELDS if k not in keys]
        get = events.__getitem__
        found = keys
    else:
        missing = [k for k in EVENT_FIELDS if not hasattr(events, k)]
        get = lambda k: getattr(events, k)  # noqa: E731
        found = [k for k in EVENT_FIELDS if hasattr(events, k)]
    if missing:
        raise UnknownNameError(f"events need fields {EVENT_FIELDS}; missing {missing} (found {found})")
    out = {k: np.asarray(get(k)).reshape(-1) for k in EVENT_FIELDS}
    n = {k: v.shape[0] for k, v in out.items()}
    if len(set(n.values())) != 1:
        raise UsageError(f"event fields have different lengths: {n}")
    return out


def _hw(sensor_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(sensor_size, int):
        return sensor_size, sensor_size
    if len(sensor_size) != 2:
        raise UsageError(
            f"sensor_size must be (H, W) (note: tonic's sensor_size is (W, H, P)), got {tuple(sensor_size)}"
        )
    return int(sensor_size[0]), int(sensor_size[1])


def _polarity(p: np.ndarray) -> np.ndarray:
    """Polarity as 0 (OFF) / 1 (ON) from {0, 1}, {-1, 1} or bools; anything else is refused."""
    values = np.unique(p)
    if not np.isin(values, (-1, 0, 1)).all():
        raise UsageError(
            f"event polarities must be 0/1 or -1/1 (OFF/ON), got the values {values[:8].tolist()}"
        )
    return (p.astype(np.float64) > 0).astype(np.int64)


def frame_index(t: np.ndarray, T: int, split_by: str = "number") -> np.ndarray:
    """Frame number (0..T-1) of every event (see the module docstring for the rules)."""
    n = t.shape[0]
    if T < 1:
        raise UsageError(f"T must be >= 1, got {T}")
    if split_by == "number":
        per = n // T
        if per == 0:
            return np.full(n, T - 1, dtype=np.int64)
        return np.minimum(np.arange(n, dtype=np.int64) // per, T - 1)
    if split_by == "time":
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        t0, t1 = t.min(), t.max()
        dt = (t1 - t0) // T
        bounds = t0 + dt * np.arange(1, T, dtype=np.result_type(t.dtype, np.int64))
        return np.searchsorted(bounds, t, side="right").astype(np.int64)
    raise UsageError(f"split_by must be 'number' or 'time', got '{split_by}'")


def events_to_frames(
    events: Any, sensor_size: int | Sequence[int], T: int, split_by: str = "number"
) -> torch.Tensor:
    """Integrate events into ``[T, 2, H, W]`` float32 count frames (spikingjelly's ``split_by`` rules).

    ``events``: structured array or mapping with t, x, y, p; ``sensor_size``: (H, W) or an int.
    The sum of all frames equals the number of events inside the sensor.
    """
    H, W = _hw(sensor_size)
    ev = event_fields(events)
    idx = frame_index(ev["t"], T, split_by)
    x = ev["x"].astype(np.int64)
    y = ev["y"].astype(np.int64)
    pol = _polarity(ev["p"])
    outside = (x < 0) | (x >= W) | (y < 0) | (y >= H)
    if outside.any():
        n_out = int(outside.sum())
        raise UsageError(
            f"{n_out} of {x.shape[0]} events ({100 * n_out / x.shape[0]:.1f} %) lie outside the {H}x{W} sensor "
            f"(x in {x.min()}..{x.max()}, y in {y.min()}..{y.max()}); give the right sensor_size (H, W) or "
            "crop the events first"
        )
    flat = ((idx * 2 + pol) * H + y) * W + x
    counts = np.bincount(flat, minlength=T * 2 * H * W).astype(np.float32)
    return torch.from_numpy(counts).reshape(T, 2, H, W)


def resize_frames(
    frames: torch.Tensor, size: int | Sequence[int], mode: str = "bilinear", antialias: bool = False
) -> torch.Tensor:
    """Resize ``[..., H, W]`` frames to ``size`` ((h, w) or an int for a square).

    ``mode="bilinear"`` (default) with ``antialias=False`` is ``F.interpolate(..., align_corners=False)``,
    what torchvision's tensor ``Resize((64, 64))`` did in the torchvision releases the official
    Spike-driven Transformer ran with (CIFAR10-DVS 128 -> 64, its ``dvs_utils.Resize``); for an exact
    halving it is the 2x2 mean. ``antialias=True`` is newer torchvision's default (a wider triangle
    filter). ``mode="area"`` averages source pixels (adaptive average pooling); ``"nearest"`` picks.
    Averages keep the count scale per pixel, so totals shrink by the area factor.
    """
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if tuple(frames.shape[-2:]) == (h, w):
        return frames
    if mode not in ("bilinear", "area", "nearest"):
        raise UsageError(f"mode must be 'bilinear', 'area' or 'nearest', got '{mode}'")
    lead = frames.shape[:-2]
    x = frames.reshape(-1, 1, *frames.shape[-2:])
    if not x.is_floating_point():
        x = x.float()
    if mode == "bilinear":
        y = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=antialias)
    elif mode == "area":
        y = F.interpolate(x, size=(h, w), mode="area")
    else:
        y = F.interpolate(x, size=(h, w), mode="nearest")
    return y.reshape(*lead, h, w)
