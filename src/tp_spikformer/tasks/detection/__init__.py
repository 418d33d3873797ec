"""Object detection on (pruned) spiking backbones: a spiking FPN neck, an FCOS-style spiking head, the
detector that joins them, training / prediction / COCO evaluation (:mod:`.engine`)."""

from . import configs  # noqa: F401  (registers the *_fcos configurations)
from .backbone_init import init_backbone
from .boxes import batched_nms, box_iou, generalized_iou, nms
from .coco_eval import score_results
from .configs import build_fcos_detector, register_detector
from .detector import SpikingDetector
from .engine import evaluate_detection, predict_detection, train_detection
from .head import FCOSHead, FCOSOutputs
from .losses import centerness_loss, centerness_target, giou_loss, sigmoid_focal_loss
from .neck import SpikeFPN
from .preprocess import DetectionPreprocess
from .targets import assign_fcos_targets, level_points
from .task import SPEC as TASK

__all__ = [
    "DetectionPreprocess",
    "FCOSHead",
    "FCOSOutputs",
    "SpikeFPN",
    "SpikingDetector",
    "TASK",
    "assign_fcos_targets",
    "batched_nms",
    "box_iou",
    "build_fcos_detector",
    "centerness_loss",
    "centerness_target",
    "evaluate_detection",
    "generalized_iou",
    "giou_loss",
    "init_backbone",
    "level_points",
    "nms",
    "predict_detection",
    "register_detector",
    "score_results",
    "sigmoid_focal_loss",
    "train_detection",
]
