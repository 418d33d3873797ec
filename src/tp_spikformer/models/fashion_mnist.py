"""Small Fashion-MNIST models, one per family, trained from scratch on a 2-core CPU (weights shipped).

These are NOT official configurations: they use the official classes (CIFAR-style variants for Spikformer,
SDT-V1 and QKFormer at 32x32, the base E-SpikeFormer at 64x64) with 1 input channel, 10 classes and small
widths, so that each trains in under 30 minutes on one CPU core. Fashion-MNIST's 28x28 images are resized
(bilinear) to the input size and normalised with the training-set statistics (mean 0.2860, std 0.3530).
The multi-step families use T=4 so the temporal TP scorer has several time steps to compare.

``create_model("<name>", pretrained=True)`` loads the shipped float32 weights
(``assets/fashion_mnist/<name>.pt``). How they were trained (exact commands, wall time, accuracy) is in
``assets/fashion_mnist/README.md`` and ``scripts/train_fashion_mnist.sh``; the numbers are also in each
configuration's ``extra``: ``test_top1`` (full 10k test split), ``slice_top1`` (the shipped 2,000-image
slice ``assets/fashion_mnist/fashion_mnist_test_2000.npz``, evaluated in batches of 250 on the CPU),
``train_minutes`` (wall time of the training loop on the project machine, 1 thread) and ``epochs``.
"""

from __future__ import annotations

from typing import Any

from ._registry import DataConfig, ModelConfig, register_model
from .qkformer import CifarSpikingTransformer
from .sdt import SpikeDrivenTransformer
from .sdt_v3 import EfficientSpikeFormer
from .spikformer import SpikformerCifar

FMNIST_MEAN = (0.2860,)
FMNIST_STD = (0.3530,)
SOURCE = "tp_spikformer: trained from scratch on Fashion-MNIST (scripts/train_fashion_mnist.sh)"

# Results of scripts/train_fashion_mnist.sh (runs/fmnist/<name>/metrics.json); None = not trained yet.
TRAINED: dict[str, dict[str, Any] | None] = {
    "spikformer_fmnist": {
        "epochs": 3,
        "train_minutes": 21.0,
        "wall_minutes": 23.2,
        "test_top1": 86.03,
        "slice_top1": 87.35,
        "parameters": 42_374,
    },
    "sdt_fmnist": {
        "epochs": 3,
        "train_minutes": 22.2,
        "wall_minutes": 23.5,
        "test_top1": 85.09,
        "slice_top1": 85.60,
        "parameters": 92_796,
    },
    "qkformer_fmnist": {
        "epochs": 4,
        "train_minutes": 21.6,
        "wall_minutes": 22.6,
        "test_top1": 85.46,
        "slice_top1": 86.15,
        "parameters": 49_094,
    },
    "sdt_v3_fmnist": {
        "epochs": 4,
        "train_minutes": 27.7,
        "wall_minutes": 28.8,
        "test_top1": 88.08,
        "slice_top1": 88.20,
        "parameters": 849_098,
    },
}


def _data(size: int) -> DataConfig:
    return DataConfig(
        (1, size, size), crop_pct=None, interpolation="bilinear", mean=FMNIST_MEAN, std=FMNIST_STD
    )


def _register(name, family, variant, builder, description, size, notes="", **kwargs):
    result = TRAINED[name]
    if result:
        description += (
            f"; trained {result['epochs']} epochs in {result['train_minutes']:.0f} min on 1 CPU core: "
            f"Fashion-MNIST test top-1 {result['test_top1']:.2f}% (shipped 2k slice: {result['slice_top1']:.2f}%)"
        )
    return register_model(
        ModelConfig(
            name=name,
            family=family,
            variant=variant,
            builder=builder,
            kwargs=kwargs,
            data=_data(size),
            num_classes=kwargs["num_classes"],
            T=kwargs.get("T"),
            source=SOURCE,
            description=description,
            notes=notes,
            weights=f"fashion_mnist/{name}.pt" if result else None,
            extra=dict(result or {}),
        )
    )


_register(
    "spikformer_fmnist",
    "spikformer",
    "cifar",
    SpikformerCifar,
    "Spikformer-2-32 (CIFAR code) for Fashion-MNIST: 1x32x32, T=4, 4 heads, 2 blocks on 8x8 tokens",
    32,
    img_size_h=32,
    img_size_w=32,
    patch_size=4,
    in_channels=1,
    num_classes=10,
    embed_dims=32,
    num_heads=4,
    mlp_ratios=4,
    qkv_bias=False,
    depths=2,
    sr_ratios=1,
    T=4,
)

_register(
    "sdt_fmnist",
    "sdt_v1",
    "cifar",
    SpikeDrivenTransformer,
    "SDT-V1-2-48 for Fashion-MNIST: 1x32x32, T=4, 4 heads, 2 blocks on 8x8 tokens (stem max-pools after "
    "its first two stages: pooling_stat 1100)",
    32,
    img_size_h=32,
    img_size_w=32,
    patch_size=4,
    in_channels=1,
    num_classes=10,
    embed_dims=48,
    num_heads=4,
    mlp_ratios=4,
    qkv_bias=False,
    depths=2,
    sr_ratios=1,
    T=4,
    pooling_stat="1100",
    spike_mode="lif",
    dvs_mode=False,
    TET=False,
)

_register(
    "qkformer_fmnist",
    "qkformer",
    "cifar",
    CifarSpikingTransformer,
    "QKFormer-4-32 (CIFAR code) for Fashion-MNIST: 1x16x16, T=4, dims 8/16/32, 8 heads (forced), "
    "1+1+2 blocks on 16x16/8x8/4x4 grids",
    16,
    notes=(
        "proj_lif_mode='per_sample' (LIF over T only; every sample independent of its batch): this model is "
        "trained from scratch, so it needs no compatibility with the official batch-coupled proj_lif "
        "(QKFormer issue #14) that the official checkpoints were trained with. Input 16x16, not 32x32: the "
        "CIFAR QKFormer runs its first stage on the full-resolution grid, and at 32x32 (1024 tokens x T=4) "
        "it trains at ~55 img/s on one core, about 1.4 epochs in 30 minutes; at 16x16 it trains ~3.5x faster."
    ),
    img_size_h=16,
    img_size_w=16,
    patch_size=4,
    in_channels=1,
    num_classes=10,
    embed_dims=32,
    num_heads=8,
    mlp_ratios=4,
    qkv_bias=False,
    depths=4,
    sr_ratios=1,
    T=4,
    proj_lif_mode="per_sample",
)

_register(
    "sdt_v3_fmnist",
    "sdt_v3",
    "base",
    EfficientSpikeFormer,
    "E-SpikeFormer (SDT-V3 base) dims 8/16/64/64 for Fashion-MNIST: 1x64x64, no T (multi-spike), 4 heads, "
    "6+2 transformer blocks on a 4x4 grid",
    64,
    img_size_h=64,
    img_size_w=64,
    patch_size=16,
    in_channels=1,
    num_classes=10,
    embed_dim=(8, 16, 64, 64),
    num_heads=4,
    mlp_ratios=4,
    qkv_bias=False,
    depths=8,
    sr_ratios=1,
)
