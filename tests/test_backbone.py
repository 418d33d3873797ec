"""Stage features for dense heads (timm's convention) and backbone checkpoints, over the registry."""

import logging

import pytest
import torch

from tp_spikformer.models import (
    CheckpointError,
    create_model,
    get_model_config,
    list_models,
    load_checkpoint,
)
from tp_spikformer.pruning import apply_tp

TINY = [n for n in list_models("*_tiny") if get_model_config(n).task == "classification"]


def channels_and_grid(t, time_axis):
    return (t.shape[2] if time_axis else t.shape[1]), tuple(t.shape[-2:])


@pytest.mark.parametrize("name", TINY)
def test_feature_info_describes_every_stage_output(name, tiny, inputs):
    model = tiny(name)
    x = inputs(model)
    info = model.feature_info
    with torch.no_grad():
        final, feats = model.forward_intermediates(x)
    assert len(feats) == len(info) >= 1
    h, w = x.shape[-2:]
    for d, f in zip(info, feats):
        assert set(d) >= {"num_chs", "reduction", "module", "index", "time_axis"}
        assert f.dim() == (5 if d["time_axis"] else 4)
        chs, grid = channels_and_grid(f, d["time_axis"])
        assert chs == d["num_chs"], d
        assert grid == (h // d["reduction"], w // d["reduction"]), d
        assert isinstance(model.get_submodule(d["module"]), torch.nn.Module)
    with torch.no_grad():
        assert torch.equal(final, model.forward_features(x))
        assert torch.equal(feats[-1], final)


@pytest.mark.parametrize("name", TINY)
def test_features_only_backbone_returns_the_chosen_stages(name, tiny, inputs):
    full = tiny(name)
    n = len(full.feature_info)
    out_indices = [0, n - 1] if n > 1 else [0]
    backbone = create_model(name, features_only=True, out_indices=out_indices).eval()
    load_checkpoint(backbone, full.state_dict())  # classification weights: head keys dropped
    assert backbone.load_report["dropped_head"] == [k for k in full.state_dict() if k.startswith("head.")]
    assert not any(k.startswith("head.") for k in backbone.state_dict())
    x = inputs(full)
    with torch.no_grad():
        feats = backbone(x)
        _, ref = full.forward_intermediates(x, out_indices)
    assert [d["index"] for d in backbone.feature_info] == out_indices
    assert len(feats) == len(ref) and all(torch.equal(a, b) for a, b in zip(feats, ref))


def test_out_indices_forms_and_errors(tiny):
    model = tiny("sdt_v3_tiny")
    assert model.resolve_indices(None) == (0, 1, 2, 3, 4)
    assert model.resolve_indices(2) == (3, 4)
    assert model.resolve_indices([-1, 0]) == (4, 0)
    assert model.resolve_indices("segmentation") == (0, 1, 2, 4)
    with pytest.raises(ValueError, match="stages 0..4"):
        model.resolve_indices([5])
    with pytest.raises(ValueError, match="named layouts"):
        model.resolve_indices("panoptic")
    with pytest.raises(ValueError, match="features_only=True"):
        create_model("sdt_v3_tiny", out_indices=[1])


def test_stop_early_skips_the_later_stages(tiny, inputs):
    model = tiny("sdt_v3_tiny")
    ran = []
    model.block4[0].register_forward_hook(lambda *a: ran.append("block4"))
    with torch.no_grad():
        feats = model.forward_intermediates(inputs(model), [1, 2], intermediates_only=True, stop_early=True)
    assert len(feats) == 2 and ran == []
    with pytest.raises(ValueError, match="intermediates_only"):
        model.forward_intermediates(inputs(model), [1], stop_early=True)


@pytest.mark.parametrize("layout, strides", [("detection", [4, 8, 16, 16]), ("segmentation", [2, 4, 8, 16])])
def test_sdt_v3_official_downstream_layouts_on_a_non_square_image(layout, strides, tiny):
    backbone = tiny("sdt_v3_tiny", features_only=True, out_indices=layout)
    with torch.no_grad():
        feats = backbone(torch.randn(2, 3, 96, 160))
    assert [d["reduction"] for d in backbone.feature_info] == strides
    assert [tuple(f.shape[-2:]) for f in feats] == [(96 // s, 160 // s) for s in strides]
    assert all(f.dim() == 4 for f in feats)  # SDT-V3: no time axis


@pytest.mark.parametrize("name", ["spikformer_tiny", "sdt_tiny", "qkformer_tiny"])
def test_time_axis_families_keep_T(name, tiny, inputs):
    backbone = tiny(name, features_only=True)
    x = inputs(backbone)
    with torch.no_grad():
        feats = backbone(x)
    assert all(f.dim() == 5 and f.shape[0] == backbone.T and f.shape[1] == x.shape[0] for f in feats)


def test_pruned_backbone_keeps_every_stage_layout(tiny):
    backbone = tiny("sdt_v3_tiny", features_only=True, out_indices="detection")
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        dense = backbone(x)
        apply_tp(backbone, keep=0.5)
        pruned = backbone(x)
    assert [f.shape for f in pruned] == [f.shape for f in dense]
    assert torch.equal(pruned[0], dense[0])  # conv stages before the first pruned block are unchanged
    assert not torch.equal(pruned[-1], dense[-1])


def test_layer_scale_option_of_the_segmentation_backbone(caplog, tiny):
    plain = tiny("sdt_v3_tiny")
    scaled = create_model(
        "sdt_v3_tiny", features_only=True, out_indices="segmentation", layer_scale_init_value=1e-6
    )
    keys = [k for k in scaled.state_dict() if "layer_scale" in k]
    assert len(keys) == 3 * 8 and "block3.0.layer_scale1" in keys and "block4.1.layer_scale3" in keys
    assert float(scaled.block3[0].layer_scale2.detach()[0]) == pytest.approx(1e-6)
    with caplog.at_level(logging.INFO):
        load_checkpoint(scaled, plain.state_dict())  # a classification checkpoint: no layer scales in it
    assert sorted(scaled.load_report["initialised"]) == sorted(keys)
    assert "kept at their initial value" in caplog.text
    # layer scales of 1 give the classification model's features exactly
    with torch.no_grad():
        for k in keys:
            scaled.get_parameter(k).fill_(1.0)
        x = torch.randn(2, 3, 64, 64)
        assert torch.equal(scaled.eval()(x)[-1], plain.forward_features(x))


@pytest.mark.slow
def test_detector_and_tracker_checkpoints_load_into_a_backbone(tiny):
    cls = tiny("sdt_v3_tiny")
    backbone_sd = {k: v for k, v in cls.state_dict().items() if not k.startswith("head.")}
    neck = {"neck.lateral_convs.0.1.weight": torch.zeros(1), "decode_head.conv_seg.weight": torch.zeros(1)}
    mmseg = {"meta": {}, "state_dict": {**{f"backbone.{k}": v for k, v in backbone_sd.items()}, **neck}}
    sdtrack = {
        "net": {
            **{f"backbone.{k}": v for k, v in backbone_sd.items()},
            "box_head.conv5_ctr.weight": torch.zeros(1),
        }
    }
    for ckpt, ignored in ((mmseg, sorted(neck)), (sdtrack, ["box_head.conv5_ctr.weight"])):
        backbone = create_model("sdt_v3_tiny", features_only=True)
        load_checkpoint(backbone, ckpt)
        assert sorted(backbone.load_report["ignored"]) == ignored
        assert all(torch.equal(backbone.state_dict()[k], v) for k, v in backbone_sd.items())
    # strict inside the backbone: a missing backbone key still fails, with the key named
    broken = dict(mmseg["state_dict"])
    del broken["backbone.block3.0.attn.q_conv.0.weight"]
    with pytest.raises(CheckpointError, match=r"block3\.0\.attn\.q_conv\.0\.weight"):
        load_checkpoint(create_model("sdt_v3_tiny", features_only=True), broken)
    # the prefix is matched by name, never by length: "backbones." is not "backbone."
    wrong = {f"backbones.{k}": v for k, v in backbone_sd.items()}
    with pytest.raises(CheckpointError, match="unexpected keys"):
        load_checkpoint(create_model("sdt_v3_tiny", features_only=True), wrong)


@pytest.mark.slow
def test_a_classifier_keeps_strict_head_loading():
    model = create_model("sdt_tiny")
    sd = {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}
    with pytest.raises(CheckpointError, match="missing keys"):
        load_checkpoint(create_model("sdt_tiny"), sd)  # not a backbone: the head is required
