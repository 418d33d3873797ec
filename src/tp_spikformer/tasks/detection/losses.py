"""FCOS losses: sigmoid focal loss (classification), GIoU loss (boxes), binary cross-entropy (centerness)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .boxes import generalized_iou


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Element-wise focal loss (Lin et al. 2017) of logits against 0/1 targets of the same shape:
    ``-alpha_t (1 - p_t)^gamma log(p_t)`` with ``p = sigmoid(logits)``, ``p_t = p`` where the target is 1
    and ``1 - p`` where it is 0, ``alpha_t = alpha`` / ``1 - alpha`` likewise. Unreduced."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return alpha_t * (1 - p_t).pow(gamma) * ce


def giou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - GIoU`` per pair of xyxy boxes ``[N, 4]`` (unreduced, in ``[0, 2)``)."""
    return 1.0 - generalized_iou(pred, target)


def centerness_target(ltrb: torch.Tensor) -> torch.Tensor:
    """FCOS centerness of points inside their box from distances ``[N, 4]`` (left, top, right, bottom):
    ``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))``, 1 at the box centre, 0 on an edge."""
    lr, tb = ltrb[:, [0, 2]], ltrb[:, [1, 3]]
    ratio = (lr.min(-1).values / lr.max(-1).values.clamp(min=1e-12)) * (
        tb.min(-1).values / tb.max(-1).values.clamp(min=1e-12)
    )
    return ratio.clamp(min=0).sqrt()


def centerness_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy (with logits) of predicted centerness against its target, unreduced."""
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none")
