"""Small scene classifiers with ImageNet-like token grids, one per family, trained here (weights shipped).

The test bed of the scorer study (issue 14): single-object scenes (``load_dataset("scenes")``: a tinted
Fashion-MNIST object, 20-70 % of the side, on a large textured background; 112 x 112, 10 classes) seen by
models whose pruned blocks work on 14 x 14 or larger grids, as the ImageNet models of the paper do (Fashion-
MNIST at 4x4-16x16 is nearly all object). Each is the family's shipped Fashion-MNIST architecture with an
RGB stem at a larger input, initialised from that classifier (``--init-from <name>_fmnist``: its grey stem
repeated over RGB and divided by 3) and then trained on the scenes; inputs are normalised with the
Fashion-MNIST statistics on every channel, which the initialising stem expects:

* ``spikformer_scenes``: ``spikformer_fmnist`` (CIFAR-style Spikformer, stride-4 stem) at 56 x 56 -> 14 x 14
  tokens, T = 4.
* ``sdt_scenes``: ``sdt_fmnist`` (SDT-V1, stride-4 stem) at 56 x 56 -> 14 x 14, T = 4.
* ``qkformer_scenes``: ``qkformer_fmnist`` (CIFAR-style QKFormer) at 56 x 56: blocks on 56 x 56 (1), 28 x 28
  (1) and 14 x 14 (2) grids, T = 4, per-sample ``proj_lif``.
* ``sdt_v3_scenes``: ``sdt_v3_fmnist`` (E-SpikeFormer, stride 16) at 224 x 224 (scenes resized 2x) -> 14 x 14
  for its 8 blocks.

Training from scratch in the 30-minute budget does not get far (SDT-V1: 19 % test top-1 after one epoch of
20,000 scenes); starting from the Fashion-MNIST features does. How they were trained: the exact commands are
``scripts/train_scenes.sh``; epochs, minutes, threads and test top-1 are in :data:`TRAINED` and in each
configuration's ``extra``.
"""

from __future__ import annotations

from typing import Any

from . import fashion_mnist  # noqa: F401  (registers the *_fmnist configurations these derive from)
from ._registry import DataConfig, ModelConfig, get_model_config, register_model

SCENE_MEAN = (0.2860,) * 3  # the Fashion-MNIST statistics, which the initialising grey stems expect
SCENE_STD = (0.3530,) * 3
SOURCE = "tp_spikformer: trained from scratch on single-object scenes (scripts/train_scenes.sh)"

# Results of scripts/train_scenes.sh (runs/scenes/<name>/metrics.json); None = not trained yet.
TRAINED: dict[str, dict[str, Any] | None] = {
    "spikformer_scenes": {
        "epochs": 2,
        "train_minutes": 27.0,
        "wall_minutes": 28.1,
        "test_top1": 33.60,
        "parameters": 42_446,
        "init_from": "spikformer_fmnist",
        "threads": 1,
        "train_scenes": 15_000,
    },
    "sdt_scenes": {
        "epochs": 2,
        "train_minutes": 19.7,
        "wall_minutes": 20.1,
        "test_top1": 40.55,
        "parameters": 92_904,
        "init_from": "sdt_fmnist",
        "threads": 1,
    },
    "qkformer_scenes": {
        "epochs": 1,
        "train_minutes": 26.4,
        "wall_minutes": 27.1,
        "test_top1": 21.45,
        "parameters": 49_166,
        "init_from": "qkformer_fmnist",
        "threads": 1,
    },
    "sdt_v3_scenes": {
        "epochs": 2,
        "train_minutes": 28.2,
        "wall_minutes": 29.6,
        "test_top1": 64.40,
        "parameters": 849_490,
        "init_from": "sdt_v3_fmnist",
        "threads": 2,
    },
}


def _data(size: int) -> DataConfig:
    return DataConfig((3, size, size), crop_pct=1.0, interpolation="bilinear", mean=SCENE_MEAN, std=SCENE_STD)


def _register(name: str, description: str, size: int, notes: str = "") -> None:
    """``<family>_scenes``: the family's ``<family>_fmnist`` configuration with an RGB stem at ``size`` x ``size``
    (every other constructor argument is that classifier's, so its weights initialise this one)."""
    base = get_model_config(name.replace("_scenes", "_fmnist"))
    kwargs = {**base.kwargs, "img_size_h": size, "img_size_w": size, "in_channels": 3}
    result = TRAINED[name]
    if result:
        description += (
            f"; trained {result['epochs']} epochs in {result['train_minutes']:.0f} min on {result['threads']} CPU "
            f"thread(s) from {result['init_from']}: "
            f"scene test top-1 {result['test_top1']:.2f}%"
        )
    register_model(
        ModelConfig(
            name=name,
            family=base.family,
            variant=base.variant,
            builder=base.builder,
            kwargs=kwargs,
            data=_data(size),
            num_classes=kwargs["num_classes"],
            T=kwargs.get("T"),
            source=SOURCE,
            description=description,
            notes=notes,
            weights=f"scenes/{name}.pt" if result else None,
            extra=dict(result or {}),
        )
    )


_register(
    "spikformer_scenes",
    "Spikformer-2-32 (spikformer_fmnist with an RGB stem) for scenes: 3x56x56, T=4, 4 heads, 2 blocks on 14x14 "
    "tokens",
    56,
)
_register(
    "sdt_scenes",
    "SDT-V1-2-48 (sdt_fmnist with an RGB stem) for scenes: 3x56x56, T=4, 4 heads, 2 blocks on 14x14 tokens "
    "(pooling_stat 1100)",
    56,
)
_register(
    "qkformer_scenes",
    "QKFormer-4-32 (qkformer_fmnist with an RGB stem) for scenes: 3x56x56, T=4, dims 8/16/32, 8 heads (forced), "
    "1+1+2 blocks on 56x56/28x28/14x14 grids",
    56,
    notes="proj_lif_mode='per_sample': trained from scratch, no batch-coupled compatibility needed.",
)
_register(
    "sdt_v3_scenes",
    "E-SpikeFormer (sdt_v3_fmnist with an RGB stem, dims 8/16/64/64) for scenes: 3x224x224 (scenes resized 2x), "
    "no T, 4 heads, 6+2 transformer blocks on 14x14 tokens",
    224,
)
