"""A one-stage anchor-free spiking head in the FCOS style (Tian et al. 2019, with the later "center
sampling, normalised boxes, centerness on the box branch, GIoU" refinements that mmdet's
``fcos_r50-caffe_fpn_gn-head-center-normbbox-centeronreg-giou`` config collects).

Layout (key names as mmdet's ``FCOSHead``): two towers shared by all levels, ``cls_convs`` and
``reg_convs``, each ``stacked_convs`` units of ``[MultiSpike, 3x3 conv, norm]`` (``.conv``, ``.gn`` /
``.bn``); then a ``MultiSpike`` and three 3x3 predictors: ``conv_cls`` (one logit per class, sigmoid),
``conv_reg`` (distances left, top, right, bottom, ``relu(scales[l] * x) * stride``) and
``conv_centerness`` (on the box tower). Every convolution therefore reads spikes; the predictors' outputs
are real-valued (the read-out).

Losses: sigmoid focal loss (alpha 0.25, gamma 2) over all points and classes, divided by the number of
positives; GIoU loss of the decoded boxes, weighted by the centerness target and divided by its sum;
centerness BCE over the positives. Targets: :mod:`.targets`. Post-processing (mmdet's FCOS test
settings): per level the ``nms_pre`` best (point, class) pairs with probability above
``score_threshold``, score = probability x centerness, class-aware NMS at IoU ``iou_threshold``, the
``max_detections`` best, boxes clipped to the image.

The head protocol (what :class:`.detector.SpikingDetector` calls, so any head with it can replace this
one): ``strides`` (one per input level), ``forward(features: list[[B, C, H_l, W_l]]) -> outputs``,
``loss(outputs, targets: list[dict]) -> dict[str, Tensor]`` (``"loss"`` the total to minimise; targets
hold ``boxes`` ``[M, 4]`` xyxy in input pixels and ``labels`` ``[M]``) and
``predict(outputs, image_sizes: list[(h, w)]) -> list[dict]`` (per image ``boxes`` ``[N, 4]`` xyxy in
input pixels, ``scores`` ``[N]``, ``labels`` ``[N]``, best first).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import torch
from torch import nn

from ...models.layers import MultiSpike
from .boxes import batched_nms, clip_boxes, distances_to_boxes
from .losses import centerness_loss, centerness_target, giou_loss, sigmoid_focal_loss
from .targets import assign_fcos_targets, level_points

NORMS = ("gn", "bn", "none")


class Scale(nn.Module):
    """A learnable scalar factor (key ``scale``), one per level."""

    def __init__(self, value: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class SpikeConvNorm(nn.Module):
    """``MultiSpike -> 3x3 conv -> norm``: one tower unit. ``norm``: ``"gn"`` (GroupNorm, FCOS's choice:
    32 groups or fewer so they divide the channels), ``"bn"`` (BatchNorm, foldable into the conv) or
    ``"none"`` (the conv then has a bias)."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "gn"):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; choose one of {NORMS}")
        self.spike = MultiSpike()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=norm == "none")
        self.norm_name = norm
        if norm == "gn":
            self.gn = nn.GroupNorm(math.gcd(32, out_channels), out_channels)
        elif norm == "bn":
            self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.spike(x))
        if self.norm_name == "none":
            return x
        return getattr(self, self.norm_name)(x)


@dataclass
class FCOSOutputs:
    """Raw head outputs per level: ``cls_logits`` ``[B, K, H, W]``, ``distances`` ``[B, 4, H, W]`` (input
    pixels), ``centerness`` ``[B, 1, H, W]`` (logits)."""

    cls_logits: list[torch.Tensor]
    distances: list[torch.Tensor]
    centerness: list[torch.Tensor]


def _flat(maps: list[torch.Tensor]) -> torch.Tensor:
    """``[B, C, H_l, W_l]`` per level -> ``[B, sum H_l W_l, C]`` (levels concatenated, raster order)."""
    return torch.cat([m.flatten(2).transpose(1, 2) for m in maps], dim=1)


class FCOSHead(nn.Module):
    """Spiking FCOS head (module docstring).

    Args:
        num_classes: foreground classes.
        in_channels: channels of every input level (the neck's ``out_channels``).
        strides: stride of each input level.
        regress_ranges: ``(lo, hi)`` per level for ``max(l, t, r, b)`` of its positives (``math.inf`` ok).
        feat_channels: tower width (default ``in_channels``); ``stacked_convs``: units per tower.
        norm: tower norm, ``"gn"`` / ``"bn"`` / ``"none"``.
        center_radius: centre-sampling radius in strides (0: whole box).
        focal_alpha / focal_gamma: focal-loss constants; prior_prob: initial foreground probability.
        score_threshold / nms_pre / iou_threshold / max_detections: post-processing.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        strides: Sequence[int],
        regress_ranges: Sequence[tuple[float, float]],
        feat_channels: int | None = None,
        stacked_convs: int = 4,
        norm: str = "gn",
        center_radius: float = 1.5,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        prior_prob: float = 0.01,
        score_threshold: float = 0.05,
        nms_pre: int = 1000,
        iou_threshold: float = 0.5,
        max_detections: int = 100,
    ):
        super().__init__()
        strides = tuple(int(s) for s in strides)
        ranges = tuple((float(lo), float(hi)) for lo, hi in regress_ranges)
        if len(ranges) != len(strides):
            raise ValueError(
                f"regress_ranges needs one (lo, hi) per level: {len(strides)} levels (strides {strides}), "
                f"got {len(ranges)}"
            )
        if num_classes < 1 or stacked_convs < 0:
            raise ValueError(
                f"need num_classes >= 1 and stacked_convs >= 0, got {num_classes}, {stacked_convs}"
            )
        feat = int(feat_channels or in_channels)
        self.num_classes, self.strides, self.regress_ranges = int(num_classes), strides, ranges
        self.center_radius, self.focal_alpha, self.focal_gamma = center_radius, focal_alpha, focal_gamma
        self.score_threshold, self.nms_pre = score_threshold, int(nms_pre)
        self.iou_threshold, self.max_detections = iou_threshold, int(max_detections)
        chans = [in_channels] + [feat] * stacked_convs
        self.cls_convs = nn.ModuleList(SpikeConvNorm(a, b, norm) for a, b in pairwise(chans))
        self.reg_convs = nn.ModuleList(SpikeConvNorm(a, b, norm) for a, b in pairwise(chans))
        self.out_spike = MultiSpike()
        self.conv_cls = nn.Conv2d(chans[-1], num_classes, 3, padding=1)
        self.conv_reg = nn.Conv2d(chans[-1], 4, 3, padding=1)
        self.conv_centerness = nn.Conv2d(chans[-1], 1, 3, padding=1)
        self.scales = nn.ModuleList(Scale(1.0) for _ in strides)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.constant_(self.conv_cls.bias, -math.log((1 - prior_prob) / prior_prob))

    # -- forward -------------------------------------------------------------------------------------
    def forward(self, features: Sequence[torch.Tensor]) -> FCOSOutputs:
        if len(features) != len(self.strides):
            raise ValueError(
                f"FCOSHead has {len(self.strides)} levels (strides {self.strides}), got "
                f"{len(features)} feature maps"
            )
        cls_logits, distances, centerness = [], [], []
        for x, scale, stride in zip(features, self.scales, self.strides):
            c, r = x, x
            for unit in self.cls_convs:
                c = unit(c)
            for unit in self.reg_convs:
                r = unit(r)
            c, r = self.out_spike(c), self.out_spike(r)
            cls_logits.append(self.conv_cls(c))  # [B, K, H, W]
            distances.append(torch.relu(scale(self.conv_reg(r))) * stride)  # [B, 4, H, W]
            centerness.append(self.conv_centerness(r))  # [B, 1, H, W]
        return FCOSOutputs(cls_logits, distances, centerness)

    def points(self, outputs: FCOSOutputs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
        """All levels' points ``[P, 2]``, their strides ``[P]``, size ranges ``[P, 2]``, and points per level."""
        ref = outputs.cls_logits[0]
        sizes = [tuple(m.shape[-2:]) for m in outputs.cls_logits]
        pts = level_points(sizes, self.strides, ref.device, ref.dtype)
        counts = [p.shape[0] for p in pts]
        strides = torch.cat(
            [torch.full((n,), s, dtype=ref.dtype, device=ref.device) for n, s in zip(counts, self.strides)]
        )
        ranges = torch.cat([ref.new_tensor(r).expand(n, 2) for n, r in zip(counts, self.regress_ranges)])
        return torch.cat(pts), strides, ranges, counts

    # -- training ------------------------------------------------------------------------------------
    def loss(self, outputs: FCOSOutputs, targets: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """``loss_cls``, ``loss_box``, ``loss_centerness`` and their sum ``loss`` for a batch."""
        points, strides, ranges, _ = self.points(outputs)
        cls = _flat(outputs.cls_logits)  # [B, P, K]
        dist = _flat(outputs.distances)  # [B, P, 4]
        ctr = _flat(outputs.centerness)[..., 0]  # [B, P]
        if len(targets) != cls.shape[0]:
            raise ValueError(f"{len(targets)} targets for a batch of {cls.shape[0]} images")
        labels, ltrb = zip(
            *[
                assign_fcos_targets(
                    points,
                    strides,
                    ranges,
                    t["boxes"].to(points),
                    t["labels"].to(points.device),
                    self.num_classes,
                    self.center_radius,
                )
                for t in targets
            ]
        )
        labels, ltrb = torch.stack(labels), torch.stack(ltrb)  # [B, P], [B, P, 4]
        pos = labels < self.num_classes
        num_pos = max(int(pos.sum()), 1)
        onehot = torch.zeros_like(cls)
        onehot[pos] = nn.functional.one_hot(labels[pos], self.num_classes).to(cls.dtype)
        loss_cls = sigmoid_focal_loss(cls, onehot, self.focal_alpha, self.focal_gamma).sum() / num_pos
        if not bool(pos.any()):
            zero = dist.sum() * 0 + ctr.sum() * 0
            return {"loss_cls": loss_cls, "loss_box": zero, "loss_centerness": zero, "loss": loss_cls + zero}
        pts = points[None].expand_as(dist[..., :2])[pos]  # [N, 2]
        ctr_target = centerness_target(ltrb[pos])  # [N]
        pred_boxes = distances_to_boxes(pts, dist[pos])
        true_boxes = distances_to_boxes(pts, ltrb[pos])
        loss_box = (giou_loss(pred_boxes, true_boxes) * ctr_target).sum() / ctr_target.sum().clamp(min=1e-6)
        loss_ctr = centerness_loss(ctr[pos], ctr_target).sum() / num_pos
        return {
            "loss_cls": loss_cls,
            "loss_box": loss_box,
            "loss_centerness": loss_ctr,
            "loss": loss_cls + loss_box + loss_ctr,
        }

    # -- inference -----------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(
        self, outputs: FCOSOutputs, image_sizes: Sequence[tuple[int, int]]
    ) -> list[dict[str, torch.Tensor]]:
        """Detections per image (see the module docstring); boxes are clipped to ``image_sizes`` (the
        unpadded ``(h, w)`` of each image)."""
        sizes = [tuple(m.shape[-2:]) for m in outputs.cls_logits]
        level_pts = level_points(
            sizes, self.strides, outputs.cls_logits[0].device, outputs.cls_logits[0].dtype
        )
        batch = outputs.cls_logits[0].shape[0]
        if len(image_sizes) != batch:
            raise ValueError(f"{len(image_sizes)} image sizes for a batch of {batch} images")
        results = []
        for b in range(batch):
            boxes, scores, labels = [], [], []
            for lvl, pts in enumerate(level_pts):
                prob = outputs.cls_logits[lvl][b].flatten(1).t().sigmoid()  # [P_l, K]
                flat = prob.flatten()
                cand = torch.nonzero(flat > self.score_threshold).flatten()
                if cand.numel() > self.nms_pre:
                    cand = cand[flat[cand].topk(self.nms_pre).indices]
                point, label = cand // self.num_classes, cand % self.num_classes
                dist = outputs.distances[lvl][b].flatten(1).t()[point]  # [n, 4]
                ctr = outputs.centerness[lvl][b, 0].flatten()[point].sigmoid()
                boxes.append(distances_to_boxes(pts[point], dist))
                scores.append(flat[cand] * ctr)
                labels.append(label)
            boxes = clip_boxes(torch.cat(boxes), image_sizes[b])
            scores, labels = torch.cat(scores), torch.cat(labels)
            keep = batched_nms(boxes, scores, labels, self.iou_threshold)[: self.max_detections]
            results.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
        return results
