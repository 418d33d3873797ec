"""Spikingformer: Spike-driven Residual Learning for Transformer-based SNNs (Zhou et al., arXiv 2304.11954).

Official code: zhouchenlin2096/Spikingformer @ 4378623. Each dataset folder defines its own ``vit_snn``
(registered as ``Spikingformer``): ``imagenet/model.py``, ``cifar10/model.py`` (``cifar100/model.py`` is
the same code), ``cifar10-dvs/model.py`` (``dvs128-gesture/model.py`` is the same code with 11 classes).
They differ in the tokenizer, the attention order and the neuron's tau, so each has its own class here
(variants ``"imagenet"``, ``"cifar"``, ``"cifar10dvs"``). Attribute names follow the official ones, so
official checkpoints load key for key.

What the files compute (read from the code):

* Tokenizer (``SpikingTokenizer``): a 3x3 conv-BN on the input, then four units ``LIF -> [3x3/2 max-pool]
  -> 3x3 conv -> BN`` (widths ``D/8 -> D/4 -> D/2 -> D -> D``). ImageNet and DVS (``proj_conv``,
  ``proj1..4_*``): every unit pools (``H/16`` grid); CIFAR (``block0..4_*``): only units 3 and 4 pool
  (``H/4``). The last BN output, analog, is the block input: no position embedding.
* Block: ``x = x + SSA(x)``; ``x = x + MLP(x)`` with "spike-driven residual learning": each branch starts
  with a LIF on the residual stream and ends with a BN, so the stream stays analog. ``norm1``/``norm2``
  LayerNorms are built but never used; DropPath is built but never applied.
* SSA: ``s = proj_lif(x)``; ``Q, K, V = LIF(BN1d(Conv1d(s)))`` (no bias), split into heads (channel
  ``c = head * head_dim + j``), no softmax; ImageNet and DVS compute ``Q (K^T V) * 0.125`` (D x D per head),
  CIFAR ``(Q K^T) V * 0.125`` (N x N); ``attn_lif`` (threshold 0.5); ``BN1d(Conv1d(.))`` (with bias).
* MLP: ``BN(conv1x1(LIF(BN(conv1x1(LIF(x))))))`` with Conv2d / BatchNorm2d layers.
* Readout: mean over tokens, mean over T, Linear ``head`` (the head sees analog averages, no LIF).
* Neurons: multi-step LIF, hard reset, tau 2 (ImageNet, CIFAR) or 1.5 (DVS files).
* T: ImageNet and CIFAR repeat the image ``T`` times (class default 4); DVS takes T from the frames.

TP defaults (``tp_defaults``; no official TP code exists for this family, so they are ours): scorer window 3
for every scorer (the paper names no window size, ``shared/docs/paper.md`` §1.2; the official code uses 3 for
the spike-driven families on 14x14 grids, 7 only for QKFormer) and, as for Spikformer (same single-stage
layout: 8 blocks on 14x14 for ImageNet, 4 on 8x8 for CIFAR, 2 on 8x8 for DVS), a side ratio falling linearly
from 0.9 in the first block to 0.7 in the last (``k = int(H * ratio)``, ``k*k`` tokens kept; 0.9 for a single
block). All operations inside a block are per token apart from the attention's sums over tokens, so the
blocks only implement ``token_forward`` (one token part).

Modifications (behaviour is the official one unless said here):

* Blocks keep ``[T, B, C, H, W]`` between them and run attention + MLP on channel-first tokens
  ``[T, B, C, N]`` (block protocol, ``protocol.py``); 1x1 convs run on ``[., C, N(, 1)]`` views.
* ``forward`` takes images ``[B, C, H, W]`` (ImageNet, CIFAR) or frames ``[B, T, C, H, W]`` (DVS) and returns
  logits; ``forward_features`` returns the grid after the last block (the official one returns the token
  mean). Image sides must be multiples of 16 (ImageNet) or 4 (CIFAR), checked up front: the official
  reshapes to ``H // 2^k`` fail otherwise. The DVS tokenizer hard-codes its 64/32/16 intermediate sizes, so
  only 128x128 frames work; checked up front (``fixed_input_size``).
* DVS: ``T`` is optional (default ``None``: any number of frames, as officially, where ``self.T`` is unused);
  a number makes the model check the input has that many frames.
* ``qkv_bias``, ``qk_scale``, ``sr_ratios``, ``drop_rate``, ``attn_drop_rate``, ``drop_path_rate`` and
  ``pretrained_cfg`` are accepted and have no effect, as officially (no DropPath module is built: it has no
  parameters and is never applied). ``norm_layer`` only builds the unused LayerNorms.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UsageError, check_int
from ._registry import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    DataConfig,
    ModelConfig,
    register_model,
    register_official_class,
)
from .base import SpikingTransformer
from .layers import LIF, SpikeProduct, pointwise_conv_bn
from .protocol import TokenBlock, TPDefaults

REPO = "zhouchenlin2096/Spikingformer@4378623"
SOURCES = {
    "imagenet": f"{REPO} imagenet/model.py:vit_snn",
    "cifar": f"{REPO} cifar10/model.py:vit_snn (cifar100/model.py: same code)",
    "cifar10dvs": f"{REPO} cifar10-dvs/model.py:vit_snn (dvs128-gesture/model.py: same code)",
}

# Per official file: tokenizer style, attention order and the LIF time constant.
#   "kv": Q @ (K^T @ V) * 0.125 (D x D per head)      "qk": (Q @ K^T) @ V * 0.125 (N x N)
_VARIANTS = {
    "imagenet": {"tokenizer": "proj", "order": "kv", "tau": 2.0},
    "cifar": {"tokenizer": "block", "order": "qk", "tau": 2.0},
    "cifar10dvs": {"tokenizer": "proj", "order": "kv", "tau": 1.5},
}


class SpikingTokenizer(nn.Module):
    """``SpikingTokenizer``: conv-BN, then four ``LIF -> [max-pool] -> conv3x3 -> BN`` units.

    ``style="proj"`` (ImageNet, DVS): keys ``proj_conv``, ``proj_bn``, ``proj{i}_conv``, ``proj{i}_bn``,
    pools ``maxpool{i}`` in every unit. ``style="block"`` (CIFAR): ``block{i}_conv``/``block{i}_bn``, pools
    ``block3_mp``/``block4_mp``. Input ``[T, B, C_in, H, W]``, output ``[T, B, D, H / 2^k, W / 2^k]``.
    """

    def __init__(self, in_channels: int, embed_dims: int, style: str = "proj", tau: float = 2.0):
        super().__init__()
        if style not in ("proj", "block"):
            raise ValueError(f"tokenizer style must be 'proj' or 'block', got {style!r}")
        self.style = style
        dims = [in_channels, embed_dims // 8, embed_dims // 4, embed_dims // 2, embed_dims, embed_dims]
        self._units = []  # (conv, bn, lif or None, pool or None) attribute names, in forward order
        for i in range(5):
            if style == "proj":
                prefix = "proj" if i == 0 else f"proj{i}"
                pool = f"maxpool{i}" if i > 0 else None
            else:
                prefix = f"block{i}"
                pool = f"block{i}_mp" if i >= 3 else None
            lif = f"{prefix}_lif" if i > 0 else None
            if lif is not None:
                setattr(self, lif, LIF(tau=tau))
            if pool is not None:
                setattr(self, pool, nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
            setattr(self, f"{prefix}_conv", nn.Conv2d(dims[i], dims[i + 1], 3, 1, 1, bias=False))
            setattr(self, f"{prefix}_bn", nn.BatchNorm2d(dims[i + 1]))
            self._units.append((f"{prefix}_conv", f"{prefix}_bn", lif, pool))

    @property
    def downsample(self) -> int:
        return 2 ** sum(pool is not None for *_, pool in self._units)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tb = x.shape[:2]
        for conv, bn, lif, pool in self._units:
            if lif is not None:
                x = getattr(self, lif)(x)  # [T, B, C, H, W] spikes
            z = x.flatten(0, 1)  # [T*B, C, H, W]
            if pool is not None:
                z = getattr(self, pool)(z)
            x = getattr(self, bn)(getattr(self, conv)(z)).unflatten(0, tb)  # [T, B, C', H', W']
        return x


class SpikingSelfAttention(nn.Module):
    """``SpikingSelfAttention`` on channel-first tokens ``[T, B, C, N]`` (any N); returns the branch output
    ``BN(proj(attn_lif(.)))``, analog, without the residual."""

    def __init__(self, dim: int, num_heads: int = 8, variant: str = "imagenet"):
        super().__init__()
        if dim % num_heads:
            raise UsageError(f"embed dim {dim} must be divisible by num_heads {num_heads}")
        spec = _VARIANTS[variant]
        self.dim, self.num_heads, self.order = dim, num_heads, spec["order"]
        self.scale = 0.125
        tau = spec["tau"]
        self.proj_lif = LIF(tau=tau)
        for name in ("q", "k", "v"):
            setattr(self, f"{name}_conv", nn.Conv1d(dim, dim, kernel_size=1, stride=1, bias=False))
            setattr(self, f"{name}_bn", nn.BatchNorm1d(dim))
            setattr(self, f"{name}_lif", LIF(tau=tau))
        self.attn_lif = LIF(tau=tau, v_threshold=0.5)
        self.proj_conv = nn.Conv1d(dim, dim, kernel_size=1, stride=1)
        self.proj_bn = nn.BatchNorm1d(dim)
        if self.order == "kv":
            self.kv_product = SpikeProduct("matmul")  # K^T V: [d, N] x [N, d] per head
            self.q_kv_product = SpikeProduct("matmul")  # Q (K^T V): [N, d] x [d, d]
        else:
            self.qk_product = SpikeProduct("matmul")  # Q K^T: [N, d] x [d, N]
            self.attn_v_product = SpikeProduct("matmul")  # (Q K^T) V: [N, N] x [N, d]

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}, order={self.order}, scale={self.scale}"

    def _split_heads(self, z: torch.Tensor) -> torch.Tensor:
        t, b, c, n = z.shape
        z = z.transpose(2, 3).reshape(t, b, n, self.num_heads, c // self.num_heads)  # [T, B, N, h, d]
        return z.transpose(2, 3)  # [T, B, h, N, d]

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Spike attention on per-head ``[T, B, h, N, d]`` tensors in the official order, times 0.125."""
        kt = k.transpose(-2, -1)  # [T, B, h, d, N]
        if self.order == "kv":
            return self.q_kv_product(q, self.kv_product(kt, v)) * self.scale
        return self.attn_v_product(self.qk_product(q, kt), v) * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b, c, n = x.shape
        s = self.proj_lif(x).flatten(0, 1)  # [T*B, C, N]
        q, k, v = (
            self._split_heads(
                getattr(self, f"{name}_lif")(
                    pointwise_conv_bn(
                        s, getattr(self, f"{name}_conv"), getattr(self, f"{name}_bn")
                    ).unflatten(0, (t, b))
                )
            )
            for name in ("q", "k", "v")
        )
        out = self.attention(q, k, v)  # [T, B, h, N, d]
        out = self.attn_lif(out.transpose(3, 4).reshape(t, b, c, n))  # [T, B, C, N]
        return pointwise_conv_bn(out.flatten(0, 1), self.proj_conv, self.proj_bn).unflatten(0, (t, b))


class SpikingMLP(nn.Module):
    """``MLP``: ``BN(conv1x1(LIF(BN(conv1x1(LIF(x))))))`` on tokens ``[T, B, C, N]`` (Conv2d layers on an
    ``[., C, N, 1]`` view); no residual."""

    def __init__(self, in_features: int, hidden_features: int, tau: float = 2.0):
        super().__init__()
        self.mlp1_lif = LIF(tau=tau)
        self.mlp1_conv = nn.Conv2d(in_features, hidden_features, kernel_size=1, stride=1)
        self.mlp1_bn = nn.BatchNorm2d(hidden_features)
        self.mlp2_lif = LIF(tau=tau)
        self.mlp2_conv = nn.Conv2d(hidden_features, in_features, kernel_size=1, stride=1)
        self.mlp2_bn = nn.BatchNorm2d(in_features)
        self.c_hidden, self.c_output = hidden_features, in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tb = x.shape[:2]
        h = pointwise_conv_bn(
            self.mlp1_lif(x).flatten(0, 1), self.mlp1_conv, self.mlp1_bn
        )  # [T*B, hidden, N]
        h = self.mlp2_lif(h.unflatten(0, tb)).flatten(0, 1)
        return pointwise_conv_bn(h, self.mlp2_conv, self.mlp2_bn).unflatten(0, tb)  # [T, B, C, N]


class SpikingformerBlock(TokenBlock):
    """``SpikingTransformer``: ``x + SSA(x)``, then ``x + MLP(x)``. ``norm1``/``norm2`` exist for the keys only."""

    token_layout = "TBCHW"

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        norm_layer=nn.LayerNorm,
        variant: str = "imagenet",
    ):
        super().__init__()
        self.norm1 = norm_layer(dim)  # unused, as officially
        self.attn = SpikingSelfAttention(dim, num_heads=num_heads, variant=variant)
        self.norm2 = norm_layer(dim)  # unused, as officially
        self.mlp = SpikingMLP(dim, int(dim * mlp_ratio), tau=_VARIANTS[variant]["tau"])

    def token_forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = tokens + self.attn(tokens)  # [T, B, C, N]
        return x + self.mlp(x)


class _Spikingformer(SpikingTransformer):
    """Shared body of the three official ``vit_snn`` classes (see the subclasses)."""

    family = "spikingformer"
    variant = ""
    # Single stage, readout = mean over whatever tokens are left: TP may drop tokens for good.
    supports_token_drop = True
    unused_keys = (r"block\.\d+\.norm[12]\.(weight|bias)",)

    def __init__(
        self,
        img_size_h: int,
        img_size_w: int,
        patch_size,
        in_channels: int,
        num_classes: int,
        embed_dims: int,
        num_heads: int,
        mlp_ratios: float,
        qkv_bias: bool = False,
        qk_scale=None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_layer=nn.LayerNorm,
        depths: int = 8,
        sr_ratios=1,
        T: int | None = 4,
        pretrained_cfg=None,
    ):
        super().__init__()
        for name, value in (("embed_dims", embed_dims), ("num_heads", num_heads), ("depths", depths)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(
                    f"{type(self).__name__}: {name} must be a positive int (Spikingformer has one stage), "
                    f"got {value!r}"
                )
        if embed_dims % num_heads:
            raise UsageError(f"embed_dims {embed_dims} must be divisible by num_heads {num_heads}")
        if embed_dims % 8:
            raise UsageError(
                f"embed_dims must be a multiple of 8 (the tokenizer starts at embed_dims // 8), got {embed_dims}"
            )
        if T is not None and (isinstance(T, bool) or not isinstance(T, int) or T < 1):
            raise UsageError(f"T must be a positive int (time steps), got {T!r}")
        spec = _VARIANTS[self.variant]
        self.T = T
        check_int("num_classes", num_classes, minimum=0)
        self.num_classes, self.in_channels, self.embed_dims = num_classes, in_channels, embed_dims
        self.num_heads, self.depths = num_heads, depths
        self.img_size, self.patch_size = (img_size_h, img_size_w), patch_size
        self.patch_embed = SpikingTokenizer(in_channels, embed_dims, spec["tokenizer"], spec["tau"])
        self.block = nn.ModuleList(
            SpikingformerBlock(embed_dims, num_heads, mlp_ratios, norm_layer, self.variant)
            for _ in range(depths)
        )
        self.head = nn.Linear(embed_dims, num_classes) if num_classes > 0 else nn.Identity()
        if self.fixed_input_size is None:
            self.input_multiple = self.patch_embed.downsample
        self.apply(_init_weights)

    def stage_info(self) -> list[dict]:
        """One stage output per block (timm's ViT convention): ``[T, B, C, H/r, W/r]``."""
        r = self.patch_embed.downsample
        return [
            {"num_chs": self.embed_dims, "reduction": r, "module": f"block.{i}"} for i in range(self.depths)
        ]

    def stage_outputs(self, x: torch.Tensor):
        x = self.patch_embed(self.prepare_input(x))  # [T, B, C, H', W']
        for blk in self.block:
            x = blk(x)
            yield x

    def tp_defaults(self, num_blocks: int) -> TPDefaults:
        """Ours (no official TP code covers Spikingformer, module docstring): window 3, side ratio falling
        linearly from 0.9 (first block) to 0.7 (last), as for Spikformer."""
        if num_blocks == 1:
            ratios = (0.9,)
        else:
            ratios = tuple(round(0.9 - i * 0.2 / (num_blocks - 1), 6) for i in range(num_blocks))
        return TPDefaults(
            window=3,
            keep_rule="side_ratio",
            keep_values=ratios,
            source="ours: side ratio falling linearly from 0.9 to 0.7 (no official TP code for Spikingformer)",
        )

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Official readout: mean over tokens, mean over T, then the Linear ``head``."""
        if features.dim() != 5:
            raise UsageError(f"forward_head expects features [T, B, C, H, W], got {list(features.shape)}")
        return self.head(features.flatten(3).mean(3).mean(0))  # [B, classes]


class SpikingformerImageNet(_Spikingformer):
    """``imagenet/model.py:vit_snn``; defaults = ``imagenet/train.py`` with the 8-512 model (8 heads, T=4).

    Input ``[B, 3, H, W]`` with H, W multiples of 16, repeated over ``T``.
    """

    variant = "imagenet"

    def __init__(
        self,
        img_size_h: int = 224,
        img_size_w: int = 224,
        patch_size=16,
        in_channels: int = 3,
        num_classes: int = 1000,
        embed_dims: int = 512,
        num_heads: int = 8,
        mlp_ratios: float = 4,
        qkv_bias: bool = False,
        qk_scale=None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_layer=nn.LayerNorm,
        depths: int = 8,
        sr_ratios=1,
        T: int = 4,
        pretrained_cfg=None,
    ):
        if T is None:
            raise UsageError(
                "SpikingformerImageNet needs a number of time steps T (imagenet/train.py uses 4)"
            )
        super().__init__(
            img_size_h,
            img_size_w,
            patch_size,
            in_channels,
            num_classes,
            embed_dims,
            num_heads,
            mlp_ratios,
            qkv_bias,
            qk_scale,
            drop_rate,
            attn_drop_rate,
            drop_path_rate,
            norm_layer,
            depths,
            sr_ratios,
            T,
        )


class SpikingformerCifar(_Spikingformer):
    """``cifar10/model.py:vit_snn`` (also ``cifar100``); defaults = ``cifar10/cifar10.yml`` (4-384, 12 heads,
    T=4, 32 px). Input ``[B, 3, H, W]`` with H, W multiples of 4, repeated over ``T``."""

    variant = "cifar"

    def __init__(
        self,
        img_size_h: int = 32,
        img_size_w: int = 32,
        patch_size=4,
        in_channels: int = 3,
        num_classes: int = 10,
        embed_dims: int = 384,
        num_heads: int = 12,
        mlp_ratios: float = 4,
        qkv_bias: bool = False,
        qk_scale=None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_layer=nn.LayerNorm,
        depths: int = 4,
        sr_ratios=1,
        T: int = 4,
        pretrained_cfg=None,
    ):
        if T is None:
            raise UsageError("SpikingformerCifar needs a number of time steps T (the class default is 4)")
        super().__init__(
            img_size_h,
            img_size_w,
            patch_size,
            in_channels,
            num_classes,
            embed_dims,
            num_heads,
            mlp_ratios,
            qkv_bias,
            qk_scale,
            drop_rate,
            attn_drop_rate,
            drop_path_rate,
            norm_layer,
            depths,
            sr_ratios,
            T,
        )


class SpikingformerCifar10DVS(_Spikingformer):
    """``cifar10-dvs/model.py:vit_snn`` (also ``dvs128-gesture``); defaults = its ``Spikingformer()`` builder
    (2-256, 16 heads, 2 input channels, 10 classes). Every LIF has tau 1.5.

    Input: event frames ``[B, T, 2, 128, 128]`` (the official tokenizer hard-codes the 128x128 sizes).
    ``T=None`` takes any number of frames, as officially; a number makes the model check the input.
    """

    variant = "cifar10dvs"
    static_input = False
    event_input = True
    fixed_input_size = (128, 128)

    def __init__(
        self,
        img_size_h: int = 128,
        img_size_w: int = 128,
        patch_size=16,
        in_channels: int = 2,
        num_classes: int = 10,
        embed_dims: int = 256,
        num_heads: int = 16,
        mlp_ratios: float = 4,
        qkv_bias: bool = False,
        qk_scale=None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_layer=nn.LayerNorm,
        depths: int = 2,
        sr_ratios=1,
        T: int | None = None,
        pretrained_cfg=None,
    ):
        super().__init__(
            img_size_h,
            img_size_w,
            patch_size,
            in_channels,
            num_classes,
            embed_dims,
            num_heads,
            mlp_ratios,
            qkv_bias,
            qk_scale,
            drop_rate,
            attn_drop_rate,
            drop_path_rate,
            norm_layer,
            depths,
            sr_ratios,
            T,
        )


def _init_weights(m: nn.Module) -> None:
    """The official initialisation: truncated-normal (std 0.02) Linear weights, zero Linear biases, unit
    LayerNorms; convolutions and BatchNorms keep PyTorch's defaults."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


# -- named configurations ---------------------------------------------------------------------------

_CLASSES = {
    "imagenet": SpikingformerImageNet,
    "cifar": SpikingformerCifar,
    "cifar10dvs": SpikingformerCifar10DVS,
}
for _variant, _cls in _CLASSES.items():
    register_official_class("spikingformer", _variant, _cls)

# imagenet/imagenet.yml: crop_pct 1.0, bicubic; ImageNet mean/std
_IMAGENET_DATA = DataConfig(
    (3, 224, 224), crop_pct=1.0, interpolation="bicubic", mean=IMAGENET_MEAN, std=IMAGENET_STD
)
# cifar10.yml and cifar100.yml both normalise with the CIFAR-10 statistics
_CIFAR_DATA = DataConfig((3, 32, 32), crop_pct=None, mean=CIFAR10_MEAN, std=CIFAR10_STD)
_DVS_DATA = DataConfig((2, 128, 128), event_frames=True)


def _register(name, variant, description, data, official_params=None, tiny=False, notes="", **kwargs):
    register_model(
        ModelConfig(
            name=name,
            family="spikingformer",
            variant=variant,
            builder=_CLASSES[variant],
            kwargs=kwargs,
            data=data,
            num_classes=kwargs["num_classes"],
            T=kwargs["T"],
            source=SOURCES[variant],
            description=description,
            official_params=official_params,
            tiny=tiny,
            notes=notes,
        )
    )


for _dim, _params, _how in (
    (384, 16_828_312, "8 heads: an assumption, the repo gives no head count for dim 384"),
    (512, 29_705_768, "8 heads, as the released energy log of Spikingformer-8-512"),
    (768, 66_363_208, "8 heads, as imagenet/imagenet.yml and the released checkpoint's log"),
):
    _register(
        f"spikingformer_8_{_dim}_imagenet",
        "imagenet",
        f"Spikingformer-8-{_dim} ImageNet-1k, T=4, 224px: imagenet/model.py:vit_snn as imagenet/train.py builds "
        f"it ({_how}); eval as imagenet.yml (crop_pct 1.0, bicubic)",
        _IMAGENET_DATA,
        _params,
        notes="num_heads is an assumption" if _dim == 384 else "",
        img_size_h=224,
        img_size_w=224,
        patch_size=16,
        in_channels=3,
        num_classes=1000,
        embed_dims=_dim,
        num_heads=8,
        mlp_ratios=4,
        qkv_bias=False,
        depths=8,
        sr_ratios=1,
        T=4,
    )

_ASSUMED = (
    "num_heads is an assumption (the official repo gives none for this size): head dim 32 as in cifar10.yml"
)
for _depth, _dim, _classes, _heads, _params, _how in (
    (4, 384, 10, 12, 9_326_266, "cifar10/cifar10.yml: 12 heads"),
    (4, 384, 100, 8, 9_360_916, "cifar100/cifar100.yml: 8 heads"),
    (4, 256, 10, 8, None, "README table; heads assumed"),
    (4, 256, 100, 8, None, "README table; heads assumed"),
    (2, 384, 10, 12, None, "README table; heads assumed"),
    (2, 384, 100, 12, None, "README table; heads assumed"),
):
    _register(
        f"spikingformer_{_depth}_{_dim}_cifar{_classes}",
        "cifar",
        f"Spikingformer-{_depth}-{_dim} CIFAR-{_classes}, {_heads} heads, T=4, 32px: cifar{_classes}/model.py:vit_snn "
        f"({_how}; CIFAR-10 normalisation for both datasets, as the official configs)",
        _CIFAR_DATA,
        _params,
        notes="" if _params else _ASSUMED,
        img_size_h=32,
        img_size_w=32,
        patch_size=4,
        in_channels=3,
        num_classes=_classes,
        embed_dims=_dim,
        num_heads=_heads,
        mlp_ratios=4,
        qkv_bias=False,
        depths=_depth,
        sr_ratios=1,
        T=4,
    )

for _name, _classes, _params, _what in (
    ("spikingformer_2_256_cifar10dvs", 10, 2_568_714, "CIFAR10-DVS (cifar10-dvs/model.py)"),
    ("spikingformer_2_256_dvs128gesture", 11, 2_568_971, "DVS128 Gesture (dvs128-gesture/model.py)"),
):
    _register(
        _name,
        "cifar10dvs",
        f"Spikingformer-2-256 {_what}, 16 heads, tau 1.5, T=16 frames of 128x128 (train.py default; the README "
        f"also reports T=10): the Spikingformer() builder's configuration; raw event-count frames",
        _DVS_DATA,
        _params,
        img_size_h=128,
        img_size_w=128,
        patch_size=16,
        in_channels=2,
        num_classes=_classes,
        embed_dims=256,
        num_heads=16,
        mlp_ratios=4,
        qkv_bias=False,
        depths=2,
        sr_ratios=1,
        T=16,
    )

_register(
    "spikingformer_tiny",
    "cifar",
    "tiny Spikingformer (CIFAR code) for tests: 2 blocks of dim 32, 4 heads, T=2, 32px, 8x8 tokens",
    _CIFAR_DATA,
    tiny=True,
    img_size_h=32,
    img_size_w=32,
    patch_size=4,
    in_channels=3,
    num_classes=10,
    embed_dims=32,
    num_heads=4,
    mlp_ratios=4,
    qkv_bias=False,
    depths=2,
    sr_ratios=1,
    T=2,
)
