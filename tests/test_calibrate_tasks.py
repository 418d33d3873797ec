"""The keep-schedule search on dense-prediction models: the pixel and feature objectives on hand-made
outputs, the tasks' calibration inputs and the schedule-search benchmark's set-level scores (pooled mIoU,
folded COCO mAP); ``calibrate --task`` is in test_cli_tasks.py."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import tp_spikformer as tp
from tp_spikformer.api import task_spec
from tp_spikformer.calibrate.objectives import AccuracyObjective, FeatureObjective, LogitsKLObjective
from tp_spikformer.calibrate.samples import pick_indices


def test_pixel_accuracy_objective_counts_labelled_pixels_only():
    # logits [1, 3, 2, 2]: predicted classes [[0, 1], [2, 2]]
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 0, 0, 0] = logits[0, 1, 0, 1] = logits[0, 2, 1, 0] = logits[0, 2, 1, 1] = 5.0
    labels = torch.tensor([[[0, 2], [2, 255]]])  # one wrong pixel, one ignored
    obj = AccuracyObjective()
    t = obj.terms(logits, None, labels)
    assert t["errors"] == 1 and t["count"] == 3
    rep = obj.report(t, n=1)
    assert rep["pixel_accuracy"] == pytest.approx(200 / 3)
    assert obj.value(t, n=1) == pytest.approx(1 / 3 + 1e-3 * t["cross_entropy"] / 3)


def test_pixel_accuracy_objective_resizes_logits_to_the_labels():
    logits = torch.zeros(2, 2, 1, 1)
    logits[:, 1] = 1.0  # class 1 everywhere after a bilinear resize
    labels = torch.ones(2, 4, 4, dtype=torch.long)
    labels[0, 0, 0] = 0
    t = AccuracyObjective().terms(logits, None, labels)
    assert t["errors"] == 1 and t["count"] == 32


def test_logits_kl_of_segmentation_logits_is_per_pixel():
    logits = torch.randn(2, 4, 3, 3)
    obj = LogitsKLObjective()
    t = obj.terms(logits, obj.target(logits, None), None)
    rep = obj.report(t, n=2)
    assert rep["kl"] == pytest.approx(0.0, abs=1e-6) and rep["agreement_with_dense"] == pytest.approx(100.0)


def test_feature_objective_counts_every_stage_map():
    class TwoStages(torch.nn.Module):
        def forward_features(self, x):
            return [x, 2 * x[:, :1]]

    obj = FeatureObjective()
    x = torch.ones(2, 3, 4, 4)
    dense = obj.output(TwoStages(), x)
    assert dense.numel() == 2 * 3 * 16 + 2 * 16
    t = obj.terms(torch.zeros_like(dense), obj.target(dense, None), None)
    assert obj.value(t, n=2) == pytest.approx(1.0)  # everything lost: relative error 1


@pytest.mark.parametrize(
    "task, model, objective",
    [("segmentation", "sdt_v3_tiny_semfpn", "accuracy"), ("detection", "sdt_v3_tiny_fcos", "features")],
)
def test_task_calibration_inputs_and_search_within_budget(task, model, objective):
    m = tp.create_model(model).eval()
    spec = task_spec(task)
    data = spec.load_dataset("scenes:6", root=None, split="validation", model=m)
    x, y = spec.calibration_inputs(m, data, pick_indices(len(data), 4, 0))
    assert x.shape[0] == 4 and x.shape[1] == 3 and x.dtype == torch.float32
    assert (y is None) == (objective == "features")
    if y is not None:
        assert y.shape == (4, *x.shape[-2:])
    assert spec.calibration_objective == objective
    result = tp.calibrate(
        m,
        (x, y) if y is not None else x,
        0.9,
        objective=objective,
        calibration_size=None,
        batch_size=4,
        levels=(0.5, 0.25),
        refine_rounds=0,
        verbose=False,
    )
    assert result.cost <= 0.9
    assert all(name.startswith("backbone.") for name in result.block_names)
    assert len(result.schedule.values) == len(result.block_names) > 0


# -- the benchmark's set-level scores --------------------------------------------------------------------


@pytest.fixture(scope="module")
def bench():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "schedule_search.py"
    spec = importlib.util.spec_from_file_location("schedule_search", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["schedule_search"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("schedule_search", None)


def test_pooled_iou_is_mmseg_miou_and_its_draws_pool_the_resampled_images(bench):
    inter = np.array([[2, 0, 1], [1, 0, 0]])
    union = np.array([[4, 0, 2], [1, 0, 3]])  # class 1 absent from both images: left out
    scored = bench.PooledIoU(inter, union)
    assert scored.value == pytest.approx(100 * np.mean([3 / 5, 1 / 5]))
    draws = scored.draws(np.array([[0, 1], [0, 0], [1, 1]]))
    assert draws == pytest.approx(
        [scored.value, 100 * np.mean([2 / 4, 1 / 2]), 100 * np.mean([1 / 1, 0 / 3])]
    )


def test_paired_difference_of_identical_scores_is_exactly_zero(bench):
    a = bench.PooledIoU(np.array([[1, 2], [3, 0]]), np.array([[2, 2], [4, 1]]))
    d = bench.paired_difference(a, a, seed=0, n_boot=50)
    assert d["mean"] == 0 and d["ci95"] == [0.0, 0.0]
    b = bench.PerImageMean(np.array([1.0, 0.0, 1.0, 1.0]))
    c = bench.PerImageMean(np.array([0.0, 0.0, 1.0, 1.0]))
    d = bench.paired_difference(b, c, seed=0, n_boot=200)
    assert d["mean"] == pytest.approx(25.0) and d["ci95"][0] <= 25.0 <= d["ci95"][1]


def test_folded_coco_interval_is_centred_on_the_set_difference(bench):
    pytest.importorskip("pycocotools", reason="pycocotools is not installed ([detection] extra)")
    images = [{"id": i, "height": 32, "width": 32, "file_name": str(i)} for i in range(20)]
    anns = [
        {"id": i + 1, "image_id": i, "category_id": 1, "bbox": [4, 4, 10, 10], "area": 100, "iscrowd": 0}
        for i in range(20)
    ]
    gt = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "x"}]}
    perfect = [{"image_id": i, "category_id": 1, "bbox": [4, 4, 10, 10], "score": 0.9} for i in range(20)]
    half = [r if r["image_id"] % 2 else {**r, "bbox": [20, 20, 10, 10]} for r in perfect]
    a = bench.FoldedCOCO(gt, perfect, list(range(20)))
    b = bench.FoldedCOCO(gt, half, list(range(20)))
    assert a.value == pytest.approx(100.0) and len(a.per_fold) == 10
    d = bench.paired_difference(a, b, seed=0)
    assert d["mean"] == pytest.approx(a.value - b.value) and d["ci95"][0] <= d["mean"] <= d["ci95"][1]


@pytest.mark.slow
def test_accuracy_retention_merge_keeps_other_models_and_adds_the_command(tmp_path, monkeypatch):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "accuracy_retention.py"
    spec = importlib.util.spec_from_file_location("accuracy_retention", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "KEEPS", [0.5])
    monkeypatch.setattr(module, "SCORERS", ["official", "random"])
    out = tmp_path / "acc.json"
    out.write_text(json.dumps({"models": {"other": {"n": 1}}, "commands": ["earlier"]}))
    argv = ["--models", "sdt_fmnist", "--limit", "20", "--bootstrap", "20", "--out", str(out), "--merge"]
    assert module.main(argv) == 0
    result = json.loads(out.read_text())
    assert set(result["models"]) == {"other", "sdt_fmnist"}
    assert result["commands"][0] == "earlier" and "--merge" in result["commands"][1]
    variants = result["models"]["sdt_fmnist"]["variants"]
    assert len(variants) == 3 and result["models"]["sdt_fmnist"]["limit"] == 20
    official = next(v for v in variants.values() if v["scorer"] == "official")
    lo, hi = official["diff_ci95"]
    assert lo <= official["diff_to_random"] <= hi


def test_calibrate_refuses_raw_dataset_items_for_a_task_model():
    m = tp.create_model("sdt_v3_tiny_semfpn").eval()
    data = task_spec("segmentation").load_dataset("scenes:2", root=None, split="validation", model=m)
    with pytest.raises(TypeError, match="calibration_inputs"):
        tp.calibrate(m, data, 0.9, calibration_size=None, verbose=False)
