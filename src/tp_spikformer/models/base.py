"""The model contract shared by all families: input checks, stage features, ``forward_head``, TP defaults.

Stage features follow timm's convention: ``feature_info`` (a list of dicts with ``num_chs``, ``reduction``,
``module``), ``forward_intermediates(x, indices)`` and ``create_model(name, features_only=True,
out_indices=...)``, whose forward returns the list of stage outputs. Families with a time axis return
``[T, B, C, H, W]`` maps (a head decides how to read time), SDT-V3 ``[B, C, H, W]``. The maps always have the
full token layout, pruned or not (stopped tokens stay in place).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import UsageError, UsageTypeError


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
    # Families also define ``tp_defaults(num_blocks) -> protocol.TPDefaults`` (scorer window, official keep
    # schedule); without it the pruning patch falls back to window 3 and logs that it did.
    T: int | None = None
    in_channels: int = 3
    fixed_input_size: tuple[int, int] | None = None
    input_multiple: int = 1
    static_input: bool = True  # accepts [B, C, H, W] images (repeated over T)
    event_input: bool = False  # accepts [B, T, C, H, W] frames (official DVS layout)
    # True when only the head follows the blocks and it pools over whatever tokens it gets (single-stage
    # models), so tokens may be removed for good ("drop" mode of the pruning patch)
    supports_token_drop: bool = False
    # inference in channels-last memory order (faster stems; float32 results may differ in rare spikes, see
    # _memory_format); set False for contiguous NCHW
    channels_last: bool = True
    # create_model(..., official_arithmetic=True): NCHW, no optimize(), the literal official TP scorer by
    # default, so float32 outputs follow the official code's kernels (see set_official_arithmetic)
    official_arithmetic: bool = False
    # NaN/Inf input check: always on CPU; on accelerators only on the first forward (a device-to-host sync)
    # unless check_inputs is True
    check_inputs: bool = False
    # modules that only the classifier uses; a features_only backbone deletes them (their keys disappear)
    head_modules: tuple[str, ...] = ("head",)
    # named out_indices, e.g. SDT-V3's {"detection": (1, 2, 3, 4), "segmentation": (0, 1, 2, 4)}
    feature_layouts: dict[str, tuple[int, ...]] = {}
    features_only: bool = False
    out_indices: tuple[int, ...] | None = None
    # Checkpoint filter: regular expressions of state_dict keys the official code builds but never uses.
    # A checkpoint may lack them (e.g. a re-export that dropped them) and still load strictly.
    unused_keys: tuple[str, ...] = ()

    def set_official_arithmetic(self, enabled: bool = True) -> SpikingTransformer:
        """Run the official code's float32 arithmetic, as far as our code can: contiguous NCHW tensors
        (no channels-last), and, read by ``tp_spikformer.optimize`` and ``apply_tp``, no folded BatchNorms
        or fused kernels (optimize refuses the model) and the ``official_literal`` scorer (the official
        C x C convolution) as the default TP scorer.

        Why: a spiking model turns a 1-ulp difference of a convolution (another memory layout or kernel
        rounds differently) into a flipped spike when a membrane sits at the threshold, and the flips
        cascade, so float32 outputs match the official code only with its layouts and kernels. Float64
        results do not depend on it. ``enabled=False`` restores the defaults (channels-last inference).
        """
        if not isinstance(enabled, bool):
            raise UsageTypeError(f"official_arithmetic must be True or False, got {enabled!r}")
        self.official_arithmetic = enabled
        self.channels_last = not enabled
        return self

    # -- input -------------------------------------------------------------------------------------
    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """Check ``x`` and bring it to the layout the stem takes: ``[T, B, C, H, W]`` or ``[B, C, H, W]``."""
        if not isinstance(x, torch.Tensor):
            raise UsageTypeError(f"{type(self).__name__} expects a torch.Tensor, got {type(x).__name__}")
        expected = self._expected_layouts()
        if x.dim() == 4 and self.static_input:
            b, c, h, w = x.shape
        elif x.dim() == 5 and self.event_input:
            b, t, c, h, w = x.shape
        else:
            raise UsageError(f"{type(self).__name__} expects input of shape {expected}, got {list(x.shape)}")
        if c != self.in_channels:
            hint = ""
            if x.dim() == 5 and x.shape[1] == self.in_channels:
                hint = " (this looks like [B, C, T, H, W]; pass frames as [B, T, C, H, W])"
            elif x.dim() == 4 and x.shape[-1] == self.in_channels:
                hint = " (this looks like channels-last [B, H, W, C]; permute to [B, C, H, W])"
            raise UsageError(
                f"{type(self).__name__} expects {self.in_channels} input channels, got {c} in "
                f"{list(x.shape)} (expected {expected}){hint}"
            )
        if x.dim() == 5 and self.T is not None and x.shape[1] != self.T:
            raise UsageError(
                f"{type(self).__name__} was built for T={self.T} time steps but the input has "
                f"{x.shape[1]} frames in dim 1 of {list(x.shape)} (expected {expected}); build the model "
                f"with create_model(..., T={x.shape[1]}) or bin the events into {self.T} frames"
            )
        if b == 0:
            raise UsageError(
                f"{type(self).__name__} got an empty batch {list(x.shape)}; pass at least one sample"
            )
        self._check_size(h, w)
        self._check_dtype(x)
        self._check_finite(x)
        if x.dim() == 5:
            x = x.transpose(0, 1)  # [T, B, C, H, W]
        elif self.T is not None:
            x = x.unsqueeze(0).expand(self.T, *x.shape)  # [T, B, C, H, W]
        return self._memory_format(x)

    def _check_dtype(self, x: torch.Tensor) -> None:
        if not x.is_floating_point():
            raise UsageTypeError(
                f"input must be a floating-point tensor, got {x.dtype}; convert with x.float()"
            )
        param = next(self.parameters(), None)
        if param is not None and x.dtype != param.dtype and not torch.is_autocast_enabled(x.device.type):
            raise UsageTypeError(
                f"the input is {x.dtype} but {type(self).__name__}'s weights are {param.dtype}; convert the input "
                f"(x.to({param.dtype})) or the model (model.to({x.dtype})), or run under torch.autocast"
            )

    def _check_finite(self, x: torch.Tensor) -> None:
        """NaN/Inf check without a host-device sync on the hot path (see ``check_inputs``)."""
        if x.device.type != "cpu" and not self.check_inputs and self.__dict__.get("_finite_checked", False):
            return
        if not bool(torch.isfinite(x).all()):
            raise UsageError("input contains NaN or Inf values; clean or re-normalise the data first")
        self.__dict__["_finite_checked"] = True

    def _memory_format(self, x: torch.Tensor) -> torch.Tensor:
        """Channels innermost (NHWC strides per image) when ``channels_last`` and no gradient is recorded,
        else contiguous NCHW.

        Convolutions and max-pools of the stems run 15-20 % faster on CPU in NHWC (max-pool ~20x), and every
        op after them keeps the layout. The values are the same in float64; in float32 a convolution may round
        differently in the last bit, and a spike threshold can turn that into a different spike. Training
        (grad enabled) always runs NCHW: torch 2.13's CPU backward of a 1x1 stride-2 convolution on a
        channels-last input corrupts the heap (QKFormer's shortcut convolutions crash in backward).
        """
        if not self.channels_last or torch.is_grad_enabled():
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
            raise UsageError(
                f"{type(self).__name__} only accepts {fh}x{fw} inputs (its stem hard-codes the spatial "
                f"sizes, as the official code does); got {h}x{w}. Resize the input to {fh}x{fw}."
            )
        m = self.input_multiple
        if h < m or w < m:
            raise UsageError(
                f"{type(self).__name__} needs images of at least {m}x{m} pixels (sides multiples of {m}); got {h}x{w}"
            )
        if h % m or w % m:
            raise UsageError(
                f"{type(self).__name__} needs image sides that are multiples of {m}; got {h}x{w}. "
                f"Resize or crop to e.g. {max(m, h // m * m)}x{max(m, w // m * m)}."
            )

    # -- contract ----------------------------------------------------------------------------------
    def stage_outputs(self, x: torch.Tensor) -> Iterator[torch.Tensor]:  # pragma: no cover - abstract
        """Check ``x`` and yield the output of every entry of :meth:`stage_info`, in order."""
        raise NotImplementedError

    def stage_info(self) -> list[dict[str, Any]]:  # pragma: no cover - abstract
        """One dict per stage output: ``num_chs``, ``reduction`` (input pixels per token side), ``module``."""
        raise NotImplementedError

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """The stage outputs (timm's convention), each with ``index``, ``num_chs``, ``reduction``, ``module``
        and ``time_axis`` (True: ``[T, B, C, H, W]``); a ``features_only`` model lists only its
        ``out_indices``, in the order its forward returns them."""
        info = [
            dict(d, index=i, time_axis=self.T is not None or self.event_input)
            for i, d in enumerate(self.stage_info())
        ]
        if self.features_only:
            return [info[i] for i in self.out_indices]
        return info

    def resolve_indices(self, indices: int | str | Sequence[int] | None) -> tuple[int, ...]:
        """Stage indices from ``None`` (all), an int ``n`` (the last n), a name of ``feature_layouts`` or a
        sequence (negative values count from the end). Raises with the valid range."""
        n = len(self.stage_info())
        if indices is None:
            return tuple(range(n))
        if isinstance(indices, str):
            if indices not in self.feature_layouts:
                raise UsageError(
                    f"unknown feature layout {indices!r} for {type(self).__name__}; named layouts: "
                    f"{sorted(self.feature_layouts) or 'none'} (or pass stage indices 0..{n - 1})"
                )
            return tuple(self.feature_layouts[indices])
        if isinstance(indices, int) and not isinstance(indices, bool):
            if not 1 <= indices <= n:
                raise UsageError(f"indices={indices}: this model has {n} stage outputs; take the last 1..{n}")
            return tuple(range(n - indices, n))
        out = []
        for i in indices:
            if isinstance(i, bool) or not isinstance(i, int) or not -n <= i < n:
                raise UsageError(
                    f"stage index {i!r} out of range: {type(self).__name__} has stages 0..{n - 1}"
                )
            out.append(i % n)
        if not out:
            raise UsageError("out_indices must name at least one stage")
        return tuple(out)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Input as ``forward``; the last stage's full token grid (``[T, B, C, H, W]`` or ``[B, C, H, W]``)."""
        out = None
        for out in self.stage_outputs(x):  # noqa: B007 - the last stage's output
            pass
        return out

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | str | Sequence[int] | None = None,
        *,
        intermediates_only: bool = False,
        stop_early: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Stage outputs ``indices`` (see :meth:`resolve_indices`) in the full token layout, pruned or not.

        Returns ``(final_features, intermediates)``, or only the list with ``intermediates_only=True``;
        ``stop_early`` (with ``intermediates_only``) skips the stages after the last one asked for.
        """
        wanted = self.resolve_indices(indices)
        if stop_early and not intermediates_only:
            raise UsageError(
                "stop_early=True needs intermediates_only=True (the final features need every stage)"
            )
        last = max(wanted) if stop_early else None
        outputs: dict[int, torch.Tensor] = {}
        final = None
        for i, final in enumerate(self.stage_outputs(x)):
            if i in wanted:
                outputs[i] = final
            if last is not None and i == last:
                break
        intermediates = [outputs[i] for i in wanted]
        return intermediates if intermediates_only else (final, intermediates)

    def as_backbone(self, out_indices: int | str | Sequence[int] | None = None) -> SpikingTransformer:
        """Turn this model into a ``features_only`` backbone in place: the head modules are deleted (their
        keys leave the state dict) and ``forward`` returns the stage outputs ``out_indices``."""
        self.out_indices = self.resolve_indices(out_indices)
        for name in self.head_modules:
            if name in self._modules:
                del self._modules[name]
        self.features_only = True
        return self

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if self.features_only:
            return self.forward_intermediates(x, self.out_indices, intermediates_only=True, stop_early=True)
        return self.forward_head(self.forward_features(x))
