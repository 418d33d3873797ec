"""Spiking detector: neck, FCOS head, losses, targets, NMS, engine and COCO scoring, on tiny models and scenes
generated on the fly."""

import json
import math

import pytest
import torch

import tp_spikformer as tp
from tp_spikformer.data import CocoDetection, coco_results, make_scenes
from tp_spikformer.data.scenes import SceneConfig, SceneDataset
from tp_spikformer.models._registry import DataConfig
from tp_spikformer.tasks.detection import (
    FCOSHead,
    FCOSOutputs,
    SpikeFPN,
    assign_fcos_targets,
    batched_nms,
    centerness_target,
    coco_eval,
    giou_loss,
    init_backbone,
    level_points,
    nms,
    sigmoid_focal_loss,
)
from tp_spikformer.tasks.detection import boxes as box_ops
from tp_spikformer.tasks.detection.engine import (
    category_ids,
    evaluate_detection,
    predict_detection,
    preprocess_for,
    train_detection,
)
from tp_spikformer.tasks.detection.preprocess import make_batch

LN2 = math.log(2.0)


def tiny(name="sdt_v3_tiny_fcos", **overrides):
    torch.manual_seed(0)
    return tp.create_model(name, **overrides)


def scenes(n, height=64, width=64, split="test", seed=0):
    cfg = SceneConfig(height=height, width=width, split=split, seed=seed, max_objects=2)
    return SceneDataset(cfg, n, mode="detection", source="shipped")


def needs_pycocotools():
    return pytest.importorskip(
        "pycocotools", reason="pycocotools is not installed (pip install 'tp-spikformer[detection]')"
    )


# -- neck and detector layout ------------------------------------------------------------------------------


def test_neck_keeps_the_official_key_layout_and_declares_true_strides():
    neck = SpikeFPN([8, 16, 32, 32], [4, 8, 16, 16], out_channels=12, num_outs=5)
    assert neck.strides == (4, 8, 16, 16, 32)
    keys = list(neck.state_dict())
    assert keys[:2] == ["lateral_convs.0.1.module.conv.weight", "lateral_convs.0.1.module.conv.bias"]
    assert "fpn_convs.3.1.module.conv.weight" in keys and len(keys) == 16
    maps = [torch.rand(2, c, 64 // s, 96 // s) for c, s in zip([8, 16, 32, 32], [4, 8, 16, 16])]
    outs = neck(maps)
    assert [tuple(o.shape[-2:]) for o in outs] == [(16, 24), (8, 12), (4, 6), (4, 6), (2, 3)]
    skip = SpikeFPN([8, 16, 32, 32], [4, 8, 16, 16], out_channels=12, num_outs=5, start_level=1)
    assert skip.strides == (8, 16, 16, 32, 64) and len(skip.lateral_convs) == 3


def test_registered_detectors_read_strides_from_the_backbone():
    det = tp.create_model("sdt_v3_s_fcos")
    assert [d["reduction"] for d in det.backbone.feature_info] == [4, 8, 16, 16]
    assert det.neck.strides == det.head.strides == (8, 16, 16, 32, 64)
    assert det.config.task == "detection" and det.num_classes == 80
    assert det.config.data.input_size == (3, 800, 1333)
    for name in (
        "sdt_v3_t_fcos",
        "sdt_v3_m_fcos",
        "sdt_v3_l_fcos",
        "sdt_v3_scenes_fcos",
        "qkformer_tiny_fcos",
    ):
        assert tp.get_model_config(name).task == "detection"


@pytest.mark.slow
def test_time_axis_backbone_is_read_out_by_the_mean_over_t():
    det = tiny("qkformer_tiny_fcos").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        raw = det.backbone(x)
        assert raw[0].dim() == 5 and raw[0].shape[0] == 2  # [T, B, C, H, W]
        read = det.backbone_features(x)
    for r, f in zip(raw, read):
        torch.testing.assert_close(f, r.mean(0))


# -- losses on hand-made cases ----------------------------------------------------------------------------


def test_focal_loss_hand_computed():
    logits = torch.tensor([0.0, 0.0, math.log(3.0)])
    targets = torch.tensor([1.0, 0.0, 1.0])
    # p = 0.5: 0.25 * 0.5^2 * ln 2 and 0.75 * 0.5^2 * ln 2; p = 0.75: 0.25 * 0.25^2 * ln(4/3)
    expected = torch.tensor([0.25 * 0.25 * LN2, 0.75 * 0.25 * LN2, 0.25 * 0.0625 * math.log(4 / 3)])
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets), expected)


def test_giou_loss_hand_computed():
    pred = torch.tensor([[0.0, 0, 2, 2], [0, 0, 1, 1], [0, 0, 4, 4]])
    true = torch.tensor([[1.0, 1, 3, 3], [2, 0, 3, 1], [0, 0, 4, 4]])
    # overlap: IoU 1/7, enclosing 9, union 7 -> GIoU 1/7 - 2/9; apart: IoU 0, enclosing 3, union 2 -> -1/3
    expected = torch.tensor([1 - (1 / 7 - 2 / 9), 1 + 1 / 3, 0.0])
    torch.testing.assert_close(giou_loss(pred, true), expected, atol=1e-6, rtol=1e-6)


def test_centerness_target_hand_computed():
    ltrb = torch.tensor([[1.0, 2, 3, 4], [5, 5, 5, 5]])
    torch.testing.assert_close(centerness_target(ltrb), torch.tensor([math.sqrt(1 / 3 * 2 / 4), 1.0]))


def test_head_loss_combines_the_three_terms_hand_computed():
    # one level, stride 8, 2x2 points on a 16x16 image; one box over the whole image: every point is a
    # positive with distances (4, 4, 12, 12) up to symmetry, centerness target 1/3
    head = FCOSHead(1, 4, strides=[8], regress_ranges=[(0, math.inf)], stacked_convs=0, center_radius=0)
    # points (4, 4), (12, 4), (4, 12), (12, 12); left = x - 0 = (4, 12, 4, 12), top = (4, 4, 12, 12), right = 16 - x, bottom = 16 - y
    dist = torch.tensor([[[4.0, 12], [4, 12]], [[4, 4], [12, 12]], [[12, 4], [12, 4]], [[12, 12], [4, 4]]])[
        None
    ]
    outputs = FCOSOutputs([torch.zeros(1, 1, 2, 2)], [dist], [torch.zeros(1, 1, 2, 2)])
    target = {"boxes": torch.tensor([[0.0, 0, 16, 16]]), "labels": torch.tensor([0])}
    losses = head.loss(outputs, [target])
    torch.testing.assert_close(losses["loss_cls"], torch.tensor(0.25 * 0.25 * LN2))  # 4 x focal(0, 1) / 4
    torch.testing.assert_close(losses["loss_box"], torch.tensor(0.0), atol=1e-6, rtol=0)  # exact boxes
    torch.testing.assert_close(losses["loss_centerness"], torch.tensor(LN2))  # BCE(logit 0, 1/3) = ln 2
    torch.testing.assert_close(losses["loss"], losses["loss_cls"] + losses["loss_box"] + LN2)


# -- target assignment -------------------------------------------------------------------------------------


def _one_level(size=(4, 4), stride=8, lo=0.0, hi=math.inf):
    pts = level_points([size], [stride])[0]
    n = pts.shape[0]
    return pts, torch.full((n,), float(stride)), torch.tensor([[lo, hi]]).expand(n, 2)


def test_targets_inside_box_centre_sampling_and_size_range():
    pts, strides, ranges = _one_level()  # points at 4, 12, 20, 28 on both axes
    box, label = torch.tensor([[0.0, 0, 24, 16]]), torch.tensor([3])
    labels, ltrb = assign_fcos_targets(pts, strides, ranges, box, label, num_classes=5, center_radius=0)
    positive = {tuple(p) for p in pts[labels == 3].tolist()}
    assert positive == {(x, y) for x in (4.0, 12.0, 20.0) for y in (4.0, 12.0)}
    assert set(labels[labels != 3].tolist()) == {5}  # background = num_classes
    torch.testing.assert_close(ltrb[pts.tolist().index([12.0, 4.0])], torch.tensor([12.0, 4, 12, 12]))
    # centre (12, 8), radius 1 x 8: the central box [4, 0, 20, 16] keeps x = 12 only
    labels, _ = assign_fcos_targets(pts, strides, ranges, box, label, num_classes=5, center_radius=1.0)
    assert {tuple(p) for p in pts[labels == 3].tolist()} == {(12.0, 4.0), (12.0, 12.0)}
    # max(l, t, r, b) = 12 at those points: outside the range (0, 10) of this level
    pts, strides, ranges = _one_level(hi=10.0)
    labels, _ = assign_fcos_targets(pts, strides, ranges, box, label, num_classes=5, center_radius=1.0)
    assert (labels == 5).all()


def test_targets_pick_the_smallest_box_and_handle_no_boxes():
    pts, strides, ranges = _one_level()
    boxes = torch.tensor([[0.0, 0, 32, 32], [8, 8, 16, 16]])
    labels, ltrb = assign_fcos_targets(pts, strides, ranges, boxes, torch.tensor([0, 1]), 2, center_radius=0)
    i = pts.tolist().index([12.0, 12.0])
    assert labels[i] == 1 and ltrb[i].tolist() == [4.0, 4.0, 4.0, 4.0]
    assert labels[pts.tolist().index([28.0, 28.0])] == 0
    labels, _ = assign_fcos_targets(
        pts, strides, ranges, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), 2
    )
    assert (labels == 2).all()


# -- NMS -----------------------------------------------------------------------------------------------------


def test_nms_suppresses_overlaps_of_one_class_and_keeps_other_classes():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [20, 20, 30, 30]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    labels = torch.tensor([0, 0, 1, 0])
    # IoU of the first two: 81 / 119 = 0.68 > 0.5: the second goes; box 2 is another class: kept
    assert batched_nms(boxes, scores, labels, 0.5).tolist() == [0, 2, 3]
    assert nms(boxes, scores, 0.5).tolist() == [0, 3]  # class-agnostic: box 2 equals box 0
    assert batched_nms(boxes, scores, labels, 0.7).tolist() == [0, 1, 2, 3]  # 0.68 < 0.7


def test_batched_nms_per_class_path_gives_the_same_result(monkeypatch):
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(60, 2, generator=g) * 50
    boxes = torch.cat([xy, xy + 5 + torch.rand(60, 2, generator=g) * 20], dim=1)
    scores, labels = torch.rand(60, generator=g), torch.randint(0, 4, (60,), generator=g)
    offset = batched_nms(boxes, scores, labels, 0.5)
    monkeypatch.setattr(box_ops, "PER_CLASS_NMS_ABOVE", 0)
    assert box_ops.batched_nms(boxes, scores, labels, 0.5).tolist() == offset.tolist()


# -- data path -----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_coco_files_to_letterboxed_padded_batch(tmp_path):
    make_scenes(tmp_path, formats=("coco",), train=0, val=3, height=40, width=80, seed=1, source="shipped")
    data = CocoDetection(tmp_path / "coco", "val")
    det = tiny()
    pre = preprocess_for(det)  # letterbox to 64 x 64, ImageNet mean/std
    items = [pre(*data[i]) for i in range(3)]
    images, targets, sizes = make_batch(items, det.size_divisor)
    assert images.shape == (3, 3, 64, 64) and sizes == [(64, 64)] * 3
    info = targets[0]["letterbox"]
    assert info.orig_size == (40, 80) and info.scale == (0.8, 0.8)
    torch.testing.assert_close(targets[0]["boxes"], data.target(0)["boxes"] * 0.8)
    # rows 32..63 are padding: zeros after normalisation (the mean colour)
    assert images[:, :, 32:].abs().max() == 0 and images[:, :, :32].abs().max() > 0
    assert category_ids(data) == list(range(1, 11))
    out = det.eval()(images, image_sizes=sizes)
    assert len(out) == 3 and all(set(o) == {"boxes", "scores", "labels"} for o in out)


def test_training_augmentations_change_sizes_and_keep_boxes_on_the_objects():
    det = tiny()
    data = scenes(4)
    pre = preprocess_for(det, flip_p=1.0, scale_range=(0.5, 0.5), seed=3)
    image, target = pre(*data[0])
    assert image.shape[-2:] == (32, 32)
    x1, y1, x2, y2 = data[0][1]["boxes"].unbind(1)
    torch.testing.assert_close(target["boxes"], torch.stack([32 - x2 / 2, y1 / 2, 32 - x1 / 2, y2 / 2], 1))


# -- pruning and shapes ------------------------------------------------------------------------------------


def _check_detections(out, batch, h, w, num_classes=10):
    assert len(out) == batch
    for d in out:
        assert set(d) == {"boxes", "scores", "labels"} and d["boxes"].shape[1] == 4
        assert d["boxes"].shape[0] == d["scores"].shape[0] == d["labels"].shape[0] > 0
        b = d["boxes"]
        assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
        assert (b[:, 2] >= b[:, 0]).all() and (b[:, 3] >= b[:, 1]).all()
        assert ((d["labels"] >= 0) & (d["labels"] < num_classes)).all()
        assert (d["scores"][:-1] >= d["scores"][1:]).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sdt_v3_tiny_fcos", "qkformer_tiny_fcos"])
def test_pruned_detector_output_on_a_non_square_image(name):
    det = tiny(name, score_threshold=0.0, max_detections=20).eval()
    x = torch.randn(2, 3, 96, 160)
    with torch.no_grad():
        dense = det(x)
    _check_detections(dense, 2, 96, 160)
    state = tp.apply_tp(det, keep=0.5, scorer="official")
    with torch.no_grad():
        pruned = det(x)
    _check_detections(pruned, 2, 96, 160)
    grids = [r.grid for r in state.records]
    assert (6, 10) in grids  # SDT-V3 / QKFormer stride-16 grid of a 96 x 160 image
    assert all(r.kept < r.grid[0] * r.grid[1] for r in state.records)


@pytest.mark.slow
def test_non_square_training_step_dense_and_pruned():
    det = tiny()
    x = torch.randn(2, 3, 96, 160)
    targets = [
        {"boxes": torch.tensor([[10.0, 20, 90, 80]]), "labels": torch.tensor([2])},
        {"boxes": torch.tensor([[100.0, 5, 150, 60], [0, 0, 40, 40]]), "labels": torch.tensor([1, 7])},
    ]
    for prune in (False, True):
        if prune:
            tp.apply_tp(det, keep=0.5)
        det.zero_grad()
        losses = det(x, targets)
        assert set(losses) == {"loss_cls", "loss_box", "loss_centerness", "loss"}
        losses["loss"].backward()
        assert all(torch.isfinite(v) for v in losses.values())
        assert det.head.conv_cls.weight.grad.abs().sum() > 0
        assert det.backbone.downsample1_1.encode_conv.weight.grad is not None


def test_images_are_padded_to_the_size_divisor():
    det = tiny(score_threshold=0.0).eval()
    x = torch.randn(1, 3, 50, 70)
    with torch.no_grad():
        out = det(x)
        padded = det(torch.nn.functional.pad(x, (0, 26, 0, 14)), image_sizes=[(50, 70)])
    assert det.pad(x).shape[-2:] == (64, 96)
    assert torch.equal(out[0]["boxes"], padded[0]["boxes"]) and (out[0]["boxes"][:, 2] <= 70).all()


def test_keep_all_equals_dense():
    det = tiny(score_threshold=0.0).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        dense = det.forward_raw(x)
        tp.apply_tp(det, keep=1.0)
        kept = det.forward_raw(x)
    for a, b in zip(dense.cls_logits + dense.distances, kept.cls_logits + kept.distances):
        assert torch.equal(a, b)


# -- engine and COCO scoring --------------------------------------------------------------------------------


class Oracle(torch.nn.Module):
    """Returns given boxes (in the letterboxed input's pixels) for the images in dataset order."""

    def __init__(self, per_image, size):
        super().__init__()
        self.queue = list(per_image)
        self.size_divisor = 32
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.config = type("Cfg", (), {"data": DataConfig((3, *size), mean=None, std=None)})()

    def forward(self, images, image_sizes=None):
        return [self.queue.pop(0) for _ in range(images.shape[0])]


def test_perfect_predictions_score_map_100_with_pycocotools(tmp_path):
    needs_pycocotools()
    make_scenes(tmp_path, formats=("coco",), train=0, val=4, height=48, width=80, seed=4, source="shipped")
    data = CocoDetection(tmp_path / "coco", "val")
    pre = preprocess_for(Oracle([], (64, 64)))
    letterboxed = [pre(*data[i])[1]["boxes"] for i in range(len(data))]
    per_image = [
        {"boxes": b, "scores": torch.ones(len(b)), "labels": data.target(i)["labels"]}
        for i, b in enumerate(letterboxed)
    ]
    out = tmp_path / "out" / "detections.json"
    metrics = evaluate_detection(Oracle(per_image, (64, 64)), data, out_file=out, batch_size=3)
    entries = json.loads(out.read_text())
    assert {"image_id", "category_id", "bbox", "score"} <= set(entries[0])
    assert {e["image_id"] for e in entries} == set(data.image_ids)
    assert metrics["mAP"] == pytest.approx(100.0) and metrics["AP50"] == pytest.approx(100.0)
    assert metrics["AP75"] == pytest.approx(100.0) and metrics["detections"] == len(entries)
    # one image's boxes shifted by half their width: AP drops, as pycocotools computes it
    first = per_image[0]["boxes"].clone()
    first[:, [0, 2]] += (first[:, 2:3] - first[:, 0:1]) / 2
    per_image[0] = dict(per_image[0], boxes=first)
    worse = evaluate_detection(Oracle(per_image, (64, 64)), data, out_file=out)
    assert worse["mAP"] < 100.0


def test_results_use_original_pixels_and_category_ids():
    data = scenes(2, height=48, width=80)
    pre = preprocess_for(Oracle([], (64, 64)))
    per_image = []
    for i in range(2):
        t = pre(*data[i])[1]
        per_image.append(
            {"boxes": t["boxes"], "scores": torch.full((len(t["boxes"]),), 0.5), "labels": t["labels"]}
        )
    entries = predict_detection(Oracle(per_image, (64, 64)), data, batch_size=2)
    expected = []
    for i in range(2):
        t = data[i][1]
        expected += coco_results(
            t["image_id"], t["boxes"], torch.full((len(t["boxes"]),), 0.5), t["labels"], list(range(1, 11))
        )
    assert len(entries) == len(expected)
    for a, b in zip(entries, expected):
        assert a["image_id"] == b["image_id"] and a["category_id"] == b["category_id"]
        assert a["bbox"] == pytest.approx(b["bbox"], abs=1e-3)


def test_missing_pycocotools_says_how_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake(name, *args, **kwargs):
        if name.startswith("pycocotools"):
            raise ImportError("No module named 'pycocotools'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match=r"pip install pycocotools.*tp-spikformer\[detection\]"):
        coco_eval.require_pycocotools()


def test_dataset_without_category_mapping_or_with_a_transform_is_refused():
    with pytest.raises(ValueError, match="label_to_cat_id"):
        category_ids([(torch.zeros(3, 8, 8), {})])
    data = scenes(2)
    data.transform = lambda image, target: (image, target)
    with pytest.raises(ValueError, match="without one"):
        predict_detection(tiny(), data)


@pytest.mark.slow
def test_a_few_training_steps_decrease_the_loss_and_write_loadable_weights(tmp_path):
    det = tiny()
    data = scenes(4)
    pre = preprocess_for(det)
    images, targets, _ = make_batch([pre(*data[i]) for i in range(4)], det.size_divisor)

    def loss():
        with torch.no_grad():
            return float(det.train()(images, targets)["loss"])

    before = loss()
    result = train_detection(
        det,
        data,
        epochs=4,
        batch_size=4,
        lr=1e-2,
        warmup=1,
        flips=0.0,
        scale_jitter=None,
        log=None,
        out_dir=tmp_path,
    )
    assert result["steps"] == 4 and len(result["history"]) == 4
    assert loss() < before
    again = tp.create_model("sdt_v3_tiny_fcos", checkpoint=str(tmp_path / "model.pt"))
    assert torch.equal(again.head.conv_cls.weight, det.head.conv_cls.weight)
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert saved["meta"]["model"] == "sdt_v3_tiny_fcos" and saved["meta"]["epochs"] == 4


@pytest.mark.slow
def test_training_resumes_from_its_checkpoint(tmp_path):
    data = scenes(4)
    full = train_detection(tiny(), data, epochs=2, batch_size=2, log=None, out_dir=tmp_path / "a")
    train_detection(tiny(), data, epochs=1, batch_size=2, log=None, out_dir=tmp_path / "b")
    resumed = train_detection(tiny(), data, epochs=2, batch_size=2, log=None, out_dir=tmp_path / "b")
    assert resumed["steps"] == full["steps"] == 4
    assert resumed["history"][-1]["loss"] == pytest.approx(full["history"][-1]["loss"], rel=1e-5)


def test_init_backbone_from_the_shipped_grey_classifier():
    det = tp.create_model("sdt_v3_scenes_fcos")
    report = init_backbone(det, "sdt_v3_fmnist")
    assert report["expanded"] == ["downsample1_1.encode_conv.weight"]
    assert report["dropped_head"] == ["head.weight", "head.bias"]
    grey = tp.create_model("sdt_v3_fmnist", pretrained=True).eval()
    det.eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():  # an RGB image with three equal channels gives the grey model's features
        torch.testing.assert_close(det.backbone(x.expand(1, 3, 64, 64))[-1], grey.forward_features(x))


@pytest.mark.slow
def test_detection_retention_benchmark_runs_on_a_tiny_model(tmp_path, capsys):
    needs_pycocotools()
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "detection_retention.py"
    spec = importlib.util.spec_from_file_location("detection_retention", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "r.json"
    result = script.main(
        [
            "--model",
            "sdt_v3_tiny_fcos",
            "--scenes",
            "2",
            "--scene-source",
            "shipped",
            "--keeps",
            "0.5",
            "--scorers",
            "official",
            "--energy-images",
            "1",
            "--batch-sizes",
            "1",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--results-dir",
            str(tmp_path / "res"),
            "--out",
            str(out),
        ]
    )
    assert json.loads(out.read_text())["rows"][1]["variant"] == "tp_official_0.5"
    dense, pruned = result["rows"]
    assert (tmp_path / "res" / "tp_official_0.5" / "detections.json").is_file()
    assert set(dense["throughput"]) == {"detector", "backbone"}
    assert dense["throughput"]["detector"]["1"]["speedup_vs_dense"] == 1.0
    assert (
        pruned["energy"]["kept_fraction"] < 1.0
        and pruned["energy"]["block_macs"] < dense["energy"]["block_macs"]
    )
    assert set(dense["energy"]["parts"]) == {"backbone", "neck", "head"}
    assert json.loads(capsys.readouterr().out)["model"] == "sdt_v3_tiny_fcos"
