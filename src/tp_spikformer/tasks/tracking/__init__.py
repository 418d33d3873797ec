"""Event-camera single-object tracking (FE108 / VisEvent / FELT and the synthetic set).

* :mod:`.sdtrack`: SDTrack 1x4 (Shan et al.), the one-stream spiking tracker on the SDT-V3 backbone, with
  the official module and key names (``sdtrack_tiny``, ``sdtrack_base``; small ``sdtrack_synth``);
* :mod:`.spikformer_track`: the same design on Spikformer with T event bins as time steps
  (``spikformer_track_synth``);
* :mod:`.canvas`: the template/search canvas and the square token grid the blocks run on;
  :mod:`.heads`: SDTrack's centre head; :mod:`.tp`: token pruning with protected template tokens;
* :mod:`.losses`: GIoU + L1 + focal; :mod:`.sampler`: training pairs; :mod:`.engine`: training, the online
  tracking loop and dataset evaluation;
* :mod:`.metrics`: pytracking / OTB scores (success AUC over 21 IoU thresholds, precision at 20 px,
  normalised precision at 0.2) and the results text files (one ``x,y,w,h`` line per frame).

The data side (event simulation, readers, representations, crops) lives in ``tp_spikformer.data``
(:mod:`~tp_spikformer.data.esim`, :mod:`~tp_spikformer.data.tracking`, :mod:`~tp_spikformer.data.event_repr`).
"""

from .canvas import CanvasLayout
from .engine import clip_box, evaluate_tracking, track_sequence, train_tracker
from .heads import CenterPredictor, cal_bbox
from .losses import focal_loss, gaussian_heatmap, gaussian_radius, giou_loss, tracking_loss
from .metrics import (
    CENTER_THRESHOLDS,
    NORM_CENTER_THRESHOLDS,
    OVERLAP_THRESHOLDS,
    center_error,
    dataset_scores,
    iou_xywh,
    read_results_txt,
    sequence_scores,
    write_results_txt,
)
from .sampler import FrameSource, PairSampler
from .sdtrack import SDTrack, SDTrackBackbone, SDTrackBlock, sdtrack_from_official
from .spikformer_track import SpikformerTracker
from .task import SPEC as TASK
from .tp import apply_tracker_tp
from .tracker_base import PAPER_TRACKING_KEEP, OneStreamTracker

__all__ = [
    "CENTER_THRESHOLDS",
    "NORM_CENTER_THRESHOLDS",
    "OVERLAP_THRESHOLDS",
    "PAPER_TRACKING_KEEP",
    "CanvasLayout",
    "CenterPredictor",
    "FrameSource",
    "OneStreamTracker",
    "TASK",
    "PairSampler",
    "SDTrack",
    "SDTrackBackbone",
    "SDTrackBlock",
    "SpikformerTracker",
    "apply_tracker_tp",
    "cal_bbox",
    "center_error",
    "clip_box",
    "dataset_scores",
    "evaluate_tracking",
    "focal_loss",
    "gaussian_heatmap",
    "gaussian_radius",
    "giou_loss",
    "iou_xywh",
    "read_results_txt",
    "sdtrack_from_official",
    "sequence_scores",
    "track_sequence",
    "tracking_loss",
    "train_tracker",
    "write_results_txt",
]
