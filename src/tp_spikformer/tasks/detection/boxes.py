"""Box operations in pure torch: areas, pairwise IoU, generalised IoU, ltrb distances, greedy NMS.

Boxes are ``[N, 4]`` float ``(x1, y1, x2, y2)`` in pixel edges, as :mod:`tp_spikformer.data.coco` gives them.
"""

from __future__ import annotations

import numpy as np
import torch

# above this many candidates, :func:`batched_nms` runs one NMS per class instead of one on class-offset
# boxes (same result; the pairwise IoU matrix of all candidates would grow quadratically)
PER_CLASS_NMS_ABOVE = 4000


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """``[N]`` areas of ``[N, 4]`` xyxy boxes (0 for empty ones)."""
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU ``[N, M]`` of ``a [N, 4]`` and ``b [M, 4]`` (0 where the union is empty)."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])  # [N, M, 2]
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])  # [N, M, 2]
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return torch.where(
        union > 0, inter / union.clamp(min=torch.finfo(inter.dtype).tiny), torch.zeros_like(inter)
    )


def generalized_iou(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Element-wise GIoU ``[N]`` of paired boxes ``pred [N, 4]`` and ``target [N, 4]``:
    ``IoU - (enclosing area - union) / enclosing area`` (Rezatofighi et al. 2019), in ``(-1, 1]``."""
    lt = torch.maximum(pred[:, :2], target[:, :2])
    rb = torch.minimum(pred[:, 2:], target[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    union = box_area(pred) + box_area(target) - inter + eps
    iou = inter / union
    enc_lt = torch.minimum(pred[:, :2], target[:, :2])
    enc_rb = torch.maximum(pred[:, 2:], target[:, 2:])
    enc_wh = (enc_rb - enc_lt).clamp(min=0)
    enclosing = enc_wh[:, 0] * enc_wh[:, 1] + eps
    return iou - (enclosing - union) / enclosing


def distances_to_boxes(points: torch.Tensor, ltrb: torch.Tensor) -> torch.Tensor:
    """Boxes ``[..., 4]`` xyxy from points ``[..., 2]`` (x, y) and distances ``[..., 4]`` (left, top, right,
    bottom)."""
    return torch.cat([points - ltrb[..., :2], points + ltrb[..., 2:]], dim=-1)


def boxes_to_distances(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Distances ``[P, M, 4]`` (left, top, right, bottom) from points ``[P, 2]`` to the edges of boxes
    ``[M, 4]``; all positive iff the point lies inside the box."""
    x, y = points[:, 0, None], points[:, 1, None]  # [P, 1]
    return torch.stack(
        [x - boxes[None, :, 0], y - boxes[None, :, 1], boxes[None, :, 2] - x, boxes[None, :, 3] - y], dim=-1
    )  # [P, M, 4]


def clip_boxes(boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Clip xyxy boxes to an image of ``size = (h, w)``."""
    h, w = size
    return torch.stack(
        [boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h), boxes[:, 2].clamp(0, w), boxes[:, 3].clamp(0, h)],
        dim=1,
    )


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression: indices (int64, by decreasing score) of the boxes kept, each
    suppressing every lower-scored box whose IoU with it is above ``iou_threshold``. Equal scores keep
    the lower index first (stable sort)."""
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    overlap = (box_iou(boxes[order], boxes[order]) > iou_threshold).cpu().numpy()  # [N, N]
    alive = np.ones(len(order), dtype=bool)
    kept = []
    for i in range(len(order)):  # one pass over the sorted boxes; kept boxes silence the rest
        if alive[i]:
            kept.append(i)
            alive &= ~overlap[i]
    return order[torch.as_tensor(kept, dtype=torch.int64, device=order.device)]


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """Class-aware NMS: boxes only suppress boxes of the same label. Returns kept indices by decreasing
    score.

    Runs one NMS on boxes shifted apart by ``label x (largest coordinate + 1)``, so boxes of different
    labels never overlap; above :data:`PER_CLASS_NMS_ABOVE` candidates, one NMS per label (same result).
    """
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    if boxes.shape[0] > PER_CLASS_NMS_ABOVE:
        kept = torch.cat(
            [
                idx[nms(boxes[idx], scores[idx], iou_threshold)]
                for idx in (torch.nonzero(labels == c).flatten() for c in torch.unique(labels))
            ]
        )
        return kept[torch.sort(scores[kept], descending=True, stable=True).indices]
    span = boxes.max() - torch.minimum(boxes.min(), boxes.new_zeros(())) + 1
    shifted = boxes + (labels.to(boxes.dtype) * span)[:, None]
    return nms(shifted, scores, iou_threshold)
