"""Object detection on (pruned) spiking backbones: a spiking FPN neck, an FCOS-style spiking head, the
detector that joins them, training / prediction / COCO evaluation (:mod:`.engine`)."""

from . import configs  # noqa: F401  (registers the *_fcos configurations)
from .backbone_init import init_backbone
from .boxes import batched_nms, box_iou, generalized_iou, nms
from .configs import build_fcos_detector, register_detector
from .detector import SpikingDetector
from .head import FCOSHead, FCOSOutputs
from .losses import centerness_loss, centerness_target, giou_loss, sigmoid_focal_loss
from .neck import SpikeFPN
from .targets import assign_fcos_targets, level_points

__all__ = [
    "FCOSHead",
    "FCOSOutputs",
    "SpikeFPN",
    "SpikingDetector",
    "assign_fcos_targets",
    "batched_nms",
    "box_iou",
    "build_fcos_detector",
    "centerness_loss",
    "centerness_target",
    "generalized_iou",
    "giou_loss",
    "init_backbone",
    "level_points",
    "nms",
    "register_detector",
    "sigmoid_focal_loss",
]
