"""Pictures of the dense tasks: each PNG decodes and shows drawn content, from real pruning records."""

import numpy as np
import torch
from PIL import Image

from tp_spikformer.pruning import apply_tp
from tp_spikformer.task_plots import save_detection_figure, save_segmentation_figure, save_tracking_strip


def records_of(tiny, inputs, name="sdt_v3_tiny"):
    model = tiny(name)
    state = apply_tp(model, keep=0.5)
    with torch.no_grad():
        model(inputs(model, batch=1))
    return state.records


def assert_picture(path, panels):
    with Image.open(path) as img:
        assert img.format == "PNG"
        pixels = np.asarray(img.convert("L"), dtype=np.float32)
    assert pixels.shape[1] > panels * 0.6 * pixels.shape[0] / 1.3  # panels side by side
    assert pixels.std() > 5 and len(np.unique(pixels)) > 20


def test_segmentation_figure(tmp_path, tiny, inputs):
    rng = np.random.default_rng(0)
    image = rng.random((64, 64, 3))
    label = rng.integers(0, 4, (64, 64))
    label[:2] = 255
    path = save_segmentation_figure(
        str(tmp_path / "seg.png"), image, label, label, np.roll(label, 3), records_of(tiny, inputs), title="t"
    )
    assert_picture(path, 5)


def test_detection_figure(tmp_path, tiny, inputs):
    image = np.random.default_rng(1).random((64, 64, 3))
    det = {"boxes": np.array([[4, 4, 30, 40]]), "labels": np.array([2]), "scores": np.array([0.9])}
    path = save_detection_figure(
        str(tmp_path / "det.png"),
        image,
        np.array([[5, 5, 31, 41]]),
        det,
        {"boxes": np.zeros((0, 4)), "labels": [], "scores": []},
        records_of(tiny, inputs),
        names=[str(i) for i in range(10)],
    )
    assert_picture(path, 3)


def test_tracking_strip(tmp_path):
    rng = np.random.default_rng(2)
    frames = [rng.random((32, 32, 3)) for _ in range(4)]
    boxes = np.array([[4, 4, 10, 10]] * 4, dtype=float)
    maps = [rng.integers(0, 3, (5, 5)) for _ in range(4)]
    path = save_tracking_strip(str(tmp_path / "track.png"), frames, boxes, boxes + 1, boxes + 2, maps)
    assert_picture(path, 2)  # 4 frames over 2 rows (frames, token maps)
