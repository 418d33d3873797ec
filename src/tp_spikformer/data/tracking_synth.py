"""Synthetic event-camera tracking sequences (Fashion-MNIST objects over panning textures), FE108 layout.

A sequence: a textured background canvas larger than the view (:func:`.textures.render_background`)
seen through a view window that pans slowly; a target object (a tinted Fashion-MNIST item,
:class:`.fashion_objects.FashionObjects`) moving with smooth translation and scale change, bounded so
that its whole box stays in the view; 0-2 distractor items with their own paths, each in front of or
behind the target, and with probability ``occlusion_prob`` one distractor that crosses the target in
front of it (partial occlusion). Frames are rendered ``substeps`` times per annotated frame (sub-pixel
motion through bilinear sampling, so per-step log-intensity changes stay small) and turned into events
by :class:`.esim.EventSimulator` (grey = Rec. 601 luma of the RGB render).

Timing: frame window i is ``[i * dt, (i + 1) * dt)`` with ``dt = 1e6 / fps`` us (N + 1 bounds in
``meta.json``, SDTrack's pairing of a frame with the events after its timestamp); box i is the target at
the **end** of window i (the newest events show where the object is then; for FE108 the box belongs to
the APS frame at the window start). Boxes are the full extent of the target's silhouette (also where it
is occluded), as FE108 annotates, in float pixels.

Everything is deterministic per ``(seed, split, index)``; train sequences use the Fashion-MNIST train
split (or the first half of the shipped slice) and test sequences the test split (the second half).
On disk (:func:`make_tracking_dataset`): ``<out>/{train,test}/synth_<index:04>/`` with ``events.npz``
(t, x, y, p; real FE108 has ``events.aedat4``, and :class:`.tracking.TrackingDataset` reads both),
``groundtruth_rect.txt`` and ``meta.json``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UsageError
from .esim import EventSimulator
from .fashion_objects import FashionObjects
from .textures import hsv_to_rgb, render_background
from .tracking import write_tracking_sequence

SPLITS = ("train", "test")
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class TrackingSynthConfig:
    """Knobs of the generator (sizes in pixels of the view, times in us).

    ``frames`` annotated frames at ``fps``, each rendered in ``substeps`` steps; target side (of its
    square sprite) between ``min_size`` and ``max_size`` with a scale change of up to ``max_scale_change``
    (factor) over the sequence; ``max_speed`` px per frame (roughly); ``pan`` the largest view shift over
    the sequence; ``max_distractors`` (0..2 drawn uniformly); ``occlusion_prob`` of a distractor crossing
    in front of the target; ``noise_rate_hz`` shot noise; the simulator's contrast threshold and spread.
    """

    height: int = 128
    width: int = 128
    frames: int = 48
    fps: float = 50.0
    substeps: int = 6
    min_size: int = 24
    max_size: int = 44
    max_scale_change: float = 1.5
    max_speed: float = 6.0
    pan: float = 24.0
    max_distractors: int = 2
    occlusion_prob: float = 0.35
    contrast_threshold: float = 0.2
    threshold_sigma: float = 0.03
    refractory_us: float = 1000.0
    noise_rate_hz: float = 0.0
    seed: int = 0

    def __post_init__(self):
        if self.frames < 1 or self.substeps < 1:
            raise UsageError(f"frames and substeps must be >= 1, got {self.frames}, {self.substeps}")
        if not 8 <= self.min_size <= self.max_size:
            raise UsageError(f"need 8 <= min_size <= max_size, got {self.min_size}, {self.max_size}")
        if self.max_size * self.max_scale_change + 4 > min(self.height, self.width):
            raise UsageError(
                f"max_size * max_scale_change = {self.max_size * self.max_scale_change:.0f} does not fit a "
                f"{self.height}x{self.width} view; lower max_size or max_scale_change, or enlarge the view"
            )
        if self.fps <= 0 or self.max_distractors < 0:
            raise UsageError(f"need fps > 0 and max_distractors >= 0, got {self.fps}, {self.max_distractors}")

    @property
    def frame_us(self) -> float:
        """Length of one frame window in microseconds."""
        return 1e6 / self.fps


def sequence_rng(config: TrackingSynthConfig, split: str, index: int) -> np.random.Generator:
    """The random stream of sequence ``index`` of ``split`` (independent of every other sequence)."""
    if split not in SPLITS:
        raise UsageError(f"split must be one of {SPLITS}, got '{split}'")
    if index < 0:
        raise UsageError(f"sequence index must be >= 0, got {index}")
    return np.random.default_rng([int(config.seed), SPLITS.index(split), int(index), 7151])


def _smooth_path(
    rng: np.random.Generator, u: np.ndarray, lo: float, hi: float, max_step: float
) -> np.ndarray:
    """A smooth random path in ``[lo, hi]`` over ``u`` in [0, 1]: two sinusoids with random frequencies
    (0.3..1.5 cycles) and phases, normalised, placed at a random centre with a random amplitude, and
    slowed down so that its largest change per unit of ``u`` is at most ``max_step``."""
    freqs = rng.uniform(0.3, 1.5, 2)
    phases = rng.uniform(0, 2 * math.pi, 2)
    weights = rng.uniform(0.3, 1.0, 2)
    s = sum(w * np.sin(2 * math.pi * f * u + p) for w, f, p in zip(weights, freqs, phases))
    s = s - s.mean()
    s = s / max(np.abs(s).max(), 1e-9)  # [-1, 1]
    slope = np.abs(np.gradient(s, u)).max() if u.size > 1 else 0.0
    room = (hi - lo) / 2
    amp = rng.uniform(0.3, 1.0) * room
    if slope > 0:
        amp = min(amp, max_step / slope)
    centre = rng.uniform(lo + amp, hi - amp) if hi - amp > lo + amp else (lo + hi) / 2
    return centre + amp * s


def _pick_tint(rng: np.random.Generator, background_luma: float, min_contrast: float = 0.2) -> np.ndarray:
    """A saturated colour whose luma (x 0.75, a sprite's mean shading) differs from the background's."""
    best, best_d = None, -1.0
    for _ in range(10):
        tint = hsv_to_rgb(np.array([rng.random(), rng.uniform(0.4, 1.0), rng.uniform(0.45, 1.0)]))
        d = abs(float(tint @ LUMA) * 0.75 - background_luma)
        if d > best_d:
            best, best_d = tint.astype(np.float32), d
        if d >= min_contrast:
            break
    return best


def _tight_box(alpha: np.ndarray) -> tuple[int, int, int, int]:
    """``(u0, v0, u1, v1)`` of the non-zero alpha (half-open, sprite pixels)."""
    cols = np.flatnonzero(alpha.any(axis=0))
    rows = np.flatnonzero(alpha.any(axis=1))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


class _Object:
    """One item: its sprite at the sequence's largest size and its path (centre x, y and side per step)."""

    def __init__(self, rgba: np.ndarray, cx: np.ndarray, cy: np.ndarray, side: np.ndarray):
        self.rgba = torch.from_numpy(np.ascontiguousarray(rgba.transpose(2, 0, 1)))[None]  # [1, 4, S, S]
        self.res = rgba.shape[0]
        self.tight = _tight_box(rgba[..., 3] > 0)
        self.cx, self.cy, self.side = cx, cy, side

    def box(self, k: int) -> np.ndarray:
        """Full extent of the silhouette at step k: x, y, w, h in view pixels."""
        side = self.side[k]
        x0, y0 = self.cx[k] - side / 2, self.cy[k] - side / 2
        u0, v0, u1, v1 = self.tight
        f = side / self.res
        return np.array([x0 + u0 * f, y0 + v0 * f, (u1 - u0) * f, (v1 - v0) * f])

    def render(self, steps: np.ndarray, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        """Premultiplied RGBA ``[len(steps), 4, H, W]`` of the object at the given steps (zeros outside)."""
        side = torch.from_numpy(self.side[steps]).float()[:, None, None]
        gx = (
            2 * (xs[None, None, :] - torch.from_numpy(self.cx[steps]).float()[:, None, None]) / side
        )  # [B, 1, W]
        gy = (
            2 * (ys[None, :, None] - torch.from_numpy(self.cy[steps]).float()[:, None, None]) / side
        )  # [B, H, 1]
        grid = torch.stack(torch.broadcast_tensors(gx, gy), dim=-1)  # [B, H, W, 2]
        src = self.rgba.expand(len(steps), -1, -1, -1)
        return F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@dataclass
class SyntheticSequence:
    """One generated sequence in memory: events (:data:`.esim.EVENT_DTYPE`), boxes ``[N, 4]``, window
    bounds ``[N + 1]`` (us), sensor size and a ``meta`` dict (items, tints, z-order, occlusion, ...)."""

    events: np.ndarray
    boxes: np.ndarray
    bounds_us: np.ndarray
    sensor_size: tuple[int, int]
    meta: dict[str, Any]


def generate_sequence(
    config: TrackingSynthConfig, split: str, index: int, objects: FashionObjects
) -> SyntheticSequence:
    """Render and simulate sequence ``index`` of ``split`` (deterministic; see the module docstring).

    ``objects``: the items to draw from (its own split is the caller's choice; :func:`make_tracking_dataset`
    passes the train items for "train" and the test items for "test")."""
    rng = sequence_rng(config, split, index)
    H, W, N, S = config.height, config.width, config.frames, config.substeps
    n_steps = N * S + 1
    u = np.linspace(0.0, 1.0, n_steps)  # sequence time of every render step

    # background canvas and the panning view offsets
    margin = math.ceil(config.pan / 2) + 2
    canvas = render_background(H + 2 * margin, W + 2 * margin, rng, feature_size=min(H, W))
    bg_luma = float(canvas.reshape(-1, 3).mean(0) @ LUMA)
    pan_to = rng.uniform(-1, 1, 2) * config.pan / 2
    ease = (1 - np.cos(math.pi * u)) / 2
    off_x = margin - pan_to[0] + 2 * pan_to[0] * ease  # view's left edge on the canvas
    off_y = margin - pan_to[1] + 2 * pan_to[1] * ease

    # target: size path, then a centre path that keeps the whole (square) sprite in the view
    base = rng.uniform(config.min_size, config.max_size)
    log_amp = math.log(config.max_scale_change) * rng.uniform(0.0, 1.0)
    side = base * np.exp(
        log_amp * np.sin(2 * math.pi * rng.uniform(0.2, 0.8) * u + rng.uniform(0, 2 * math.pi))
    )
    half = side.max() / 2 + 1
    step_budget = config.max_speed * N  # px per unit of u
    tx = _smooth_path(rng, u, half, W - half, step_budget)
    ty = _smooth_path(rng, u, half, H - half, step_budget)
    res = math.ceil(side.max())
    item = int(rng.integers(objects.num_items))
    tint = _pick_tint(rng, bg_luma)
    target = _Object(objects.sprite(item, res, tint, rng), tx, ty, side)

    # distractors: own paths (may leave the view), or one crossing the target in front of it
    n_dis = int(rng.integers(0, config.max_distractors + 1))
    occlude = n_dis > 0 and rng.random() < config.occlusion_prob
    layers: list[tuple[_Object, bool]] = []  # (object, in front of the target)
    dis_meta = []
    for d in range(n_dis):
        d_item = int(rng.integers(objects.num_items - 1))
        d_item += d_item >= item  # never the target's item
        d_side = rng.uniform(config.min_size, config.max_size) * np.ones(n_steps)
        d_res = math.ceil(d_side.max())
        d_tint = _pick_tint(rng, bg_luma)
        if d == 0 and occlude:
            # straight relative motion through the target at a random moment (centre distance 0 at u_c)
            u_c = rng.uniform(0.3, 0.7)
            angle = rng.uniform(0, 2 * math.pi)
            speed = rng.uniform(0.5, 1.0) * step_budget
            dx, dy = speed * math.cos(angle), speed * math.sin(angle)
            dcx, dcy = tx + dx * (u - u_c), ty + dy * (u - u_c)
            front = True
        else:
            dcx = _smooth_path(rng, u, -d_res / 4, W + d_res / 4, step_budget)
            dcy = _smooth_path(rng, u, -d_res / 4, H + d_res / 4, step_budget)
            front = bool(rng.random() < 0.5)
        layers.append((_Object(objects.sprite(d_item, d_res, d_tint, rng), dcx, dcy, d_side), front))
        dis_meta.append({"item": d_item, "label": objects.label(d_item), "in_front": front})

    sim = EventSimulator(
        config.contrast_threshold,
        config.contrast_threshold,
        config.threshold_sigma,
        config.refractory_us,
        noise_rate_hz=config.noise_rate_hz,
        seed=int(rng.integers(2**31)),
    )
    canvas_t = torch.from_numpy(np.ascontiguousarray(canvas.transpose(2, 0, 1)))[None]  # [1, 3, Hc, Wc]
    Hc, Wc = canvas.shape[:2]
    xs = torch.arange(W, dtype=torch.float32) + 0.5  # view pixel centres
    ys = torch.arange(H, dtype=torch.float32) + 0.5
    order = [o for o, front in layers if not front] + [target] + [o for o, front in layers if front]
    luma = torch.from_numpy(LUMA)[None, :, None, None]
    frame_us = config.frame_us
    chunks = []
    for a in range(0, n_steps, S):
        steps = np.arange(a, min(a + S, n_steps))
        ox = torch.from_numpy(off_x[steps]).float()[:, None, None]
        oy = torch.from_numpy(off_y[steps]).float()[:, None, None]
        gx = 2 * (xs[None, None, :] + ox) / Wc - 1  # [B, 1, W]
        gy = 2 * (ys[None, :, None] + oy) / Hc - 1  # [B, H, 1]
        grid = torch.stack(torch.broadcast_tensors(gx, gy), dim=-1)  # [B, H, W, 2]
        img = F.grid_sample(canvas_t.expand(len(steps), -1, -1, -1), grid, "bilinear", "border", False)
        for obj in order:
            rgba = obj.render(steps, xs, ys)  # [B, 4, H, W] premultiplied
            img = img * (1 - rgba[:, 3:]) + rgba[:, :3]
        grey = (img * luma).sum(1).clamp(0.0, 1.0).double().numpy()  # [B, H, W]
        for k, g in zip(steps, grey):
            chunks.append(sim.step(g, round(k * frame_us / S)))
    events = np.concatenate(chunks)
    boxes = np.stack([target.box((i + 1) * S) for i in range(N)])
    bounds = np.round(np.arange(N + 1) * frame_us).astype(np.int64)
    meta = {
        "fps": config.fps,
        "substeps": S,
        "box_time": "window_end",
        "target": {"item": item, "label": objects.label(item), "tint": [round(float(c), 4) for c in tint]},
        "distractors": dis_meta,
        "occlusion": bool(occlude),
        "seed": config.seed,
        "split": split,
        "index": index,
    }
    return SyntheticSequence(events, boxes, bounds, (H, W), meta)


def sequence_name(index: int) -> str:
    """Folder name of sequence ``index``."""
    return f"synth_{index:04d}"


def make_tracking_dataset(
    out: str | os.PathLike,
    train: int = 300,
    test: int = 40,
    frames: int = 48,
    height: int = 128,
    width: int = 128,
    seed: int = 0,
    source: str | None = None,
    root: str | os.PathLike | None = None,
    progress: bool = False,
    overwrite: bool = False,
    event_format: str = "npz",
    **config: Any,
) -> dict[str, Any]:
    """Generate ``train`` + ``test`` sequences under ``out`` in the FE108 layout (module docstring).

    Train sequences draw items from the Fashion-MNIST train split and test sequences from the test split
    (IDX files in ``root``, default the Debian package's); ``source="shipped"`` uses the two halves of
    the packaged 2,000-image slice (offline). ``config``: further :class:`TrackingSynthConfig` fields
    (``fps``, ``substeps``, ``pan``, ...). ``event_format`` "npz" or "aedat4". Returns a summary (also
    written to ``out/tracking.json``). An existing ``out/train`` or ``out/test`` is an error unless
    ``overwrite``.
    """
    if train < 0 or test < 0:
        raise UsageError(f"sequence counts must be >= 0, got train={train}, test={test}")
    cfg = TrackingSynthConfig(height=height, width=width, frames=frames, seed=seed, **config)
    out = os.fspath(os.path.expanduser(out))
    for split, n in (("train", train), ("test", test)):
        folder = os.path.join(out, split)
        if n and os.path.exists(folder):
            if not overwrite:
                raise FileExistsError(
                    f"{folder} exists; pass overwrite=True (--overwrite) or choose another out"
                )
            shutil.rmtree(folder)
    start = time.perf_counter()
    total, done, n_events = train + test, 0, 0
    for split, n in (("train", train), ("test", test)):
        if n == 0:
            continue
        objects = FashionObjects(split, root, source)
        for i in range(n):
            seq = generate_sequence(cfg, split, i, objects)
            write_tracking_sequence(
                os.path.join(out, split, sequence_name(i)),
                seq.events,
                seq.boxes,
                seq.bounds_us,
                seq.sensor_size,
                event_format=event_format,
                meta=seq.meta,
            )
            n_events += len(seq.events)
            done += 1
            if progress and (done % max(1, total // 20) == 0 or done == total):
                print(f"make-tracking: {done}/{total} sequences", file=sys.stderr, flush=True)
    summary = {
        "out": out,
        "train": train,
        "test": test,
        "layout": "fe108",
        "event_format": event_format,
        "source": source or "idx",
        "config": asdict(cfg),
        "events": n_events,
        "seconds": round(time.perf_counter() - start, 3),
    }
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "tracking.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    return summary
