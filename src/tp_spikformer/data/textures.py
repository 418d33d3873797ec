"""Procedural RGB backgrounds for synthetic scenes (numpy only, deterministic from a ``Generator``).

The backgrounds imitate what makes token pruning pay off on natural images: large, smooth, redundant
regions (sky, grass, walls) around a few small informative objects. Four kinds:

* ``"noise"``: multi-octave value noise mapped through a random 3-colour palette (clouds, grass);
* ``"gradient"``: a linear or radial blend of two colours;
* ``"stripes"``: soft periodic bands at a random angle and period;
* ``"clutter"``: many soft blurred blobs over a noise base.

Feature sizes (noise cells, stripe periods, blob radii) are in pixels, proportional to
``feature_size`` (default: the shorter canvas side). A canvas larger than a view (e.g. for a camera
that pans over it) keeps the look of a view-sized render when ``feature_size`` is the view's side.
"""

from __future__ import annotations

import numpy as np

from ..errors import UsageError

BACKGROUND_KINDS = ("noise", "gradient", "stripes", "clutter")


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """HSV in [0, 1] (``[..., 3]``) to RGB in [0, 1], vectorised."""
    h, s, v = hsv[..., 0] % 1.0, hsv[..., 1], hsv[..., 2]
    i = np.floor(h * 6.0)
    f = h * 6.0 - i
    p, q, t = v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f))
    i = i.astype(np.int64) % 6
    r = np.choose(i, [v, q, p, p, t, v])
    g = np.choose(i, [t, v, v, q, p, p])
    b = np.choose(i, [p, p, t, v, v, q])
    return np.stack([r, g, b], axis=-1)


def random_palette(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` related colours ``[n, 3]``: one base hue with small hue shifts and spread-out brightness."""
    hue = rng.random()
    hues = hue + rng.uniform(-0.08, 0.08, n)
    sat = rng.uniform(0.15, 0.75, n)
    val = np.sort(rng.uniform(0.25, 0.95, n))
    return hsv_to_rgb(np.stack([hues, sat, val], axis=-1)).astype(np.float32)


def _through_palette(t: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Map ``t`` in [0, 1] ``[H, W]`` piecewise-linearly through ``palette [n, 3]`` -> ``[H, W, 3]``."""
    stops = np.linspace(0.0, 1.0, palette.shape[0])
    flat = t.ravel()
    rgb = [np.interp(flat, stops, palette[:, c]) for c in range(3)]  # clamps outside [0, 1]
    return np.stack(rgb, axis=-1).reshape(*t.shape, 3)


def value_noise(
    height: int, width: int, rng: np.random.Generator, cell: float, octaves: int = 4, persistence: float = 0.5
) -> np.ndarray:
    """Fractal value noise ``[H, W]`` in [0, 1]: random values on a grid of ``cell`` pixels,
    smoothstep-interpolated, summed over ``octaves`` halving the cell and scaling the amplitude by
    ``persistence`` each time; then stretched to span [0, 1]."""
    ys = np.arange(height, dtype=np.float64)
    xs = np.arange(width, dtype=np.float64)
    total = np.zeros((height, width))
    amp = 1.0
    for _ in range(octaves):
        c = max(cell, 1.0)
        gy = ys / c + rng.random()  # random sub-cell offset so octaves do not align
        gx = xs / c + rng.random()
        grid = rng.random((int(gy[-1]) + 2, int(gx[-1]) + 2))
        iy, ix = gy.astype(np.int64), gx.astype(np.int64)
        fy, fx = gy - iy, gx - ix
        fy = (fy * fy * (3.0 - 2.0 * fy))[:, None]  # smoothstep, [H, 1]
        fx = (fx * fx * (3.0 - 2.0 * fx))[None, :]  # [1, W]
        top = grid[iy][:, ix] * (1.0 - fx) + grid[iy][:, ix + 1] * fx
        bottom = grid[iy + 1][:, ix] * (1.0 - fx) + grid[iy + 1][:, ix + 1] * fx
        total += amp * (top * (1.0 - fy) + bottom * fy)
        amp *= persistence
        cell /= 2.0
    lo, hi = total.min(), total.max()
    return (total - lo) / (hi - lo) if hi > lo else np.full_like(total, 0.5)


def _noise(h: int, w: int, rng: np.random.Generator, feature: float) -> np.ndarray:
    t = value_noise(h, w, rng, cell=feature * rng.uniform(0.35, 0.8), octaves=4)
    return _through_palette(t, random_palette(rng, 3))


def _gradient(h: int, w: int, rng: np.random.Generator, feature: float) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    if rng.random() < 0.3:  # radial, centre anywhere on the canvas
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        t = np.hypot(ys - cy, xs - cx) / (feature * rng.uniform(0.6, 1.5))
    else:
        angle = rng.uniform(0, 2 * np.pi)
        proj = xs * np.cos(angle) + ys * np.sin(angle)
        t = (proj - proj.min()) / max(proj.max() - proj.min(), 1e-9)
    return _through_palette(np.clip(t, 0.0, 1.0), random_palette(rng, 2))


def _stripes(h: int, w: int, rng: np.random.Generator, feature: float) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    angle = rng.uniform(0, np.pi)
    period = feature * rng.uniform(0.08, 0.3)
    sharpness = rng.uniform(0.5, 3.0)  # tanh softness: 0.5 ~ sinusoid, 3 ~ soft-edged bands
    wave = np.sin(2 * np.pi * (xs * np.cos(angle) + ys * np.sin(angle)) / period + rng.uniform(0, 2 * np.pi))
    t = 0.5 + 0.5 * np.tanh(sharpness * wave) / np.tanh(sharpness)
    return _through_palette(t, random_palette(rng, 2))


def _clutter(h: int, w: int, rng: np.random.Generator, feature: float) -> np.ndarray:
    img = _noise(h, w, rng, feature)
    # Blob count proportional to the area in feature units, so bigger canvases keep the density.
    n = max(1, round(rng.uniform(12, 30) * h * w / (feature * feature)))
    colours = random_palette(rng, n) if rng.random() < 0.5 else rng.uniform(0.1, 0.95, (n, 3))
    for k in range(n):
        sy, sx = feature * rng.uniform(0.03, 0.12, 2)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        alpha = rng.uniform(0.3, 0.8)
        y0, y1 = max(0, int(cy - 3 * sy)), min(h, int(cy + 3 * sy) + 1)
        x0, x1 = max(0, int(cx - 3 * sx)), min(w, int(cx + 3 * sx) + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        gy = np.exp(-0.5 * ((np.arange(y0, y1) - cy) / sy) ** 2)
        gx = np.exp(-0.5 * ((np.arange(x0, x1) - cx) / sx) ** 2)
        a = (alpha * gy[:, None] * gx[None, :])[..., None]  # separable gaussian, [h', w', 1]
        patch = img[y0:y1, x0:x1]
        img[y0:y1, x0:x1] = patch * (1.0 - a) + colours[k] * a
    return img


_RENDERERS = {"noise": _noise, "gradient": _gradient, "stripes": _stripes, "clutter": _clutter}


def render_background(
    height: int,
    width: int,
    rng: np.random.Generator,
    kind: str | None = None,
    feature_size: float | None = None,
) -> np.ndarray:
    """A procedural RGB background, float32 ``[H, W, 3]`` in [0, 1].

    ``kind``: one of :data:`BACKGROUND_KINDS`, or None for a random one (drawn from ``rng``).
    ``feature_size``: the pixel scale of the texture (default ``min(height, width)``); pass the view
    size when rendering a larger canvas to pan over. The same ``rng`` state gives the same image.
    """
    if height < 1 or width < 1:
        raise UsageError(f"background size must be positive, got {height}x{width}")
    if kind is None:
        kind = BACKGROUND_KINDS[int(rng.integers(len(BACKGROUND_KINDS)))]
    if kind not in _RENDERERS:
        raise UsageError(f"unknown background kind {kind!r}; valid: {BACKGROUND_KINDS} or None (random)")
    feature = float(feature_size) if feature_size is not None else float(min(height, width))
    if feature <= 0:
        raise UsageError(f"feature_size must be positive, got {feature_size}")
    img = _RENDERERS[kind](height, width, rng, feature)
    return np.clip(img, 0.0, 1.0).astype(np.float32)
