"""Segmentation models (QFPN + QFPNHead on every family), their official key layout, TP on them, the
train/evaluate engine and the retention benchmark. Tiny models, scenes generated on the fly."""

import importlib.util
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build_tiny

from tp_spikformer.data.fashion_objects import FashionObjects
from tp_spikformer.data.scenes import SceneConfig, SceneDataset
from tp_spikformer.models import create_model, get_model_config, list_models
from tp_spikformer.pruning import apply_tp, get_tp_state, remove_tp
from tp_spikformer.tasks.segmentation import (
    SegmentationMeter,
    SpikingSegmenter,
    evaluate_segmentation,
    segmentation_loss,
    train_segmentation,
)
from tp_spikformer.training.optim import poly_lr

TINY = list_models("*_tiny_semfpn")
ROOT = Path(__file__).resolve().parents[1]


def tiny(name, **kw):
    model = build_tiny(name, **kw)
    with torch.no_grad():  # trained layer scales (at their 1e-6 init the pruned branches change nothing)
        for n, p in model.named_parameters():
            if "layer_scale" in n:
                p.fill_(1.0)
    return model


def images(batch=2, h=64, w=64, seed=0):
    return torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(seed))


def sprites(n=20, seed=0):
    """Fashion-MNIST-like items made on the fly: a filled box per item, 2 items per class."""
    rng = np.random.default_rng(seed)
    items = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        y0, x0 = rng.integers(2, 8, 2)
        items[i, y0 : y0 + rng.integers(12, 20), x0 : x0 + rng.integers(12, 20)] = 200
    return FashionObjects.from_arrays(items, np.arange(n) % 10, split="test")


def scenes(n=8, size=64, seed=0):
    return SceneDataset(SceneConfig(height=size, width=size, split="test", seed=seed), n, sprites())


# -- the official key layout -------------------------------------------------------------------------


def _bn(prefix, c):
    return {
        f"{prefix}.weight": (c,),
        f"{prefix}.bias": (c,),
        f"{prefix}.running_mean": (c,),
        f"{prefix}.running_var": (c,),
        f"{prefix}.num_batches_tracked": (),
    }


def official_neck_head_shapes(in_channels, channels, feature_strides, num_classes):
    """Keys and shapes of mmseg's QFPN + QFPNHead, written from the official module tree, in its order:
    neck ``lateral_convs.i = Sequential(Conv1x1 bias, BN)``, ``fpn_convs.i = Sequential(Conv3x3 bias, BN)``;
    head ``conv_seg`` (BaseDecodeHead) then ``scale_heads.i = [Sequential(spike, Conv3x3 no bias, BN),
    Upsample (levels after the first)] x max(1, log2(stride_i / stride_0))``."""
    shapes = {}
    for i, c in enumerate(in_channels):
        shapes[f"neck.lateral_convs.{i}.0.weight"] = (channels, c, 1, 1)
        shapes[f"neck.lateral_convs.{i}.0.bias"] = (channels,)
        shapes.update(_bn(f"neck.lateral_convs.{i}.1", channels))
    for i in range(len(in_channels)):
        shapes[f"neck.fpn_convs.{i}.0.weight"] = (channels, channels, 3, 3)
        shapes[f"neck.fpn_convs.{i}.0.bias"] = (channels,)
        shapes.update(_bn(f"neck.fpn_convs.{i}.1", channels))
    shapes["decode_head.conv_seg.weight"] = (num_classes, channels, 1, 1)
    shapes["decode_head.conv_seg.bias"] = (num_classes,)
    s0 = feature_strides[0]
    for i, s in enumerate(feature_strides):
        upsample = s != s0
        for k in range(max(1, int(math.log2(s) - math.log2(s0)))):
            j = 2 * k if upsample else k
            shapes[f"decode_head.scale_heads.{i}.{j}.1.weight"] = (channels, channels, 3, 3)
            shapes.update(_bn(f"decode_head.scale_heads.{i}.{j}.2", channels))
    return shapes


def test_full_size_model_has_the_official_19m_key_layout():
    with torch.device("meta"):
        seg = create_model("sdt_v3_l_semfpn")
        cls = create_model("sdt_v3_l", features_only=True, out_indices="segmentation")
    ours = {k: tuple(v.shape) for k, v in seg.state_dict().items()}
    # fpn_sdtv3_512x512_19M_ade20k.py: neck in [32, 64, 128, 360] -> 128, head 128 ch, feature_strides 4..32
    expected = official_neck_head_shapes([32, 64, 128, 360], 128, [4, 8, 16, 32], 150)
    assert [(k, v) for k, v in ours.items() if not k.startswith("backbone.")] == list(expected.items())
    backbone = {k[len("backbone.") :]: v for k, v in ours.items() if k.startswith("backbone.")}
    scales = {
        f"block{s}.{i}.layer_scale{j}" for s, n in ((3, 6), (4, 2)) for i in range(n) for j in (1, 2, 3)
    }
    assert set(backbone) == set(cls.state_dict()) | scales
    assert seg.output_stride == 2 and seg.num_classes == 150 and seg.config.task == "segmentation"


def test_official_style_state_dict_loads_strictly():
    seg = tiny("sdt_v3_tiny_semfpn")
    info = seg.backbone.feature_info
    shapes = official_neck_head_shapes([d["num_chs"] for d in info], 16, [4, 8, 16, 32], 11)
    g = torch.Generator().manual_seed(3)
    state = {
        f"backbone.{k}": torch.randn(v.shape, generator=g) if v.is_floating_point() else v + 7
        for k, v in seg.backbone.state_dict().items()
    }
    state.update({k: torch.randn(s, generator=g) if s else torch.tensor(5) for k, s in shapes.items()})
    ckpt = {"meta": {"mmseg_version": "1.x"}, "state_dict": state}  # mmengine checkpoint container
    loaded = create_model("sdt_v3_tiny_semfpn", checkpoint=ckpt)
    own = loaded.state_dict()
    assert set(own) == set(state) and all(torch.equal(own[k], state[k]) for k in state)
    del state["decode_head.conv_seg.bias"]
    partial = create_model("sdt_v3_tiny_semfpn", checkpoint={"state_dict": state}, strict=False)
    assert partial.load_report["missing"] == ["decode_head.conv_seg.bias"]  # strict loading would raise


def test_backbone_checkpoint_and_num_classes_override():
    torch.manual_seed(1)
    cls = create_model("sdt_v3_tiny")  # a classification model: head keys dropped, layer scales initialised
    seg = create_model("sdt_v3_tiny_semfpn", num_classes=5, backbone_checkpoint=cls.state_dict())
    assert seg.num_classes == 5 and seg.config.num_classes == 5
    assert seg.decode_head.conv_seg.weight.shape[0] == 5
    assert torch.equal(seg.backbone.block3[0].attn.q_conv[0].weight, cls.block3[0].attn.q_conv[0].weight)
    assert seg.backbone.load_report["dropped_head"] == ["head.weight", "head.bias"]
    assert len(seg.backbone.load_report["initialised"]) == 8 * 3  # layer_scale1/2/3 of 8 blocks
    with pytest.raises(TypeError, match="unknown override"):
        create_model("sdt_v3_tiny_semfpn", num_clases=5)


def test_scene_segmenter_starts_from_the_shipped_grey_classifier():
    seg = create_model("sdt_v3_scenes_semfpn", backbone_checkpoint="sdt_v3_fmnist")
    cls = create_model("sdt_v3_fmnist", pretrained=True)
    stem = cls.downsample1_1.encode_conv.weight  # [O, 1, 7, 7] -> [O, 3, 7, 7] / 3
    assert torch.equal(seg.backbone.downsample1_1.encode_conv.weight, stem.repeat(1, 3, 1, 1) / 3)
    assert torch.equal(seg.backbone.block4[1].mlp.fc2_conv.weight, cls.block4[1].mlp.fc2_conv.weight)
    x = torch.rand(1, 1, 64, 64)  # a grey image, normalised with the same statistics on every channel
    norm = (x - 0.2860) / 0.3530
    with torch.no_grad():
        grey = cls.eval().forward_intermediates(norm, [0], intermediates_only=True)[0]
        rgb = seg.eval().forward_features(norm.expand(1, 3, 64, 64))[0]
    assert torch.allclose(rgb, grey, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models("*_semfpn"))
def test_every_registered_semfpn_builds(name):
    cfg = get_model_config(name)
    assert cfg.task == "segmentation" and cfg.variant == "semfpn"
    with torch.device("meta"):
        seg = create_model(name)
    assert isinstance(seg, SpikingSegmenter) and seg.num_classes == cfg.num_classes
    assert seg.family == get_model_config(cfg.kwargs["backbone"]).family
    _, h, w = cfg.data.input_size
    assert h % seg.input_multiple == 0 and w % seg.input_multiple == 0
    if cfg.tiny:
        out = tiny(name)(images(1, h, w))
        assert out.shape == (1, cfg.num_classes, h // seg.output_stride, w // seg.output_stride)


# -- shapes, pruning ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("size", [(64, 64), (96, 160)])
def test_logits_at_the_head_stride_dense_and_pruned(name, size):
    seg = tiny(name)
    x = images(2, *size)
    s = seg.output_stride
    with torch.no_grad():
        dense = seg(x)
        pred = seg.predict(x)
        assert dense.shape == (2, 11, size[0] // s, size[1] // s)
        assert pred.shape == (2, *size) and pred.dtype == torch.int64
        apply_tp(seg, keep=0.5, scorer="official")
        pruned = seg(x)
    records = get_tp_state(seg).records
    assert pruned.shape == dense.shape and seg.predict(x).shape == (2, *size)
    assert records and all(r.kept < r.grid[0] * r.grid[1] for r in records)
    assert not torch.equal(pruned, dense)  # pruning changed something, in place


@pytest.mark.slow
@pytest.mark.parametrize("name", TINY)
def test_keep_all_equals_dense_bit_for_bit(name):
    seg = tiny(name)
    x = images(2, 96, 160)
    with torch.no_grad():
        dense = seg(x)
        apply_tp(seg, keep=1.0, scorer="official")
        assert torch.equal(seg(x), dense)
        remove_tp(seg)
        assert torch.equal(seg(x), dense)


def test_spikformer_reads_time_out_by_its_mean():
    seg = tiny("spikformer_tiny_semfpn")
    x = images(1)
    with torch.no_grad():
        feats = seg.forward_features(x)
        assert feats[0].dim() == 5 and feats[0].shape[0] == seg.T == 2
        expected = seg.decode_head(seg.neck([f.mean(0) for f in feats]))
        assert torch.equal(seg(x), expected)


# -- loss and engine ---------------------------------------------------------------------------------


def test_loss_ignores_index_255_hand_computed():
    logits = torch.tensor([[[[2.0, 5.0]], [[0.0, -3.0]]]])  # [1, 2 classes, 1, 2]
    target = torch.tensor([[[0, 255]]])
    ce0 = -math.log(math.exp(2.0) / (math.exp(2.0) + 1.0))  # pixel 0, class 0; pixel 1 is ignored
    assert float(segmentation_loss(logits, target)) == pytest.approx(ce0 / 2)  # mmseg: mean over all pixels
    assert float(segmentation_loss(logits, target, avg_non_ignore=True)) == pytest.approx(ce0)
    changed = logits.clone()
    changed[..., 1] = torch.tensor([-9.0, 9.0]).view(1, 2, 1)
    assert float(segmentation_loss(changed, target)) == float(segmentation_loss(logits, target))
    small = torch.zeros(1, 3, 2, 2, requires_grad=True)  # stride-2 logits are resized to the label
    loss = segmentation_loss(small, torch.full((1, 4, 4), 255))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert small.grad.abs().sum() == 0


def test_warmup_then_poly_schedule_of_the_engine():
    assert poly_lr(0, 100, 10, 1e-3) == pytest.approx(1e-3 * (1e-6 + (1 - 1e-6) * 0.1))  # from 1e-6 x lr
    assert poly_lr(9, 100, 10, 1e-3) == pytest.approx(1e-3)
    assert poly_lr(55, 100, 10, 1e-3) == pytest.approx(0.5e-3)  # power 1: linear to 0 at the end
    assert poly_lr(55, 100, 10, 1e-3, power=2.0) == pytest.approx(0.25e-3)
    assert poly_lr(100, 100, 10, 1e-3) == 0.0


@pytest.mark.slow
def test_a_few_training_steps_decrease_the_loss(tmp_path):
    torch.manual_seed(0)
    seg = create_model("sdt_v3_tiny_semfpn")
    data = scenes(8, size=32)
    result = train_segmentation(
        seg,
        data,
        scenes(4, size=32, seed=1),
        epochs=4,
        batch_size=4,
        lr=2e-3,
        warmup_iters=0,
        crop_size=32,
        ratio_range=(1.0, 1.0),
        log=None,
        out_dir=tmp_path,
        seed=0,
    )
    losses = [h["loss"] for h in result["history"]]
    assert losses[-1] < losses[0], losses
    assert result["iterations"] == 8 and result["val"]["images"] == 4
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.pt", "log.txt", "metrics.json", "model.pt"]
    reloaded = create_model("sdt_v3_tiny_semfpn", checkpoint=tmp_path / "model.pt").eval()
    seg.eval()
    x = images(1)
    with torch.no_grad():
        assert torch.equal(reloaded(x), seg(x))
    groups = torch.load(tmp_path / "checkpoint.pt")["optimizer"]["param_groups"]
    doubled = sum(len(g["params"]) for g in groups if g["lr_mult"] == 2.0)
    assert doubled == sum(1 for _ in seg.decode_head.parameters())  # the decode head at 2x lr, nothing else


@pytest.mark.slow
def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path):
    def run(out, log=None):
        torch.manual_seed(0)
        seg = create_model("sdt_v3_tiny_semfpn")
        train_segmentation(
            seg,
            scenes(8, size=32),
            epochs=2,
            batch_size=4,
            lr=2e-3,
            warmup_iters=0,
            crop_size=32,
            ratio_range=(0.8, 1.2),
            log=log,
            log_every=1,
            out_dir=out,
            seed=3,
        )
        return seg.state_dict()

    straight = run(tmp_path / "a")

    def stop_in_epoch_2(line):
        if line.startswith("epoch 2/2 iter"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", stop_in_epoch_2)
    resumed = run(tmp_path / "b")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert "resumed from" in (tmp_path / "b" / "log.txt").read_text()


class OracleSegmenter(torch.nn.Module):
    """Predicts the class written in the image's first channel (value / 10), at stride 1: a hand-made
    prediction for the engine."""

    num_classes = 4
    input_multiple = 1

    def forward(self, x):
        cls = torch.round(x[:, 0] * 10).long().clamp(0, 3)  # [B, H, W]
        return torch.nn.functional.one_hot(cls, 4).permute(0, 3, 1, 2).float() * 5.0


class HandMade(torch.utils.data.Dataset):
    """(image, label, stem) items of two sizes; the prediction is encoded in the image."""

    def __init__(self, sizes, reduce_zero_label=False):
        g = torch.Generator().manual_seed(0)
        self.items = []
        for i, (h, w) in enumerate(sizes):
            pred = torch.randint(0, 4, (h, w), generator=g)
            label = torch.randint(0, 4, (h, w), generator=g)
            label[0, :] = 255
            image = torch.stack([pred / 10.0, torch.zeros(h, w), torch.zeros(h, w)])
            self.items.append((image, label, f"img_{i}", pred))
        self.reduce_zero_label = reduce_zero_label

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i][:3]


@pytest.mark.parametrize("batch_size", [1, 3])
def test_evaluate_agrees_with_the_meter_on_a_hand_made_prediction(batch_size):
    data = HandMade([(5, 7), (5, 7), (6, 4), (5, 7)])
    meter = SegmentationMeter(4)
    for _, label, _, pred in data.items:
        meter.update(pred, label)
    r = evaluate_segmentation(OracleSegmenter(), data, batch_size=batch_size)
    expected = meter.compute()
    for key in ("mIoU", "aAcc", "mAcc", "per_class_iou", "images"):
        assert r[key] == expected[key], key


@pytest.mark.parametrize("reduce_zero_label", [False, True])
def test_prediction_pngs_carry_the_stems_and_the_annotation_convention(tmp_path, reduce_zero_label):
    from PIL import Image

    data = HandMade([(5, 7), (6, 4)], reduce_zero_label=reduce_zero_label)
    r = evaluate_segmentation(OracleSegmenter(), data, save_predictions=tmp_path / "pred")
    assert (
        sorted(os.listdir(tmp_path / "pred")) == ["img_0.png", "img_1.png"] and r["predictions_written"] == 2
    )
    for _, _, stem, pred in data.items:
        with Image.open(tmp_path / "pred" / f"{stem}.png") as img:
            assert img.mode == "L"
            assert np.array_equal(np.array(img), pred.numpy().astype(np.uint8) + int(reduce_zero_label))


def test_scenes_get_make_scenes_stems_and_padding_keeps_the_label_size(tmp_path):
    seg = tiny("sdt_v3_tiny_semfpn")
    data = SceneDataset(SceneConfig(height=72, width=88, split="test"), 2, sprites())  # not multiples of 16
    r = evaluate_segmentation(seg, data, save_predictions=tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["scene_000000.png", "scene_000001.png"] and r["images"] == 2


# -- benchmark ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_retention_benchmark_runs_on_a_tiny_model(tmp_path, monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location(
        "segmentation_retention", ROOT / "benchmarks" / "segmentation_retention.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    import tp_spikformer.data.scenes as scenes_module

    monkeypatch.setattr(scenes_module, "FashionObjects", lambda *a, **k: sprites())  # no IDX files needed
    weights = tmp_path / "w.pt"
    torch.save({"model": tiny("sdt_v3_tiny_semfpn").state_dict()}, weights)
    out = tmp_path / "r.json"
    argv = [
        "--model",
        "sdt_v3_tiny_semfpn",
        "--checkpoint",
        str(weights),
        "--scenes",
        "4",
        "--keeps",
        "0.5",
        "--scorers",
        "official",
        "random",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--batch-sizes",
        "2",
        "--energy-images",
        "2",
        "--eval-batch-size",
        "2",
        "--save-predictions",
        str(tmp_path / "pred"),
        "--out",
        str(out),
    ]
    result = bench.main(argv)
    rows = {r["variant"]: r for r in result["rows"]}
    assert list(rows) == ["dense", "tp_official_0.5", "tp_random_0.5"]
    assert all(r["images"] == 4 for r in rows.values()) and rows["dense"]["mIoU_drop"] == 0.0
    assert rows["tp_official_0.5"]["energy"]["block_macs"] < rows["dense"]["energy"]["block_macs"]
    assert rows["dense"]["energy"]["parts"]["decode_head"]["macs"] > 0
    assert set(rows["tp_random_0.5"]["throughput"]) == {"segmenter", "backbone"}
    assert rows["dense"]["throughput"]["segmenter"]["2"]["speedup_vs_dense"] == 1.0
    assert sorted(os.listdir(tmp_path / "pred")) == sorted(rows)
    assert len(os.listdir(tmp_path / "pred" / "tp_official_0.5")) == 4
    assert out.exists() and '"rows"' in capsys.readouterr().out


@pytest.mark.slow
def test_segmentation_task_runs_in_the_comparison_runner(tmp_path, monkeypatch):
    import tp_spikformer.data.scenes as scenes_module
    from tp_spikformer.api import evaluate_variants
    from tp_spikformer.tasks.protocol import get_task

    monkeypatch.setattr(scenes_module, "FashionObjects", lambda *a, **k: sprites())
    seg = tiny("sdt_v3_tiny_semfpn")
    spec = get_task("segmentation")
    data = spec.load_dataset("scenes:4", root=None, split="validation", model=seg)
    assert len(data) == 4
    result = evaluate_variants(
        seg,
        data,
        [("dense", None, None), ("tp", 0.5, "official")],
        task="segmentation",
        batch_size=2,
        energy_batches=1,
        speed=True,
        speed_batch_size=2,
        speed_repeats=1,
        out_dir=str(tmp_path),
    )
    rows = {r["variant"]: r for r in result.rows}
    assert rows["dense"]["n"] == 4 and rows["dense"]["mIoU"] is not None
    assert rows["tp"]["backbone_img_per_s"] > 0
    assert sorted(os.listdir(tmp_path / "tp")) == [f"scene_{i:06d}.png" for i in range(4)]
