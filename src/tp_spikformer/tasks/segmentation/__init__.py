"""Semantic segmentation: Semantic-FPN models on spiking backbones (registered as ``*_semfpn``), the
train/evaluate engine, and mmseg's IoU accumulation."""

from . import models  # noqa: F401  (registers the *_semfpn configurations)
from .engine import head_lr_multiplier, train_segmentation
from .evaluation import evaluate_segmentation, whole_inference
from .inputs import input_normalization, normalize_images, sample_inputs
from .losses import segmentation_loss
from .metrics import SegmentationMeter, intersect_and_union
from .models import build_semfpn, single_scale_indices
from .semfpn import QFPN, QFPNHead, SpikingSegmenter, TimeMean, resize_logits
from .task import SPEC as TASK

__all__ = [
    "QFPN",
    "TASK",
    "QFPNHead",
    "SegmentationMeter",
    "SpikingSegmenter",
    "TimeMean",
    "build_semfpn",
    "evaluate_segmentation",
    "head_lr_multiplier",
    "input_normalization",
    "intersect_and_union",
    "normalize_images",
    "resize_logits",
    "sample_inputs",
    "segmentation_loss",
    "single_scale_indices",
    "train_segmentation",
    "whole_inference",
]
