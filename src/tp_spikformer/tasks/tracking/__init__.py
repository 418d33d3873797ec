"""Event-camera single-object tracking (FE108 / VisEvent / FELT and the synthetic set).

* :mod:`.metrics`: pytracking / OTB scores (success AUC over 21 IoU thresholds, precision at 20 px,
  normalised precision at 0.2) and the results text files (one ``x,y,w,h`` line per frame).

The data side (event simulation, readers, representations, crops) lives in ``tp_spikformer.data``
(:mod:`~tp_spikformer.data.esim`, :mod:`~tp_spikformer.data.tracking`, :mod:`~tp_spikformer.data.event_repr`).
"""

from . import sdtrack, spikformer_track  # noqa: F401  (registers the tracker configurations)
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

__all__ = [
    "CENTER_THRESHOLDS",
    "NORM_CENTER_THRESHOLDS",
    "OVERLAP_THRESHOLDS",
    "center_error",
    "dataset_scores",
    "iou_xywh",
    "read_results_txt",
    "sequence_scores",
    "write_results_txt",
]
