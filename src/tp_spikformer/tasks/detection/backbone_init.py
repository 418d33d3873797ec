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

import os
from typing import Any

from torch import nn

from ...models import get_model_config
from ...models._registry import asset_path
from ...models.checkpoint import extract_state_dict, load_checkpoint, read_checkpoint


def init_backbone(detector: nn.Module, checkpoint: Any, *, grey_to_rgb: bool = True) -> dict[str, Any]:
    """Load classification weights into ``detector.backbone`` (see the module docstring); returns the
    load report (``dropped_head``, ...) plus ``expanded``: the keys converted from grey to RGB."""
    if isinstance(checkpoint, str) and not os.path.exists(checkpoint):
        cfg = get_model_config(checkpoint)  # raises with the closest names
        if cfg.weights is None:
            raise ValueError(f"no weights ship with '{checkpoint}': pass a checkpoint path instead")
        checkpoint = asset_path(cfg.weights)
    obj = read_checkpoint(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else checkpoint
    state = dict(extract_state_dict(obj))
    own = detector.backbone.state_dict()
    expanded = []
    for key, value in state.items():
        mine = own.get(key)
        if (
            grey_to_rgb
            and mine is not None
            and value.dim() == 4
            and mine.dim() == 4
            and value.shape[1] == 1
            and mine.shape[1] == 3
            and value.shape[0] == mine.shape[0]
            and value.shape[2:] == mine.shape[2:]
        ):
            state[key] = value.repeat(1, 3, 1, 1) / 3  # [O, 1, k, k] -> [O, 3, k, k]
            expanded.append(key)
    load_checkpoint(detector.backbone, state)
    return dict(detector.backbone.load_report, expanded=expanded)
