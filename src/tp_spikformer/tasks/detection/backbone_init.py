"""Initialising a detector's backbone from a classification model's weights.

The official detectors start from ImageNet classification checkpoints (``SDEFormer.init_weights``); here
:func:`init_backbone` loads any classification checkpoint (a path, a state dict, or the name of a
configuration whose weights ship with the package, e.g. ``"sdt_v3_fmnist"``) into ``detector.backbone``:
the classifier's keys are dropped and reported, everything else is strict. A grey-image classifier
(first convolution with 1 input channel) initialises an RGB backbone when ``grey_to_rgb`` is True: its
kernel is repeated over the 3 channels and divided by 3, so the RGB stem computes exactly what the grey
stem computed on the channel mean (with the same per-channel normalisation on every channel).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ...models.checkpoint import load_classifier_weights


def init_backbone(detector: nn.Module, checkpoint: Any, *, grey_to_rgb: bool = True) -> dict[str, Any]:
    """Load classification weights into ``detector.backbone`` (see the module docstring); returns the
    load report (``dropped_head``, ...) plus ``expanded``: the keys converted from grey to RGB."""
    return load_classifier_weights(detector.backbone, checkpoint, grey_to_rgb=grey_to_rgb)
