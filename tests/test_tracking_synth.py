"""Synthetic event tracking sequences: determinism, boxes vs events, the FE108 layout on disk."""

import json

import numpy as np
import pytest

from tp_spikformer.data.fashion_objects import FashionObjects
from tp_spikformer.data.tracking import TrackingDataset
from tp_spikformer.data.tracking_synth import TrackingSynthConfig, generate_sequence, make_tracking_dataset

SMALL = {
    "height": 64,
    "width": 64,
    "frames": 8,
    "substeps": 3,
    "min_size": 12,
    "max_size": 20,
    "max_speed": 3.0,
    "pan": 8.0,
}


@pytest.fixture(scope="module")
def objects():
    images = np.zeros((6, 28, 28), np.uint8)
    for k in range(6):  # six distinct filled shapes, labels 0..5
        images[k, 4 + k : 24 - k // 2, 6 : 22 + k // 3] = 120 + 20 * k
    return FashionObjects.from_arrays(images, np.arange(6))


def test_deterministic_per_seed_split_and_index(objects):
    cfg = TrackingSynthConfig(**SMALL)
    a = generate_sequence(cfg, "train", 3, objects)
    b = generate_sequence(cfg, "train", 3, objects)
    assert np.array_equal(a.events, b.events) and np.array_equal(a.boxes, b.boxes)
    assert a.meta == b.meta
    c = generate_sequence(cfg, "train", 4, objects)
    d = generate_sequence(cfg, "test", 3, objects)
    e = generate_sequence(TrackingSynthConfig(**{**SMALL, "seed": 1}), "train", 3, objects)
    for other in (c, d, e):
        assert not np.array_equal(a.boxes, other.boxes)


def test_sequence_shapes_boxes_in_view_and_sorted_events(objects):
    cfg = TrackingSynthConfig(**SMALL)
    s = generate_sequence(cfg, "train", 0, objects)
    assert s.boxes.shape == (8, 4) and s.bounds_us.shape == (9,)
    assert s.bounds_us.tolist() == [round(i * 20_000) for i in range(9)]  # 50 fps
    x, y, w, h = s.boxes.T
    assert np.all(w > 0) and np.all(h > 0)
    assert np.all(x >= 0) and np.all(y >= 0) and np.all(x + w <= 64) and np.all(y + h <= 64)
    assert len(s.events) > 0 and np.all(np.diff(s.events["t"]) >= 0)
    assert s.events["x"].max() < 64 and s.events["y"].max() < 64
    assert set(np.unique(s.events["p"]).tolist()) <= {0, 1}
    assert s.events["t"].max() <= s.bounds_us[-1]


def test_events_of_a_lone_target_fall_in_its_box(objects):
    # static background (no pan), no distractors: every event comes from the moving target
    cfg = TrackingSynthConfig(**{**SMALL, "pan": 0.0, "max_distractors": 0})
    s = generate_sequence(cfg, "test", 1, objects)
    slack = cfg.max_speed + 2  # box i is at the end of window i; the target moved by <= max_speed since
    inside = total = 0
    for i, (x, y, w, h) in enumerate(s.boxes):
        ev = s.events[(s.events["t"] >= s.bounds_us[i]) & (s.events["t"] < s.bounds_us[i + 1])]
        ex, ey = ev["x"] + 0.5, ev["y"] + 0.5
        inside += int(
            np.sum((ex > x - slack) & (ex < x + w + slack) & (ey > y - slack) & (ey < y + h + slack))
        )
        total += len(ev)
    assert total > 50
    assert inside / total > 0.97


def test_occluding_distractor_crosses_in_front(objects):
    cfg = TrackingSynthConfig(**{**SMALL, "occlusion_prob": 1.0})
    metas = [generate_sequence(cfg, "train", i, objects).meta for i in range(6)]
    occluded = [m for m in metas if m["occlusion"]]
    assert occluded, "with occlusion_prob=1 every sequence with a distractor has an occluder"
    assert all(m["distractors"][0]["in_front"] for m in occluded)
    assert all(m["occlusion"] == bool(m["distractors"]) for m in metas)
    assert all(d["item"] != m["target"]["item"] for m in metas for d in m["distractors"])


def test_make_tracking_dataset_writes_the_fe108_layout(tmp_path):
    out = tmp_path / "synth"
    summary = make_tracking_dataset(out, train=2, test=1, source="shipped", **SMALL)
    assert summary["train"] == 2 and summary["test"] == 1 and summary["events"] > 0
    assert json.loads((out / "tracking.json").read_text())["config"]["frames"] == 8
    train = TrackingDataset(out, "fe108", "train")
    test = TrackingDataset(out, "fe108", "test")
    assert train.names == ["synth_0000", "synth_0001"] and test.names == ["synth_0000"]
    seq = test[0]
    assert len(seq) == 8 and seq.sensor_size == (64, 64)
    lines = (out / "test" / "synth_0000" / "groundtruth_rect.txt").read_text().splitlines()
    assert len(lines) == 8 and len(lines[0].split(",")) == 4
    meta = json.loads((out / "test" / "synth_0000" / "meta.json").read_text())
    assert meta["split"] == "test" and meta["fps"] == 50.0 and len(meta["frame_timestamps_us"]) == 9
    assert seq.count_frames(3, T=2).shape == (2, 2, 64, 64)
    # the test items come from the second half of the shipped slice: same as generating it directly
    direct = generate_sequence(
        TrackingSynthConfig(**SMALL), "test", 0, FashionObjects("test", source="shipped")
    )
    assert np.array_equal(seq.events(), direct.events)
    assert np.allclose(seq.boxes, direct.boxes, atol=1e-4)  # the box file keeps 4 decimals
    with pytest.raises(FileExistsError, match="overwrite"):
        make_tracking_dataset(out, train=1, test=0, source="shipped", **SMALL)
    make_tracking_dataset(out, train=1, test=0, source="shipped", overwrite=True, **SMALL)
    assert TrackingDataset(out, "fe108", "train").names == ["synth_0000"]


def test_config_errors_say_what_to_change():
    with pytest.raises(ValueError, match="does not fit"):
        TrackingSynthConfig(height=32, width=32, min_size=20, max_size=30)
    with pytest.raises(ValueError, match="split"):
        generate_sequence(TrackingSynthConfig(**SMALL), "val", 0, None)
