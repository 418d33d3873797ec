"""Semantic segmentation: Semantic-FPN models on spiking backbones (registered as ``*_semfpn``), the
train/evaluate engine, and mmseg's IoU accumulation."""

from . import models  # noqa: F401  (registers the *_semfpn configurations)
from .metrics import SegmentationMeter, intersect_and_union
from .models import build_semfpn, single_scale_indices
from .semfpn import QFPN, QFPNHead, SpikingSegmenter, TimeMean, resize_logits

__all__ = [
    "QFPN",
    "QFPNHead",
    "SegmentationMeter",
    "SpikingSegmenter",
    "TimeMean",
    "build_semfpn",
    "intersect_and_union",
    "resize_logits",
    "single_scale_indices",
]
