"""Semantic segmentation: metric (mmseg's IoU accumulation)."""

from .metrics import SegmentationMeter, intersect_and_union

__all__ = ["SegmentationMeter", "intersect_and_union"]
