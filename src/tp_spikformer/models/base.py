"""The model contract shared by all families: input checks, ``forward_features`` and ``forward_head``."""

from __future__ import annotations

import torch
from torch import nn


class SpikingTransformer(nn.Module):
    """Base class of every model in the zoo.

    ``forward(x) = forward_head(forward_features(x))``. ``forward_features`` returns the full token grid
    of the last stage (``[T, B, C, H, W]``, or ``[B, C, H, W]`` for SDT-V3), so detection and
    segmentation heads can sit on a pruned backbone; ``forward_head`` pools it and classifies.

    Subclasses set ``family``, ``T``, ``in_channels``, and either ``fixed_input_size`` (the stem hard-codes
    its spatial sizes) or ``input_multiple`` (image sides must be multiples of it). ``T = None`` means: no
    time axis (SDT-V3, images only) or, for frame-only models (``static_input = False``), T is taken from
    the input as the official DVS code does.
    """

    family: str = ""
    T: int | None = None
    in_channels: int = 3
    fixed_input_size: tuple[int, int] | None = None
    input_multiple: int = 1
    static_input: bool = True  # accepts [B, C, H, W] images (repeated over T)
    event_input: bool = False  # accepts [B, T, C, H, W] frames (official DVS layout)
    # True when only the head follows the blocks and it pools over whatever tokens it gets (single-stage
    # models), so tokens may be removed for good ("drop" mode of the pruning patch)
    supports_token_drop: bool = False
    # run in channels-last memory order (same results, faster stems); set False for contiguous NCHW
    channels_last: bool = True
    # Checkpoint filter: regular expressions of state_dict keys the official code builds but never uses.
    # A checkpoint may lack them (e.g. a re-export that dropped them) and still load strictly.
    unused_keys: tuple[str, ...] = ()

    # -- input -------------------------------------------------------------------------------------
    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """Check ``x`` and bring it to the layout the stem takes: ``[T, B, C, H, W]`` or ``[B, C, H, W]``."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{type(self).__name__} expects a torch.Tensor, got {type(x).__name__}")
        expected = self._expected_layouts()
        if x.dim() == 4 and self.static_input:
            b, c, h, w = x.shape
        elif x.dim() == 5 and self.event_input:
            b, t, c, h, w = x.shape
        else:
            raise ValueError(
                f"{type(self).__name__} expects input of shape {expected}, got {list(x.shape)}"
            )
        if c != self.in_channels:
            hint = ""
            if x.dim() == 5 and x.shape[1] == self.in_channels:
                hint = " (this looks like [B, C, T, H, W]; pass frames as [B, T, C, H, W])"
            elif x.dim() == 4 and x.shape[-1] == self.in_channels:
                hint = " (this looks like channels-last [B, H, W, C]; permute to [B, C, H, W])"
            raise ValueError(
                f"{type(self).__name__} expects {self.in_channels} input channels, got {c} in "
                f"{list(x.shape)} (expected {expected}){hint}"
            )
        if x.dim() == 5 and self.T is not None and x.shape[1] != self.T:
            raise ValueError(
                f"{type(self).__name__} was built for T={self.T} time steps but the input has "
                f"{x.shape[1]} frames in dim 1 of {list(x.shape)} (expected {expected}); build the model "
                f"with create_model(..., T={x.shape[1]}) or bin the events into {self.T} frames"
            )
        self._check_size(h, w)
        if not x.is_floating_point():
            raise TypeError(f"input must be a floating-point tensor, got {x.dtype}; convert with x.float()")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("input contains NaN or Inf values; clean or re-normalise the data first")
        if x.dim() == 5:
            x = x.transpose(0, 1)  # [T, B, C, H, W]
        elif self.T is not None:
            x = x.unsqueeze(0).expand(self.T, *x.shape)  # [T, B, C, H, W]
        return self._memory_format(x)

    def _memory_format(self, x: torch.Tensor) -> torch.Tensor:
        """Channels innermost (NHWC strides per image) when ``channels_last``, else contiguous.

        Same values, different memory order: convolutions and max-pools of the stems run 15-20 % faster
        on CPU in NHWC (max-pool ~20x), and every op after them keeps the layout.
        """
        if not self.channels_last:
            return x.contiguous()
        if x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)  # [T, B, C, H, W], C innermost

    def _expected_layouts(self) -> str:
        forms = []
        if self.static_input:
            forms.append(f"[B, {self.in_channels}, H, W]")
        if self.event_input:
            forms.append(f"[B, {'T' if self.T is None else f'T={self.T}'}, {self.in_channels}, H, W]")
        return " or ".join(forms)

    def _check_size(self, h: int, w: int) -> None:
        if self.fixed_input_size is not None and (h, w) != tuple(self.fixed_input_size):
            fh, fw = self.fixed_input_size
            raise ValueError(
                f"{type(self).__name__} only accepts {fh}x{fw} inputs (its stem hard-codes the spatial "
                f"sizes, as the official code does); got {h}x{w}. Resize the input to {fh}x{fw}."
            )
        m = self.input_multiple
        if h % m or w % m:
            raise ValueError(
                f"{type(self).__name__} needs image sides that are multiples of {m}; got {h}x{w}. "
                f"Resize or crop to e.g. {max(m, h // m * m)}x{max(m, w // m * m)}."
            )

    # -- contract ----------------------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
