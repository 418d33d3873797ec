"""Segmentation metrics with mmseg's ``IoUMetric`` accumulation.

Per image, pixels whose label is ``ignore_index`` are excluded; per class, the pixel counts of the
intersection (prediction == label == c), of the prediction (== c) and of the label (== c) are summed
over the *whole* set (not averaged per image). Then, in percent as mmseg reports them:
``IoU_c = I_c / (P_c + L_c - I_c)``, ``Acc_c = I_c / L_c``, ``mIoU`` and ``mAcc`` the means over classes
ignoring NaN (a class absent from both prediction and label has IoU NaN; absent from the label, Acc
NaN), ``aAcc = sum I / sum L``. A class predicted but absent from every label has IoU 0.

Unlike mmseg (which counts with ``histc`` and so silently skips out-of-range values), a prediction
or label outside ``0..num_classes-1`` (other than ``ignore_index`` in the label) raises ValueError.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch


def intersect_and_union(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = 255
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class pixel counts ``(intersection, prediction, label)``, each int64 ``[num_classes]``, of
    one prediction/label pair (any equal shapes), pixels with ``target == ignore_index`` excluded."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and label {tuple(target.shape)} differ in shape")
    if pred.is_floating_point() or target.is_floating_point():
        raise TypeError("pass class indices (e.g. logits.argmax(1)), not float scores")
    keep = target != ignore_index
    p = pred[keep].long().flatten()
    t = target[keep].long().flatten()
    for name, v in (("prediction", p), ("label", t)):
        if v.numel() and (int(v.min()) < 0 or int(v.max()) >= num_classes):
            bad = v[(v < 0) | (v >= num_classes)].unique()[:5].tolist()
            raise ValueError(
                f"{name} holds value(s) {bad} outside 0..{num_classes - 1}"
                + (f" (ignore_index is {ignore_index})" if name == "label" else "")
            )
    inter = torch.bincount(p[p == t], minlength=num_classes)
    area_pred = torch.bincount(p, minlength=num_classes)
    area_label = torch.bincount(t, minlength=num_classes)
    return inter.cpu(), area_pred.cpu(), area_label.cpu()


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else x


class SegmentationMeter:
    """Accumulates :func:`intersect_and_union` over a dataset; :meth:`compute` gives mIoU, aAcc, mAcc and
    per-class IoU / Acc (percent; None where NaN). Mergeable across processes: ``state()`` ->
    ``merge(state)`` (or all-reduce the ``state()["counts"]`` tensor and :meth:`load_state`)."""

    def __init__(self, num_classes: int, ignore_index: int = 255, class_names: Sequence[str] | None = None):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        self.num_classes, self.ignore_index = int(num_classes), int(ignore_index)
        self.class_names = list(class_names) if class_names is not None else None
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        self.counts = torch.zeros(3, self.num_classes, dtype=torch.int64)  # intersection, prediction, label
        self.images = 0

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add predictions ``[B, H, W]`` or ``[H, W]`` (int class indices) and labels of the same shape."""
        if pred.dim() not in (2, 3):
            raise ValueError(f"expected predictions [B, H, W] or [H, W], got shape {tuple(pred.shape)}")
        i, p, t = intersect_and_union(pred, target, self.num_classes, self.ignore_index)
        self.counts += torch.stack([i, p, t])
        self.images += 1 if pred.dim() == 2 else int(pred.shape[0])

    def state(self) -> dict[str, Any]:
        """The accumulated counts (``counts`` int64 ``[3, K]``: intersection, prediction, label) and
        the image count, for merging."""
        return {
            "counts": self.counts.clone(),
            "images": self.images,
            "num_classes": self.num_classes,
            "ignore_index": self.ignore_index,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Replace the accumulated counts by ``state`` (e.g. after an all-reduce of its ``counts``)."""
        self._check_compatible(state)
        self.counts = torch.as_tensor(state["counts"], dtype=torch.int64).clone()
        self.images = int(state.get("images", 0))

    def merge(self, other: SegmentationMeter | dict[str, Any]) -> SegmentationMeter:
        """Add another meter's (or ``state()``'s) counts to this one; returns self."""
        state = other.state() if isinstance(other, SegmentationMeter) else other
        self._check_compatible(state)
        self.counts += torch.as_tensor(state["counts"], dtype=torch.int64)
        self.images += int(state.get("images", 0))
        return self

    def _check_compatible(self, state: dict[str, Any]) -> None:
        counts = torch.as_tensor(state["counts"])
        if tuple(counts.shape) != (3, self.num_classes):
            raise ValueError(
                f"cannot merge counts of shape {tuple(counts.shape)} into a {self.num_classes}-class meter"
            )
        if int(state.get("ignore_index", self.ignore_index)) != self.ignore_index:
            raise ValueError(
                f"cannot merge meters with ignore_index {state['ignore_index']} and {self.ignore_index}"
            )

    def compute(self) -> dict[str, Any]:
        """``mIoU``, ``aAcc``, ``mAcc`` (percent, None when undefined), ``per_class_iou`` and
        ``per_class_acc`` (lists, None for NaN), ``images``, and ``classes`` when names were given."""
        inter, pred, label = self.counts.double()
        iou = inter / (pred + label - inter)  # 0 / 0 -> NaN for classes absent from both
        acc = inter / label
        total = float(label.sum())
        out: dict[str, Any] = {
            "mIoU": _none_if_nan(float(torch.nanmean(iou)) * 100.0) if bool((~iou.isnan()).any()) else None,
            "aAcc": float(inter.sum()) / total * 100.0 if total > 0 else None,
            "mAcc": _none_if_nan(float(torch.nanmean(acc)) * 100.0) if bool((~acc.isnan()).any()) else None,
            "per_class_iou": [_none_if_nan(float(v) * 100.0) for v in iou],
            "per_class_acc": [_none_if_nan(float(v) * 100.0) for v in acc],
            "images": self.images,
        }
        if self.class_names is not None:
            out["classes"] = list(self.class_names)
        return out

    def __repr__(self) -> str:
        return f"SegmentationMeter(num_classes={self.num_classes}, ignore_index={self.ignore_index}, images={self.images})"
