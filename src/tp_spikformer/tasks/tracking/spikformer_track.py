"""SDTrack's one-stream design on Spikformer, a family with a time axis, fed with T event bins per frame.

Why Spikformer (and not SDT-V1): both stems are four conv-BN-LIF stages with max-pools that take any
canvas whose sides are multiples of 16 (we build the ImageNet class with 2 input channels; Spikformer's own
DVS class hard-codes 128 x 128 and SDT-V1's DVS mode cannot be pruned). What decides is the attention that
runs on the fake grid: Spikformer's SSA is a real token-to-token product ``Q (K^T V)`` over all tokens, as
SDTrack's ``MS_Attention_linear`` (``(Q K^T) V``), so a search token can match template tokens; SDT-V1's
SDSA only gates channels with one global ``LIF(sum_N K * V)`` per channel, which cannot localise the
template in the search region. Spikformer's stem also ends in spikes (plus the spiking position
embedding), so the zero canvas quadrants and the zero pad tokens enter the blocks as silent tokens.

Forward (``template [B, T, 2, Z, Z]``, ``search [B, T, 2, X, X]``: per-polarity event counts of each frame
in T time bins, the bins being the time steps, so consecutive steps differ and the temporal TP scorer sees
real change):

1. zero canvas ``[T, B, 2, X + Z, X + Z]`` (search top-left, template bottom-right), Spikformer's SPS stem
   (``backbone.patch_embed``) on every time step -> ``[T, B, D, (X+Z)/16, (X+Z)/16]``;
2. template and search tokens + zero pad -> the square fake grid ``[T, B, D, s, s]``; every Spikformer
   block (``backbone.block``) runs on it (single stage, no ``downsample4``);
3. head: the search tokens' residual stream averaged over the T steps (``[B, D, X/16, X/16]``; the stream
   holds integer spike sums, so the mean is a rate) -> SDTrack's :class:`.heads.CenterPredictor`, whose
   ``MultiSpike`` before every conv quantises it to 0..4 as in SDTrack. ``backbone_feat``: the template +
   search tokens averaged over T, ``[B, D, n_t + n_s]``.

Keys: ``backbone.*`` = Spikformer's names (``patch_embed.*``, ``block.*``; the unused ``norm1``/``norm2``
included), ``box_head.*`` = SDTrack's head.
"""

from __future__ import annotations

from typing import Any

import torch

from ...models._registry import DataConfig, ModelConfig, register_model
from ...models.spikformer import SpikformerImageNet
from .heads import CenterPredictor
from .tracker_base import OneStreamTracker, synth_recipe

SOURCE = (
    "ours: SDTrack's one-stream design (YmShan/SDTrack@a3e4d8d) on Spikformer "
    "(ZK-Zhou/spikformer@6212689 imagenet/model.py:Spikformer)"
)


class SpikformerTracker(OneStreamTracker):
    """One-stream tracker on a Spikformer backbone with a time axis (module docstring).

    Arguments: Spikformer's ``embed_dims``, ``num_heads``, ``mlp_ratios``, ``depths``, ``T`` (event bins per
    frame = time steps), ``in_channels`` (2 polarities), ``head_channels`` of the centre head, and the crop
    sizes (multiples of 16).
    """

    family = "spikformer_track"
    representation = "counts"

    def __init__(
        self,
        embed_dims: int = 64,
        num_heads: int = 4,
        mlp_ratios: float = 4,
        depths: int = 4,
        T: int = 4,
        in_channels: int = 2,
        head_channels: int = 64,
        template_size: int = 64,
        search_size: int = 128,
    ):
        super().__init__(template_size, search_size, stride=16)
        if isinstance(T, bool) or not isinstance(T, int) or T < 1:
            raise ValueError(f"T (event bins per frame = time steps) must be a positive int, got {T!r}")
        self.T, self.in_channels = T, in_channels
        side = self.layout.canvas_size
        self.backbone = SpikformerImageNet(
            img_size_h=side,
            img_size_w=side,
            patch_size=16,
            in_channels=in_channels,
            num_classes=0,
            embed_dims=embed_dims,
            num_heads=num_heads,
            mlp_ratios=mlp_ratios,
            depths=depths,
            T=T,
        )
        self.box_head = CenterPredictor(embed_dims, head_channels, self.layout.search_side, 16)

    def forward(self, template: torch.Tensor, search: torch.Tensor) -> dict[str, torch.Tensor]:
        lay = self.layout
        for name, t in (("template", template), ("search", search)):
            ok = (
                isinstance(t, torch.Tensor)
                and t.dim() == 5
                and t.shape[1] == self.T
                and t.shape[2] == self.in_channels
            )
            if not ok:
                shape = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(
                    f"{type(self).__name__} takes {name} event frames [B, T={self.T}, {self.in_channels}, H, W] "
                    f"(per-polarity counts in T bins), got {shape}"
                )
        canvas = lay.make_canvas(template, search).transpose(0, 1)  # [T, B, 2, X+Z, X+Z]
        feat = self.backbone.patch_embed(canvas)  # [T, B, D, (X+Z)/16, (X+Z)/16]
        z, x = lay.split_map(feat)
        grid = lay.to_grid(z, x)  # [T, B, D, s, s]
        for blk in self.backbone.block:
            grid = blk(grid)
        search_map = lay.search_tokens(grid).mean(0)  # [B, D, X/16, X/16]
        score_map, boxes, size_map, offset_map = self.box_head(search_map)
        return {
            "pred_boxes": boxes.unsqueeze(1),  # [B, 1, 4]
            "score_map": score_map,
            "size_map": size_map,
            "offset_map": offset_map,
            "backbone_feat": lay.real_tokens(grid).mean(0),  # [B, D, n_t + n_s]
        }


def _register(
    name: str,
    description: str,
    tiny: bool = True,
    notes: str = "",
    extra: dict | None = None,
    weights: str | None = None,
    **kwargs: Any,
) -> None:
    register_model(
        ModelConfig(
            name=name,
            family="spikformer_track",
            variant="counts",
            builder=SpikformerTracker,
            kwargs=kwargs,
            data=DataConfig(
                (2, kwargs["search_size"], kwargs["search_size"]), crop_pct=None, event_frames=True
            ),
            num_classes=0,
            T=kwargs["T"],
            source=SOURCE,
            description=description,
            tiny=tiny,
            notes=notes,
            extra=dict(extra or {}),
            task="tracking",
            weights=weights,
        )
    )


_register(
    "spikformer_track_synth",
    "Spikformer tracker for the synthetic 128x128 event set, trained here: dim 64, 4 heads, 4 blocks, T=4 "
    "bins per frame, head 64 ch, template 64 / search 128 (fake grid 9x9)",
    notes="train: train_tracker(model, TrackingDataset(root, 'fe108', 'train'), **config.extra['train_recipe']); "
    "~6-10 pairs/s forward+backward at 1 thread on the shared 2-core machine. Shipped weights: "
    "`bash scripts/train_tasks.sh spikformer-track` (8 epochs x 1,120 pairs, one thread, 22 min).",
    extra={"train_recipe": synth_recipe(epochs=8, samples_per_epoch=1120)},
    weights="tasks/spikformer_track_synth.pt",
    embed_dims=64,
    num_heads=4,
    mlp_ratios=4,
    depths=4,
    T=4,
    in_channels=2,
    head_channels=64,
    template_size=64,
    search_size=128,
)
_register(
    "spikformer_track_test",
    "tiny Spikformer tracker for tests: dim 32, 4 heads, 2 blocks, T=2, head 16 ch, template 32 / search 64",
    embed_dims=32,
    num_heads=4,
    mlp_ratios=4,
    depths=2,
    T=2,
    in_channels=2,
    head_channels=16,
    template_size=32,
    search_size=64,
)
