"""Semantic segmentation: Semantic-FPN models on spiking backbones (registered as ``*_semfpn``), the
train/evaluate engine, and mmseg's IoU accumulation."""

from . import models  # noqa: F401  (registers the *_semfpn configurations)
from .engine import (
    evaluate_segmentation,
    export_segmentation_weights,
    input_normalization,
    normalize_images,
    segmentation_loss,
    segmentation_optimizer,
    train_segmentation,
    warmup_poly_lr,
    whole_inference,
)
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
    "evaluate_segmentation",
    "export_segmentation_weights",
    "input_normalization",
    "intersect_and_union",
    "normalize_images",
    "resize_logits",
    "segmentation_loss",
    "segmentation_optimizer",
    "single_scale_indices",
    "train_segmentation",
    "warmup_poly_lr",
    "whole_inference",
]
