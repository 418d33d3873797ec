"""SDTrack (Shan et al., arXiv 2503.08703): the one-stream spiking tracker on the SDT-V3 backbone.

Official code: YmShan/SDTrack @ a3e4d8d (``SDTrack-Event/lib/models/SDTrack/SDTrack.py:SDTrack``,
``SDTrack_tiny_model.py`` / ``SDTrack_base_model.py:Spiking_vit_MetaFormer_Spike_SepConv``,
``lib/models/layers/head.py:CenterPredictor``), the 1x4 variant (integer multi-spikes, no time axis).
Module and key names are the official ones (``backbone.*`` = E-SpikeFormer's names, ``box_head.*``), so
SDTrack's tracking checkpoints (``torch.load(f)["net"]``) load strictly.

Forward (``template [B, 3, Z, Z]``, ``search [B, 3, X, X]``, raw 0..255 GTP frames):

1. zero canvas of side ``X + Z``: search top-left, template bottom-right; the SDT-V3 conv stem
   (``downsample1_1`` ... ``downsample3``) on the whole canvas -> stride-16 map;
2. split into template ``(Z/16)^2`` and search ``(X/16)^2`` tokens, concatenated ``[template | search]``
   plus zero pad tokens to a square fake grid (:class:`.canvas.CanvasLayout`); ``block3`` on it;
3. ``downsample4`` (3x3, stride 1) applied to the template, search and pad parts SEPARATELY (zero padding
   at each part's border), re-assembled to the fake grid; ``block4``;
4. ``backbone_feat`` = the template + search tokens ``[B, C, n_t + n_s]``; the search tokens as a map
   ``[B, C, X/16, X/16]`` go to the :class:`.heads.CenterPredictor`; ``pred_boxes`` = ``cal_bbox``.

SDTrack's blocks (``MS_Block_Spike_SepConv``) have NO SepConv token mixer (the line is commented out in
the official code): attention (``MS_Attention_linear``, over all tokens of the fake grid, pad included)
and MLP only. So the backbone keys are SDT-V3's minus ``block{3,4}.*.conv.*`` and ``head.*``; the base
variant keeps an unused ``head`` Linear (it is in the official base checkpoints) and sizes its blocks from
``depths`` (``int(0.75 d)`` + ``int(0.25 d)``), the tiny variant has 6 + 2 blocks whatever ``depths`` says.

Deviations: template/search sizes are parameters (official: 128/256 hard-coded, see
:mod:`.canvas` for the general layout); the canvas and pad tokens are made on the input's device (the
official code hard-codes ``device='cuda'``); ``block_counts`` may override the variant's block numbers
(our small configurations).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ...models._registry import DataConfig, ModelConfig, register_model, register_official_class
from ...models.checkpoint import CheckpointError, extract_state_dict, read_checkpoint
from ...models.layers import MultiSpike
from ...models.protocol import TokenBlock
from ...models.sdt_v3 import LinearSpikeAttention, SepConvBlock, SpikeDownsampling, SpikeMLP
from .canvas import CanvasLayout
from .heads import CenterPredictor
from .tracker_base import OneStreamTracker, synth_recipe

SOURCE = "YmShan/SDTrack@a3e4d8d SDTrack-Event/lib/models/SDTrack/SDTrack.py:SDTrack"
VARIANTS = ("tiny", "base")


class SDTrackBlock(TokenBlock):
    """``MS_Block_Spike_SepConv`` as SDTrack uses it: ``x + Attn(x)``, ``x + MLP(x)`` (no SepConv part).

    Token-wise only (block protocol): the attention sums run over the tokens it is given.
    """

    token_layout = "BCHW"

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4):
        super().__init__()
        self.attn = LinearSpikeAttention(dim, num_heads=num_heads, lamda_ratio=4)
        self.mlp = SpikeMLP(dim, int(dim * mlp_ratio))

    def token_forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = tokens + self.attn(tokens)  # [B, C, N]
        return x + self.mlp(x)


class SDTrackBackbone(nn.Module):
    """SDTrack's ``Spiking_vit_MetaFormer_Spike_SepConv`` (official constructor arguments + ``variant``).

    ``variant="tiny"``: 6 + 2 blocks, no classifier (``SDTrack_tiny_model.py``); ``"base"``: ``int(0.75
    depths)`` + ``int(0.25 depths)`` blocks and an unused ``head`` Linear (``SDTrack_base_model.py``).
    ``img_size_*``, ``patch_size``, ``qkv_bias``, ``qk_scale``, drop rates, ``norm_layer`` and
    ``sr_ratios`` are accepted and ignored, as officially.
    """

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
        norm_layer: Any = None,
        depths: int = 8,
        sr_ratios: int = 1,
        variant: str = "tiny",
        block_counts: Sequence[int] | None = None,
    ):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(
                f"variant must be one of {VARIANTS} (SDTrack_tiny / SDTrack_base), got {variant!r}"
            )
        embed_dim = [int(d) for d in embed_dim]
        if len(embed_dim) != 4 or embed_dim[0] % 2:
            raise ValueError(
                f"embed_dim needs 4 stage widths with an even first one (e.g. [64, 128, 256, 360]), "
                f"got {embed_dim}"
            )
        for d in embed_dim[2:]:
            if d % num_heads:
                raise ValueError(f"embed_dim {embed_dim}: {d} is not divisible by num_heads={num_heads}")
        if block_counts is None:
            block_counts = (6, 2) if variant == "tiny" else (int(depths * 0.75), int(depths * 0.25))
        n3, n4 = (int(n) for n in block_counts)
        if n3 < 1 or n4 < 0:
            raise ValueError(
                f"block_counts must be (>= 1, >= 0) blocks at embed_dim[2] and [3], got {block_counts}"
            )
        self.variant, self.embed_dim, self.num_heads, self.in_channels = (
            variant,
            embed_dim,
            num_heads,
            in_channels,
        )
        e0, e1, e2, e3 = embed_dim

        self.downsample1_1 = SpikeDownsampling(in_channels, e0 // 2, 7, 2, 3, first_layer=True)
        self.ConvBlock1_1 = nn.ModuleList([SepConvBlock(e0 // 2, mlp_ratios)])
        self.downsample1_2 = SpikeDownsampling(e0 // 2, e0, 3, 2, 1, first_layer=False)
        self.ConvBlock1_2 = nn.ModuleList([SepConvBlock(e0, mlp_ratios)])
        self.downsample2 = SpikeDownsampling(e0, e1, 3, 2, 1, first_layer=False)
        self.ConvBlock2_1 = nn.ModuleList([SepConvBlock(e1, mlp_ratios)])
        self.ConvBlock2_2 = nn.ModuleList([SepConvBlock(e1, mlp_ratios)])
        self.downsample3 = SpikeDownsampling(e1, e2, 3, 2, 1, first_layer=False)
        self.block3 = nn.ModuleList(SDTrackBlock(e2, num_heads, mlp_ratios) for _ in range(n3))
        self.downsample4 = SpikeDownsampling(e2, e3, 3, 1, 1, first_layer=False)
        self.block4 = nn.ModuleList(SDTrackBlock(e3, num_heads, mlp_ratios) for _ in range(n4))
        if variant == "base":  # built, never used in tracking (it is in the official base checkpoints)
            self.head = nn.Linear(e3, num_classes) if num_classes > 0 else nn.Identity()
            self.spike = MultiSpike(norm=1)
        self.apply(_init_weights)

    @property
    def num_features(self) -> int:
        return self.embed_dim[3]

    def stem(self, canvas: torch.Tensor) -> torch.Tensor:
        """The conv stages on the canvas ``[B, C, S, S]`` -> ``[B, embed_dim[2], S/16, S/16]``
        (official ``forward_features``)."""
        x = self.downsample1_1(canvas)
        for blk in (*self.ConvBlock1_1,):
            x = blk(x)
        x = self.downsample1_2(x)
        for blk in self.ConvBlock1_2:
            x = blk(x)
        x = self.downsample2(x)
        for blk in (*self.ConvBlock2_1, *self.ConvBlock2_2):
            x = blk(x)
        return self.downsample3(x)

    def transformer(self, grid: torch.Tensor, layout: CanvasLayout) -> torch.Tensor:
        """``block3`` on the fake grid, ``downsample4`` per part, ``block4`` (official
        ``forward_features_transformer``). ``[B, E2, s, s]`` -> ``[B, E3, s, s]``."""
        for blk in self.block3:
            grid = blk(grid)
        z, x, pad = layout.grid_parts(grid)
        z, x = self.downsample4(z), self.downsample4(x)  # [B, E3, z, z], [B, E3, x, x]
        pad = self.downsample4(pad) if pad is not None else None  # [B, E3, ph, pw]
        grid = layout.to_grid(z, x, pad)  # [B, E3, s, s]
        for blk in self.block4:
            grid = blk(grid)
        return grid


def _init_weights(m: nn.Module) -> None:
    """The official initialisation: truncated normal (std 0.02) Linear weights, zero biases."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class SDTrack(OneStreamTracker):
    """SDTrack 1x4: :class:`SDTrackBackbone` + :class:`.heads.CenterPredictor` (module docstring).

    Arguments: the backbone's (``embed_dim``, ``num_heads``, ``mlp_ratios``, ``in_channels``, ``depths``,
    ``num_classes``, ``variant``, ``block_counts``), ``head_channels`` (official ``MODEL.HEAD.NUM_CHANNELS``:
    256 tiny, 512 base), ``template_size`` / ``search_size`` (official 128 / 256; multiples of 16).
    Input: GTP frames ``[B, 3, Z, Z]`` and ``[B, 3, X, X]``, raw 0..255 in SDTrack's channel order
    (``gtp_kwargs``). Output: the official dict (:mod:`.tracker_base`).
    """

    family = "sdtrack"
    representation = "gtp"
    T = None

    def __init__(
        self,
        embed_dim: Sequence[int] = (64, 128, 256, 360),
        num_heads: int = 8,
        mlp_ratios: float = 4,
        in_channels: int = 3,
        depths: int = 8,
        num_classes: int = 1000,
        variant: str = "tiny",
        block_counts: Sequence[int] | None = None,
        head_channels: int = 256,
        template_size: int = 128,
        search_size: int = 256,
    ):
        super().__init__(template_size, search_size, stride=16)
        self.in_channels = in_channels
        self.backbone = SDTrackBackbone(
            in_channels=in_channels,
            num_classes=num_classes,
            embed_dim=embed_dim,
            num_heads=num_heads,
            mlp_ratios=mlp_ratios,
            depths=depths,
            variant=variant,
            block_counts=block_counts,
        )
        self.box_head = CenterPredictor(
            self.backbone.num_features, head_channels, self.layout.search_side, 16
        )

    def forward(self, template: torch.Tensor, search: torch.Tensor) -> dict[str, torch.Tensor]:
        lay = self.layout
        for name, t in (("template", template), ("search", search)):
            if not isinstance(t, torch.Tensor) or t.dim() != 4 or t.shape[1] != self.in_channels:
                shape = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(
                    f"SDTrack takes {name} crops [B, {self.in_channels}, H, W] (GTP frames, no time "
                    f"axis), got {shape}"
                )
        canvas = lay.make_canvas(template, search)  # [B, 3, X+Z, X+Z]
        feat = self.backbone.stem(canvas)  # [B, E2, (X+Z)/16, (X+Z)/16]
        z, x = lay.split_map(feat)
        grid = self.backbone.transformer(lay.to_grid(z, x), lay)  # [B, E3, s, s]
        feat_real = lay.real_tokens(grid)  # [B, E3, n_t + n_s]
        score_map, boxes, size_map, offset_map = self.box_head(lay.search_tokens(grid))
        return {
            "pred_boxes": boxes.unsqueeze(1),  # [B, 1, 4] cx, cy, w, h in [0, 1] of the search crop
            "score_map": score_map,
            "size_map": size_map,
            "offset_map": offset_map,
            "backbone_feat": feat_real,
        }

    def load_backbone_checkpoint(self, checkpoint: Any, trusted: bool = False) -> dict[str, list[str]]:
        """Initialise the backbone from an SDT-V3 (E-SpikeFormer) ImageNet checkpoint, as ``build_SDTrack``
        does (its ``strict=False`` load). Keys SDTrack has no module for (``block*.*.conv.*``, the classifier
        of the tiny variant) are reported as ``unused``; any other difference raises. Returns the report."""
        obj = (
            read_checkpoint(checkpoint, trusted=trusted)
            if not isinstance(checkpoint, Mapping)
            else checkpoint
        )
        state = extract_state_dict(obj)
        own = self.backbone.state_dict()
        unused = [k for k in state if k not in own]
        bad_unused = [
            k for k in unused if not (".conv." in k and k.startswith("block")) and not k.startswith("head.")
        ]
        missing = [k for k in own if k not in state]
        shapes = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
        if bad_unused or missing or shapes:
            raise CheckpointError(
                "the checkpoint does not fit the SDTrack backbone: "
                f"missing {missing[:8]}, unexpected {bad_unused[:8]}, mis-shaped {shapes[:8]}; pass an SDT-V3 "
                "(E-SpikeFormer) ImageNet checkpoint of the same embed_dim (e.g. sdt_v3_l for sdtrack_tiny)"
            )
        self.backbone.load_state_dict({k: v for k, v in state.items() if k in own}, strict=True)
        return {"unused": unused}


def sdtrack_from_official(
    backbone: Mapping[str, Any],
    box_head: Mapping[str, Any],
    tracker: Mapping[str, Any] | None = None,
    variant: str = "tiny",
    template_size: int = 128,
    search_size: int = 256,
) -> SDTrack:
    """Build :class:`SDTrack` from the official constructor arguments: ``backbone`` = the kwargs of
    ``Spiking_vit_MetaFormer_Spike_SepConv``, ``box_head`` = those of ``CenterPredictor``, ``tracker`` =
    ``{"aux_loss": False, "head_type": "CENTER", "cfg.MODEL.T": 1}`` (the only supported ones); the
    golden case's ``constructor_kwargs`` have exactly these three entries."""
    tracker = dict(tracker or {})
    wanted = {"aux_loss": False, "head_type": "CENTER", "cfg.MODEL.T": 1}
    for key, value in tracker.items():
        if key not in wanted or wanted[key] != value:
            raise ValueError(
                f"unsupported SDTrack option {key}={value!r}: only {wanted} (the 1x4 centre-head "
                "tracker) is implemented"
            )
    bb = dict(backbone)
    head = dict(box_head)
    if head.get("inplanes", bb.get("embed_dim", (0, 0, 0, 0))[3]) != list(bb["embed_dim"])[3]:
        raise ValueError(
            f"box_head inplanes {head.get('inplanes')} must equal the backbone's embed_dim[3] "
            f"{list(bb['embed_dim'])[3]}"
        )
    if head.get("stride", 16) != 16 or head.get("feat_sz", search_size // 16) != search_size // 16:
        raise ValueError(
            f"box_head feat_sz {head.get('feat_sz')} / stride {head.get('stride')} must be "
            f"search_size / 16 = {search_size // 16} / 16"
        )
    return SDTrack(
        embed_dim=bb["embed_dim"],
        num_heads=bb.get("num_heads", 8),
        mlp_ratios=bb.get("mlp_ratios", 4),
        in_channels=bb.get("in_channels", 3),
        depths=bb.get("depths", 8),
        num_classes=bb.get("num_classes", 1000),
        variant=variant,
        head_channels=head.get("channel", 256),
        template_size=template_size,
        search_size=search_size,
    )


# -- named configurations -------------------------------------------------------------------------------

register_official_class("sdtrack", "tiny_1x4", sdtrack_from_official)
register_official_class("sdtrack", "base_1x4", lambda **kw: sdtrack_from_official(**kw, variant="base"))


def _register(
    name: str,
    description: str,
    official_params: int | None = None,
    tiny: bool = False,
    notes: str = "",
    extra: dict[str, Any] | None = None,
    weights: str | None = None,
    **kwargs: Any,
) -> None:
    register_model(
        ModelConfig(
            name=name,
            family="sdtrack",
            variant=kwargs["variant"],
            builder=SDTrack,
            kwargs=kwargs,
            data=DataConfig((3, kwargs["search_size"], kwargs["search_size"]), crop_pct=None),
            num_classes=0,
            T=None,
            source=SOURCE,
            description=description,
            official_params=official_params,
            tiny=tiny,
            notes=notes,
            extra=dict(extra or {}),
            task="tracking",
            weights=weights,
        )
    )


_register(
    "sdtrack_tiny",
    "SDTrack-Tiny 1x4 (SDT-V3 19M backbone, dims 64/128/256/360, 8 heads, 6+2 blocks, head 256 ch), "
    "template 128 / search 256 (experiments/SDTrack/SDTrack-tiny-*.yaml)",
    19_607_693,
    embed_dim=(64, 128, 256, 360),
    num_heads=8,
    mlp_ratios=4,
    in_channels=3,
    depths=8,
    num_classes=1000,
    variant="tiny",
    block_counts=None,
    head_channels=256,
    template_size=128,
    search_size=256,
)
_register(
    "sdtrack_base",
    "SDTrack-Base 1x4 (dims 128/256/512/768, 16 heads, 9+3 blocks, head 512 ch), template 128 / search 256 "
    "(experiments/SDTrack/SDTrack-base-*.yaml)",
    107_260_781,
    embed_dim=(128, 256, 512, 768),
    num_heads=16,
    mlp_ratios=4,
    in_channels=3,
    depths=12,
    num_classes=1000,
    variant="base",
    block_counts=None,
    head_channels=512,
    template_size=128,
    search_size=256,
)
_register(
    "sdtrack_synth",
    "small SDTrack for the synthetic 128x128 event set, trained here: dims 16/32/64/96, 4 heads, 4+1 blocks, "
    "head 64 ch, template 64 / search 128 (fake grid 4x4 + 8x8 + 1 pad = 9x9)",
    tiny=True,
    notes="train: train_tracker(model, TrackingDataset(root, 'fe108', 'train'), **config.extra['train_recipe']); "
    "~11-18 pairs/s forward+backward at 1 thread on the shared 2-core machine. Shipped weights: "
    "`bash scripts/train_tasks.sh tracking-data` then `sdtrack` (12 epochs x 1,600 pairs, one thread, 18 min).",
    extra={"train_recipe": synth_recipe(epochs=12, samples_per_epoch=1600)},
    weights="tasks/sdtrack_synth.pt",
    embed_dim=(16, 32, 64, 96),
    num_heads=4,
    mlp_ratios=4,
    in_channels=3,
    depths=8,
    num_classes=1000,
    variant="tiny",
    block_counts=(4, 1),
    head_channels=64,
    template_size=64,
    search_size=128,
)
_register(
    "sdtrack_tiny_test",
    "tiny SDTrack for tests: dims 8/16/32/32, 4 heads, 2+1 blocks, head 16 ch, template 32 / search 64 "
    "(fake grid 2x2 + 4x4 + 5 pad = 5x5)",
    tiny=True,
    embed_dim=(8, 16, 32, 32),
    num_heads=4,
    mlp_ratios=4,
    in_channels=3,
    depths=8,
    num_classes=1000,
    variant="tiny",
    block_counts=(2, 1),
    head_channels=16,
    template_size=32,
    search_size=64,
)
