"""SDTrack's centre head (``lib/models/layers/head.py:CenterPredictor``, OSTrack's head with spikes).

Three branches (centre score, offset, size), each four ``[MultiSpike -> 3x3 conv (bias) -> BN]`` stages
``C -> ch -> ch/2 -> ch/4 -> ch/8`` and a 1x1 conv (1, 2, 2 outputs; no spike before it). Keys
``conv{1..4}_{ctr,offset,size}.{1,2}.*`` (index 0 is the parameter-free spike) and ``conv5_*``. Score and size
maps are ``clamp(sigmoid(.), 1e-4, 1 - 1e-4)``; the box is read at the score map's argmax
(:func:`cal_bbox`). Official initialisation: Xavier-uniform for every conv weight.
"""

from __future__ import annotations

import torch
from torch import nn

from ...models.layers import MultiSpike

BRANCHES = ("ctr", "offset", "size")
OUTPUTS = {"ctr": 1, "offset": 2, "size": 2}


def spike_conv_bn(in_ch: int, out_ch: int) -> nn.Sequential:
    """``Sequential(MultiSpike, Conv2d 3x3 with bias, BatchNorm2d)`` (official ``conv(...)``, keys ``.1``, ``.2``)."""
    return nn.Sequential(MultiSpike(), nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=True), nn.BatchNorm2d(out_ch))


def _clamped_sigmoid(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp(torch.sigmoid(x), min=1e-4, max=1 - 1e-4)


def cal_bbox(score_map: torch.Tensor, size_map: torch.Tensor, offset_map: torch.Tensor) -> torch.Tensor:
    """Boxes ``[B, 4]`` (cx, cy, w, h relative to the search crop) at the argmax of ``score_map``.

    ``idx = argmax`` over the flattened ``[B, 1, F, F]`` map (the first maximum, as ``torch.max``);
    ``cx = (idx % F + offset_x) / F``, ``cy = (idx // F + offset_y) / F``, ``(w, h)`` = the size map there.
    """
    f = score_map.shape[-1]
    idx = score_map.flatten(1).argmax(dim=1, keepdim=True)  # [B, 1]
    idx_y = torch.div(idx, f, rounding_mode="floor")
    idx_x = idx % f
    at = idx.unsqueeze(1).expand(idx.shape[0], 2, 1)  # [B, 2, 1]
    size = size_map.flatten(2).gather(2, at).squeeze(-1)  # [B, 2]
    offset = offset_map.flatten(2).gather(2, at).squeeze(-1)  # [B, 2]
    dtype = size.dtype
    cx = (idx_x.to(dtype) + offset[:, :1]) / f
    cy = (idx_y.to(dtype) + offset[:, 1:]) / f
    return torch.cat([cx, cy, size], dim=1)


class CenterPredictor(nn.Module):
    """SDTrack's centre head on the search feature map ``[B, inplanes, F, F]`` (``F = feat_sz``).

    Returns ``(score_map [B, 1, F, F], boxes [B, 4] cx cy w h, size_map [B, 2, F, F], offset_map
    [B, 2, F, F])``. ``stride`` is kept for the official signature (``feat_sz * stride`` = search size).
    Deviation: the official forward applies ``sigmoid_`` in place to the conv5 outputs; we do not modify
    tensors in place (same values).
    """

    def __init__(
        self,
        inplanes: int = 64,
        channel: int = 256,
        feat_sz: int = 20,
        stride: int = 16,
        freeze_bn: bool = False,
    ):
        super().__init__()
        if freeze_bn:
            raise ValueError(
                "freeze_bn=True (FrozenBatchNorm2d) is not supported; SDTrack's configurations use "
                "freeze_bn=False"
            )
        if channel % 8 or channel < 8:
            raise ValueError(
                f"channel must be a multiple of 8 (the branches narrow to channel / 8), got {channel}"
            )
        self.inplanes, self.channel, self.feat_sz, self.stride = inplanes, channel, int(feat_sz), stride
        widths = [inplanes, channel, channel // 2, channel // 4, channel // 8]
        for branch in BRANCHES:
            for i in range(4):
                setattr(self, f"conv{i + 1}_{branch}", spike_conv_bn(widths[i], widths[i + 1]))
            setattr(self, f"conv5_{branch}", nn.Conv2d(widths[4], OUTPUTS[branch], kernel_size=1))
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def _branch(self, branch: str, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, 5):
            x = getattr(self, f"conv{i}_{branch}")(x)
        return getattr(self, f"conv5_{branch}")(x)

    def forward(self, x: torch.Tensor):
        if x.dim() != 4 or tuple(x.shape[-2:]) != (self.feat_sz, self.feat_sz) or x.shape[1] != self.inplanes:
            raise ValueError(
                f"CenterPredictor expects search features [B, {self.inplanes}, {self.feat_sz}, {self.feat_sz}], "
                f"got {list(x.shape)}"
            )
        score_map = _clamped_sigmoid(self._branch("ctr", x))  # [B, 1, F, F]
        size_map = _clamped_sigmoid(self._branch("size", x))  # [B, 2, F, F]
        offset_map = self._branch("offset", x)  # [B, 2, F, F]
        return score_map, cal_bbox(score_map, size_map, offset_map), size_map, offset_map
