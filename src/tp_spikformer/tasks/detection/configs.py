"""Named detector configurations (``create_model("sdt_v3_s_fcos")``) and their builder.

``<backbone>_fcos``: the backbone's official detection stage layout, :class:`.neck.SpikeFPN` and
:class:`.head.FCOSHead`. SDT-V3's detection layout gives maps at the true strides 4, 8, 16, 16; like
mmdet's FCOS configs, the neck starts at the second map (``start_level=1``: the stride-4 map would
quadruple the head's cost) and adds max-pooled levels, so the head sees strides 8, 16, 16, 32, 64 with
FCOS's size ranges (0-64, 64-128, 128-256, 256-512, 512-inf). The two stride-16 levels (after
``block3`` and after ``block4``) serve different object sizes. The neck has a BatchNorm after each conv
(``neck_norm="bn"``; ``"none"`` is the official neck, whose outputs barely reach the head's spike
threshold at initialisation: see :mod:`.neck`).

Weights: no official detector weights exist (the official repository releases only the ImageNet
backbones); initialise the backbone from an ImageNet classification checkpoint with
``init_backbone(detector, path)`` (:mod:`.backbone_init`; its head keys are dropped and reported).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Any

from ...models import create_model, get_model_config
from ...models._registry import IMAGENET_MEAN, IMAGENET_STD, DataConfig, ModelConfig, register_model
from .detector import SpikingDetector
from .head import FCOSHead
from .neck import SpikeFPN

FCOS_RANGES = ((0.0, 64.0), (64.0, 128.0), (128.0, 256.0), (256.0, 512.0), (512.0, math.inf))
SOURCE = (
    "tp_spikformer: SpikeFPN layout of BICLab/Spike-Driven-Transformer-V3@00fcd1f "
    "SDT_V3/Detection/mmdet/models/necks/spike_fpn.py with an FCOS-style spiking head (not the official "
    "Mask R-CNN)"
)
# COCO: images resized to fit 800 x 1333 (the official test scale), ImageNet statistics (mmdet's
# mean 123.675/116.28/103.53, std 58.395/57.12/57.375 in 0-255 units)
COCO_DATA = DataConfig(
    (3, 800, 1333), crop_pct=None, interpolation="bilinear", mean=IMAGENET_MEAN, std=IMAGENET_STD
)


def build_fcos_detector(
    backbone: str,
    num_classes: int,
    neck_channels: int,
    num_outs: int,
    regress_ranges: Sequence[tuple[float, float]],
    out_indices: Any = "detection",
    start_level: int = 1,
    neck_norm: str = "bn",
    stacked_convs: int = 4,
    feat_channels: int | None = None,
    norm: str = "gn",
    center_radius: float = 1.5,
    score_threshold: float = 0.05,
    nms_pre: int = 1000,
    iou_threshold: float = 0.5,
    max_detections: int = 100,
    size_divisor: int = 32,
    backbone_kwargs: dict[str, Any] | None = None,
) -> SpikingDetector:
    """Backbone ``backbone`` (a registered name, built ``features_only`` with ``out_indices`` and
    ``backbone_kwargs`` overrides) + :class:`SpikeFPN` (inputs from ``start_level``, ``num_outs``
    levels, ``neck_norm`` after its convs: ``"none"`` is the official neck) + :class:`FCOSHead`; the
    neck's strides come from the backbone's ``feature_info``."""
    net = create_model(backbone, features_only=True, out_indices=out_indices, **(backbone_kwargs or {}))
    info = net.feature_info
    neck = SpikeFPN(
        [d["num_chs"] for d in info],
        [d["reduction"] for d in info],
        neck_channels,
        num_outs,
        start_level,
        norm=neck_norm,
    )
    head = FCOSHead(
        num_classes,
        neck_channels,
        neck.strides,
        regress_ranges,
        feat_channels=feat_channels,
        stacked_convs=stacked_convs,
        norm=norm,
        center_radius=center_radius,
        score_threshold=score_threshold,
        nms_pre=nms_pre,
        iou_threshold=iou_threshold,
        max_detections=max_detections,
    )
    return SpikingDetector(net, neck, head, size_divisor=size_divisor)


def register_detector(
    name: str,
    description: str,
    data: DataConfig,
    tiny: bool = False,
    notes: str = "",
    weights: str | None = None,
    **kwargs: Any,
) -> ModelConfig:
    """Register a :func:`build_fcos_detector` configuration (family and T from its backbone). The stored
    kwargs hold every builder argument (defaults filled in), so ``create_model(name, **overrides)`` can
    change any of them, e.g. ``score_threshold=0.01``."""
    base = get_model_config(kwargs["backbone"])
    defaults = {
        k: p.default
        for k, p in inspect.signature(build_fcos_detector).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    kwargs = {**defaults, **kwargs}
    return register_model(
        ModelConfig(
            name=name,
            family=base.family,
            variant="fcos",
            builder=build_fcos_detector,
            kwargs=kwargs,
            data=data,
            num_classes=kwargs["num_classes"],
            T=base.T,
            source=SOURCE,
            description=description,
            tiny=tiny,
            notes=notes,
            weights=weights,
            task="detection",
        )
    )


for _size, _neck, _label in (("t", 128, "2.7M"), ("s", 160, "5.1M"), ("m", 192, "10M"), ("l", 256, "19M")):
    register_detector(
        f"sdt_v3_{_size}_fcos",
        f"FCOS-style spiking detector on SDT-V3 {_label} (sdt_v3_{_size}), COCO 80 classes: backbone maps at "
        f"strides 4/8/16/16 (detection layout), SpikeFPN {_neck} channels from stride 8 plus two max-pooled "
        "levels (strides 8/16/16/32/64), 4-conv GN towers; images letterboxed to 800x1333, ImageNet mean/std",
        COCO_DATA,
        backbone=f"sdt_v3_{_size}",
        num_classes=80,
        neck_channels=_neck,
        num_outs=5,
        regress_ranges=FCOS_RANGES,
    )

register_detector(
    "sdt_v3_tiny_fcos",
    "tiny SDT-V3 detector for tests: sdt_v3_tiny backbone, SpikeFPN 16 channels at strides 8/16/16/32, "
    "one-conv towers, 10 classes, 64x64",
    DataConfig((3, 64, 64), crop_pct=None, interpolation="bilinear", mean=IMAGENET_MEAN, std=IMAGENET_STD),
    tiny=True,
    backbone="sdt_v3_tiny",
    num_classes=10,
    neck_channels=16,
    num_outs=4,
    stacked_convs=1,
    regress_ranges=((0.0, 16.0), (16.0, 32.0), (32.0, 64.0), (64.0, math.inf)),
)

register_detector(
    "qkformer_tiny_fcos",
    "tiny QKFormer detector for tests (a backbone with a time axis, T=2, read out by the mean over T): "
    "qkformer_tiny stages at strides 4/8/16, SpikeFPN 16 channels at strides 8/16/32, one-conv towers, "
    "10 classes, 64x64",
    DataConfig((3, 64, 64), crop_pct=None, interpolation="bilinear", mean=IMAGENET_MEAN, std=IMAGENET_STD),
    tiny=True,
    backbone="qkformer_tiny",
    out_indices=None,
    num_classes=10,
    neck_channels=16,
    num_outs=3,
    stacked_convs=1,
    regress_ranges=((0.0, 32.0), (32.0, 64.0), (64.0, math.inf)),
    backbone_kwargs={"proj_lif_mode": "per_sample"},
)

# Trained here: generated scenes (tp_spikformer.data.scenes, 128x128, 1-4 Fashion-MNIST objects of 20-70 %
# of the side, 10 classes). Backbone = the shipped sdt_v3_fmnist architecture with an RGB stem, so
# init_backbone(model, "sdt_v3_fmnist") starts it from the Fashion-MNIST classifier; normalised with the
# Fashion-MNIST statistics on every channel, which that grey stem expects.
SCENES_DATA = DataConfig(
    (3, 128, 128), crop_pct=None, interpolation="bilinear", mean=(0.2860,) * 3, std=(0.3530,) * 3
)
SCENES_RANGES = ((0.0, 24.0), (24.0, 40.0), (40.0, 64.0), (64.0, math.inf))
register_detector(
    "sdt_v3_scenes_fcos",
    "small SDT-V3 detector trained on generated scenes (10 Fashion-MNIST classes, 128x128): sdt_v3_fmnist "
    "backbone (dims 8/16/64/64) with an RGB stem, SpikeFPN 64 channels at strides 8/16/16/32, two-conv GN "
    "towers",
    SCENES_DATA,
    backbone="sdt_v3_fmnist",
    backbone_kwargs={"in_channels": 3},
    num_classes=10,
    neck_channels=64,
    num_outs=4,
    stacked_convs=2,
    regress_ranges=SCENES_RANGES,
    notes="Shipped weights: `bash scripts/train_tasks.sh detection` (10 epochs x 6,000 training scenes from the "
    "shipped sdt_v3_scenes classifier, both cores, 25 min of training); COCO mAP 33.17 (AP50 50.00) on the "
    "first 200 validation scenes (pycocotools).",
    weights="tasks/sdt_v3_scenes_fcos.pt",
)
