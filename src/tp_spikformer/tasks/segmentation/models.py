"""Registered segmentation configurations (``ModelConfig.task == "segmentation"``), built by name.

    create_model("sdt_v3_l_semfpn")                                   # the official 19M ADE20K design
    create_model("sdt_v3_l_semfpn", checkpoint="iter_160000.pth")     # an mmseg checkpoint of it, strict
    create_model("sdt_v3_l_semfpn", backbone_checkpoint="19M.pth")   # ImageNet weights for the backbone
    create_model("sdt_v3_scenes_semfpn", num_classes=5)               # any constructor argument overrides

* ``sdt_v3_{t,s,m,l}_semfpn``: SDT-V3 segmentation backbone (strides 2/4/8/16, ``layer_scale1/2/3`` at
  1e-6) + :class:`~.semfpn.QFPN` + :class:`~.semfpn.QFPNHead`, 128 channels, ADE20K's 150 classes, 512x512
  crops, ImageNet mean/std (``configs/EFSDTv2/fpn_sdtv3_512x512_{19M,10M}_ade20k.py`` for ``l`` / ``m``;
  ``t`` and ``s`` are the same design on the smaller base models, which have no official segmentation config).
* ``sdt_v3_scenes_semfpn``: a small configuration meant to be trained on this machine on the generated
  scenes (128x128 canvases, 11 classes: background + the 10 Fashion-MNIST classes), its backbone initialised
  from the shipped ``sdt_v3_fmnist`` classifier (``backbone_checkpoint="sdt_v3_fmnist"``; grey stem -> RGB).
* ``<family>_tiny_semfpn``: test sizes on each family's tiny backbone (64x64 inputs, 11 classes): SDT-V3 and
  SDT-V2 at their official segmentation strides, QKFormer's three stages, and evenly spaced block outputs of
  the single-stride Spikformer, SDT-V1 and Spikingformer.

``backbone_checkpoint`` (a classification or segmentation checkpoint, or the name of a configuration with
shipped weights) loads into the backbone alone, as the detectors' ``init_backbone`` does: the rules of
``load_checkpoint`` (classifier keys dropped and reported, ``backbone.`` prefix taken by name, the layer
scales missing from a classification file reported as initialised), and a grey-image stem repeated over the
three RGB channels (divided by 3).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...models import DataConfig, ModelConfig, create_model, get_model_config, register_model
from ...models._registry import IMAGENET_MEAN, IMAGENET_STD
from ..detection.backbone_init import init_backbone
from .semfpn import QFPN, QFPNHead, SpikingSegmenter

SOURCE = (
    "BICLab/Spike-Driven-Transformer-V3 SDT_V3/Segmentation: mmseg/models/necks/fpn.py:QFPN, "
    "mmseg/models/decode_heads/fpn_head.py:QFPNHead, configs/EFSDTv2/fpn_sdtv3_512x512_19M_ade20k.py"
)
ADE20K_CLASSES = 150
SCENE_CLASSES = 11  # background + 10 Fashion-MNIST classes (tp_spikformer.data.scenes.SEMANTIC_CLASSES)


def single_scale_indices(depth: int, levels: int = 4) -> tuple[int, ...]:
    """Block outputs for a single-stride backbone (Spikformer, SDT-V1): ``levels`` evenly spaced blocks
    ending with the last one (depth 8: 1, 3, 5, 7; depth 2: 0, 1)."""
    return tuple(sorted({max(0, round((k + 1) * depth / levels) - 1) for k in range(levels)}))


def build_semfpn(
    backbone: str,
    num_classes: int = ADE20K_CLASSES,
    out_indices: str | Sequence[int] | None = "segmentation",
    channels: int = 128,
    backbone_kwargs: dict[str, Any] | None = None,
    backbone_checkpoint: Any = None,
    dropout_ratio: float = 0.0,
    align_corners: bool = False,
) -> SpikingSegmenter:
    """A :class:`SpikingSegmenter` on the registered backbone ``backbone`` (a classification configuration).

    ``out_indices``: the backbone's stage outputs fed to the neck (a named layout such as SDT-V3's
    ``"segmentation"``, a list, or ``"single_scale"``: evenly spaced block outputs of a one-stride backbone,
    see :func:`single_scale_indices`). ``channels``: neck output and head width (official: 128).
    ``backbone_kwargs``: constructor overrides of the backbone (e.g. ``layer_scale_init_value=1e-6``, ``T``).
    ``backbone_checkpoint``: weights for the backbone only: a path, a state dict, or the name of a configuration
    whose weights ship with the package (``"sdt_v3_fmnist"``); loaded by ``init_backbone`` (classifier keys
    dropped, ``backbone.`` prefix taken, a grey stem repeated over RGB), strict otherwise.
    """
    single = out_indices == "single_scale"
    net = create_model(
        backbone,
        features_only=True,
        out_indices=None if single else out_indices,
        **(backbone_kwargs or {}),
    )
    if single:
        strides = {d["reduction"] for d in net.feature_info}
        if len(strides) != 1:
            raise ValueError(
                f"out_indices='single_scale' is for one-stride backbones (Spikformer, SDT-V1); '{backbone}' has "
                f"strides {sorted(strides)}: pass its stage indices instead"
            )
        net.as_backbone(single_scale_indices(len(net.feature_info)))
    info = net.feature_info
    widths = [d["num_chs"] for d in info]
    neck = QFPN(widths, channels)
    head = QFPNHead(
        [d["reduction"] for d in info],
        num_classes,
        channels,
        [channels] * len(info),
        dropout_ratio=dropout_ratio,
        align_corners=align_corners,
    )
    segmenter = SpikingSegmenter(net, neck, head, align_corners=align_corners)
    if backbone_checkpoint is not None:
        init_backbone(segmenter, backbone_checkpoint)
    return segmenter


# -- named configurations ---------------------------------------------------------------------------

ADE20K_DATA = DataConfig(
    (3, 512, 512), crop_pct=None, interpolation="bilinear", mean=IMAGENET_MEAN, std=IMAGENET_STD
)
# the Fashion-MNIST statistics on every channel: an RGB stem made from the grey sdt_v3_fmnist stem (kernel
# repeated, divided by 3) then computes what the grey stem computed on the channel mean (as the detector's)
SCENES_DATA = DataConfig(
    (3, 128, 128), crop_pct=None, interpolation="bilinear", mean=(0.2860,) * 3, std=(0.3530,) * 3
)
TINY_DATA = DataConfig(
    (3, 64, 64), crop_pct=None, interpolation="bilinear", mean=IMAGENET_MEAN, std=IMAGENET_STD
)
ADE20K_EXTRA = {
    "reduce_zero_label": True,
    "ignore_index": 255,
    "test_scale": (2048, 512),
    "crop_size": (512, 512),
}
SCENES_EXTRA = {"reduce_zero_label": False, "ignore_index": 255, "crop_size": (128, 128)}


def _register(
    name: str,
    backbone: str,
    description: str,
    data: DataConfig,
    num_classes: int,
    *,
    out_indices: Any,
    channels: int = 128,
    backbone_kwargs: dict[str, Any] | None = None,
    tiny: bool = False,
    extra: dict[str, Any] | None = None,
    notes: str = "",
    weights: str | None = None,
) -> None:
    base = get_model_config(backbone)
    register_model(
        ModelConfig(
            name=name,
            family=base.family,
            variant="semfpn",
            builder=build_semfpn,
            kwargs={
                "backbone": backbone,
                "num_classes": num_classes,
                "out_indices": out_indices,
                "channels": channels,
                "backbone_kwargs": dict(backbone_kwargs or {}),
                "backbone_checkpoint": None,
                "dropout_ratio": 0.0,
                "align_corners": False,
            },
            data=data,
            num_classes=num_classes,
            T=base.T,
            source=SOURCE,
            description=description,
            tiny=tiny,
            notes=notes,
            extra=dict(extra or {}),
            task="segmentation",
            weights=weights,
        )
    )


_OFFICIAL_SEG = {"l": "fpn_sdtv3_512x512_19M_ade20k.py", "m": "fpn_sdtv3_512x512_10M_ade20k.py"}
for _size in ("t", "s", "m", "l"):
    _register(
        f"sdt_v3_{_size}_semfpn",
        f"sdt_v3_{_size}",
        f"Semantic FPN (QFPN + QFPNHead, 128 ch) on the SDT-V3 {_size} segmentation backbone, ADE20K 150 "
        f"classes, 512x512 crops, logits at stride 2"
        + (
            f" (configs/EFSDTv2/{_OFFICIAL_SEG[_size]})"
            if _size in _OFFICIAL_SEG
            else " (no official config)"
        ),
        ADE20K_DATA,
        ADE20K_CLASSES,
        out_indices="segmentation",
        backbone_kwargs={"layer_scale_init_value": 1e-6},
        extra=ADE20K_EXTRA,
    )

_TINY_DESC = "tiny {} Semantic FPN for tests: 16 channels, 64x64 inputs, 11 classes"
_register(
    "sdt_v3_tiny_semfpn",
    "sdt_v3_tiny",
    _TINY_DESC.format("SDT-V3"),
    TINY_DATA,
    SCENE_CLASSES,
    out_indices="segmentation",
    channels=16,
    backbone_kwargs={"layer_scale_init_value": 1e-6},
    tiny=True,
    extra=SCENES_EXTRA,
)
_register(
    "spikformer_tiny_semfpn",
    "spikformer_tiny",
    _TINY_DESC.format("Spikformer (single stride 4)"),
    TINY_DATA,
    SCENE_CLASSES,
    out_indices="single_scale",
    channels=16,
    tiny=True,
    extra=SCENES_EXTRA,
)
_register(
    "sdt_tiny_semfpn",
    "sdt_tiny",
    _TINY_DESC.format("SDT-V1 (single stride 4)"),
    TINY_DATA,
    SCENE_CLASSES,
    out_indices="single_scale",
    channels=16,
    tiny=True,
    extra=SCENES_EXTRA,
)
_register(
    "qkformer_tiny_semfpn",
    "qkformer_tiny",
    _TINY_DESC.format("QKFormer (strides 4/8/16)"),
    TINY_DATA,
    SCENE_CLASSES,
    out_indices=None,
    channels=16,
    tiny=True,
    extra=SCENES_EXTRA,
)

_register(
    "sdt_v2_tiny_semfpn",
    "sdt_v2_tiny",
    _TINY_DESC.format("SDT-V2 (strides 2/4/8/16, T=2)"),
    TINY_DATA,
    SCENE_CLASSES,
    out_indices="segmentation",
    channels=16,
    tiny=True,
    extra=SCENES_EXTRA,
)
_register(
    "spikingformer_tiny_semfpn",
    "spikingformer_tiny",
    _TINY_DESC.format("Spikingformer (single stride 4)"),
    TINY_DATA,
    SCENE_CLASSES,
    out_indices="single_scale",
    channels=16,
    tiny=True,
    extra=SCENES_EXTRA,
)

_register(
    "sdt_v3_scenes_semfpn",
    "sdt_v3_fmnist",
    "small SDT-V3 Semantic FPN for the generated scenes: the sdt_v3_fmnist backbone (dims 8/16/64/64, 4 heads) "
    "with an RGB stem and no layer scales, QFPN + QFPNHead at 32 channels, 128x128 canvases, 11 classes "
    "(background + Fashion-MNIST), logits at stride 2; sized to train on this project's 2-core CPU from the "
    "shipped classifier (backbone_checkpoint='sdt_v3_fmnist')",
    SCENES_DATA,
    SCENE_CLASSES,
    out_indices="segmentation",
    channels=32,
    backbone_kwargs={"in_channels": 3},
    extra=SCENES_EXTRA,
    notes="0.95 M parameters (neck + head 0.11 M). No layer scales: at 1e-6 they would switch the pretrained "
    "transformer blocks off at the start of a short run (the official segmentation backbone has them). "
    "Shipped weights: `bash scripts/train_tasks.sh segmentation` (9 epochs x 5,000 training scenes from the "
    "shipped sdt_v3_scenes classifier, both cores, 38 min wall on the shared machine); mIoU 42.86 % on the first "
    "200 validation scenes after the last epoch (49.0 % on 200 training scenes; 45 % of object pixels get "
    "another object's class, 4 % background: recognition-bound, benchmarks/segmentation_errors.py). Not "
    "overfitting: the same 5,625 steps on 45,000 fresh scenes (--dataset scenes:45000 --epochs 1) gave 42.96 %.",
    weights="tasks/sdt_v3_scenes_semfpn.pt",
)
