"""mmseg-style IoU accumulation, checked against hand-computed values."""

import pytest
import torch

from tp_spikformer.tasks.segmentation import SegmentationMeter, intersect_and_union

# 4 classes, ignore index 255; class 3 appears in neither prediction nor label.
TARGET = torch.tensor([[0, 0, 1], [1, 255, 2]])
PRED = torch.tensor([[0, 1, 1], [2, 0, 2]])
# Counted pixels (the ignored one excluded), (pred, label): (0,0) (1,0) (1,1) (2,1) (2,2)
# intersection [1, 1, 1, 0], prediction [1, 2, 2, 0], label [2, 2, 1, 0]
# IoU = [1/2, 1/3, 1/2, NaN], Acc = [1/2, 1/2, 1, NaN]


def test_hand_computed_example():
    i, p, t = intersect_and_union(PRED, TARGET, 4, 255)
    assert i.tolist() == [1, 1, 1, 0] and p.tolist() == [1, 2, 2, 0] and t.tolist() == [2, 2, 1, 0]
    meter = SegmentationMeter(4, ignore_index=255)
    meter.update(PRED, TARGET)
    r = meter.compute()
    assert r["mIoU"] == pytest.approx(100 * (1 / 2 + 1 / 3 + 1 / 2) / 3)  # 44.44: NaN class skipped
    assert r["aAcc"] == pytest.approx(100 * 3 / 5)
    assert r["mAcc"] == pytest.approx(100 * (1 / 2 + 1 / 2 + 1) / 3)
    assert r["per_class_iou"][:3] == pytest.approx([50.0, 100 / 3, 50.0]) and r["per_class_iou"][3] is None
    assert r["per_class_acc"][:3] == pytest.approx([50.0, 50.0, 100.0]) and r["per_class_acc"][3] is None
    assert r["images"] == 1


def test_counts_are_summed_over_the_set_not_averaged_per_image():
    meter = SegmentationMeter(2)
    meter.update(torch.tensor([[0, 0, 0, 0]]), torch.tensor([[0, 0, 0, 1]]))  # image 1: IoU0 3/4, IoU1 0
    meter.update(torch.tensor([[1]]), torch.tensor([[1]]))  # image 2: IoU1 1
    # Whole set: I = [3, 1], P = [4, 1], L = [3, 2] -> IoU = [3/4, 1/2]
    assert meter.compute()["per_class_iou"] == pytest.approx([75.0, 50.0])
    assert meter.compute()["mIoU"] == pytest.approx(62.5)


def test_predicted_but_absent_class_scores_zero_iou():
    meter = SegmentationMeter(3)
    meter.update(torch.tensor([[0, 2]]), torch.tensor([[0, 0]]))
    r = meter.compute()
    # class 0: I 1, P 1, L 2 -> 1/2; class 2: I 0, P 1, L 0 -> 0 (counted); class 1: NaN (skipped)
    assert r["per_class_iou"] == [50.0, None, 0.0] and r["mIoU"] == pytest.approx(25.0)
    assert r["per_class_acc"] == [50.0, None, None]


def test_batches_merge_and_state_round_trip():
    g = torch.Generator().manual_seed(0)
    pred = torch.randint(0, 5, (4, 7, 9), generator=g)
    target = torch.randint(0, 5, (4, 7, 9), generator=g)
    target[target == 4] = 255
    whole = SegmentationMeter(5)
    whole.update(pred, target)
    a, b = SegmentationMeter(5), SegmentationMeter(5)
    a.update(pred[:3], target[:3])
    b.update(pred[3], target[3])  # [H, W] form
    a.merge(b.state())
    assert torch.equal(a.counts, whole.counts) and a.images == whole.images == 4
    c = SegmentationMeter(5)
    c.load_state(whole.state())
    assert c.compute() == whole.compute()
    with pytest.raises(ValueError, match="6-class"):
        SegmentationMeter(6).merge(whole)


def test_meter_errors_and_empty_state():
    meter = SegmentationMeter(3)
    r = meter.compute()
    assert r["mIoU"] is None and r["aAcc"] is None and all(v is None for v in r["per_class_iou"])
    with pytest.raises(ValueError, match="differ in shape"):
        meter.update(torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="argmax"):
        meter.update(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(
        ValueError, match=r"label holds value\(s\) \[7\] outside 0..2 \(ignore_index is 255\)"
    ):
        meter.update(torch.zeros(1, 2, dtype=torch.long), torch.tensor([[7, 255]]))
    with pytest.raises(ValueError, match="prediction holds"):
        meter.update(torch.tensor([[3, 0]]), torch.tensor([[0, 0]]))
    assert SegmentationMeter(2, class_names=["bg", "fg"]).compute()["classes"] == ["bg", "fg"]
