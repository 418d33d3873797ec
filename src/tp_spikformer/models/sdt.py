"""Spike-driven Transformer V1 (Yao et al., NeurIPS 2023).

Official code: BICLab/Spike-Driven-Transformer @ 3faa822 (``model/spikeformer.py``, ``module/sps.py``,
``module/ms_conv.py``). Attribute names follow it, so official checkpoints load key for key.

Modifications (behaviour is the official one unless said here):

* Blocks keep the ``[T, B, C, H, W]`` layout between them and run attention + MLP on channel-first
  tokens ``[T, B, C, N]`` (block protocol, ``protocol.py``); 1x1 convs run on an ``[., C, N, 1]`` view.
* ``forward`` returns the logits only (the official one returns ``(logits, hook)``).
* ``talking_heads`` (a ``[heads, heads, 1]`` Conv1d), ``attn_lif`` and ``rpe_lif`` are built, as
  officially, but never used; ``qkv_bias`` and ``sr_ratios`` are accepted and ignored, as officially.
* ``patch_size`` only matters for the official code's bookkeeping; ``None`` (the ImageNet confs'
  value, which crashes the official stem) is accepted.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UsageError, check_int
from ._registry import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    DataConfig,
    ModelConfig,
    register_model,
    register_official_class,
)
from .base import SpikingTransformer
from .layers import SpikeProduct, make_lif, pointwise_conv_bn
from .protocol import TokenBlock, TPDefaults

SOURCE = "BICLab/Spike-Driven-Transformer@3faa822 model/spikeformer.py:SpikeDrivenTransformer"


class SpikingPatchSplitting(nn.Module):
    """``MS_SPS``: four 3x3 conv-BN(-LIF) stages with optional max-pools, plus a conv-BN position
    encoding added to the (analog) last BN output. Input and output ``[T, B, C, H, W]``."""

    def __init__(
        self, in_channels: int, embed_dims: int, pooling_stat: str = "1111", spike_mode: str = "lif"
    ):
        super().__init__()
        if len(pooling_stat) != 4 or set(pooling_stat) - {"0", "1"}:
            raise UsageError(f"pooling_stat must be four '0'/'1' characters, got {pooling_stat!r}")
        self.pooling_stat = pooling_stat
        dims = [in_channels, embed_dims // 8, embed_dims // 4, embed_dims // 2, embed_dims]
        for i, suffix in enumerate(["", "1", "2", "3"]):
            setattr(self, f"proj_conv{suffix}", nn.Conv2d(dims[i], dims[i + 1], 3, 1, 1, bias=False))
            setattr(self, f"proj_bn{suffix}", nn.BatchNorm2d(dims[i + 1]))
            setattr(self, f"proj_lif{suffix}", make_lif(spike_mode))
            setattr(self, f"maxpool{suffix}", nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        self.rpe_conv = nn.Conv2d(embed_dims, embed_dims, 3, 1, 1, bias=False)
        self.rpe_bn = nn.BatchNorm2d(embed_dims)
        self.rpe_lif = make_lif(spike_mode)  # built but unused, as in the official code

    @property
    def downsample(self) -> int:
        return 2 ** self.pooling_stat.count("1")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b = x.shape[:2]
        x = x.flatten(0, 1)  # [T*B, C, H, W]
        for i, suffix in enumerate(["", "1", "2"]):
            x = getattr(self, f"proj_bn{suffix}")(getattr(self, f"proj_conv{suffix}")(x))
            x = getattr(self, f"proj_lif{suffix}")(x.unflatten(0, (t, b))).flatten(0, 1)
            if self.pooling_stat[i] == "1":
                x = getattr(self, f"maxpool{suffix}")(x)
        x = self.proj_bn3(self.proj_conv3(x))
        if self.pooling_stat[3] == "1":
            x = self.maxpool3(x)
        x_feat = x
        x = self.proj_lif3(x.unflatten(0, (t, b))).flatten(0, 1)
        x = self.rpe_bn(self.rpe_conv(x)) + x_feat
        return x.unflatten(0, (t, b))  # [T, B, C, H', W']


class Erode(nn.Module):
    """SDT-V1 DVS mode: 3x3 max over the last two axes of a 5-D tensor (stride 1, padding 1)."""

    def __init__(self):
        super().__init__()
        self.pool = nn.MaxPool3d(kernel_size=(1, 3, 3), stride=1, padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)


class SpikeDrivenSelfAttention(nn.Module):
    """``MS_SSA_Conv``: membrane-shortcut spike-driven self-attention.

    ``Q, K, V = LIF(BN(1x1 conv(LIF(x))))``; ``kv = LIF_0.5(sum over tokens of K * V)`` per channel;
    ``out = proj_bn(proj_conv(Q * kv)) + x``. Tokens ``[T, B, C, N]`` in and out.
    """

    def __init__(self, dim: int, num_heads: int = 8, spike_mode: str = "lif", dvs: bool = False):
        super().__init__()
        if dim % num_heads:
            raise UsageError(f"embed dim {dim} must be divisible by num_heads {num_heads}")
        self.dim, self.num_heads, self.dvs = dim, num_heads, dvs
        if dvs:
            self.pool = Erode()
        self.shortcut_lif = make_lif(spike_mode)
        for name in ("q", "k", "v"):
            setattr(self, f"{name}_conv", nn.Conv2d(dim, dim, 1, 1, bias=False))
            setattr(self, f"{name}_bn", nn.BatchNorm2d(dim))
            setattr(self, f"{name}_lif", make_lif(spike_mode))
        self.attn_lif = make_lif(spike_mode, v_threshold=0.5)  # built but unused, as officially
        self.talking_heads = nn.Conv1d(num_heads, num_heads, 1, 1, bias=False)  # unused, as officially
        self.talking_heads_lif = make_lif(spike_mode, v_threshold=0.5)
        self.proj_conv = nn.Conv2d(dim, dim, 1, 1)
        self.proj_bn = nn.BatchNorm2d(dim)
        self.kv_product = SpikeProduct("mul")
        self.q_kv_product = SpikeProduct("mul")

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        t, b = x.shape[:2]
        x = self.shortcut_lif(x).flatten(0, 1)  # [T*B, C, N]
        return tuple(
            getattr(self, f"{n}_lif")(
                pointwise_conv_bn(x, getattr(self, f"{n}_conv"), getattr(self, f"{n}_bn")).unflatten(
                    0, (t, b)
                )
            )
            for n in ("q", "k", "v")
        )  # each [T, B, C, N]

    def _project(self, x: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        t, b = x.shape[:2]
        x = pointwise_conv_bn(x.flatten(0, 1), self.proj_conv, self.proj_bn).unflatten(0, (t, b))
        return x + identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Token-wise attention on ``[T, B, C, N]`` (non-DVS mode)."""
        q, k, v = self._qkv(x)
        kv = self.kv_product(k, v).sum(dim=-1, keepdim=True)  # [T, B, C, 1]
        kv = self.talking_heads_lif(kv)
        return self._project(self.q_kv_product(q, kv), x)

    def forward_grid(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """DVS mode on ``[T, B, C, N]`` tokens of a full ``H x W`` grid in raster order (Erode needs it)."""
        t, b, c, n = x.shape
        h, w = hw
        heads = self.num_heads
        q, k, v = self._qkv(x)
        k = self.pool(k.unflatten(-1, (h, w))).flatten(-2)
        v = self.pool(v.unflatten(-1, (h, w))).flatten(-2)

        def split_heads(z: torch.Tensor) -> torch.Tensor:
            return z.transpose(-1, -2).reshape(t, b, n, heads, c // heads).transpose(2, 3)  # [T,B,h,N,C/h]

        kv = self.pool(self.kv_product(split_heads(k), split_heads(v))).sum(dim=-2, keepdim=True)
        kv = self.talking_heads_lif(kv)  # [T, B, h, 1, C/h]
        out = self.pool(self.q_kv_product(split_heads(q), kv))  # [T, B, h, N, C/h]
        out = out.transpose(3, 4).reshape(t, b, c, n)
        return self._project(out, x)


class SpikingMLP(nn.Module):
    """``MS_MLP_Conv``: ``x + BN(conv(LIF(BN(conv(LIF(x))))))`` on tokens ``[T, B, C, N]``."""

    def __init__(self, in_features: int, hidden_features: int, spike_mode: str = "lif"):
        super().__init__()
        self.res = in_features == hidden_features
        self.fc1_conv = nn.Conv2d(in_features, hidden_features, 1, 1)
        self.fc1_bn = nn.BatchNorm2d(hidden_features)
        self.fc1_lif = make_lif(spike_mode)
        self.fc2_conv = nn.Conv2d(hidden_features, in_features, 1, 1)
        self.fc2_bn = nn.BatchNorm2d(in_features)
        self.fc2_lif = make_lif(spike_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b = x.shape[:2]
        identity = x
        h = self.fc1_lif(x).flatten(0, 1)
        h = pointwise_conv_bn(h, self.fc1_conv, self.fc1_bn).unflatten(0, (t, b))
        if self.res:
            h = identity + h
            identity = h
        h = self.fc2_lif(h).flatten(0, 1)
        h = pointwise_conv_bn(h, self.fc2_conv, self.fc2_bn).unflatten(0, (t, b))
        return h + identity


class SpikeDrivenBlock(TokenBlock):
    """``MS_Block_Conv``: attention then MLP, each with its own residual inside."""

    token_layout = "TBCHW"

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float = 4.0, spike_mode: str = "lif", dvs: bool = False
    ):
        super().__init__()
        self.attn = SpikeDrivenSelfAttention(dim, num_heads=num_heads, spike_mode=spike_mode, dvs=dvs)
        self.mlp = SpikingMLP(dim, int(dim * mlp_ratio), spike_mode=spike_mode)
        if dvs:
            self.supports_token_subset = False
            self.unsupported_reason = (
                "SDT-V1 in DVS mode max-pools K, V and the attention output over 3x3 grid neighbours "
                "('Erode'), so its attention needs the full token grid in raster order"
            )

    def token_forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.attn.dvs:
            raise RuntimeError(self.unsupported_reason)
        return self.mlp(self.attn(tokens))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.attn.dvs:
            return super().forward(x)
        hw = x.shape[-2:]
        return self.mlp(self.attn.forward_grid(x.flatten(-2), hw)).unflatten(-1, hw)


class SpikeDrivenTransformer(SpikingTransformer):
    """Spike-driven Transformer V1. Constructor arguments are the official ones.

    Input: images ``[B, C, H, W]`` (repeated over ``T``) or frames ``[B, T, C, H, W]``. Output: logits
    ``[B, classes]``, or ``[T, B, classes]`` with ``TET=True`` (average them over T to score).
    """

    family = "sdt_v1"
    event_input = True
    supports_token_drop = True
    unused_keys = (r"block\.\d+\.attn\.talking_heads\.weight",)
    head_modules = ("head_lif", "head")

    def __init__(
        self,
        img_size_h: int = 128,
        img_size_w: int = 128,
        patch_size: int | None = 16,
        in_channels: int = 2,
        num_classes: int = 11,
        embed_dims: int = 512,
        num_heads: int = 8,
        mlp_ratios: float = 4,
        qkv_bias: bool = False,
        depths: int = 2,
        sr_ratios: int = 1,
        T: int = 4,
        pooling_stat: str = "1111",
        spike_mode: str = "lif",
        dvs_mode: bool = False,
        TET: bool = False,
    ):
        super().__init__()
        check_int("T", T, hint=" (time steps)")
        check_int("num_classes", num_classes, minimum=0)
        self.T, self.TET, self.dvs = T, TET, dvs_mode
        self.num_classes, self.in_channels, self.embed_dims = num_classes, in_channels, embed_dims
        self.img_size = (img_size_h, img_size_w)
        self.patch_embed = SpikingPatchSplitting(in_channels, embed_dims, pooling_stat, spike_mode)
        self.input_multiple = self.patch_embed.downsample
        self.block = nn.ModuleList(
            SpikeDrivenBlock(embed_dims, num_heads, mlp_ratios, spike_mode, dvs_mode) for _ in range(depths)
        )
        self.head_lif = make_lif(spike_mode)
        self.head = nn.Linear(embed_dims, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(_init_weights)

    def stage_info(self) -> list[dict]:
        """One stage output per block (timm's ViT convention): ``[T, B, C, H/r, W/r]``."""
        r = self.patch_embed.downsample
        return [
            {"num_chs": self.embed_dims, "reduction": r, "module": f"block.{i}"}
            for i in range(len(self.block))
        ]

    def stage_outputs(self, x: torch.Tensor):
        x = self.patch_embed(self.prepare_input(x))  # [T, B, C, H', W']
        for blk in self.block:
            x = blk(x)
            yield x

    def tp_defaults(self, num_blocks: int) -> TPDefaults:
        """Official TP code (``sdt_drop/model/sdt_drop.py``): window 3; k_values 12,12,10,10,10,10,8,8 (k*k
        tokens) for the 8-block ImageNet models. Other depths: keep 52 % of the tokens in every block, the
        official schedule's mean kept share on its 14x14 grid (paper.md §1.5)."""
        official = num_blocks == 8
        return TPDefaults(
            window=3,
            keep_rule="side",
            keep_values=(12, 12, 10, 10, 10, 10, 8, 8) if official else None,
            fallback_fraction=0.52,
            source="sdt_drop/model/sdt_drop.py k_values (8-768 @224)",
        )

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        x = self.head(self.head_lif(features.flatten(3).mean(3)))  # [T, B, classes]
        return x if self.TET else x.mean(0)


def _init_weights(m: nn.Module) -> None:
    """The official initialisation: truncated normal (std 0.02) convs, zero biases, unit BN."""
    if isinstance(m, nn.Conv2d):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


# -- named configurations ---------------------------------------------------------------------------

for _variant in ("imagenet", "cifar", "cifar10dvs", "gesture"):
    register_official_class("sdt_v1", _variant, SpikeDrivenTransformer)

_IMAGENET_DATA = DataConfig(
    (3, 224, 224), crop_pct=0.95, interpolation="bicubic", mean=IMAGENET_MEAN, std=IMAGENET_STD
)


def _register(name, variant, description, data, official_params=None, tiny=False, **kwargs):
    register_model(
        ModelConfig(
            name=name,
            family="sdt_v1",
            variant=variant,
            builder=SpikeDrivenTransformer,
            kwargs=kwargs,
            data=data,
            num_classes=kwargs["num_classes"],
            T=kwargs["T"],
            source=SOURCE,
            description=description,
            official_params=official_params,
            tiny=tiny,
        )
    )


def _imagenet(depth: int, dim: int, params: int, conf: str) -> None:
    _register(
        f"sdt_{depth}_{dim}_imagenet",
        "imagenet",
        f"SDT-V1-{depth}-{dim} ImageNet-1k, T=4, 224px ({conf})",
        _IMAGENET_DATA,
        params,
        img_size_h=224,
        img_size_w=224,
        patch_size=16,
        in_channels=3,
        num_classes=1000,
        embed_dims=dim,
        num_heads=8,
        mlp_ratios=4,
        qkv_bias=False,
        depths=depth,
        sr_ratios=1,
        T=4,
        pooling_stat="1111",
        spike_mode="lif",
        dvs_mode=False,
        TET=False,
    )


_imagenet(8, 384, 16_816_536, "conf/imagenet/8_384_300E_t4.yml")
_imagenet(6, 512, 23_373_736, "conf/imagenet/6_512_300E_t4.yml")
_imagenet(8, 512, 29_689_896, "conf/imagenet/8_512_300E_t4.yml")
_imagenet(10, 512, 36_006_056, "conf/imagenet/10_384_300E_t4.yml, whose content is 10 layers of dim 512")
_imagenet(8, 768, 66_339_144, "conf/imagenet/8_768_300E_t4.yml; the official 77.07% is at 288px")

for _classes, _mean, _std in ((10, CIFAR10_MEAN, CIFAR10_STD), (100, CIFAR100_MEAN, CIFAR100_STD)):
    for _dim, _params in ((256, None), (512, {10: 10_233_546}.get(_classes))):
        _register(
            f"sdt_2_{_dim}_cifar{_classes}",
            "cifar",
            f"SDT-V1-2-{_dim} CIFAR-{_classes}, T=4, 32px (conf/cifar{_classes}/2_{_dim}_300E_t4.yml)",
            DataConfig((3, 32, 32), crop_pct=None, mean=_mean, std=_std),
            _params,
            img_size_h=32,
            img_size_w=32,
            patch_size=4,
            in_channels=3,
            num_classes=_classes,
            embed_dims=_dim,
            num_heads=8,
            mlp_ratios=4,
            qkv_bias=False,
            depths=2,
            sr_ratios=1,
            T=4,
            pooling_stat="0011",
            spike_mode="lif",
            dvs_mode=False,
            TET=False,
        )

_register(
    "sdt_2_256_cifar10dvs",
    "cifar10dvs",
    "SDT-V1-2-256 CIFAR10-DVS, 64x64 frames, T=10, DVS (Erode) mode, TET (conf/cifar10-dvs/2_256_200E_t10_TET.yml)",
    DataConfig((2, 64, 64), event_frames=True),
    2_566_794,
    img_size_h=64,
    img_size_w=64,
    patch_size=16,
    in_channels=2,
    num_classes=10,
    embed_dims=256,
    num_heads=8,
    mlp_ratios=4,
    qkv_bias=False,
    depths=2,
    sr_ratios=1,
    T=10,
    pooling_stat="0011",
    spike_mode="lif",
    dvs_mode=True,
    TET=True,
)
for _t in (10, 16):
    _register(
        f"sdt_2_256_gesture_t{_t}",
        "gesture",
        f"SDT-V1-2-256 DVS128 Gesture, 128x128 frames, T={_t} (conf/gesture/2_256_200E_t{_t}.yml)",
        DataConfig((2, 128, 128), event_frames=True),
        None,
        img_size_h=128,
        img_size_w=128,
        patch_size=16,
        in_channels=2,
        num_classes=11,
        embed_dims=256,
        num_heads=8,
        mlp_ratios=4,
        qkv_bias=False,
        depths=2,
        sr_ratios=1,
        T=_t,
        pooling_stat="0111",
        spike_mode="lif",
        dvs_mode=False,
        TET=False,
    )

_register(
    "sdt_tiny",
    "cifar",
    "tiny SDT-V1 for tests: 2 blocks of dim 32, T=2, 32px, 8x8 tokens",
    DataConfig((3, 32, 32), crop_pct=None, mean=CIFAR10_MEAN, std=CIFAR10_STD),
    tiny=True,
    img_size_h=32,
    img_size_w=32,
    patch_size=8,
    in_channels=3,
    num_classes=10,
    embed_dims=32,
    num_heads=4,
    mlp_ratios=4,
    qkv_bias=False,
    depths=2,
    sr_ratios=1,
    T=2,
    pooling_stat="0011",
    spike_mode="lif",
    dvs_mode=False,
    TET=False,
)
