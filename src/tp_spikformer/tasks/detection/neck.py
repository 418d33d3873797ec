"""Spiking feature pyramid: the layout of the official SDT-V3 detection neck (``SpikeFPN``), fed with
the backbone's true strides.

Official code: BICLab/Spike-Driven-Transformer-V3 @ 00fcd1f, ``SDT_V3/Detection/mmdet/models/necks/
spike_fpn.py`` (``SpikeFPN``, mmdet's FPN with a multi-spike before every convolution). Module names
follow it: ``lateral_convs.{i}`` = ``Sequential(spike, conv 1x1)`` and ``fpn_convs.{i}`` =
``Sequential(spike, conv 3x3)``, each convolution with a bias and no norm (the official configs set no
``norm_cfg``), nested as spikingjelly's ``SeqToANNContainer(ConvModule)`` nests it, so the keys read
``lateral_convs.{i}.1.module.conv.{weight,bias}`` (inferred from spikingjelly 0.0.0.0.12 and mmcv 2.0;
no official detector weights exist to check them against). Top-down path: nearest upsampling to the
finer level's size and a sum; extra levels: max-pool with kernel 1, stride 2 on the last output.

Deviations from the official code:

* The spike is ``MultiSpike`` = ``round(clamp(x, 0, 4)) / 4`` in training and evaluation alike. The
  official neck's ``MultiSpike_norm4`` (default ``T=1``) gives integers 0..4 in training but binary
  ``round(clamp(x, 0, 1))`` in evaluation (a train/eval mismatch we do not reproduce).
* Strides are declared, not assumed: :attr:`SpikeFPN.strides` are the backbone's true strides (SDT-V3's
  detection layout: 4, 8, 16, 16, then 32 for one extra level). The official detector feeds the same
  maps to anchors and RoI pooling that assume strides 4, 8, 16, 32 (64), so its fourth level (and the
  pooled fifth) is mis-registered by a factor of 2; we do not reproduce that.
* Norm: the official configs build the neck without norm (``norm_cfg=None``, convs with bias). Its
  outputs then start small (std ~0.1-0.3 with mmdet's Xavier init) and rarely reach the head's first
  spike threshold (0.5): the head is silent at initialisation and learns only once biases have grown.
  ``norm="bn"`` (mmdet's ``norm_cfg=BN`` option; foldable into the conv at inference, so still spike-driven)
  puts a BatchNorm after every conv; our registered detectors use it, ``norm="none"`` is the official neck.
* Inputs are ``[B, C, H, W]`` maps: a backbone with a time axis is read out before the neck (see
  :mod:`.detector`); the official neck takes ``[T=1, B, C, H, W]`` maps and folds T into the batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from ...models.layers import MultiSpike

NORMS = ("none", "bn", "gn")


class ConvModule(nn.Module):
    """A convolution under the attribute name ``conv`` with an optional norm after it (``bn`` or ``gn``),
    as mmcv's ``ConvModule`` names them (no activation); the conv has a bias only without a norm (mmcv's
    ``bias="auto"``), so the state-dict keys match the official neck's."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0, norm: str = "none"
    ):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"unknown neck norm {norm!r}; choose one of {NORMS}")
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=norm == "none")
        self.norm_name = norm
        if norm == "bn":
            self.bn = nn.BatchNorm2d(out_channels)
        elif norm == "gn":
            self.gn = nn.GroupNorm(math.gcd(32, out_channels), out_channels)
        nn.init.xavier_uniform_(self.conv.weight)  # mmdet's FPN init_cfg: Xavier, uniform
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return x if self.norm_name == "none" else getattr(self, self.norm_name)(x)


class StepWise(nn.Module):
    """Holds one module under the name ``module`` (spikingjelly ``SeqToANNContainer``'s key layout) and
    applies it; a ``[T, B, C, H, W]`` input is folded to ``[T*B, C, H, W]`` and back, as the official
    container does."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 5:
            t, b = x.shape[:2]
            y = self.module(x.flatten(0, 1))  # [T*B, C', H', W']
            return y.reshape(t, b, *y.shape[1:])  # [T, B, C', H', W']
        return self.module(x)


def spike_conv(in_channels: int, out_channels: int, kernel_size: int, norm: str = "none") -> nn.Sequential:
    """``Sequential(MultiSpike, StepWise(ConvModule))``: one lateral (1x1) or output (3x3) unit."""
    return nn.Sequential(
        MultiSpike(),
        StepWise(ConvModule(in_channels, out_channels, kernel_size, padding=kernel_size // 2, norm=norm)),
    )


class SpikeFPN(nn.Module):
    """Spiking FPN over backbone maps ``[B, C_i, H_i, W_i]`` at strides ``in_strides``.

    Args:
        in_channels: channels of every backbone map passed in (all of them, as the official neck).
        in_strides: their true strides (input pixels per map pixel), non-decreasing.
        out_channels: channels of every output level.
        num_outs: output levels; those beyond the used inputs are extra levels (max-pool, stride 2).
        start_level: first input used (mmdet's ``start_level``; e.g. 1 skips SDT-V3's stride-4 map).
        norm: ``"none"`` (the official configs: convs with bias), ``"bn"`` or ``"gn"`` after every conv
            (mmdet's ``norm_cfg``; keys ``...module.bn.*``).

    ``forward(features)`` returns ``num_outs`` maps ``[B, out_channels, H, W]``; :attr:`strides` lists
    their strides.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        in_strides: Sequence[int],
        out_channels: int,
        num_outs: int,
        start_level: int = 0,
        norm: str = "none",
    ):
        super().__init__()
        in_channels, in_strides = [int(c) for c in in_channels], [int(s) for s in in_strides]
        if len(in_channels) != len(in_strides) or not in_channels:
            raise ValueError(
                f"in_channels {in_channels} and in_strides {in_strides} must name the same, non-empty list of "
                "backbone maps"
            )
        if any(b < a for a, b in pairwise(in_strides)):
            raise ValueError(f"in_strides must be non-decreasing (finest map first), got {in_strides}")
        if not 0 <= start_level < len(in_channels):
            raise ValueError(f"start_level must be in 0..{len(in_channels) - 1}, got {start_level}")
        used = len(in_channels) - start_level
        if num_outs < used:
            raise ValueError(
                f"num_outs={num_outs} is fewer than the {used} inputs used from start_level={start_level}; "
                f"pass num_outs >= {used} or raise start_level"
            )
        self.in_channels, self.in_strides = in_channels, in_strides
        self.out_channels, self.num_outs, self.start_level = (
            int(out_channels),
            int(num_outs),
            int(start_level),
        )
        self.norm = norm
        self.lateral_convs = nn.ModuleList(
            spike_conv(c, out_channels, 1, norm) for c in in_channels[start_level:]
        )
        self.fpn_convs = nn.ModuleList(spike_conv(out_channels, out_channels, 3, norm) for _ in range(used))
        strides = in_strides[start_level:]
        for _ in range(num_outs - used):
            strides.append(strides[-1] * 2)
        self.strides: tuple[int, ...] = tuple(strides)

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(features) != len(self.in_channels):
            raise ValueError(
                f"SpikeFPN was built for {len(self.in_channels)} backbone maps, got {len(features)}"
            )
        laterals = [conv(features[i + self.start_level]) for i, conv in enumerate(self.lateral_convs)]
        for i in range(len(laterals) - 1, 0, -1):  # top-down: coarse to fine
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[-2:], mode="nearest"
            )
        outs = [conv(lat) for conv, lat in zip(self.fpn_convs, laterals)]
        while len(outs) < self.num_outs:
            outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))  # [B, C, ceil(H/2), ceil(W/2)]
        return outs
