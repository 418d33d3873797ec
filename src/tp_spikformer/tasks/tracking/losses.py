"""SDTrack's training loss: 2 x GIoU + 5 x L1 (boxes normalised to the search crop) + 1 x focal.

From ``lib/train/actors/SDTrack.py:compute_losses``, ``lib/utils/box_ops.py`` (GIoU),
``lib/utils/focal_loss.py`` (CenterNet focal, alpha 2, beta 4) and ``lib/utils/heapmap_utils.py`` (the
Gaussian target: CenterNet's radius with ``min_overlap`` 0.7, "bug version" of CornerNet's formula, as
SDTrack / OSTrack use it):

* ground truth: ``x, y, w, h`` normalised to the search crop (``[0, 1]`` inside it); for GIoU and L1 it is
  turned into corners and clamped to ``[0, 1]``; the prediction ``cx, cy, w, h`` into corners (not clamped);
* GIoU loss = mean of ``1 - GIoU`` over the batch; L1 = mean absolute corner difference;
* heatmap: ``F x F`` (``F`` = search size / 16), centre ``round((x + w/2) * F)``, ``round((y + h/2) * F)``,
  radius ``int(max(0, min(r1, r2, r3)))`` of the box in heatmap cells, Gaussian ``sigma = (2 r + 1) / 6``
  (values below ``eps * max`` set to 0), drawn with ``max`` into the zero map;
* focal: ``-(sum_pos log(p) (1 - p)^2 + sum_neg log(1 - p) p^2 (1 - y)^4) / num_pos`` with positives where
  the target is exactly 1 (``p`` clamped to >= 1e-12); without a positive, ``-sum_neg``.

Deviation: the official actor falls back to a zero GIoU loss when ``generalized_box_iou`` raises (degenerate
predicted boxes); here the predicted sizes come from a clamped sigmoid, so the boxes are never degenerate
and nothing is caught.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

LOSS_WEIGHTS = {"giou": 2.0, "l1": 5.0, "focal": 1.0}  # cfg.TRAIN.GIOU_WEIGHT, L1_WEIGHT, focal 1.0
MIN_OVERLAP = 0.7


def box_cxcywh_to_xyxy(box: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = box.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def box_xywh_to_xyxy(box: torch.Tensor) -> torch.Tensor:
    x, y, w, h = box.unbind(-1)
    return torch.stack([x, y, x + w, y + h], dim=-1)


def generalized_box_iou(pred: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise GIoU and IoU of ``[N, 4]`` corner boxes (matched pairs, not all pairs)."""
    area_p = (pred[:, 2] - pred[:, 0]) * (pred[:, 3] - pred[:, 1])
    area_g = (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])
    lt = torch.max(pred[:, :2], gt[:, :2])
    rb = torch.min(pred[:, 2:], gt[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    union = area_p + area_g - inter
    iou = inter / union
    lt_c = torch.min(pred[:, :2], gt[:, :2])
    rb_c = torch.max(pred[:, 2:], gt[:, 2:])
    area_c = (rb_c - lt_c).clamp(min=0).prod(dim=1)
    return iou - (area_c - union) / area_c, iou


def giou_loss(pred: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean(1 - GIoU), IoU [N])`` of matched ``[N, 4]`` corner boxes."""
    giou, iou = generalized_box_iou(pred, gt)
    return (1 - giou).mean(), iou


def gaussian_radius(wh: torch.Tensor, min_overlap: float = MIN_OVERLAP) -> torch.Tensor:
    """CenterNet's radius (the formula SDTrack / OSTrack use, with CornerNet's known slip kept) of boxes
    ``[..., 2]`` (w, h) in heatmap cells."""
    w, h = wh[..., 0], wh[..., 1]
    b1 = h + w
    c1 = w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + torch.sqrt(b1**2 - 4 * c1)) / 2
    b2 = 2 * (h + w)
    c2 = (1 - min_overlap) * w * h
    r2 = (b2 + torch.sqrt(b2**2 - 16 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (h + w)
    c3 = (min_overlap - 1) * w * h
    r3 = (b3 + torch.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return torch.min(r1, torch.min(r2, r3))


def _gaussian_2d(radius: int) -> torch.Tensor:
    """``[2r + 1, 2r + 1]`` Gaussian with sigma ``(2r + 1) / 6``; values below ``eps * max`` are 0."""
    sigma = (2 * radius + 1) / 6
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    g = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    g[g < np.finfo(g.dtype).eps * g.max()] = 0
    return torch.from_numpy(g)


def gaussian_heatmap(
    boxes_xywh: torch.Tensor, feat_sz: int, min_overlap: float = MIN_OVERLAP
) -> torch.Tensor:
    """CenterNet target maps ``[B, F, F]`` for boxes ``[B, 4]`` (x, y, w, h normalised to the search crop).

    The part of each Gaussian that falls inside the map is drawn (a centre outside the map gives a map
    without a positive cell); the official ``draw_gaussian`` does the same except where its negative slice
    bounds wrap around."""
    boxes = boxes_xywh.detach().to("cpu") * feat_sz
    wh = boxes[:, 2:]
    centers = (boxes[:, :2] + wh / 2).round()
    radii = gaussian_radius(wh, min_overlap).clamp_min(0).to(torch.int64)
    maps = torch.zeros(boxes.shape[0], feat_sz, feat_sz, dtype=boxes.dtype)
    for i in range(boxes.shape[0]):
        r = int(radii[i])
        g = _gaussian_2d(r).to(boxes.dtype)  # [2r + 1, 2r + 1], centre at (r, r)
        x, y = int(centers[i, 0]), int(centers[i, 1])
        c0, c1 = max(x - r, 0), min(x + r + 1, feat_sz)
        r0, r1 = max(y - r, 0), min(y + r + 1, feat_sz)
        if c1 <= c0 or r1 <= r0:
            continue  # the whole Gaussian lies outside the map
        gx, gy = c0 - (x - r), r0 - (y - r)
        patch = g[gy : gy + (r1 - r0), gx : gx + (c1 - c0)]
        maps[i, r0:r1, c0:c1] = torch.max(maps[i, r0:r1, c0:c1], patch)
    return maps.to(boxes_xywh.device)


def focal_loss(
    pred: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, beta: float = 4.0
) -> torch.Tensor:
    """CenterNet focal loss of a score map ``pred`` (probabilities) against a Gaussian ``target``."""
    pos = target.eq(1).to(pred.dtype)
    neg = target.lt(1).to(pred.dtype)
    p = torch.clamp(pred, min=1e-12)
    pos_loss = (torch.log(p) * torch.pow(1 - p, alpha) * pos).sum()
    neg_loss = (torch.log(1 - p) * torch.pow(p, alpha) * torch.pow(1 - target, beta) * neg).sum()
    num_pos = pos.sum()
    return torch.where(num_pos > 0, -(pos_loss + neg_loss) / num_pos.clamp(min=1), -neg_loss)


def tracking_loss(
    out: dict[str, torch.Tensor], gt_xywh: torch.Tensor, weights: dict[str, float] | None = None
) -> tuple[torch.Tensor, dict[str, float]]:
    """SDTrack's loss of a tracker output dict against ground-truth boxes ``[B, 4]`` (x, y, w, h in the
    search crop, normalised to ``[0, 1]``). Returns ``(loss, stats)`` with the parts, their weighted sum and
    the mean IoU."""
    w = {**LOSS_WEIGHTS, **(weights or {})}
    pred = out["pred_boxes"]  # [B, Nq, 4] cx cy w h
    if torch.isnan(pred).any():
        raise FloatingPointError(
            "the tracker predicted NaN boxes; lower the learning rate or check the inputs"
        )
    nq = pred.shape[1]
    pred_xyxy = box_cxcywh_to_xyxy(pred).reshape(-1, 4)
    gt_xyxy = box_xywh_to_xyxy(gt_xywh)[:, None, :].expand(-1, nq, 4).reshape(-1, 4).clamp(0.0, 1.0)
    g_loss, iou = giou_loss(pred_xyxy, gt_xyxy)
    l1 = F.l1_loss(pred_xyxy, gt_xyxy)
    score_map = out["score_map"]
    target = gaussian_heatmap(gt_xywh, score_map.shape[-1]).to(score_map.device, score_map.dtype)  # [B, F, F]
    f_loss = focal_loss(score_map, target.unsqueeze(1))
    loss = w["giou"] * g_loss + w["l1"] * l1 + w["focal"] * f_loss
    stats = {
        "loss": float(loss.detach()),
        "giou": float(g_loss.detach()),
        "l1": float(l1.detach()),
        "focal": float(f_loss.detach()),
        "iou": float(iou.detach().mean()),
    }
    if not math.isfinite(stats["loss"]):
        raise FloatingPointError(f"the tracking loss is not finite ({stats}); lower the learning rate")
    return loss, stats
