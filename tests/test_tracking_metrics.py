"""Tracking scores (pytracking / OTB conventions) on a hand-made sequence."""

import numpy as np
import pytest

from tp_spikformer.data import DatasetFormatError
from tp_spikformer.tasks.tracking import (
    OVERLAP_THRESHOLDS,
    center_error,
    dataset_scores,
    iou_xywh,
    read_results_txt,
    sequence_scores,
    write_results_txt,
)

# frame: ground truth, prediction, hand-computed IoU / centre error / normalised centre error
GT = np.array(
    [
        [0, 0, 10, 10],
        [0, 0, 10, 10],
        [0, 0, 10, 10],
        [0, 0, 10, 10],
        [0, 0, 100, 100],
        [0, 0, 0, 0],  # invalid ground truth (target absent)
    ],
    dtype=float,
)
PRED = np.array(
    [
        [50, 50, 3, 3],  # frame 0 is replaced by the ground truth: IoU 1, error 0
        [5, 0, 10, 10],  # cols 5..14 vs 0..9: 5x10 = 50 / (100 + 100 - 50) = 1/3; error 5; norm 0.5
        [0, 0, 20, 20],  # 100 / 400 = 0.25; centres 9.5 vs 4.5: error 7.07; norm 0.707
        [100, 100, 10, 10],  # IoU 0; error 141.4
        [12, 12, 100, 100],  # 88^2 / (20000 - 88^2) = 0.6319; error 16.97; norm 0.1697
        [0, 0, 10, 10],
    ],
    dtype=float,
)


def test_iou_and_centre_error_use_the_plus_one_convention():
    iou = iou_xywh(PRED[1:5], GT[1:5])
    assert iou == pytest.approx([1 / 3, 0.25, 0.0, 88**2 / (20000 - 88**2)])
    assert center_error(PRED[1:5], GT[1:5]) == pytest.approx([5, np.sqrt(50), np.sqrt(20000), np.sqrt(288)])
    norm = center_error(PRED[1:5], GT[1:5], normalized=True)
    assert norm == pytest.approx([0.5, np.sqrt(0.5), np.sqrt(200), np.sqrt(288) / 100])
    # touching boxes under "+1": [0, 10) and [10, 20) do not overlap; [0, 10] and [9, 19] share one column
    assert iou_xywh([[10, 0, 10, 10]], [[0, 0, 10, 10]])[0] == 0
    assert iou_xywh([[9, 0, 10, 10]], [[0, 0, 10, 10]])[0] == pytest.approx(10 / 190)


def test_sequence_scores_hand_computed_excluding_invalid_frames():
    s = sequence_scores(PRED, GT)
    # valid frames 0..4, IoU [1, 1/3, 0.25, 0, 0.632]; frames with IoU > t:
    # t = 0..0.2 (5 thresholds): 4; t = 0.25, 0.3: 3; t = 0.35..0.6 (6): 2; t = 0.65..0.95 (7): 1; t = 1: 0
    # -> 5*4 + 2*3 + 6*2 + 7*1 = 45 hits over 21 thresholds x 5 frames
    assert len(OVERLAP_THRESHOLDS) == 21
    assert s["auc"] == pytest.approx(45 / 105 * 100)
    assert s["precision_20"] == pytest.approx(80.0)  # errors [0, 5, 7.07, 141, 16.97]
    assert s["norm_precision_20"] == pytest.approx(40.0)  # [0, 0.5, 0.707, 14.1, 0.17] <= 0.2
    assert s["op50"] == pytest.approx(40.0) and s["op75"] == pytest.approx(20.0)
    assert s["num_frames"] == 6 and s["num_valid"] == 5
    assert s["mean_iou"] == pytest.approx((1 + 1 / 3 + 0.25 + 0 + 88**2 / (20000 - 88**2)) / 5)
    assert s["success_curve"].shape == (21,) and s["precision_curve"].shape == (51,)
    assert s["norm_precision_curve"].shape == (51,)
    assert s["precision_curve"][0] == pytest.approx(1 / 5)  # only frame 0 has error <= 0 px
    assert s["precision_curve"][50] == pytest.approx(4 / 5)


def test_sequence_scores_pytracking_invalid_frame_rule():
    s = sequence_scores(PRED, GT, invalid="pytracking")
    # 6 frames in the denominator; the invalid frame fails success and precision, but its normalised
    # error is set to -1 and so counts as a hit
    assert s["auc"] == pytest.approx(45 / 126 * 100)
    assert s["precision_20"] == pytest.approx(4 / 6 * 100)
    assert s["norm_precision_20"] == pytest.approx(3 / 6 * 100)


def test_zero_size_prediction_takes_the_previous_box_and_frame0_is_forced():
    gt = np.array([[0, 0, 10, 10]] * 3, dtype=float)
    pred = np.array([[0, 0, 0, 0], [0, 0, 10, 10], [7, 7, 0, 5]], dtype=float)
    s = sequence_scores(pred, gt)
    assert s["auc"] == pytest.approx(100 * 20 / 21)  # every frame is IoU 1 (fails only t = 1)
    with pytest.raises(ValueError, match="negative size"):
        sequence_scores(np.array([[0, 0, 1, 1], [0, 0, -1, 3]]), gt[:2])
    with pytest.raises(ValueError, match="2 predicted boxes for 3"):
        sequence_scores(pred[:2], gt)
    with pytest.raises(ValueError, match="invalid must be"):
        sequence_scores(pred, gt, invalid="drop")


def test_dataset_scores_average_curves_over_sequences():
    perfect = np.array([[3, 4, 20, 30]] * 4, dtype=float)
    d = dataset_scores([(PRED, GT), sequence_scores(perfect, perfect)])
    assert d["num_sequences"] == 2
    assert d["auc"] == pytest.approx((45 / 105 * 100 + 20 / 21 * 100) / 2)
    assert d["precision_20"] == pytest.approx(90.0)
    assert d["norm_precision_20"] == pytest.approx(70.0)
    with pytest.raises(ValueError, match="no sequences"):
        dataset_scores([])


def test_results_text_round_trip_and_errors(tmp_path):
    boxes = np.array([[1.5, 2, 30, 40.25], [0, -0.00001, 3, 4]])
    path = tmp_path / "tracker" / "seq.txt"
    write_results_txt(path, boxes)
    assert path.read_text().splitlines() == ["1.5,2,30,40.25", "0,0,3,4"]
    assert read_results_txt(path) == pytest.approx(np.array([[1.5, 2, 30, 40.25], [0, 0, 3, 4]]))
    (tmp_path / "tabs.txt").write_text("1\t2\t3\t4\n5 6 7 8\n\n")
    assert read_results_txt(tmp_path / "tabs.txt").tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    (tmp_path / "bad.txt").write_text("1,2,3,4\n1,2,3\n")
    with pytest.raises(DatasetFormatError, match="line 2"):
        read_results_txt(tmp_path / "bad.txt")
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_results_txt(tmp_path / "missing.txt")
