"""Pictures of the dense tasks, dense vs pruned (PNG, matplotlib imported lazily): a segmentation sample,
a detection sample and a tracked sequence, each with the kept tokens.

Side branch like :mod:`.plots` (whose token-depth helpers it reuses): it reads plain arrays and
:class:`~tp_spikformer.pruning.BlockRecord`\\ s; only the demo and the command line import it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .plots import DPI, STOPPED_TINT, _pyplot, _upsample_nearest, token_depth

DENSE_COLOUR = "#1f77b4"
PRUNED_COLOUR = "#d62728"
TRUTH_COLOUR = "#2ca02c"


def class_palette(num_classes: int, seed: int = 3) -> np.ndarray:
    """``[num_classes, 3]`` colours in [0, 1]; class 0 (background) is black."""
    rng = np.random.default_rng(seed)
    colours = rng.uniform(0.25, 1.0, size=(num_classes, 3))
    colours[0] = 0.0
    return colours


def depth_overlay(image: np.ndarray, records: Sequence, sample: int) -> np.ndarray:
    """The image with each token tinted by how many blocks it ran through (amber: stopped everywhere)."""
    depth = token_depth(records, sample).astype(np.float64)
    frac = _upsample_nearest(depth / max(1.0, depth.max()), image.shape[:2])[..., None]
    return frac * image + (1.0 - frac) * (0.4 * image + 0.6 * STOPPED_TINT)


def save_segmentation_figure(
    path: str,
    image: np.ndarray,
    label: np.ndarray,
    dense: np.ndarray,
    pruned: np.ndarray,
    records: Sequence,
    sample: int = 0,
    *,
    palette=None,
    ignore_index: int = 255,
    title: str = "",
) -> str:
    """Five panels: image, ground truth, dense prediction, pruned prediction, kept tokens.

    ``image`` ``[H, W, 3]`` in [0, 1]; ``label`` / ``dense`` / ``pruned`` ``[H, W]`` class indices.
    """
    plt = _pyplot()
    palette = (
        class_palette(int(max(label[label != ignore_index].max(initial=0), dense.max(), pruned.max())) + 1)
        if palette is None
        else palette
    )

    def colour(m: np.ndarray) -> np.ndarray:
        out = palette[np.clip(m, 0, len(palette) - 1)]
        out[m == ignore_index] = 1.0
        return out

    panels = [
        ("image", image),
        ("ground truth", colour(label)),
        ("dense", colour(dense)),
        ("pruned", colour(pruned)),
        ("kept tokens (depth)", depth_overlay(image, records, sample)),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.2 * len(panels), 2.6), dpi=DPI)
    for ax, (name, img) in zip(axes, panels):
        ax.imshow(img)
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _draw_boxes(ax, boxes, colour: str, labels=None, scores=None, names=None) -> None:
    """Boxes ``[N, 4]`` x1, y1, x2, y2 in pixels, with class names and scores."""
    from matplotlib.patches import Rectangle

    for i, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, dtype=float).reshape(-1, 4)):
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=1.2))
        if labels is not None:
            text = names[int(labels[i])] if names is not None else str(int(labels[i]))
            if scores is not None:
                text += f" {float(scores[i]):.2f}"
            ax.text(
                x1,
                y1,
                text,
                fontsize=6,
                color="white",
                va="bottom",
                bbox={"facecolor": colour, "alpha": 0.7, "pad": 0.5, "linewidth": 0},
            )


def save_detection_figure(
    path: str,
    image: np.ndarray,
    truth: np.ndarray,
    dense: dict,
    pruned: dict,
    records: Sequence,
    sample: int = 0,
    *,
    names: Sequence[str] | None = None,
    title: str = "",
    top_k: int | None = None,
) -> str:
    """Three panels: dense detections, pruned detections (ground truth in green on both), kept tokens.

    ``dense`` / ``pruned``: ``{"boxes": [N, 4] xyxy, "labels": [N], "scores": [N]}`` in ``image`` pixels;
    only the ``top_k`` best-scoring detections are drawn (default: as many as there are true boxes; COCO
    evaluation keeps up to 100 low-scoring boxes per image, which would hide the picture).
    """
    k = len(truth) if top_k is None else top_k
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(7.2, 2.8), dpi=DPI)
    for ax, (name, det, colour) in zip(
        axes[:2], (("dense", dense, DENSE_COLOUR), ("pruned", pruned, PRUNED_COLOUR))
    ):
        ax.imshow(image)
        shown = np.argsort(-np.asarray(det["scores"], dtype=float), kind="stable")[:k]  # best first
        labels = None if det.get("labels") is None else np.asarray(det["labels"])[shown]
        _draw_boxes(ax, truth, TRUTH_COLOUR)
        _draw_boxes(
            ax, np.asarray(det["boxes"])[shown], colour, labels, np.asarray(det["scores"])[shown], names
        )
        ax.set_title(f"{name}: best {len(shown)} of {len(det['boxes'])} boxes", fontsize=8)
    axes[2].imshow(depth_overlay(image, records, sample))
    axes[2].set_title("kept tokens (depth)", fontsize=8)
    for ax in axes:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def save_tracking_strip(
    path: str,
    frames: Sequence[np.ndarray],
    truth: np.ndarray,
    dense: np.ndarray,
    pruned: np.ndarray,
    kept_maps: Sequence[np.ndarray] | None = None,
    *,
    title: str = "",
) -> str:
    """A strip of frames with boxes (x, y, w, h; truth green, dense blue, pruned red) and, under each, the
    tracker's token map of that frame (how many blocks each token of the fake grid ran through)."""
    plt = _pyplot()
    n = len(frames)
    rows = 2 if kept_maps is not None else 1
    fig, axes = plt.subplots(rows, n, figsize=(1.6 * n, 1.7 * rows + 0.3), dpi=DPI, squeeze=False)
    from matplotlib.patches import Rectangle

    for i in range(n):
        ax = axes[0, i]
        ax.imshow(frames[i])
        for box, colour in ((truth[i], TRUTH_COLOUR), (dense[i], DENSE_COLOUR), (pruned[i], PRUNED_COLOUR)):
            x, y, w, h = (float(v) for v in box)
            ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor=colour, linewidth=1.0))
        ax.set_title(f"frame {i}", fontsize=7)
        ax.axis("off")
        if kept_maps is not None:
            axes[1, i].imshow(kept_maps[i], cmap="viridis", vmin=0)
            axes[1, i].axis("off")
    if kept_maps is not None:
        axes[1, 0].set_title("kept tokens (depth)", fontsize=7)
    fig.suptitle(title or "truth green, dense blue, pruned red", fontsize=8)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
