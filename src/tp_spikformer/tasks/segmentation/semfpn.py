"""Semantic FPN with multi-spike quantisation: SDT-V3's official segmentation neck and head.

Official code: BICLab/Spike-Driven-Transformer-V3, ``SDT_V3/Segmentation`` (mmseg 1.x):
``mmseg/models/necks/fpn.py:QFPN``, ``mmseg/models/decode_heads/fpn_head.py:QFPNHead``,
``mmseg/models/decode_heads/decode_head.py:BaseDecodeHead``, configs
``configs/EFSDTv2/fpn_sdtv3_512x512_{19M,10M}_ade20k.py``. Module names follow it, so a state dict of that
design (``backbone.*``, ``neck.lateral_convs.i.{0,1}.*``, ``neck.fpn_convs.i.{0,1}.*``,
``decode_head.scale_heads.i.j.{1,2}.*``, ``decode_head.conv_seg.*``) loads strictly into
:class:`SpikingSegmenter`.

* :class:`QFPN` (neck): per level ``lateral = BN(Conv1x1(q(x)))`` with ``q(x) = round(clamp(x, 0, 4)) / 4``
  (:class:`~tp_spikformer.models.layers.MultiSpike`; the official parameter-free ``MultiSpike_norm(Norm=T)``
  with ``T = 4`` kept in the separate lists ``lateral_convs_spikes`` / ``fpn_convs_spikes``, so they add no
  key); top-down: ``lateral[i-1] += nearest_resize(lateral[i])``; outputs ``BN(Conv3x3(q(lateral)))``.
  Convolutions carry a bias; Xavier-uniform initialisation as the official ``init_cfg``.
* :class:`QFPNHead` (decode head): per level ``max(1, log2(stride_i / stride_0))`` times
  ``Sequential(q, Conv3x3 without bias, BN)``, each followed by a 2x bilinear upsampling for the levels
  coarser than the first; the levels are summed (bilinear resize to the first level's size), quantised
  (``out_spike``) and classified by the 1x1 ``conv_seg`` (normal init, std 0.01). Logits come out at the
  first level's stride (2 for SDT-V3: 256x256 for a 512x512 input); :func:`resize_logits` brings them
  bilinearly (``align_corners=False``) to the label size for the loss and the prediction, as mmseg does.

Where we deviate from the official code:

* ``feature_strides``: the official configs pass ``[4, 8, 16, 32]`` although the SDT-V3 segmentation
  backbone's outputs are at strides 2, 4, 8, 16; only the ratios (the number of conv + upsample steps per
  level) matter, and those agree. We take the true strides from the backbone's ``feature_info``.
* Dropout: the official ``cls_seg`` has its dropout commented out ("dropout is deprecated in SNN") while
  the config still says ``dropout_ratio=0.1``, so the official model runs without dropout. Our default is
  ``dropout_ratio=0.0`` (no module); a positive value adds ``Dropout2d`` before ``conv_seg`` (no key).
* The first conv of each scale head takes the neck's width ``in_channels[i]`` (official: ``channels``,
  the same number in every official config).
* Other families (Spikformer, SDT-V1, QKFormer) return ``[T, B, C, H, W]`` stage outputs: the segmenter
  reads time out with :class:`TimeMean` (the mean over T; on spike maps the firing rate, on the
  real-valued residual streams of Spikformer/SDT-V1 their time average) before the same neck and head.
  Single-scale families give several block outputs at one stride; the FPN then just sums levels of equal
  size (no upsampling), and the logits come out at that stride.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...models.layers import MultiSpike

NECK_SPIKE_MAX = 4  # official Quant: round(clamp(x, 0, 4))
NECK_SPIKE_NORM = 4  # official MultiSpike_norm(Norm=T), T = 4 in every official config


def resize_logits(logits: torch.Tensor, size: Sequence[int], align_corners: bool = False) -> torch.Tensor:
    """Bilinear resize of logits ``[B, K, h, w]`` to ``size = (H, W)`` (mmseg's ``resize``); a no-op at that size."""
    size = (int(size[0]), int(size[1]))
    if tuple(logits.shape[-2:]) == size:
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=align_corners)


class QFPN(nn.Module):
    """The official ``QFPN`` neck (module docstring): maps ``[B, C_i, H_i, W_i]`` -> ``[B, out, H_i, W_i]``."""

    def __init__(self, in_channels: Sequence[int], out_channels: int = 128):
        super().__init__()
        in_channels = [int(c) for c in in_channels]
        if not in_channels or min(in_channels) < 1 or out_channels < 1:
            raise ValueError(
                f"QFPN needs >= 1 input level with positive widths, got {in_channels} -> {out_channels}"
            )
        self.in_channels, self.out_channels = in_channels, int(out_channels)
        self.lateral_convs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, out_channels, 1), nn.BatchNorm2d(out_channels)) for c in in_channels
        )
        self.lateral_convs_spikes = nn.ModuleList(
            MultiSpike(NECK_SPIKE_MAX, NECK_SPIKE_NORM) for _ in in_channels
        )
        self.fpn_convs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels))
            for _ in in_channels
        )
        self.fpn_convs_spikes = nn.ModuleList(
            MultiSpike(NECK_SPIKE_MAX, NECK_SPIKE_NORM) for _ in in_channels
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # official init_cfg: Xavier (uniform) on Conv2d, bias 0
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(inputs) != len(self.lateral_convs):
            raise ValueError(
                f"QFPN was built for {len(self.lateral_convs)} levels, got {len(inputs)} feature maps"
            )
        laterals = [
            conv(spike(x)) for x, conv, spike in zip(inputs, self.lateral_convs, self.lateral_convs_spikes)
        ]
        for i in range(len(laterals) - 1, 0, -1):  # top-down: coarse into fine
            up = F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:], mode="nearest")
            laterals[i - 1] = laterals[i - 1] + up  # [B, out, H_{i-1}, W_{i-1}]
        return [conv(spike(x)) for x, conv, spike in zip(laterals, self.fpn_convs, self.fpn_convs_spikes)]


def _scale_head_length(stride: int, first: int) -> int:
    return max(1, int(math.log2(stride) - math.log2(first)))


class QFPNHead(nn.Module):
    """The official ``QFPNHead`` (module docstring): levels ``[B, C, H_i, W_i]`` -> logits at ``feature_strides[0]``.

    ``feature_strides``: the levels' strides (powers of two, the first the finest); ``in_channels``: their
    widths (default ``channels`` each); ``num_classes``: output channels of ``conv_seg``.
    """

    def __init__(
        self,
        feature_strides: Sequence[int],
        num_classes: int,
        channels: int = 128,
        in_channels: Sequence[int] | None = None,
        dropout_ratio: float = 0.0,
        align_corners: bool = False,
    ):
        super().__init__()
        strides = [int(s) for s in feature_strides]
        if not strides or any(s < 1 or s & (s - 1) for s in strides) or min(strides) != strides[0]:
            raise ValueError(
                f"feature_strides must be powers of two with the finest first, got {list(feature_strides)}"
            )
        in_channels = [int(channels)] * len(strides) if in_channels is None else [int(c) for c in in_channels]
        if len(in_channels) != len(strides):
            raise ValueError(f"{len(in_channels)} in_channels for {len(strides)} feature_strides")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if not 0.0 <= dropout_ratio < 1.0:
            raise ValueError(f"dropout_ratio must be in [0, 1), got {dropout_ratio}")
        self.feature_strides, self.in_channels, self.channels = strides, in_channels, int(channels)
        self.num_classes, self.align_corners = int(num_classes), bool(align_corners)
        # created in the official order (BaseDecodeHead first), so the state_dict keys come in its order too
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        nn.init.normal_(self.conv_seg.weight, std=0.01)  # official init_cfg: Normal(std=0.01) on conv_seg
        nn.init.zeros_(self.conv_seg.bias)
        self.dropout = nn.Dropout2d(dropout_ratio) if dropout_ratio > 0 else None
        self.scale_heads = nn.ModuleList()
        for stride, c_in in zip(strides, in_channels):
            layers: list[nn.Module] = []
            for k in range(_scale_head_length(stride, strides[0])):
                layers.append(
                    nn.Sequential(
                        MultiSpike(NECK_SPIKE_MAX, NECK_SPIKE_NORM),
                        nn.Conv2d(c_in if k == 0 else channels, channels, 3, padding=1, bias=False),
                        nn.BatchNorm2d(channels),
                    )
                )
                if stride != strides[0]:
                    layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=align_corners))
            self.scale_heads.append(nn.Sequential(*layers))
        self.out_spike = MultiSpike(NECK_SPIKE_MAX, NECK_SPIKE_NORM)

    @property
    def output_stride(self) -> int:
        """Input pixels per logit side."""
        return self.feature_strides[0]

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(inputs) != len(self.scale_heads):
            raise ValueError(f"QFPNHead was built for {len(self.scale_heads)} levels, got {len(inputs)}")
        out = self.scale_heads[0](inputs[0])  # [B, C, H_0, W_0]
        for head, x in zip(self.scale_heads[1:], inputs[1:]):
            out = out + resize_logits(head(x), out.shape[-2:], self.align_corners)
        out = self.out_spike(out)
        if self.dropout is not None:
            out = self.dropout(out)
        return self.conv_seg(out)  # [B, classes, H_0, W_0]


class TimeMean(nn.Module):
    """Time read-out of ``[T, B, C, H, W]`` stage outputs: the mean over T (``[B, C, H, W]``).

    On spike maps this is the firing rate per neuron; on the real-valued residual streams that Spikformer
    and SDT-V1 blocks return it is their time average. 4-D maps (SDT-V3, no time axis) pass unchanged.
    Parameter-free (no state_dict key).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(0) if x.dim() == 5 else x


class SpikingSegmenter(nn.Module):
    """``backbone -> (time read-out) -> neck -> decode_head`` (mmseg's ``EncoderDecoder`` module names).

    ``backbone``: a ``features_only`` model of the zoo (``create_model(name, features_only=True, ...)``);
    its ``feature_info`` gives the neck's input widths and the head's strides. ``forward(x)`` returns the
    logits at the head's stride (``[B, K, H/s, W/s]``, ``s = output_stride``); :meth:`predict` resizes them
    bilinearly to a size (default: the input's) and takes the arg-max. TP (``apply_tp(segmenter, ...)``)
    prunes the backbone's blocks; stopped tokens stay in place, so every map keeps its full size.
    """

    def __init__(self, backbone: nn.Module, neck: QFPN, decode_head: QFPNHead, align_corners: bool = False):
        super().__init__()
        if not getattr(backbone, "features_only", False):
            raise ValueError(
                "the backbone must return stage features: build it with create_model(name, features_only=True, "
                "out_indices=...)"
            )
        info = backbone.feature_info
        widths = [d["num_chs"] for d in info]
        if list(neck.in_channels) != widths:
            raise ValueError(
                f"neck in_channels {neck.in_channels} do not match the backbone's stage widths {widths}"
            )
        if len(decode_head.feature_strides) != len(info):
            raise ValueError(
                f"decode_head has {len(decode_head.feature_strides)} levels, the backbone {len(info)}"
            )
        self.backbone, self.neck, self.decode_head = backbone, neck, decode_head
        self.time_readout = TimeMean()
        self.align_corners = bool(align_corners)
        self.family = getattr(backbone, "family", "")
        self.T = getattr(backbone, "T", None)
        self.num_classes = decode_head.num_classes
        # keys the backbone's official code builds but never uses may be absent from a checkpoint
        self.unused_keys = tuple(r"backbone\." + p for p in getattr(backbone, "unused_keys", ()))

    @property
    def output_stride(self) -> int:
        """Input pixels per logit side (2 for SDT-V3)."""
        return self.decode_head.output_stride

    @property
    def input_multiple(self) -> int:
        """Image sides must be multiples of this (the backbone's rule; 16 for SDT-V3)."""
        return int(getattr(self.backbone, "input_multiple", 1))

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The backbone's stage outputs (full layout, pruned or not; ``[T, B, C, H, W]`` where timed)."""
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[B, C, H, W]`` -> logits ``[B, classes, H/s, W/s]``."""
        feats = [self.time_readout(f) for f in self.forward_features(x)]  # each [B, C_i, H_i, W_i]
        return self.decode_head(self.neck(feats))

    def predict(self, x: torch.Tensor, size: Sequence[int] | None = None) -> torch.Tensor:
        """Class indices ``[B, H, W]`` (int64): logits resized bilinearly to ``size`` (default: the input's)."""
        logits = resize_logits(self(x), size if size is not None else x.shape[-2:], self.align_corners)
        return logits.argmax(1)
