"""Readers of the tracking layouts (FE108 / VisEvent / FELT) on small generated files."""

import json
import sys

import numpy as np
import pytest
import torch

from tp_spikformer.data import DatasetFormatError, DatasetNotFoundError
from tp_spikformer.data.aedat4 import read_aedat4, require_aedat, write_aedat4
from tp_spikformer.data.esim import EVENT_DTYPE
from tp_spikformer.data.event_repr import gtp_frames, window_count_frames
from tp_spikformer.data.tracking import TrackingDataset, TrackingSequence, write_tracking_sequence

SENSOR = (12, 16)  # H, W


def random_events(n=400, t_end=4000, seed=0):
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, dtype=EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(0, t_end, n))
    ev["x"] = rng.integers(0, SENSOR[1], n)
    ev["y"] = rng.integers(0, SENSOR[0], n)
    ev["p"] = rng.integers(0, 2, n)
    return ev


BOXES = np.array([[1, 2, 5, 4], [2, 2, 5, 4], [3, 3, 5.5, 4], [4, 3, 6, 4]])
BOUNDS = [0, 1000, 2000, 3000, 4000]


def needs_aedat():
    return pytest.importorskip("aedat", reason="the 'aedat' package is not installed: pip install aedat")


def test_npz_sequence_in_fe108_layout(tmp_path):
    ev = random_events()
    write_tracking_sequence(tmp_path / "train" / "seq_a", ev, BOXES, BOUNDS, SENSOR, meta={"fps": 1000})
    write_tracking_sequence(tmp_path / "train" / "seq_b", ev[:10], BOXES[:2], BOUNDS[:3], SENSOR)
    ds = TrackingDataset(tmp_path, "fe108", "train")
    assert ds.names == ["seq_a", "seq_b"] and len(ds) == 2
    seq = ds["seq_a"]
    assert (tmp_path / "train" / "seq_a" / "groundtruth_rect.txt").read_text().splitlines()[2] == "3,3,5.5,4"
    assert np.array_equal(seq.boxes, BOXES) and len(seq) == 4
    assert seq.sensor_size == SENSOR and seq.window_us(1) == (1000, 2000)
    w1 = seq.events(1)
    assert np.all((w1["t"] >= 1000) & (w1["t"] < 2000))
    assert sum(len(seq.events(i)) for i in range(4)) == len(ev)
    assert torch.equal(seq.count_frames(2, T=2), window_count_frames(ev, 2000, 3000, SENSOR, 2))
    g = seq.gtp_frames()
    assert torch.equal(g, gtp_frames(ev, BOUNDS, SENSOR))
    assert torch.equal(seq.gtp_frames(2, 4), g[2:4])  # the trajectory state is carried from frame 0
    streamed = list(seq.iter_frames("counts", T=1))
    assert len(streamed) == 4 and torch.equal(streamed[3], seq.count_frames(3))
    meta = json.loads((tmp_path / "train" / "seq_a" / "meta.json").read_text())
    assert meta["fps"] == 1000 and meta["frame_timestamps_us"] == BOUNDS
    assert seq._events is not None  # cached after the first use
    seq.release()
    assert seq._events is None
    lean = TrackingDataset(tmp_path, "fe108", "train", cache_events=False)["seq_a"]
    assert np.array_equal(lean.events(2), seq.events(2)) and lean._events is None


def test_pre_converted_png_frames_fe108_and_visevent_numbering(tmp_path):
    pytest.importorskip("PIL", reason="Pillow is not installed")
    ev = random_events(seed=1)
    src = TrackingSequence(
        write_tracking_sequence(tmp_path / "src" / "train" / "s", ev, BOXES, BOUNDS, SENSOR)
    )
    folder = src.write_gtp_pngs("inter1_stack_3008")
    files = sorted(p.name for p in (tmp_path / "src" / "train" / "s" / "inter1_stack_3008").iterdir())
    assert files == ["0001_1.png", "0002_1.png", "0003_1.png", "0004_1.png"]  # FE108: frame k -> k + 1
    # a PNG-only copy (no events) is read through frames_dir
    only = tmp_path / "png" / "test" / "s"
    (only / "inter1_stack_3008").mkdir(parents=True)
    for name in files:
        (only / "inter1_stack_3008" / name).write_bytes(
            (tmp_path / "src" / "train" / "s" / "inter1_stack_3008" / name).read_bytes()
        )
    (only / "groundtruth_rect.txt").write_text(
        (tmp_path / "src" / "train" / "s" / "groundtruth_rect.txt").read_text()
    )
    seq = TrackingDataset(tmp_path / "png", "fe108", "test", frames_dir="inter1_stack_3008")[0]
    expected = gtp_frames(ev, BOUNDS, SENSOR, as_png=True)  # [4, 1, 3, H, W] in [ON, OFF, trajectory]
    assert torch.equal(seq.png_frames(2), expected[2])
    assert torch.equal(seq.png_frames(2, order="hnp"), expected[2].flip(1))
    assert seq.sensor_size == SENSOR
    with pytest.raises(DatasetNotFoundError, match="no event file"):
        seq.events(0)
    # VisEvent / FELT number SDTrack's frames from 0; inter2 folders hold 2 sub-slices per frame
    vis_dir = write_tracking_sequence(
        tmp_path / "vis" / "train" / "v", ev, BOXES, BOUNDS, SENSOR, layout="visevent"
    )
    TrackingSequence(vis_dir, layout="visevent").write_gtp_pngs("inter2_stack_3008")
    vis = TrackingSequence(vis_dir, layout="visevent", frames_dir="inter2_stack_3008")
    names = sorted(p.name for p in (tmp_path / "vis" / "train" / "v" / "inter2_stack_3008").iterdir())
    assert names[:3] == ["0000_1.png", "0000_2.png", "0001_1.png"] and len(names) == 8
    assert torch.equal(vis.png_frames(3), vis.gtp_frames(T=2, as_png=True)[3])
    assert folder.endswith("inter1_stack_3008")


def test_aedat4_round_trip_through_the_aedat_package(tmp_path):
    needs_aedat()
    ev = random_events(n=1000)
    frames = np.random.default_rng(0).integers(0, 255, (3, *SENSOR), dtype=np.uint8)
    path = tmp_path / "x.aedat4"
    write_aedat4(path, ev, SENSOR, frame_times_us=[5, 1500, 3100], frames=frames, packet_size=300)
    assert path.read_bytes().startswith(b"#!AER-DAT4.0\r\n")
    rec = read_aedat4(path)
    assert np.array_equal(rec.events, ev)
    assert rec.sensor_size == SENSOR
    assert rec.frame_times["begin_t"].tolist() == [5, 1500, 3100]
    import aedat

    pix = [p["frame"]["pixels"] for p in aedat.Decoder(str(path)) if "frame" in p]
    assert np.array_equal(np.stack(pix), frames)


def test_fe108_aedat4_with_pair_file(tmp_path):
    needs_aedat()
    ev = random_events(n=600, t_end=6000)
    seq_dir = tmp_path / "test" / "airplane_mul222"
    seq_dir.mkdir(parents=True)
    # 7 APS frames; pair.txt says the boxes start at frame 2 -> bounds = frames 2..6
    frame_times = [0, 500, 1000, 2000, 3000, 4000, 5000]
    write_aedat4(seq_dir / "events.aedat4", ev, SENSOR, frame_times_us=frame_times)
    np.savetxt(seq_dir / "groundtruth_rect.txt", BOXES, fmt="%g", delimiter=",")
    with pytest.raises(DatasetNotFoundError, match="pair.txt"):
        TrackingDataset(tmp_path, "fe108", "test")[0].events(0)
    (tmp_path / "pair.txt").write_text("other 0\nairplane_mul222 2\n")
    seq = TrackingDataset(tmp_path, "fe108", "test")[0]
    assert seq.window_us(0) == (1000, 2000) and seq.window_us(3) == (4000, 5000)
    assert seq.sensor_size == SENSOR
    w = seq.events(3)
    assert np.array_equal(w, ev[(ev["t"] >= 4000) & (ev["t"] < 5000)])


def test_visevent_and_felt_aedat4_names_and_last_window(tmp_path):
    needs_aedat()
    ev = random_events(n=300)
    for layout in ("visevent", "felt"):
        seq_dir = tmp_path / layout / "train" / "dvSave-2022_10_11_23_21_19"
        seq_dir.mkdir(parents=True)
        write_aedat4(
            seq_dir / "dvSave-2022_10_11_23_21_19.aedat4", ev, SENSOR, frame_times_us=[0, 1000, 2000, 3000]
        )
        np.savetxt(seq_dir / "groundtruth.txt", BOXES, fmt="%g", delimiter=",")
        seq = TrackingDataset(tmp_path / layout, layout, "train")[0]
        # 4 boxes, 4 frames: the last window is closed one frame interval after its start
        assert seq.window_us(3) == (3000, 4000)
        assert sum(len(seq.events(i)) for i in range(4)) == len(ev)


def test_meta_json_beats_aedat_frames_and_aedat4_output(tmp_path):
    needs_aedat()
    ev = random_events()
    folder = write_tracking_sequence(
        tmp_path / "train" / "s", ev, BOXES, BOUNDS, SENSOR, event_format="aedat4"
    )
    seq = TrackingSequence(folder)
    assert seq.event_file.endswith("events.aedat4")
    assert np.array_equal(seq.events(), ev) and seq.window_us(3) == (3000, 4000)


def test_layout_errors_name_the_path_and_the_layout(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        TrackingDataset(tmp_path / "nowhere", "fe108", "train")
    (tmp_path / "train").mkdir()
    with pytest.raises(DatasetNotFoundError, match="no split folder .*test.*found \\['train'\\]"):
        TrackingDataset(tmp_path, "fe108", "test")
    with pytest.raises(DatasetNotFoundError, match="no sequence folders.*FE108 layout"):
        TrackingDataset(tmp_path, "fe108", "train")
    (tmp_path / "train" / "s1").mkdir()
    with pytest.raises(DatasetNotFoundError, match=r"groundtruth_rect.txt.*FE108 layout"):
        TrackingDataset(tmp_path, "fe108", "train")
    with pytest.raises(DatasetNotFoundError, match=r"s1/groundtruth.txt.*VisEvent layout"):
        TrackingDataset(tmp_path, "visevent", "train")
    (tmp_path / "train" / "s1" / "groundtruth_rect.txt").write_text("1,2,3,4\n1,2,x,4\n")
    with pytest.raises(DatasetFormatError, match="line 2"):
        TrackingDataset(tmp_path, "fe108", "train")
    (tmp_path / "train" / "s1" / "groundtruth_rect.txt").write_text("1,2,3,4\n1,2,3,4\n")
    with pytest.raises(DatasetNotFoundError, match=r"no event file.*events.npz.*events.aedat4"):
        TrackingDataset(tmp_path, "fe108", "train")
    np.savez(tmp_path / "train" / "s1" / "events.npz", t=[1], x=[1], y=[1], p=[1])
    with pytest.raises(DatasetNotFoundError, match="meta.json"):
        TrackingDataset(tmp_path, "fe108", "train")
    (tmp_path / "train" / "s1" / "meta.json").write_text(
        json.dumps({"sensor_size": [4, 4], "frame_timestamps_us": [0, 1]})
    )
    with pytest.raises(DatasetFormatError, match="2 frame timestamps for 2 boxes"):
        TrackingDataset(tmp_path, "fe108", "train")
    with pytest.raises(ValueError, match="layout must be one of"):
        TrackingDataset(tmp_path, "otb", "train")
    with pytest.raises(DatasetNotFoundError, match="inter1_stack_3008"):
        (tmp_path / "train" / "s1" / "meta.json").write_text(
            json.dumps({"sensor_size": [4, 4], "frame_timestamps_us": [0, 1, 2]})
        )
        TrackingDataset(tmp_path, "fe108", "train", frames_dir="inter1_stack_3008")


def test_missing_aedat_package_tells_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "aedat", None)
    with pytest.raises(ImportError, match="pip install aedat"):
        require_aedat()
