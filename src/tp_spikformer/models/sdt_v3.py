"""Spike-driven Transformer V3 / E-SpikeFormer, base models (Yao et al., TPAMI 2025).

Official code: BICLab/Spike-Driven-Transformer-V3 @ 00fcd1f
(``SDT_V3/Classification/Model_Base/models.py``, class ``Spiking_vit_MetaFormer_Spike_SepConv``, builders
``Efficient_Spiking_Transformer_{t,s,m,l}``). Attribute names follow it, so official checkpoints load key
for key.

The network has no time axis: every activation is a multi-level "integer spike"
``round(clamp(x, 0, 4)) / 4`` (``layers.MultiSpike``, round half to even); the classifier reads integers
0..4. Layout: a conv stem of four stride-2 downsamplings with SepConv conv blocks (``H/16`` grid), six
transformer blocks at ``embed_dim[2]``, a stride-1 ``downsample4`` to ``embed_dim[3]`` and two more
blocks. Each transformer block is ``x + SepConv(x)`` (3x3 depthwise, needs the grid), then
``x + Attn(x)`` and ``x + MLP(x)`` (per token apart from the attention's sums over tokens).

Modifications (behaviour is the official one unless said here):

* Transformer blocks keep the ``[B, C, H, W]`` layout between them; the SepConv runs in
  ``dense_forward`` on the whole grid, attention + MLP run in ``token_forward`` on channel-first tokens
  ``[B, C, N]`` (block protocol, ``protocol.py``); the 1x1 Conv2d layers of the attention run on an
  ``[B, C, N, 1]`` view. The attention products ``q @ k^T`` and ``(.) @ v`` are ``SpikeProduct`` modules.
* The official class defaults (a 3-entry ``embed_dim`` and a list ``num_heads``) crash the official
  constructor; our defaults are those of ``Efficient_Spiking_Transformer_l``.
* Accepted and ignored, as officially: ``img_size_h``, ``img_size_w``, ``patch_size``, ``qkv_bias``,
  ``qk_scale`` (the scale is always ``2 / sqrt(dim // num_heads)``), ``drop_rate``, ``attn_drop_rate``,
  ``norm_layer`` (no norm layer is built), ``sr_ratios`` and ``depths`` / ``drop_path_rate`` (they only
  size a drop-path list whose modules the official forward never calls; the 6 + 2 blocks are fixed).
* Image sides must be multiples of 16 (the official convs would also take other sizes, rounding the
  grid up); 5-D (time-axis / event) input is rejected with an explanation, since the model has no T.
* ``mlp_ratios`` widths are ``int(dim * mlp_ratios)`` everywhere (the official conv blocks use
  ``dim * mlp_ratios``, which only works for integer ratios; same result for those).
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
from .layers import MultiSpike, SpikeProduct, pointwise_conv_bn
from .protocol import TokenBlock, TPDefaults

SOURCE = (
    "BICLab/Spike-Driven-Transformer-V3@00fcd1f SDT_V3/Classification/Model_Base/models.py:"
    "Spiking_vit_MetaFormer_Spike_SepConv"
)


def _conv_bn(
    in_ch: int, out_ch: int, kernel_size: int = 1, padding: int = 0, groups: int = 1
) -> nn.Sequential:
    """``Sequential(Conv2d without bias, BatchNorm2d)`` (keys ``.0.weight``, ``.1.*``)."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size, stride=1, padding=padding, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    )


class SpikeDownsampling(nn.Module):
    """``MS_DownSampling``: ``[MultiSpike ->] Conv2d (with bias) -> BN``; the first one reads the image."""

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
            self.encode_spike = MultiSpike()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.first_layer:
            x = self.encode_spike(x)
        return self.encode_bn(self.encode_conv(x))


class SepConvSpike(nn.Module):
    """``SepConv_Spike``: inverted separable conv with a multi-spike before each of its three convs.

    ``spike -> 1x1 conv-BN (dim -> 2 dim) -> spike -> kxk depthwise conv-BN -> spike -> 1x1 conv-BN
    (2 dim -> dim)`` on ``[B, C, H, W]``; the caller adds the residual.
    """

    def __init__(self, dim: int, expansion_ratio: float = 2, kernel_size: int = 7, padding: int = 3):
        super().__init__()
        med = int(expansion_ratio * dim)
        self.spike1 = MultiSpike()
        self.pwconv1 = _conv_bn(dim, med)
        self.spike2 = MultiSpike()
        self.dwconv = _conv_bn(med, med, kernel_size, padding=padding, groups=med)
        self.spike3 = MultiSpike()
        self.pwconv2 = _conv_bn(med, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dwconv(self.spike2(self.pwconv1(self.spike1(x))))
        return self.pwconv2(self.spike3(x))


class SepConvBlock(nn.Module):
    """``MS_ConvBlock_spike_SepConv``: ``x + SepConv(x)`` (7x7), then a residual pair of spiking 3x3 convs
    ``dim -> mlp_ratio * dim -> dim``. Input and output ``[B, C, H, W]``."""

    def __init__(self, dim: int, mlp_ratio: float = 4):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.Conv = SepConvSpike(dim)
        self.mlp_ratio = mlp_ratio
        self.spike1 = MultiSpike()
        self.conv1 = nn.Conv2d(dim, hidden, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.spike2 = MultiSpike()
        self.conv2 = nn.Conv2d(hidden, dim, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.Conv(x)
        h = self.bn1(self.conv1(self.spike1(x)))
        return x + self.bn2(self.conv2(self.spike2(h)))


class LinearSpikeAttention(nn.Module):
    """``MS_Attention_linear`` (``lamda_ratio=4``) on tokens ``[B, C, N]``; returns the branch output.

    ``s = MultiSpike(x)``; ``Q, K = MultiSpike(BN(1x1 conv(s)))`` with ``C`` channels, ``V`` likewise with
    ``lamda_ratio * C``; per head ``(Q K^T) V * 2 / sqrt(C / heads)`` (no softmax; the sum runs over the
    ``N`` tokens given); ``MultiSpike``; ``BN(1x1 conv)`` back to ``C`` channels.
    """

    def __init__(self, dim: int, num_heads: int = 8, lamda_ratio: int = 4):
        super().__init__()
        if dim % num_heads:
            raise UsageError(f"embed dim {dim} must be divisible by num_heads {num_heads}")
        self.dim, self.num_heads, self.lamda_ratio = dim, num_heads, lamda_ratio
        self.scale = (dim // num_heads) ** -0.5
        self.head_spike = MultiSpike()
        self.q_conv = _conv_bn(dim, dim)
        self.q_spike = MultiSpike()
        self.k_conv = _conv_bn(dim, dim)
        self.k_spike = MultiSpike()
        self.v_conv = _conv_bn(dim, int(dim * lamda_ratio))
        self.v_spike = MultiSpike()
        self.attn_spike = MultiSpike()
        self.proj_conv = _conv_bn(int(dim * lamda_ratio), dim)
        self.qk_product = SpikeProduct("matmul")
        self.qkv_product = SpikeProduct("matmul")

    def _heads(self, z: torch.Tensor) -> torch.Tensor:
        b, c, n = z.shape
        return z.reshape(b, self.num_heads, c // self.num_heads, n).transpose(-1, -2)  # [B, h, N, C/h]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, n = x.shape
        s = self.head_spike(x)
        q = self.q_spike(pointwise_conv_bn(s, self.q_conv[0], self.q_conv[1]))  # [B, C, N]
        k = self.k_spike(pointwise_conv_bn(s, self.k_conv[0], self.k_conv[1]))  # [B, C, N]
        v = self.v_spike(pointwise_conv_bn(s, self.v_conv[0], self.v_conv[1]))  # [B, 4C, N]
        q, k, v = self._heads(q), self._heads(k), self._heads(v)
        attn = self.qk_product(q, k.transpose(-2, -1))  # [B, h, N, N]
        out = self.qkv_product(attn, v) * (self.scale * 2)  # [B, h, N, 4C/h]
        out = self.attn_spike(out.transpose(-1, -2).reshape(b, -1, n))  # [B, 4C, N]
        return pointwise_conv_bn(out, self.proj_conv[0], self.proj_conv[1])  # [B, C, N]


class SpikeMLP(nn.Module):
    """``MS_MLP``: ``BN1d(Conv1d(MultiSpike(BN1d(Conv1d(MultiSpike(x))))))`` on tokens ``[B, C, N]``."""

    def __init__(self, in_features: int, hidden_features: int):
        super().__init__()
        self.fc1_conv = nn.Conv1d(in_features, hidden_features, 1, 1)
        self.fc1_bn = nn.BatchNorm1d(hidden_features)
        self.fc1_spike = MultiSpike()
        self.fc2_conv = nn.Conv1d(hidden_features, in_features, 1, 1)
        self.fc2_bn = nn.BatchNorm1d(in_features)
        self.fc2_spike = MultiSpike()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = pointwise_conv_bn(self.fc1_spike(x), self.fc1_conv, self.fc1_bn)  # [B, hidden, N]
        return pointwise_conv_bn(self.fc2_spike(h), self.fc2_conv, self.fc2_bn)  # [B, C, N]


class SepConvTransformerBlock(TokenBlock):
    """``MS_Block_Spike_SepConv``: ``x + SepConv(x)`` (3x3, dense), then ``x + Attn(x)``, ``x + MLP(x)``."""

    token_layout = "BCHW"

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float = 4, layer_scale_init_value: float | None = None
    ):
        super().__init__()
        self.conv = SepConvSpike(dim, kernel_size=3, padding=1)
        self.attn = LinearSpikeAttention(dim, num_heads=num_heads, lamda_ratio=4)
        self.mlp = SpikeMLP(dim, int(dim * mlp_ratio))
        if (
            layer_scale_init_value is not None
        ):  # the official segmentation backbone's per-channel branch scales
            for i in (1, 2, 3):
                setattr(
                    self, f"layer_scale{i}", nn.Parameter(torch.full((dim,), float(layer_scale_init_value)))
                )

    @property
    def has_layer_scale(self) -> bool:
        return "layer_scale1" in self._parameters

    def dense_forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.conv(x)  # [B, C, H, W]
        if self.has_layer_scale:
            branch = branch * self.layer_scale1[None, :, None, None]
        return x + branch

    def token_forward(self, tokens: torch.Tensor) -> torch.Tensor:
        branch = self.attn(tokens)  # [B, C, N]
        if self.has_layer_scale:
            branch = branch * self.layer_scale2[None, :, None]
        x = tokens + branch
        branch = self.mlp(x)
        if self.has_layer_scale:
            branch = branch * self.layer_scale3[None, :, None]
        return x + branch


class EfficientSpikeFormer(SpikingTransformer):
    """E-SpikeFormer base model. Constructor arguments are those of the official class.

    Input: images ``[B, C, H, W]`` with sides that are multiples of 16 (no time axis). Output: logits
    ``[B, classes]``. ``forward_features`` returns the last grid ``[B, embed_dim[3], H/16, W/16]``.
    """

    family = "sdt_v3"
    T = None
    static_input = True
    event_input = False
    input_multiple = 16
    head_modules = ("head", "spike")
    # the official detection (SDEFormer: strides 4/8/16/16) and segmentation (strides 2/4/8/16) backbones
    feature_layouts = {"detection": (1, 2, 3, 4), "segmentation": (0, 1, 2, 4)}

    def __init__(
        self,
        img_size_h: int = 224,
        img_size_w: int = 224,
        patch_size: int = 16,
        in_channels: int = 3,
        num_classes: int = 1000,
        embed_dim: Sequence[int] = (64, 128, 256, 360),
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
        layer_scale_init_value: float | None = None,
    ):
        super().__init__()
        embed_dim = [int(d) for d in embed_dim]
        if len(embed_dim) != 4:
            raise UsageError(
                f"embed_dim needs 4 stage widths (e.g. [64, 128, 256, 360] for the 19M model), got {embed_dim}"
            )
        if not isinstance(num_heads, int):
            raise UsageTypeError(
                f"num_heads must be one int shared by all blocks (official builders use 8), got {num_heads!r}"
            )
        if embed_dim[0] % 2:
            raise UsageError(
                f"embed_dim[0] must be even (the stem starts at embed_dim[0] // 2), got {embed_dim[0]}"
            )
        for d in embed_dim[2:]:
            if d % num_heads:
                raise UsageError(f"embed_dim {embed_dim}: {d} is not divisible by num_heads={num_heads}")
        check_int("num_classes", num_classes, minimum=0)
        self.num_classes, self.in_channels, self.embed_dim = num_classes, in_channels, embed_dim
        self.num_heads, self.depths, self.img_size = num_heads, depths, (img_size_h, img_size_w)
        e0, e1, e2, e3 = embed_dim

        self.downsample1_1 = SpikeDownsampling(in_channels, e0 // 2, 7, 2, 3, first_layer=True)
        self.ConvBlock1_1 = nn.ModuleList([SepConvBlock(e0 // 2, mlp_ratios)])
        self.downsample1_2 = SpikeDownsampling(e0 // 2, e0, 3, 2, 1, first_layer=False)
        self.ConvBlock1_2 = nn.ModuleList([SepConvBlock(e0, mlp_ratios)])
        self.downsample2 = SpikeDownsampling(e0, e1, 3, 2, 1, first_layer=False)
        self.ConvBlock2_1 = nn.ModuleList([SepConvBlock(e1, mlp_ratios)])
        self.ConvBlock2_2 = nn.ModuleList([SepConvBlock(e1, mlp_ratios)])
        self.downsample3 = SpikeDownsampling(e1, e2, 3, 2, 1, first_layer=False)
        ls = layer_scale_init_value
        self.block3 = nn.ModuleList(SepConvTransformerBlock(e2, num_heads, mlp_ratios, ls) for _ in range(6))
        self.downsample4 = SpikeDownsampling(e2, e3, 3, 1, 1, first_layer=False)
        self.block4 = nn.ModuleList(SepConvTransformerBlock(e3, num_heads, mlp_ratios, ls) for _ in range(2))
        if ls is not None:
            # a classification checkpoint has no layer scales: they keep their initial value (reported)
            self.init_only_keys = (r"block[34]\.\d+\.layer_scale[123]",)
        self.head = nn.Linear(e3, num_classes) if num_classes > 0 else nn.Identity()
        self.spike = MultiSpike(norm=1)
        self.apply(_init_weights)

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(x, torch.Tensor) and x.dim() == 5:
            raise UsageError(
                f"{type(self).__name__} (SDT-V3 base) has no time axis: it takes images [B, "
                f"{self.in_channels}, H, W], got a 5-D tensor {list(x.shape)}. Its multi-spike activations "
                "replace time steps, so pass one image per sample (e.g. x[:, 0] or x.mean(1) for frames)."
            )
        return super().prepare_input(x)

    def stage_info(self) -> list[dict]:
        """Stage outputs ``[B, C, H/r, W/r]``: the conv stages at strides 2, 4 and 8, ``block3`` and ``block4``
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
        yield x  # [B, E0/2, H/2, W/2]
        x = self.downsample1_2(x)
        for blk in self.ConvBlock1_2:
            x = blk(x)
        yield x  # [B, E0, H/4, W/4]
        x = self.downsample2(x)
        for blk in (*self.ConvBlock2_1, *self.ConvBlock2_2):
            x = blk(x)
        yield x  # [B, E1, H/8, W/8]
        x = self.downsample3(x)
        for blk in self.block3:
            x = blk(x)
        yield x  # [B, E2, H/16, W/16]
        x = self.downsample4(x)
        for blk in self.block4:
            x = blk(x)
        yield x  # [B, E3, H/16, W/16]

    def tp_defaults(self, num_blocks: int) -> TPDefaults:
        """Official TP code (``sdtv3_drop/models_drop.py``): window 3, side ratios 0.9, 0.8 x 3, 0.75, 0.65 x 3
        for the 8 transformer blocks (spatial scorer only: no time axis). Another block count (a model
        holding several backbones, say): 54 % of the tokens per block, the official schedule's mean kept
        share on 14x14 (paper.md §1.5)."""
        official = num_blocks == 8
        return TPDefaults(
            window=3,
            keep_rule="side_ratio",
            keep_values=(0.9, 0.8, 0.8, 0.8, 0.75, 0.65, 0.65, 0.65) if official else None,
            fallback_fraction=0.54,
            source="sdtv3_drop/models_drop.py k_values (Efficient_Spiking_Transformer_l)",
        )

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Mean over tokens -> integer spike 0..4 -> ``head``."""
        return self.head(self.spike(features.flatten(2).mean(2)))  # [B, classes]


def _init_weights(m: nn.Module) -> None:
    """The official initialisation: truncated normal (std 0.02) Linear weights, zero Linear biases;
    convolutions and BN keep PyTorch's defaults."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


# -- named configurations ---------------------------------------------------------------------------

register_official_class("sdt_v3", "base", EfficientSpikeFormer)

_IMAGENET_DATA = DataConfig(
    (3, 224, 224), crop_pct=224 / 232, interpolation="bicubic", mean=IMAGENET_MEAN, std=IMAGENET_STD
)


def _register(name, description, data, official_params=None, tiny=False, **kwargs):
    register_model(
        ModelConfig(
            name=name,
            family="sdt_v3",
            variant="base",
            builder=EfficientSpikeFormer,
            kwargs=kwargs,
            data=data,
            num_classes=kwargs["num_classes"],
            T=None,
            source=SOURCE,
            description=description,
            official_params=official_params,
            tiny=tiny,
        )
    )


for _size, _dims, _params, _label in (
    ("t", (24, 48, 96, 128), 2_702_048, "2.7M"),
    ("s", (32, 64, 128, 192), 5_105_608, "5.1M"),
    ("m", (48, 96, 192, 240), 10_023_112, "10M"),
    ("l", (64, 128, 256, 360), 18_987_504, "19M"),
):
    _register(
        f"sdt_v3_{_size}",
        f"E-SpikeFormer (SDT-V3 base) {_label}, ImageNet-1k, 224px, 1x4 multi-spike, no T "
        f"(Model_Base/models.py:Efficient_Spiking_Transformer_{_size})",
        _IMAGENET_DATA,
        _params,
        img_size_h=224,
        img_size_w=224,
        patch_size=16,
        embed_dim=_dims,
        num_heads=8,
        mlp_ratios=4,
        in_channels=3,
        num_classes=1000,
        qkv_bias=False,
        depths=8,
        sr_ratios=1,
        layer_scale_init_value=None,
    )

_register(
    "sdt_v3_tiny",
    "tiny SDT-V3 base for tests: dims 8/16/32/32, 4 heads, 6+2 blocks, 64px, 4x4 tokens, 10 classes",
    DataConfig((3, 64, 64), crop_pct=None, mean=IMAGENET_MEAN, std=IMAGENET_STD),
    tiny=True,
    img_size_h=64,
    img_size_w=64,
    patch_size=16,
    embed_dim=(8, 16, 32, 32),
    num_heads=4,
    mlp_ratios=4,
    in_channels=3,
    num_classes=10,
    qkv_bias=False,
    depths=8,
    sr_ratios=1,
    layer_scale_init_value=None,
)
