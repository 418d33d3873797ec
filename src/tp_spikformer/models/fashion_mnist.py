"""Small Fashion-MNIST models, one per family, trained from scratch on a 2-core CPU (weights shipped).

These are NOT official configurations: they use the official classes (CIFAR-style variants for Spikformer,
SDT-V1 and QKFormer at 32x32, the base E-SpikeFormer at 64x64) with 1 input channel, 10 classes and small
widths, so that each trains in under 30 minutes on 2 CPU cores. Fashion-MNIST's 28x28 images are resized
(bilinear) to the input size and normalised with the training-set statistics (mean 0.2860, std 0.3530).
The multi-step families use T=4 so the temporal TP scorer has several time steps to compare.

``create_model("<name>", pretrained=True)`` loads the shipped float32 weights
(``assets/fashion_mnist/<name>.pt``); how they were trained (exact commands, wall time, accuracy) is in
``assets/fashion_mnist/README.md`` and ``scripts/train_fashion_mnist.sh``.
"""

from __future__ import annotations

from ._registry import DataConfig, ModelConfig, register_model
from .qkformer import CifarSpikingTransformer
from .sdt import SpikeDrivenTransformer
from .sdt_v3 import EfficientSpikeFormer
from .spikformer import SpikformerCifar

FMNIST_MEAN = (0.2860,)
FMNIST_STD = (0.3530,)
SOURCE = "tp_spikformer: trained from scratch on Fashion-MNIST (scripts/train_fashion_mnist.sh)"


def _data(size: int) -> DataConfig:
    return DataConfig((1, size, size), crop_pct=None, interpolation="bilinear", mean=FMNIST_MEAN, std=FMNIST_STD)


def _register(name, family, variant, builder, description, size, notes="", weights=True, **kwargs):
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
            weights=f"fashion_mnist/{name}.pt" if weights else None,
        )
    )


_register(
    "spikformer_fmnist",
    "spikformer",
    "cifar",
    SpikformerCifar,
    "Spikformer-2-64 (CIFAR code) for Fashion-MNIST: 1x32x32, T=4, 4 heads, 8x8 tokens; "
    "PENDING_SPIKFORMER",
    32,
    img_size_h=32, img_size_w=32, patch_size=4, in_channels=1, num_classes=10, embed_dims=64, num_heads=4,
    mlp_ratios=4, qkv_bias=False, depths=2, sr_ratios=1, T=4,
)

_register(
    "sdt_fmnist",
    "sdt_v1",
    "cifar",
    SpikeDrivenTransformer,
    "SDT-V1-2-64 (max-pools after the first two stem stages, pooling_stat 1100) for Fashion-MNIST: 1x32x32, T=4, 4 heads, 8x8 tokens; "
    "PENDING_SDT",
    32,
    img_size_h=32, img_size_w=32, patch_size=4, in_channels=1, num_classes=10, embed_dims=64, num_heads=4,
    mlp_ratios=4, qkv_bias=False, depths=2, sr_ratios=1, T=4, pooling_stat="1100", spike_mode="lif",
    dvs_mode=False, TET=False,
)

_register(
    "qkformer_fmnist",
    "qkformer",
    "cifar",
    CifarSpikingTransformer,
    "QKFormer-4-64 (CIFAR code) for Fashion-MNIST: 1x32x32, T=4, dims 16/32/64, 8 heads (forced), "
    "1+1+2 blocks on 32x32/16x16/8x8 grids; PENDING_QKFORMER",
    32,
    notes=(
        "proj_lif_mode='per_sample' (LIF over T only; every sample independent of its batch): this model is "
        "trained from scratch, so it needs no compatibility with the official batch-coupled proj_lif "
        "(QKFormer issue #14) that the official checkpoints were trained with."
    ),
    img_size_h=32, img_size_w=32, patch_size=4, in_channels=1, num_classes=10, embed_dims=64, num_heads=8,
    mlp_ratios=4, qkv_bias=False, depths=4, sr_ratios=1, T=4, proj_lif_mode="per_sample",
)

_register(
    "sdt_v3_fmnist",
    "sdt_v3",
    "base",
    EfficientSpikeFormer,
    "E-SpikeFormer (SDT-V3 base) dims 8/16/64/64 for Fashion-MNIST: 1x64x64, no T (multi-spike), 4 heads, "
    "6+2 blocks on a 4x4 grid; PENDING_SDT_V3",
    64,
    img_size_h=64, img_size_w=64, patch_size=16, in_channels=1, num_classes=10, embed_dim=(8, 16, 64, 64),
    num_heads=4, mlp_ratios=4, qkv_bias=False, depths=8, sr_ratios=1,
)
