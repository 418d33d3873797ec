"""FCOS target assignment (Tian et al. 2019; mmdet ``FCOSHead.get_targets``): which feature-map points
learn which box.

Every level's points are its cell centres ``((j + 0.5) s, (i + 0.5) s)`` in input pixels (stride ``s``).
A point is a positive of a ground-truth box when

1. it lies inside the box, or with centre sampling (``radius > 0``) inside the box's central square of
   half-side ``radius x s`` (clipped to the box), and
2. the largest of its distances to the box edges, ``max(l, t, r, b)``, lies in its level's size range
   ``[lo, hi]``;

among several such boxes it takes the one of least area. Everything else is background
(label ``num_classes``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .boxes import box_area, boxes_to_distances


def level_points(
    sizes: Sequence[tuple[int, int]], strides: Sequence[int], device=None, dtype=torch.float32
) -> list[torch.Tensor]:
    """Cell centres ``[H*W, 2]`` (x, y) in input pixels of each level, in raster order."""
    points = []
    for (h, w), s in zip(sizes, strides):
        ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) * s
        xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) * s
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1))  # [H*W, 2]
    return points


def assign_fcos_targets(
    points: torch.Tensor,
    strides: torch.Tensor,
    ranges: torch.Tensor,
    boxes: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    center_radius: float = 1.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets of one image.

    Args:
        points: ``[P, 2]`` point coordinates (all levels concatenated).
        strides: ``[P]`` stride of each point's level.
        ranges: ``[P, 2]`` size range ``(lo, hi)`` of each point's level.
        boxes: ``[M, 4]`` ground-truth boxes (xyxy, input pixels); ``labels``: ``[M]`` in ``0..num_classes-1``.
        center_radius: centre-sampling radius in strides (0 or less: the whole box).

    Returns ``(labels [P] int64, ltrb [P, 4])``: the class of each point (``num_classes`` = background)
    and its distances to the edges of its box (meaningful for positives only).
    """
    p = points.shape[0]
    if boxes.shape[0] == 0:
        return (
            torch.full((p,), num_classes, dtype=torch.int64, device=points.device),
            points.new_zeros(p, 4),
        )
    ltrb = boxes_to_distances(points, boxes)  # [P, M, 4]
    if center_radius > 0:
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2  # [M, 2]
        r = (strides.to(points.dtype) * center_radius)[:, None, None]  # [P, 1, 1]
        lo = torch.maximum(centre[None] - r, boxes[None, :, :2])  # [P, M, 2]
        hi = torch.minimum(centre[None] + r, boxes[None, :, 2:])  # [P, M, 2]
        inner = torch.cat([points[:, None] - lo, hi - points[:, None]], dim=-1)  # [P, M, 4]
        inside = inner.min(dim=-1).values > 0
    else:
        inside = ltrb.min(dim=-1).values > 0
    reach = ltrb.max(dim=-1).values  # [P, M]
    in_range = (reach >= ranges[:, None, 0]) & (reach <= ranges[:, None, 1])
    area = box_area(boxes)[None].expand(p, -1).clone()  # [P, M]
    area[~(inside & in_range)] = float("inf")
    best_area, best = area.min(dim=1)  # [P]
    point_labels = labels[best].clone()
    point_labels[torch.isinf(best_area)] = num_classes
    return point_labels, ltrb[torch.arange(p, device=points.device), best]  # [P], [P, 4]
