"""Event representations for tracking (one frame interval at a time) and the tracker's crops.

* :func:`window_count_frames`: per-polarity event counts of ``t_start <= t < t_end`` in ``T`` equal time
  bins, ``[T, 2, H, W]`` float32 (channel 0 OFF, channel 1 ON, as :func:`.events.events_to_frames`, which
  does the counting). The families with a time axis take the bins as their time steps.
* :class:`GTPEncoder` / :func:`gtp_frames`: SDTrack's 3-channel "global trajectory prompt" frame, raw
  0..255 float values (no /255, no mean/std: SDTrack's FE108 / VisEvent input; FELT's configuration
  normalises, which the caller does):

  - ON count x ``stack_amount`` (30) and OFF count x ``stack_amount``, each clipped to 255;
  - a trajectory channel ``h <- clip(h * decay + trajectory_amount * ([ON newly active] + [OFF newly
    active]), 0, 255)``, where "newly active" means a pixel with events in this slice and none of that
    polarity in the previous slice; ``h`` stays 0 for the very first slice (the official script only
    starts updating it with the second) and is carried across the frames of a sequence (decay 0.8,
    amount 30).

  Channel order: the official script builds the array ``[ON, OFF, trajectory]`` and writes it with
  ``cv2.imwrite``, which takes it as BGR; SDTrack reads the PNG with cv2 and converts BGR -> RGB, so the
  network sees ``[trajectory, OFF, ON]`` [inferred from the third-party copy of ``GTP_FE108.py`` and
  SDTrack's ``opencv_loader``]. ``order="pnh"`` (default) returns ``[ON, OFF, trajectory]``;
  ``order="hnp"`` returns SDTrack's network order (use it with SDTrack weights). Deviation: the script
  ignores events in row 0 and column 0 (``0 < x < W``); we count them unless ``skip_border=True``. The
  PNGs store the trajectory truncated to integers; ``as_png=True`` truncates the same way (the state
  itself stays float, as in the script).
* :func:`crop_around`: the square search / template crop of SDTrack / OSTrack (side ``ceil(sqrt(w*h) *
  factor)`` centred on the box, zero padding outside the frame, bilinear resize to ``out_size``) and a
  :class:`CropTransform` mapping boxes between frame and crop coordinates. Deviations from OSTrack's
  ``sample_target``: the corner is rounded half up (not Python's half-to-even ``round``), the right and
  bottom padding has no extra pixel (OSTrack pads one pixel too many there and drops the frame's last
  column/row), and boxes are mapped back with the exact crop corner instead of the previous box centre
  (they differ by the corner's rounding, < 0.5 px).
* :func:`jitter_box`: OSTrack's training jitter of the search-crop box (log-normal scale, uniform centre
  offset).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UsageError
from .events import _hw, event_fields, events_to_frames

GTP_ORDERS = ("pnh", "hnp")


def _window(ev: dict[str, np.ndarray], t_start: float, t_end: float) -> dict[str, np.ndarray]:
    if not t_end > t_start:
        raise UsageError(f"the window must have t_end > t_start, got [{t_start}, {t_end})")
    t = ev["t"]
    if t.size and np.all(t[1:] >= t[:-1]):  # sorted: binary search instead of a mask
        a, b = np.searchsorted(t, t_start, "left"), np.searchsorted(t, t_end, "left")
        return {k: v[a:b] for k, v in ev.items()}
    keep = (t >= t_start) & (t < t_end)
    return {k: v[keep] for k, v in ev.items()}


def _bins(t: np.ndarray, t_start: float, t_end: float, T: int) -> np.ndarray:
    """Bin 0..T-1 of each time in [t_start, t_end): floor((t - t_start) * T / (t_end - t_start))."""
    b = np.floor((t.astype(np.float64) - t_start) * T / (t_end - t_start)).astype(np.int64)
    return np.clip(b, 0, T - 1)  # only guards float rounding at the upper edge


def window_count_frames(
    events: Any, t_start: float, t_end: float, sensor_size: int | Sequence[int], T: int = 1
) -> torch.Tensor:
    """Per-polarity counts ``[T, 2, H, W]`` float32 of the events with ``t_start <= t < t_end``, split
    into ``T`` equal time bins (bin of an event: ``floor((t - t_start) * T / (t_end - t_start))``).

    Unlike ``events_to_frames(..., split_by="time")`` the bins follow the window, not the first and last
    event, so empty parts of the interval give empty bins. Events outside the sensor are dropped (as
    :func:`.events.events_to_frames` does)."""
    if T < 1:
        raise UsageError(f"T must be >= 1, got {T}")
    ev = _window(event_fields(events), t_start, t_end)
    if T == 1:
        return events_to_frames(ev, sensor_size, 1)
    b = _bins(ev["t"], t_start, t_end, T)
    return torch.cat(
        [events_to_frames({k: v[b == i] for k, v in ev.items()}, sensor_size, 1) for i in range(T)]
    )


class GTPEncoder:
    """SDTrack's GTP frames, one slice at a time, with the trajectory state carried between slices.

    ``sensor_size`` (H, W); ``stack_amount`` (30) per event on the ON / OFF channels; ``trajectory_amount``
    (30) and ``decay`` (0.8) of the trajectory channel; ``order`` "pnh" or "hnp"; ``skip_border`` drops
    row 0 and column 0 as the official script; ``as_png`` truncates the trajectory channel to integers as
    the saved PNGs do. See the module docstring. Call :meth:`reset` between sequences.
    """

    def __init__(
        self,
        sensor_size: int | Sequence[int],
        stack_amount: float = 30.0,
        trajectory_amount: float = 30.0,
        decay: float = 0.8,
        order: str = "pnh",
        skip_border: bool = False,
        as_png: bool = False,
    ):
        if order not in GTP_ORDERS:
            raise UsageError(
                "order must be 'pnh' ([ON, OFF, trajectory]) or 'hnp' (SDTrack's network order), "
                f"got '{order}'"
            )
        self.sensor_size = _hw(sensor_size)
        self.stack_amount = float(stack_amount)
        self.trajectory_amount = float(trajectory_amount)
        self.decay = float(decay)
        self.order = order
        self.skip_border = skip_border
        self.as_png = as_png
        self.reset()

    def reset(self) -> None:
        """Start a new sequence (no previous slice, trajectory 0)."""
        self._last: torch.Tensor | None = None  # [2, H, W] previous OFF / ON channels
        self.hidden = torch.zeros(self.sensor_size, dtype=torch.float64)

    def encode(self, events: Any) -> torch.Tensor:
        """The next slice's ``[3, H, W]`` float32 frame from all of ``events`` (already cut to the slice)."""
        ev = event_fields(events)
        if self.skip_border:
            keep = (ev["x"].astype(np.int64) > 0) & (ev["y"].astype(np.int64) > 0)
            ev = {k: v[keep] for k, v in ev.items()}
        counts = events_to_frames(ev, self.sensor_size, 1)[0].double()  # [2, H, W]: OFF, ON
        stacked = (counts * self.stack_amount).clamp(max=255.0)
        if self._last is not None:
            new = ((self._last == 0) & (stacked != 0)).double().sum(0)  # newly active, both polarities
            self.hidden = (self.hidden * self.decay + self.trajectory_amount * new).clamp(0.0, 255.0)
        self._last = stacked
        hidden = torch.floor(self.hidden) if self.as_png else self.hidden
        pos, neg = stacked[1], stacked[0]
        chans = (pos, neg, hidden) if self.order == "pnh" else (hidden, neg, pos)
        return torch.stack(chans).float()

    def encode_window(self, events: Any, t_start: float, t_end: float, T: int = 1) -> torch.Tensor:
        """``[T, 3, H, W]``: the window ``[t_start, t_end)`` cut into ``T`` equal slices (SDTrack's
        ``interT``), encoded in order."""
        if T < 1:
            raise UsageError(f"T must be >= 1, got {T}")
        ev = _window(event_fields(events), t_start, t_end)
        b = _bins(ev["t"], t_start, t_end, T)
        return torch.stack([self.encode({k: v[b == i] for k, v in ev.items()}) for i in range(T)])


def gtp_frames(
    events: Any, bounds_us: Sequence[float], sensor_size: int | Sequence[int], T: int = 1, **kwargs: Any
) -> torch.Tensor:
    """GTP frames ``[N, T, 3, H, W]`` of a whole sequence: window i is ``bounds_us[i] <= t <
    bounds_us[i + 1]`` (N + 1 bounds), the trajectory carried across windows. ``kwargs`` go to
    :class:`GTPEncoder`."""
    bounds = np.asarray(bounds_us, dtype=np.float64).reshape(-1)
    if bounds.size < 2 or not np.all(np.diff(bounds) > 0):
        raise UsageError(
            f"bounds_us must be >= 2 increasing times (N + 1 window bounds), got {bounds[:5]}..."
        )
    enc = GTPEncoder(sensor_size, **kwargs)
    ev = event_fields(events)
    return torch.stack([enc.encode_window(ev, bounds[i], bounds[i + 1], T) for i in range(bounds.size - 1)])


@dataclass(frozen=True)
class CropTransform:
    """Where a square crop came from: frame coordinates ``x = x0 + u / scale`` for crop coordinates u
    (pixel edges: the crop's pixel u covers frame ``[x0 + u / scale, x0 + (u + 1) / scale)``)."""

    x0: int
    y0: int
    crop_size: int
    out_size: int

    @property
    def scale(self) -> float:
        """Crop pixels per frame pixel (``out_size / crop_size``)."""
        return self.out_size / self.crop_size

    def to_frame(self, box: Any) -> Any:
        """Boxes ``[..., 4]`` (x, y, w, h) in crop pixels -> frame pixels (numpy or torch)."""
        out = (box * 1.0 if isinstance(box, torch.Tensor) else np.array(box, dtype=np.float64)) / self.scale
        out[..., 0] = out[..., 0] + self.x0
        out[..., 1] = out[..., 1] + self.y0
        return out

    def to_crop(self, box: Any) -> Any:
        """Boxes ``[..., 4]`` (x, y, w, h) in frame pixels -> crop pixels (numpy or torch)."""
        out = box * 1.0 if isinstance(box, torch.Tensor) else np.array(box, dtype=np.float64)
        out[..., 0] = out[..., 0] - self.x0
        out[..., 1] = out[..., 1] - self.y0
        return out * self.scale


def crop_around(
    frame: Any, box_xywh: Sequence[float], factor: float, out_size: int
) -> tuple[torch.Tensor, CropTransform]:
    """Square crop of side ``ceil(sqrt(w * h) * factor)`` centred on the box, zeros outside the frame,
    resized (bilinear, ``align_corners=False``, no antialias: OpenCV's ``INTER_LINEAR``) to
    ``out_size`` x ``out_size``.

    ``frame``: ``[..., H, W]`` (e.g. ``[3, H, W]`` GTP or ``[T, 2, H, W]`` counts), numpy or torch.
    Returns the crop ``[..., out_size, out_size]`` float32 and the :class:`CropTransform`.
    """
    x, y, w, h = (float(v) for v in box_xywh)
    if not (w > 0 and h > 0):
        raise UsageError(f"the box must have w > 0 and h > 0 to crop around it, got {tuple(box_xywh)}")
    if not (factor > 0 and out_size >= 1):
        raise UsageError(f"need factor > 0 and out_size >= 1, got factor={factor}, out_size={out_size}")
    crop = math.ceil(math.sqrt(w * h) * factor)
    x0 = math.floor(x + 0.5 * w - 0.5 * crop + 0.5)
    y0 = math.floor(y + 0.5 * h - 0.5 * crop + 0.5)
    img = torch.as_tensor(frame)
    img = img if img.is_floating_point() else img.float()
    H, W = img.shape[-2:]
    canvas = img.new_zeros(*img.shape[:-2], crop, crop, dtype=torch.float32)
    fx0, fy0 = max(x0, 0), max(y0, 0)
    fx1, fy1 = min(x0 + crop, W), min(y0 + crop, H)
    if fx1 > fx0 and fy1 > fy0:
        canvas[..., fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0] = img[..., fy0:fy1, fx0:fx1]
    if crop != out_size:
        lead = canvas.shape[:-2]
        canvas = F.interpolate(
            canvas.reshape(-1, 1, crop, crop), size=(out_size, out_size), mode="bilinear", align_corners=False
        ).reshape(*lead, out_size, out_size)
    return canvas, CropTransform(x0, y0, crop, int(out_size))


def jitter_box(
    box_xywh: Sequence[float], center_jitter: float, scale_jitter: float, rng: np.random.Generator
) -> np.ndarray:
    """OSTrack's training jitter: size ``* exp(N(0, 1) * scale_jitter)`` per axis, centre moved by
    ``sqrt(w' * h') * center_jitter * U(-0.5, 0.5)`` per axis (SDTrack: 3 and 0.25 for the search crop,
    0 for the template). Returns a new ``[4]`` x, y, w, h array."""
    box = np.asarray(box_xywh, dtype=np.float64)
    size = box[2:] * np.exp(rng.standard_normal(2) * scale_jitter)
    offset = math.sqrt(float(size.prod())) * center_jitter
    center = box[:2] + 0.5 * box[2:] + offset * (rng.random(2) - 0.5)
    return np.concatenate([center - 0.5 * size, size])
