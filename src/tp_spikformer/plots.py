"""Plots: accuracy trade-off curves and kept-token visualisations (PNG, matplotlib imported lazily).

Side branch: reads plain rows (dicts) and :class:`~tp_spikformer.pruning.BlockRecord`\\ s; nothing else in the
package imports this module except the command line and the demo.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

DPI = 100
STOPPED_TINT = np.array([0.95, 0.7, 0.05])  # amber overlay on stopped tokens (distinct from event colours)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "plots need matplotlib: pip install matplotlib (or the package's [plot] extra)"
        ) from err
    return plt


def save_tradeoff_plot(
    rows: Sequence[dict[str, Any]],
    x: str,
    y: str,
    path: str,
    group: str = "scorer",
    label: str = "keep",
    xlabel: str | None = None,
    ylabel: str | None = None,
    title: str = "",
    size: tuple[float, float] = (6.4, 4.8),
) -> str:
    """Scatter + lines of ``y`` against ``x``, one line per value of ``group``; the dense row (``group`` is
    ``"dense"``) is drawn as a star. Each point is annotated with its ``label`` value. Returns ``path``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=size, dpi=DPI)
    groups: dict[str, list[dict]] = {}
    for r in rows:
        if r.get(x) is None or r.get(y) is None:
            continue
        groups.setdefault(str(r.get(group)), []).append(r)
    if not groups:
        plt.close(fig)
        raise ValueError(f"no row has both {x!r} and {y!r}; nothing to plot")
    for name, pts in sorted(groups.items()):
        pts = sorted(pts, key=lambda r: r[x])
        xs, ys = [r[x] for r in pts], [r[y] for r in pts]
        if name == "dense":
            ax.scatter(xs, ys, marker="*", s=180, color="black", zorder=3, label="dense")
            continue
        ax.plot(xs, ys, marker="o", label=name)
        for r in pts:
            if r.get(label) is not None:
                ax.annotate(
                    str(r[label]), (r[x], r[y]), textcoords="offset points", xytext=(4, 4), fontsize=7
                )
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or y)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def kept_masks(records: Sequence, sample: int = 0) -> list[np.ndarray]:
    """Per patched block, a bool ``[H, W]`` map of the tokens that ran through it for one sample."""
    masks = []
    for rec in records:
        if rec is None:
            raise ValueError("a block has no record: run a forward with record=True after apply_tp first")
        h, w = rec.grid
        if rec.indices is None:
            masks.append(np.ones((h, w), dtype=bool))
        else:
            m = np.zeros(h * w, dtype=bool)
            m[rec.indices[sample].cpu().numpy()] = True
            masks.append(m.reshape(h, w))
    return masks


def token_depth(records: Sequence, sample: int = 0, size: tuple[int, int] | None = None) -> np.ndarray:
    """How many blocks each token went through (A-ViT-style "token depth").

    On a single-grid model this is the count over blocks per token. On hierarchical models (QKFormer,
    grids 4x apart per stage) each block's mask is upsampled (nearest) to the finest grid, or to ``size``,
    so the map counts, per image region, the blocks its tokens ran through.
    """
    masks = kept_masks(records, sample)
    if size is None:
        size = max((m.shape for m in masks), key=lambda s: s[0] * s[1])
    depth = np.zeros(size, dtype=np.int64)
    for m in masks:
        depth += _upsample_nearest(m.astype(np.int64), size)
    return depth


def _upsample_nearest(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    rows = (np.arange(size[0]) * a.shape[0] // size[0]).clip(0, a.shape[0] - 1)
    cols = (np.arange(size[1]) * a.shape[1] // size[1]).clip(0, a.shape[1] - 1)
    return a[np.ix_(rows, cols)]


def image_for_display(image: torch.Tensor, mean=None, std=None) -> np.ndarray:
    """``[C, H, W]`` (normalised) tensor -> ``[H, W, 3]`` float array in [0, 1]; event frames ``[T, 2, H, W]``
    are shown as the event count per pixel (red: positive, blue: negative polarity)."""
    x = image.detach().float().cpu()
    if x.dim() == 4:  # event frames
        counts = x.sum(0)  # [2, H, W]
        counts = counts / counts.max().clamp_min(1e-12)
        zero = torch.zeros_like(counts[0])
        return torch.stack([counts[1], zero, counts[0]], dim=-1).numpy()
    if mean is not None and std is not None:
        x = x * torch.tensor(std).view(-1, 1, 1) + torch.tensor(mean).view(-1, 1, 1)
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    x = x[:3]
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:  # not denormalisable: stretch to [0, 1]
        x = (x - lo) / max(hi - lo, 1e-12)
    return x.permute(1, 2, 0).clamp(0, 1).numpy()


def save_token_visualization(
    image: torch.Tensor,
    records: Sequence,
    path: str,
    sample: int = 0,
    block_names: Sequence[str] | None = None,
    mean=None,
    std=None,
    title: str = "",
    panel_size: float = 2.2,
) -> str:
    """One PNG: the input, each block's kept tokens over it (stopped tokens tinted amber) and the token-depth map.

    ``image`` is the sample's model input ``[C, H, W]`` (or event frames ``[T, 2, H, W]``); ``records`` the
    ``TPState.records`` of a forward that contained it at batch position ``sample``.
    """
    plt = _pyplot()
    img = image_for_display(image, mean, std)
    ih, iw = img.shape[:2]
    masks = kept_masks(records, sample)
    depth = token_depth(records, sample)
    panels = 2 + len(masks)
    cols = min(panels, 6)
    nrows = math.ceil(panels / cols)
    fig, axes = plt.subplots(
        nrows, cols, figsize=(panel_size * cols, panel_size * nrows + 0.4), dpi=DPI, squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    axes.flat[0].imshow(img)
    axes.flat[0].set_title("input", fontsize=8)
    names = (
        list(block_names)
        if block_names is not None
        else [getattr(r, "name", f"block {i}") for i, r in enumerate(records)]
    )
    for i, (m, name) in enumerate(zip(masks, names)):
        ax = axes.flat[1 + i]
        kept = _upsample_nearest(m.astype(np.float64), (ih, iw))[..., None]
        # stopped tokens: tinted (dimming alone would hide them on a black background)
        ax.imshow(kept * img + (1.0 - kept) * (0.4 * img + 0.6 * STOPPED_TINT))
        ax.set_title(f"{name}: {int(m.sum())}/{m.size}", fontsize=7)
    ax = axes.flat[1 + len(masks)]
    ax.imshow(img)
    shown = ax.imshow(
        _upsample_nearest(depth.astype(np.float64), (ih, iw)),
        cmap="viridis",
        alpha=0.6,
        vmin=0,
        vmax=len(masks),
    )
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, ticks=range(len(masks) + 1))
    ax.set_title(f"token depth (0..{len(masks)} blocks)", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
