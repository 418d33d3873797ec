"""What every one-stream tracker shares: the canvas layout, its input format, and its TP setup.

A tracker's ``forward(template, search)`` returns a dict with ``pred_boxes`` ``[B, 1, 4]`` (cx, cy, w, h
relative to the search crop), ``score_map`` ``[B, 1, F, F]``, ``size_map`` and ``offset_map``
``[B, 2, F, F]`` and ``backbone_feat`` (SDTrack's output dict). The engine reads the input format from
the tracker: ``representation`` ("gtp": SDTrack's 3-channel frames, raw 0..255, ``gtp_kwargs`` for
:class:`~tp_spikformer.data.event_repr.GTPEncoder`; "counts": per-polarity event counts in ``T`` bins).

Token pruning (``apply_tp(tracker, ...)``): the transformer blocks run on the square fake grid of
:class:`.canvas.CanvasLayout`. :meth:`OneStreamTracker.tp_options` gives the options that make the
template tokens protected (always kept, counting toward each block's keep count) and the zero pad tokens
the least important::

    apply_tp(tracker, keep=0.56, **tracker.tp_options("official"))
    apply_tp(tracker, keep=0.56, **tracker.tp_options("official", protect_template=False))  # may prune them

:func:`.tp.apply_tracker_tp` does the same in one call; plain ``apply_tp(tracker, keep=..., scorer=...)``
protects nothing (the pruning package has no way for a model to declare default protected tokens).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ...models.protocol import TPDefaults
from .canvas import CanvasLayout

# The TP paper's tracking setting: 56 % of the tokens kept ("close to SDTrack"; paper.md §2.5).
PAPER_TRACKING_KEEP = 0.56
REPRESENTATIONS = ("gtp", "counts")


def synth_recipe(epochs: int, samples_per_epoch: int) -> dict[str, Any]:
    """``train_tracker`` arguments for a small tracker trained from scratch on the synthetic 128 x 128 set
    (about 25 minutes on 2 shared CPU cores, ``threads=1``). SDTrack's recipe except: lr 1e-3 and the
    backbone at the same lr (SDTrack's x 0.1 is for an ImageNet-pretrained backbone; from scratch it
    learned slower in our pilot runs), and fewer, smaller epochs. Factors and jitter are SDTrack's."""
    return {
        "epochs": epochs,
        "samples_per_epoch": samples_per_epoch,
        "batch_size": 16,
        "lr": 1e-3,
        "backbone_lr_mult": 1.0,
        "weight_decay": 1e-4,
        "grad_clip": 0.1,
        "lr_drop_epoch": int(0.8 * epochs),
        "lr_drop": 0.1,
        "threads": 1,
        "sampler_kwargs": {
            "template_factor": 2.0,
            "search_factor": 4.0,
            "center_jitter": 3.0,
            "scale_jitter": 0.25,
            "max_interval": 200,
        },
    }


class OneStreamTracker(nn.Module):
    """Base class of the trackers: ``layout`` (a :class:`CanvasLayout`), input format, TP helpers."""

    family = ""
    representation = "gtp"
    T: int | None = None
    in_channels = 3

    def __init__(self, template_size: int, search_size: int, stride: int = 16):
        super().__init__()
        self.layout = CanvasLayout(int(template_size), int(search_size), stride)

    # -- input format -------------------------------------------------------------------------------------
    @property
    def template_size(self) -> int:
        return self.layout.template_size

    @property
    def search_size(self) -> int:
        return self.layout.search_size

    @property
    def gtp_kwargs(self) -> dict[str, Any]:
        """GTPEncoder options of the frames this tracker reads (SDTrack's PNG channel order)."""
        return {"order": "hnp"}

    def input_spec(self) -> dict[str, Any]:
        """How to build inputs: representation, T bins per frame, channels, crop sizes."""
        return {
            "representation": self.representation,
            "T": self.T or 1,
            "channels": self.in_channels,
            "template_size": self.template_size,
            "search_size": self.search_size,
            "gtp_kwargs": self.gtp_kwargs if self.representation == "gtp" else {},
        }

    def example_inputs(self, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Random ``(template, search)`` crops in this tracker's input layout, on its device and dtype
        (spike-like values in [0, 1]; for tracing, counting and tests)."""
        param = next(self.parameters(), None)
        dtype = param.dtype if param is not None else torch.get_default_dtype()
        device = param.device if param is not None else torch.device("cpu")
        g = torch.Generator().manual_seed(seed)
        lead = (batch,) if self.T is None else (batch, self.T)
        z = torch.rand(*lead, self.in_channels, self.template_size, self.template_size, generator=g)
        x = torch.rand(*lead, self.in_channels, self.search_size, self.search_size, generator=g)
        return z.to(device=device, dtype=dtype), x.to(device=device, dtype=dtype)

    def frame_shape(self, frame: torch.Tensor) -> torch.Tensor:
        """One frame of the sequence reader (``[T, C, H, W]``) as this tracker's per-frame input
        (``[C, H, W]`` without a time axis, else ``[T, C, H, W]``)."""
        if self.T is None and frame.dim() == 4:
            if frame.shape[0] != 1:
                raise ValueError(f"{type(self).__name__} reads one slice per frame, got {list(frame.shape)}")
            frame = frame[0]
        return frame

    # -- TP --------------------------------------------------------------------------------------------------
    def tp_defaults(self, num_blocks: int) -> TPDefaults:
        """Window 3 (as the backbone families); ``keep="official"`` keeps 56 % of the fake-grid tokens in
        every block, the TP paper's tracking setting. The official SDT-V3 side-ratio schedule is not used:
        a side ratio of the fake grid (template, search and pad tokens in raster order) means nothing."""
        return TPDefaults(
            window=3,
            keep_rule=None,
            keep_values=None,
            fallback_fraction=PAPER_TRACKING_KEEP,
            source="TP paper, tracking: 56 % of the tokens kept (no official TP tracking code)",
            protect=self.template_protect,
            demote=self.pad_demote,
        )

    def template_protect(self, grid: tuple[int, int]) -> torch.Tensor | None:
        """``protect`` callable of the pruning state: the template tokens of the fake grid (bool ``[N]``);
        None on any other grid."""
        return self.layout.template_mask() if tuple(grid) == self.layout.grid else None

    def pad_demote(self, grid: tuple[int, int]) -> torch.Tensor | None:
        """``demote`` callable of the pruning state: the zero pad tokens of the fake grid rank last."""
        if tuple(grid) != self.layout.grid or not self.layout.n_pad:
            return None
        return self.layout.pad_mask()

    def tp_options(
        self, scorer: str | Callable = "official", *, protect_template: bool = True, pad_last: bool = True
    ) -> dict[str, Any]:
        """``apply_tp`` keyword arguments: ``scorer``, ``protect`` (the template tokens, or None with
        ``protect_template=False``) and ``demote`` (the pad tokens, or None with ``pad_last=False``). The
        tracker declares both as its defaults, so a plain ``apply_tp(tracker, ...)`` protects the template."""
        return {
            "scorer": scorer,
            "protect": self.template_protect if protect_template else None,
            "demote": self.pad_demote if pad_last else None,
        }
