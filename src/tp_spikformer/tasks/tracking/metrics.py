"""Single-object tracking scores as pytracking / OTB compute them (numpy).

The rules of pytracking's ``extract_results`` and ``plot_results`` (as shipped in SDTrack,
``lib/test/analysis``):

* boxes are ``x, y, w, h`` in pixels with the "+1 pixel" convention: a box covers columns ``x .. x+w-1``;
  IoU = ``prod(clamp(min(br) - max(tl) + 1, 0)) / (w1*h1 + w2*h2 - intersection)``; centre =
  ``x + (w - 1) / 2``;
* frame 0 is set to the ground truth (the initial box), and frames >= 1 whose predicted w or h is 0 take
  the previous frame's prediction; NaN or negative predicted sizes are errors;
* success curve: fraction of frames with IoU **>** t for the 21 thresholds t = 0, 0.05, ..., 1;
  AUC = mean of the curve (x 100);
* precision curve: centre distance **<=** t px for t = 0..50; precision = the value at 20 px;
* normalised precision: the centre distance after dividing both centres by the ground-truth (w, h),
  **<=** t for t = 0, 0.01, ..., 0.5; the reported value is at 0.2;
* curves per sequence, then the mean over sequences (scores are x 100).

Frames whose ground truth is invalid (w <= 0 or h <= 0, or NaN):

* ``invalid="exclude"`` (default): left out of every curve, numerator and denominator;
* ``invalid="pytracking"``: what pytracking does by default (``exclude_invalid_frames=False``): they stay in
  the denominator, count as failures for success and precision, but as *hits* for normalised precision
  (their normalised error is set to -1); NaN in the ground truth is an error.

Deviation: pytracking pads a too-short result with zero boxes and truncates a long one; we raise, since a
length mismatch means the results belong to another sequence or a tracker stopped early.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from ...data.box_text import read_box_file, write_box_file

# pytracking builds the thresholds with torch.arange in float64; torch's values differ from numpy's
# arange in the last bit for some of them (0.65, 0.75), so we take torch's.
OVERLAP_THRESHOLDS = torch.arange(0.0, 1.0 + 0.05, 0.05, dtype=torch.float64).numpy()
CENTER_THRESHOLDS = torch.arange(0, 51, dtype=torch.float64).numpy()
NORM_CENTER_THRESHOLDS = (torch.arange(0, 51, dtype=torch.float64) / 100.0).numpy()
PRECISION_INDEX = 20  # 20 px on CENTER_THRESHOLDS, 0.2 on NORM_CENTER_THRESHOLDS
INVALID_MODES = ("exclude", "pytracking")
RESULTS_LAYOUT = "tracker results: one 'x,y,w,h' line per frame, frame 0 = the initial box"


def _boxes(boxes: Any, name: str) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name} must be [N, 4] boxes (x, y, w, h), got shape {arr.shape}")
    return arr


def iou_xywh(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-row IoU of ``[N, 4]`` x, y, w, h boxes with the "+1 pixel" convention (pytracking / OTB)."""
    pred, gt = _boxes(pred, "pred"), _boxes(gt, "gt")
    tl = np.maximum(pred[:, :2], gt[:, :2])
    br = np.minimum(pred[:, :2] + pred[:, 2:] - 1.0, gt[:, :2] + gt[:, 2:] - 1.0)
    inter = np.clip(br - tl + 1.0, 0, None).prod(axis=1)
    union = pred[:, 2:].prod(axis=1) + gt[:, 2:].prod(axis=1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / union


def center_error(pred: np.ndarray, gt: np.ndarray, normalized: bool = False) -> np.ndarray:
    """Per-row distance of the box centres ``x + (w - 1) / 2``; ``normalized`` divides both centres by
    the ground-truth size first (pytracking's normalised precision)."""
    pred, gt = _boxes(pred, "pred"), _boxes(gt, "gt")
    pc = pred[:, :2] + 0.5 * (pred[:, 2:] - 1.0)
    gc = gt[:, :2] + 0.5 * (gt[:, 2:] - 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):  # zero-size ground truth: inf / nan, masked later
        if normalized:
            pc, gc = pc / gt[:, 2:], gc / gt[:, 2:]
        return np.sqrt(((pc - gc) ** 2).sum(axis=1))


def _prepare_prediction(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    if pred.shape[0] != gt.shape[0]:
        raise ValueError(
            f"{pred.shape[0]} predicted boxes for {gt.shape[0]} ground-truth frames; write one box per "
            "frame, frame 0 = the initial box"
        )
    if np.isnan(pred).any() or (pred[:, 2:] < 0).any():
        bad = np.flatnonzero(np.isnan(pred).any(axis=1) | (pred[:, 2:] < 0).any(axis=1))
        raise ValueError(f"predicted boxes with NaN or negative size at frames {bad[:10].tolist()}")
    pred = pred.copy()
    zero = (pred[:, 2:] == 0).any(axis=1)
    zero[0] = False
    if zero.any():  # take the previous frame's box, repeatedly (forward fill)
        src = np.where(zero, 0, np.arange(pred.shape[0]))
        pred = pred[np.maximum.accumulate(src)]
    pred[0] = gt[0]
    return pred


def sequence_scores(pred: Any, gt: Any, invalid: str = "exclude") -> dict[str, Any]:
    """Scores of one sequence: predicted and ground-truth boxes ``[N, 4]`` (x, y, w, h).

    Returns ``success_curve`` [21], ``precision_curve`` [51], ``norm_precision_curve`` [51] (fractions in
    [0, 1]), ``auc``, ``precision_20``, ``norm_precision_20``, ``op50``, ``op75`` (x 100), ``mean_iou``
    (valid frames), ``num_frames`` and ``num_valid``. ``invalid``: see the module docstring.
    """
    if invalid not in INVALID_MODES:
        raise ValueError(f"invalid must be one of {INVALID_MODES}, got '{invalid}'")
    pred, gt = _boxes(pred, "pred"), _boxes(gt, "gt")
    if gt.shape[0] == 0:
        raise ValueError("the ground truth has no frames")
    if invalid == "pytracking" and np.isnan(gt).any():
        raise ValueError("NaN in the ground truth (pytracking raises too); use invalid='exclude'")
    pred = _prepare_prediction(pred, gt)
    with np.errstate(invalid="ignore"):
        valid = (gt[:, 2] > 0) & (gt[:, 3] > 0)
    overlap = iou_xywh(pred, gt)
    err = center_error(pred, gt)
    err_norm = center_error(pred, gt, normalized=True)
    if invalid == "exclude":
        if not valid.any():
            raise ValueError("no frame has a valid ground-truth box (w > 0 and h > 0)")
        overlap, err, err_norm = overlap[valid], err[valid], err_norm[valid]
        denom = int(valid.sum())
    else:
        overlap[~valid], err[~valid], err_norm[~valid] = -1.0, np.inf, -1.0
        denom = gt.shape[0]
    success = (overlap[:, None] > OVERLAP_THRESHOLDS[None, :]).sum(axis=0) / denom
    precision = (err[:, None] <= CENTER_THRESHOLDS[None, :]).sum(axis=0) / denom
    norm_precision = (err_norm[:, None] <= NORM_CENTER_THRESHOLDS[None, :]).sum(axis=0) / denom
    scores = _summary(success, precision, norm_precision)
    scores["mean_iou"] = float(iou_xywh(pred, gt)[valid].mean()) if valid.any() else float("nan")
    scores["num_frames"] = int(gt.shape[0])
    scores["num_valid"] = int(valid.sum())
    return scores


def _summary(success: np.ndarray, precision: np.ndarray, norm_precision: np.ndarray) -> dict[str, Any]:
    return {
        "auc": float(success.mean() * 100.0),
        "precision_20": float(precision[PRECISION_INDEX] * 100.0),
        "norm_precision_20": float(norm_precision[PRECISION_INDEX] * 100.0),
        "op50": float(success[np.isclose(OVERLAP_THRESHOLDS, 0.5)][0] * 100.0),
        "op75": float(success[np.isclose(OVERLAP_THRESHOLDS, 0.75)][0] * 100.0),
        "success_curve": success,
        "precision_curve": precision,
        "norm_precision_curve": norm_precision,
    }


def dataset_scores(sequences: Iterable[Any], invalid: str = "exclude") -> dict[str, Any]:
    """Mean over sequences of the per-sequence curves, and the scores read off the mean curves.

    ``sequences``: :func:`sequence_scores` dicts, or ``(pred, gt)`` box pairs (scored with ``invalid``).
    Returns the keys of :func:`sequence_scores` except the per-frame counts, plus ``num_sequences``;
    ``mean_iou`` is the mean of the per-sequence mean IoUs.
    """
    per_seq = [s if isinstance(s, Mapping) else sequence_scores(s[0], s[1], invalid) for s in sequences]
    if not per_seq:
        raise ValueError("no sequences to score")
    mean = {
        k: np.mean([s[k] for s in per_seq], axis=0)
        for k in ("success_curve", "precision_curve", "norm_precision_curve")
    }
    out = _summary(mean["success_curve"], mean["precision_curve"], mean["norm_precision_curve"])
    out["mean_iou"] = float(np.mean([s["mean_iou"] for s in per_seq]))
    out["num_sequences"] = len(per_seq)
    return out


def read_results_txt(path: str | os.PathLike) -> np.ndarray:
    """Tracker results ``[N, 4]`` (x, y, w, h) from a pytracking-style text file."""
    return read_box_file(path, RESULTS_LAYOUT)


def write_results_txt(path: str | os.PathLike, boxes: Any) -> None:
    """Write tracker results, one ``x,y,w,h`` line per frame (frame 0 = the initial box), so that any
    tracking toolkit can score them; creates the parent folder."""
    write_box_file(path, _boxes(boxes, "boxes"))
