"""Spike-driven Transformer V2 / Meta-SpikeFormer (Yao et al., ICLR 2024).

Official code: BICLab/Spike-Driven-Transformer-V2 @ 35f245f (``classification/models.py``, class
``Spiking_vit_MetaFormer``, builders ``metaspikformer_8_384/8_512/8_768``). Attribute names follow it, so
official checkpoints (``checkpoint["model"]``) load key for key.

Layout (embed dims ``E0..E3``): a conv stem of four downsamplings (7x7/2, then 3x3/2 with a LIF before
each conv) with spiking conv blocks (``x + SepConv(x)``, then ``x + conv3x3-BN(LIF(conv3x3-BN(LIF(x))))``)
down to an ``H/16`` grid; six transformer blocks at ``E2``; a stride-1 3x3 ``downsample4`` to ``E3``; two
more blocks; mean over tokens, LIF, Linear ``head`` per step, mean over T (``kd=True``: the mean of ``head``
and ``head_kd``). Every neuron is a multi-step LIF (tau 2, hard reset), the attention neuron fires at 0.5.

Transformer block (``MS_Block``): ``x + Attn(x)``, ``x + MLP(x)``. The attention
(``MS_Attention_RepConv_qkv_id``) projects q, k, v and its output with ``RepConv`` + BN: a 1x1 conv, a BN
whose output is padded by one pixel with the BN's value at zero input (not with zeros), a 3x3 DEPTHWISE conv
(no padding), a 1x1 conv and a BN. So q/k/v and the output projection see 3x3 neighbourhoods of the grid;
per head ``attn_lif(q (k^T v) * 0.125)``. The MLP is per token (Conv1d + BN1d, LIF before each conv).

Ordered block parts and token pruning (pruning them is new ground)
-----------------------------------------------------------------
The official TP code does not cover this family: its 3x3 projections make the blocks layout dependent.
Our blocks declare four ordered parts (block protocol, ``block_parts``), on a carry whose first element is
the residual stream:

1. dense: ``x -> (x, q, k, v)``: ``head_lif`` and the q/k/v RepConv projections on the FULL grid (a kept
   token's 3x3 neighbourhood includes stopped tokens, whose spikes are real);
2. token: ``(x, q, k, v) -> (x, a)``: q/k/v LIFs and ``a = attn_lif(q (k^T v) * 0.125)`` over the kept
   tokens only;
3. dense: ``(x, a) -> (x, p)``: ``p = proj_conv(a)`` on the full grid; a stopped token's ``a`` is zero
   (it does not fire in this block), so a kept token's projection sees zeros at stopped neighbours;
4. token: ``(x, p) -> y = x + p + MLP(x + p)`` on the kept tokens.

The residual additions stay in token parts, so a stopped token leaves the block unchanged. Run densely
(all tokens, no pruning) the parts compute exactly the official block.

TP defaults (``tp_defaults``; no official TP code exists for this family, so they are ours): scorer window 3
for every scorer. The paper names no window size (``shared/docs/paper.md`` §1.2); the official code uses 3
for the spike-driven families on 14x14 grids (7 only for QKFormer), and 3 is also the blocks' own RepConv
neighbourhood. Keep schedule: the macro layout (6 + 2 blocks on one 14x14 grid at 224 px) is SDT-V3's, so
the official SDT-V3 side ratios ``(0.9, 0.8, 0.8, 0.8, 0.75, 0.65, 0.65, 0.65)`` (``k = int(H * ratio)``).

Modifications (behaviour is the official one unless said here):

* ``T`` is a constructor argument (default 1, the value the official ``__init__`` hard-codes; the official
  scripts set ``model.T`` after construction, which works here too). Our configurations: T=1 for the plain
  models (``train.sh``), T=4 for the ``_kd`` ones (the T=4 fine-tune recipe, the released 55M checkpoint).
* Transformer blocks keep ``[T, B, C, H, W]`` between them; their token parts run on channel-first tokens
  ``[T, B, C, N]``. The attention products are ``SpikeProduct`` modules.
* ``forward`` returns logits only. With ``kd=True`` it returns ``(head + head_kd) / 2`` in training mode
  too (the official training forward returns the pair, for distillation): ``forward_kd_heads`` gives the pair.
* Hidden widths are ``int(dim * mlp_ratios)``; the official conv blocks reshape to ``4 * dim`` whatever the
  ratio, so only ``mlp_ratios=4`` (every official configuration) runs there.
* Image sides must be multiples of 16 (the official convs would also take other sizes, rounding the grid
  up). Only static images ``[B, C, H, W]`` are taken, as officially.
* Accepted and ignored, as officially: ``img_size_h``, ``img_size_w``, ``patch_size``, ``qkv_bias``,
  ``qk_scale`` (the scale is always 0.125), ``drop_rate``, ``attn_drop_rate``, ``norm_layer`` (no norm
  layer is built), ``sr_ratios``, ``depths`` and ``drop_path_rate`` (they only size a drop-path list that
  the official blocks never apply; the 6 + 2 blocks are fixed).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import UsageError, UsageTypeError, check_int
from ._registry import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DataConfig,
    ModelConfig,
    register_model,
    register_official_class,
)
from .base import SpikingTransformer
from .layers import LIF, SpikeProduct, pointwise_conv_bn
from .protocol import BlockPart, TokenBlock, TPDefaults

SOURCE = "BICLab/Spike-Driven-Transformer-V2@35f245f classification/models.py:Spiking_vit_MetaFormer"


def _lif(v_threshold: float = 1.0) -> LIF:
    """The official neuron: ``MultiStepLIFNode(tau=2.0, detach_reset=True)`` (hard reset to 0)."""
    return LIF(tau=2.0, v_threshold=v_threshold)


def _per_frame(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a 2-D module to every frame of ``[T, B, C, H, W]``; returns ``[T, B, C', H', W']``."""
    return module(x.flatten(0, 1)).unflatten(0, x.shape[:2])


class SpikeDownsampling(nn.Module):
    """``MS_DownSampling``: ``[LIF ->] Conv2d (with bias) -> BN`` on ``[T, B, C, H, W]``; the first reads the
    image and has no LIF."""

    def __init__(
        self,
        in_channels: int,
        embed_dims: int,
        kernel_size: int = 3,
        stride: int = 2,
        padding: int = 1,
        first_layer: bool = True,
    ):
        super().__init__()
        self.encode_conv = nn.Conv2d(in_channels, embed_dims, kernel_size, stride=stride, padding=padding)
        self.encode_bn = nn.BatchNorm2d(embed_dims)
        self.first_layer = first_layer
        if not first_layer:
            self.encode_lif = _lif()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.first_layer:
            x = self.encode_lif(x)
        return _per_frame(lambda z: self.encode_bn(self.encode_conv(z)), x)


class SepConv(nn.Module):
    """``SepConv``: ``LIF -> 1x1 conv-BN (dim -> 2 dim) -> LIF -> 7x7 depthwise conv -> 1x1 conv-BN`` on
    ``[T, B, C, H, W]`` (no BN after the depthwise conv); the caller adds the residual."""

    def __init__(self, dim: int, expansion_ratio: float = 2, kernel_size: int = 7, padding: int = 3):
        super().__init__()
        med = int(expansion_ratio * dim)
        self.lif1 = _lif()
        self.pwconv1 = nn.Conv2d(dim, med, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(med)
        self.lif2 = _lif()
        self.dwconv = nn.Conv2d(med, med, kernel_size, padding=padding, groups=med, bias=False)
        self.pwconv2 = nn.Conv2d(med, dim, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _per_frame(lambda z: self.bn1(self.pwconv1(z)), self.lif1(x))
        return _per_frame(lambda z: self.bn2(self.pwconv2(self.dwconv(z))), self.lif2(x))


class ConvBlock(nn.Module):
    """``MS_ConvBlock``: ``x + SepConv(x)``, then ``x + BN(conv3x3(LIF(BN(conv3x3(LIF(x))))))`` with
    ``mlp_ratio * dim`` hidden channels. Input and output ``[T, B, C, H, W]``."""

    def __init__(self, dim: int, mlp_ratio: float = 4):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.Conv = SepConv(dim)
        self.lif1 = _lif()
        self.conv1 = nn.Conv2d(dim, hidden, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.lif2 = _lif()
        self.conv2 = nn.Conv2d(hidden, dim, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.Conv(x)
        h = _per_frame(lambda z: self.bn1(self.conv1(z)), self.lif1(x))
        return x + _per_frame(lambda z: self.bn2(self.conv2(z)), self.lif2(h))


class BNAndPad(nn.Module):
    """``BNAndPadLayer``: BatchNorm, then a ``pad_pixels`` border filled with the BN's output for a zero
    input, ``bias - running_mean * weight / sqrt(running_var + eps)`` per channel (key ``.bn.*``).

    The border value uses the running statistics in training mode too, as officially.
    """

    def __init__(self, pad_pixels: int, num_features: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features)
        self.pad_pixels = pad_pixels

    def border_value(self) -> torch.Tensor:
        bn = self.bn
        scale = torch.sqrt(bn.running_var + bn.eps)
        if bn.affine:
            return bn.bias.detach() - bn.running_mean * bn.weight.detach() / scale
        return -bn.running_mean / scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(x)
        p = self.pad_pixels
        if p <= 0:
            return y
        n, c, h, w = y.shape
        # a border of the per-channel value around the BN output, copied in unchanged (exact, differentiable)
        out = torch.empty(
            (n, c, h + 2 * p, w + 2 * p), dtype=y.dtype, device=y.device, memory_format=_memory_format(y)
        )
        out.copy_(self.border_value().to(y.dtype).view(1, c, 1, 1).expand_as(out))
        out[:, :, p:-p, p:-p] = y
        return out


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    if x.is_contiguous():
        return torch.contiguous_format
    return (
        torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    )


class RepConv(nn.Module):
    """``RepConv``: ``body = [1x1 conv, BNAndPad(1), Sequential(3x3 depthwise conv (no padding), 1x1 conv,
    BN)]`` on ``[M, C, H, W]``; output ``[M, C_out, H, W]``."""

    def __init__(self, in_channel: int, out_channel: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channel, in_channel, 1, 1, 0, bias=False),
            BNAndPad(pad_pixels=1, num_features=in_channel),
            nn.Sequential(
                nn.Conv2d(in_channel, in_channel, 3, 1, 0, groups=in_channel, bias=False),
                nn.Conv2d(in_channel, out_channel, 1, 1, 0, bias=False),
                nn.BatchNorm2d(out_channel),
            ),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _repconv_bn(dim: int) -> nn.Sequential:
    """``Sequential(RepConv(dim, dim), BatchNorm2d(dim))`` (keys ``.0.body.*``, ``.1.*``)."""
    return nn.Sequential(RepConv(dim, dim), nn.BatchNorm2d(dim))


class RepConvAttention(nn.Module):
    """``MS_Attention_RepConv_qkv_id``, split into its dense and token-wise parts (see the module docstring).

    ``project_qkv`` (grid ``[T, B, C, H, W]``): ``head_lif`` and the q/k/v RepConv projections, before their
    LIFs. ``attend`` (tokens ``[T, B, C, N]``): q/k/v LIFs, per head ``q (k^T v) * 0.125``, ``attn_lif``.
    ``project_out`` (grid): the output RepConv projection.
    """

    def __init__(self, dim: int, num_heads: int = 8):
        super().__init__()
        if dim % num_heads:
            raise UsageError(f"embed dim {dim} must be divisible by num_heads {num_heads}")
        self.dim, self.num_heads = dim, num_heads
        self.scale = 0.125
        self.head_lif = _lif()
        self.q_conv = _repconv_bn(dim)
        self.k_conv = _repconv_bn(dim)
        self.v_conv = _repconv_bn(dim)
        self.q_lif = _lif()
        self.k_lif = _lif()
        self.v_lif = _lif()
        self.attn_lif = _lif(v_threshold=0.5)
        self.proj_conv = _repconv_bn(dim)
        self.kv_product = SpikeProduct("matmul")  # K^T V: [d, N] x [N, d] per head
        self.q_kv_product = SpikeProduct("matmul")  # Q (K^T V): [N, d] x [d, d]

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}, scale={self.scale}"

    def project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        s = self.head_lif(x)  # [T, B, C, H, W]
        return tuple(_per_frame(conv, s) for conv in (self.q_conv, self.k_conv, self.v_conv))

    def _split_heads(self, z: torch.Tensor) -> torch.Tensor:
        t, b, c, n = z.shape
        z = z.transpose(2, 3).reshape(t, b, n, self.num_heads, c // self.num_heads)  # [T, B, N, h, d]
        return z.transpose(2, 3)  # [T, B, h, N, d]

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        t, b, c, n = q.shape
        q = self._split_heads(self.q_lif(q))
        k = self._split_heads(self.k_lif(k))
        v = self._split_heads(self.v_lif(v))
        out = self.q_kv_product(q, self.kv_product(k.transpose(-2, -1), v)) * self.scale  # [T, B, h, N, d]
        return self.attn_lif(out.transpose(3, 4).reshape(t, b, c, n))  # [T, B, C, N]

    def project_out(self, a: torch.Tensor) -> torch.Tensor:
        return _per_frame(self.proj_conv, a)  # [T, B, C, H, W]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The whole attention on a grid ``[T, B, C, H, W]`` (branch output, without the residual)."""
        h, w = x.shape[-2:]
        q, k, v = (z.flatten(-2) for z in self.project_qkv(x))
        return self.project_out(self.attend(q, k, v).unflatten(-1, (h, w)))


class SpikingMLP(nn.Module):
    """``MS_MLP``: ``BN1d(Conv1d(LIF(BN1d(Conv1d(LIF(x))))))`` on tokens ``[T, B, C, N]``; no residual."""

    def __init__(self, in_features: int, hidden_features: int):
        super().__init__()
        self.fc1_conv = nn.Conv1d(in_features, hidden_features, 1, 1)
        self.fc1_bn = nn.BatchNorm1d(hidden_features)
        self.fc1_lif = _lif()
        self.fc2_conv = nn.Conv1d(hidden_features, in_features, 1, 1)
        self.fc2_bn = nn.BatchNorm1d(in_features)
        self.fc2_lif = _lif()
        self.c_hidden, self.c_output = hidden_features, in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tb = x.shape[:2]
        h = pointwise_conv_bn(self.fc1_lif(x).flatten(0, 1), self.fc1_conv, self.fc1_bn)  # [T*B, hidden, N]
        h = self.fc2_lif(h.unflatten(0, tb)).flatten(0, 1)
        return pointwise_conv_bn(h, self.fc2_conv, self.fc2_bn).unflatten(0, tb)  # [T, B, C, N]


class MetaSpikeFormerBlock(TokenBlock):
    """``MS_Block``: ``x + Attn(x)``, ``x + MLP(x)``, as four ordered dense/token parts (module docstring)."""

    token_layout = "TBCHW"

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.attn = RepConvAttention(dim, num_heads=num_heads)
        self.mlp = SpikingMLP(dim, int(dim * mlp_ratio))

    def _qkv_part(self, x: torch.Tensor):
        return (x, *self.attn.project_qkv(x))  # grid: (x, q, k, v) before the q/k/v LIFs

    def _attend_part(self, x: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        return x, self.attn.attend(q, k, v)  # tokens: (x, attention spikes)

    def _proj_part(self, x: torch.Tensor, a: torch.Tensor):
        return x, self.attn.project_out(a)  # grid: (x, projected attention)

    def _residual_mlp_part(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        x = x + p  # [T, B, C, N]
        return x + self.mlp(x)

    def block_parts(self) -> tuple[BlockPart, ...]:
        return (
            BlockPart("dense", self._qkv_part),
            BlockPart("token", self._attend_part),
            BlockPart("dense", self._proj_part),
            BlockPart("token", self._residual_mlp_part),
        )


class MetaSpikeFormer(SpikingTransformer):
    """Meta-SpikeFormer (``Spiking_vit_MetaFormer``). Constructor arguments are the official ones, plus ``T``.

    Input: images ``[B, C, H, W]`` with sides that are multiples of 16, repeated over ``T``. Output: logits
    ``[B, classes]``. ``forward_features`` returns the last grid ``[T, B, embed_dim[3], H/16, W/16]``;
    ``feature_info`` / ``forward_intermediates`` give the five stage outputs (``stage_info``).
    """

    family = "sdt_v2"
    static_input = True
    event_input = False
    input_multiple = 16
    head_modules = ("head", "head_kd", "lif")
    # the official detection (SDT_V3/Detection .../backbones/sdt.py: strides 4/8/16/16) and segmentation
    # (SDT_V3/Segmentation .../backbones/sdtv2.py: strides 2/4/8/16) backbones built on this model
    feature_layouts = {"detection": (1, 2, 3, 4), "segmentation": (0, 1, 2, 4)}

    def __init__(
        self,
        img_size_h: int = 224,
        img_size_w: int = 224,
        patch_size: int = 16,
        in_channels: int = 3,
        num_classes: int = 1000,
        embed_dim: Sequence[int] = (128, 256, 512, 640),
        num_heads: int = 8,
        mlp_ratios: float = 4,
        qkv_bias: bool = False,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_layer=None,
        depths: int = 8,
        sr_ratios: int = 1,
        kd: bool = False,
        T: int = 1,
    ):
        super().__init__()
        if isinstance(embed_dim, int) or len(embed_dim) != 4:
            raise UsageError(
                f"embed_dim needs 4 stage widths (e.g. [128, 256, 512, 640] for the 55M model), got {embed_dim!r}"
            )
        embed_dim = [int(d) for d in embed_dim]
        if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
            raise UsageTypeError(
                f"num_heads must be one positive int shared by all blocks (official builders use 8), got {num_heads!r}"
            )
        if embed_dim[0] % 2:
            raise UsageError(
                f"embed_dim[0] must be even (the stem starts at embed_dim[0] // 2), got {embed_dim[0]}"
            )
        for d in embed_dim[2:]:
            if d % num_heads:
                raise UsageError(f"embed_dim {embed_dim}: {d} is not divisible by num_heads={num_heads}")
        if isinstance(T, bool) or not isinstance(T, int) or T < 1:
            raise UsageError(
                f"T must be a positive int (time steps; official 1, or 4 for the kd models), got {T!r}"
            )
        self.T, self.kd = T, bool(kd)
        check_int("num_classes", num_classes, minimum=0)
        self.num_classes, self.in_channels, self.embed_dim = num_classes, in_channels, embed_dim
        self.num_heads, self.depths, self.img_size = num_heads, depths, (img_size_h, img_size_w)
        e0, e1, e2, e3 = embed_dim

        self.downsample1_1 = SpikeDownsampling(in_channels, e0 // 2, 7, 2, 3, first_layer=True)
        self.ConvBlock1_1 = nn.ModuleList([ConvBlock(e0 // 2, mlp_ratios)])
        self.downsample1_2 = SpikeDownsampling(e0 // 2, e0, 3, 2, 1, first_layer=False)
        self.ConvBlock1_2 = nn.ModuleList([ConvBlock(e0, mlp_ratios)])
        self.downsample2 = SpikeDownsampling(e0, e1, 3, 2, 1, first_layer=False)
        self.ConvBlock2_1 = nn.ModuleList([ConvBlock(e1, mlp_ratios)])
        self.ConvBlock2_2 = nn.ModuleList([ConvBlock(e1, mlp_ratios)])
        self.downsample3 = SpikeDownsampling(e1, e2, 3, 2, 1, first_layer=False)
        self.block3 = nn.ModuleList(MetaSpikeFormerBlock(e2, num_heads, mlp_ratios) for _ in range(6))
        self.downsample4 = SpikeDownsampling(e2, e3, 3, 1, 1, first_layer=False)
        self.block4 = nn.ModuleList(MetaSpikeFormerBlock(e3, num_heads, mlp_ratios) for _ in range(2))
        self.lif = _lif()
        self.head = nn.Linear(e3, num_classes) if num_classes > 0 else nn.Identity()
        if self.kd:
            self.head_kd = nn.Linear(e3, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(_init_weights)

    def stage_info(self) -> list[dict]:
        """Stage outputs ``[T, B, C, H/r, W/r]``: the conv stages at strides 2, 4 and 8, ``block3`` and ``block4``
        at stride 16 (``downsample4`` has stride 1). ``feature_layouts`` names the official selections."""
        e0, e1, e2, e3 = self.embed_dim
        return [
            {"num_chs": e0 // 2, "reduction": 2, "module": "ConvBlock1_1"},
            {"num_chs": e0, "reduction": 4, "module": "ConvBlock1_2"},
            {"num_chs": e1, "reduction": 8, "module": "ConvBlock2_2"},
            {"num_chs": e2, "reduction": 16, "module": "block3"},
            {"num_chs": e3, "reduction": 16, "module": "block4"},
        ]

    def stage_outputs(self, x: torch.Tensor):
        x = self.downsample1_1(self.prepare_input(x))
        for blk in self.ConvBlock1_1:
            x = blk(x)
        yield x  # [T, B, E0/2, H/2, W/2]
        x = self.downsample1_2(x)
        for blk in self.ConvBlock1_2:
            x = blk(x)
        yield x  # [T, B, E0, H/4, W/4]
        x = self.downsample2(x)
        for blk in (*self.ConvBlock2_1, *self.ConvBlock2_2):
            x = blk(x)
        yield x  # [T, B, E1, H/8, W/8]
        x = self.downsample3(x)
        for blk in self.block3:
            x = blk(x)
        yield x  # [T, B, E2, H/16, W/16]
        x = self.downsample4(x)
        for blk in self.block4:
            x = blk(x)
        yield x  # [T, B, E3, H/16, W/16]

    def tp_defaults(self, num_blocks: int) -> TPDefaults:
        """No official TP code covers SDT-V2 (ours, see the module docstring): window 3 and, for the 6 + 2
        blocks on one grid, the official SDT-V3 side ratios 0.9, 0.8 x 3, 0.75, 0.65 x 3 (same macro layout).
        Another block count: 54 % of the tokens per block, that schedule's mean kept share on 14x14."""
        return TPDefaults(
            window=3,
            keep_rule="side_ratio",
            keep_values=(0.9, 0.8, 0.8, 0.8, 0.75, 0.65, 0.65, 0.65) if num_blocks == 8 else None,
            fallback_fraction=0.54,
            source="ours (no official TP code for SDT-V2): the official SDT-V3 k_values, same 6+2 block layout",
        )

    def _head_input(self, features: torch.Tensor) -> torch.Tensor:
        if features.dim() != 5:
            raise UsageError(f"forward_head expects features [T, B, C, H, W], got {list(features.shape)}")
        return self.lif(features.flatten(3).mean(3))  # [T, B, C] spikes

    def forward_kd_heads(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(head logits, head_kd logits)``, each averaged over T (models built with ``kd=True``)."""
        if not self.kd:
            raise UsageError(
                "this model has no head_kd: build it with kd=True (the T=4 fine-tuned checkpoints)"
            )
        s = self._head_input(features)
        return self.head(s).mean(0), self.head_kd(s).mean(0)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Mean over tokens -> LIF -> ``head`` per step -> mean over T (kd: mean of both heads)."""
        if self.kd:
            logits, logits_kd = self.forward_kd_heads(features)
            return (logits + logits_kd) / 2
        return self.head(self._head_input(features)).mean(0)  # [B, classes]


def _init_weights(m: nn.Module) -> None:
    """The official initialisation: truncated normal (std 0.02) Linear weights, zero Linear biases;
    convolutions and BN keep PyTorch's defaults."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


# -- named configurations ---------------------------------------------------------------------------

register_official_class("sdt_v2", "imagenet", MetaSpikeFormer)
register_official_class("sdt_v2", "imagenet_kd", MetaSpikeFormer)

# classification/util/datasets.py: Resize(int(224 / (224 / 256))) bicubic + CenterCrop 224, ImageNet mean/std
_IMAGENET_DATA = DataConfig(
    (3, 224, 224), crop_pct=224 / 256, interpolation="bicubic", mean=IMAGENET_MEAN, std=IMAGENET_STD
)


def _register(name, variant, description, data, official_params=None, tiny=False, keys=None, **kwargs):
    register_model(
        ModelConfig(
            name=name,
            family="sdt_v2",
            variant=variant,
            builder=MetaSpikeFormer,
            kwargs=kwargs,
            data=data,
            num_classes=kwargs["num_classes"],
            T=kwargs["T"],
            source=SOURCE,
            description=description,
            official_params=official_params,
            tiny=tiny,
            extra={"official_keys": keys} if keys else {},
        )
    )


for _size, _dims, _params, _params_kd, _how in (
    ("15m", (64, 128, 256, 360), 15_112_208, 15_473_208, "the paper's 15.1M model; no builder in models.py"),
    ("31m", (96, 192, 384, 480), 31_333_864, 31_814_864, "metaspikformer_8_384"),
    ("55m", (128, 256, 512, 640), 55_350_248, 55_991_248, "metaspikformer_8_512, train.sh / eval.sh"),
    ("124m", (192, 384, 768, 960), 123_741_160, 124_702_160, "metaspikformer_8_768, not in the paper"),
):
    _label = _size.upper()
    _common = {
        "img_size_h": 224,
        "img_size_w": 224,
        "patch_size": 16,
        "in_channels": 3,
        "num_classes": 1000,
        "embed_dim": _dims,
        "num_heads": 8,
        "mlp_ratios": 4,
        "qkv_bias": False,
        "depths": 8,
        "sr_ratios": 1,
    }
    _register(
        f"sdt_v2_{_size}_imagenet",
        "imagenet",
        f"Meta-SpikeFormer (SDT-V2) {_label} ImageNet-1k, T=1, 224px ({_how}; dims {list(_dims)}, 8 heads)",
        _IMAGENET_DATA,
        _params,
        keys=f"sdt_v2_{_label}",
        kd=False,
        T=1,
        **_common,
    )
    _register(
        f"sdt_v2_{_size}_imagenet_kd",
        "imagenet_kd",
        f"Meta-SpikeFormer (SDT-V2) {_label} ImageNet-1k, T=4 with the distillation head head_kd "
        f"({_how} with kd=True, as train_finetune_from_t1_to_t4.sh fine-tunes it"
        + ("; the released 55M checkpoint)" if _size == "55m" else ")"),
        _IMAGENET_DATA,
        _params_kd,
        keys=f"sdt_v2_{_label}_kd",
        kd=True,
        T=4,
        **_common,
    )

_register(
    "sdt_v2_tiny",
    "imagenet",
    "tiny Meta-SpikeFormer for tests: dims 8/16/32/32, 4 heads, 6+2 blocks, T=2, 64px, 4x4 tokens, 10 classes",
    DataConfig((3, 64, 64), crop_pct=None, mean=IMAGENET_MEAN, std=IMAGENET_STD),
    tiny=True,
    img_size_h=64,
    img_size_w=64,
    patch_size=16,
    in_channels=3,
    num_classes=10,
    embed_dim=(8, 16, 32, 32),
    num_heads=4,
    mlp_ratios=4,
    qkv_bias=False,
    depths=8,
    sr_ratios=1,
    kd=False,
    T=2,
)
