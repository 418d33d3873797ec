"""Token pruning of a tracker in one call: template tokens protected, pad tokens last (by default)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...pruning import TPState, apply_tp
from .tracker_base import OneStreamTracker


def apply_tracker_tp(
    tracker: OneStreamTracker,
    keep: Any = "official",
    scorer: str | Callable = "official",
    *,
    protect_template: bool = True,
    pad_last: bool = True,
    **tp_kwargs: Any,
) -> TPState:
    """``apply_tp(tracker, keep=keep, **tracker.tp_options(scorer, ...), **tp_kwargs)``.

    ``keep="official"`` is the tracker's declared default (56 % of the fake-grid tokens per block, the TP
    paper's tracking setting). ``protect_template=False`` lets the scorer prune template tokens too;
    ``pad_last=False`` scores the zero pad tokens like any other token. On a patched tracker it
    reconfigures (atomically, as ``apply_tp``).
    """
    if not isinstance(tracker, OneStreamTracker):
        raise TypeError(
            f"apply_tracker_tp takes a tracker (SDTrack, SpikformerTracker), got {type(tracker).__name__}; "
            "use apply_tp for other models"
        )
    options = tracker.tp_options(scorer, protect_template=protect_template, pad_last=pad_last)
    return apply_tp(tracker, keep=keep, **options, **tp_kwargs)
