"""Tracking representations: window count bins, SDTrack's GTP frames, crops and their inverse."""

import numpy as np
import pytest
import torch

from tp_spikformer.data.esim import EVENT_DTYPE
from tp_spikformer.data.event_repr import (
    CropTransform,
    GTPEncoder,
    crop_around,
    gtp_frames,
    jitter_box,
    window_count_frames,
)


def events(rows):
    """Structured events from (t, x, y, p) tuples."""
    return np.array(rows, dtype=EVENT_DTYPE)


def test_window_count_frames_bins_follow_the_window():
    ev = events(
        [(5, 0, 0, 1), (100, 1, 0, 1), (149, 1, 0, 0), (150, 2, 1, 1), (199, 2, 1, 1), (200, 0, 1, 1)]
    )
    fr = window_count_frames(ev, 100, 200, (2, 3), T=2)  # bins [100, 150) and [150, 200)
    assert fr.shape == (2, 2, 2, 3) and fr.dtype == torch.float32
    assert fr.sum() == 4  # t = 5 and t = 200 are outside [100, 200)
    assert fr[0, 1, 0, 1] == 1 and fr[0, 0, 0, 1] == 1  # ON and OFF at (x=1, y=0) in bin 0
    assert fr[1, 1, 1, 2] == 2  # both events at (2, 1) in bin 1
    one = window_count_frames(ev, 100, 200, (2, 3), T=1)
    assert torch.equal(one[0], fr.sum(0))
    # an empty first half stays empty (events_to_frames(split_by="time") would stretch over the events)
    late = window_count_frames(ev[3:5], 100, 200, (2, 3), T=2)
    assert late[0].sum() == 0 and late[1].sum() == 2
    # unsorted input gives the same frames
    assert torch.equal(window_count_frames(ev[::-1].copy(), 100, 200, (2, 3), T=2), fr)
    with pytest.raises(ValueError, match="t_end > t_start"):
        window_count_frames(ev, 200, 100, (2, 3))


def test_gtp_hand_computed_slices():
    A, B, C = (0, 0), (1, 0), (2, 1)  # (x, y) on a 2 x 3 sensor
    s0 = [(0, *A, 1), (1, *A, 1)] + [(2, *B, 0)] * 10  # A: 2 ON; B: 10 OFF
    s1 = [(10, *A, 1), (11, *C, 1), (12, *B, 1)]  # A ON again (not new), C ON new, B ON new
    s2 = []  # nothing: the trajectory decays
    s3 = [(30, *B, 1), (31, *B, 0)]  # B: ON and OFF both new after an empty slice
    ev = events(s0 + s1 + s2 + s3)
    out = gtp_frames(ev, [0, 10, 20, 30, 40], (2, 3))
    assert out.shape == (4, 1, 3, 2, 3)
    f = out[:, 0]  # [slice, channel (ON, OFF, trajectory), y, x]
    assert f[0, 0, 0, 0] == 60 and f[0, 1, 0, 1] == 255  # 2 x 30; 10 x 30 clipped at 255
    assert f[0, 2].abs().sum() == 0  # no trajectory for the first slice
    assert f[1, 2, 0, 0] == 0 and f[1, 2, 1, 2] == 30 and f[1, 2, 0, 1] == 30
    assert f[2, 2, 1, 2] == pytest.approx(24) and f[2, 2, 0, 1] == pytest.approx(24)  # x 0.8
    assert f[3, 2, 0, 1] == pytest.approx(24 * 0.8 + 60)  # 79.2: two new polarities
    assert f[3, 2, 1, 2] == pytest.approx(24 * 0.8)
    png = gtp_frames(ev, [0, 10, 20, 30, 40], (2, 3), as_png=True)
    assert png[3, 0, 2, 0, 1] == 79
    hnp = gtp_frames(ev, [0, 10, 20, 30, 40], (2, 3), order="hnp")
    assert torch.equal(hnp, out.flip(2))


def test_gtp_sub_slices_carry_the_state_and_border_option():
    ev = events([(0, 1, 1, 1), (60, 2, 1, 1), (120, 0, 0, 1)])
    enc = GTPEncoder((2, 3))
    w = enc.encode_window(ev, 0, 100, T=2)  # slices [0, 50) and [50, 100)
    assert w.shape == (2, 3, 2, 3)
    assert w[0, 0, 1, 1] == 30 and w[1, 0, 1, 2] == 30 and w[1, 2, 1, 2] == 30
    nxt = enc.encode_window(ev, 100, 200)  # third slice: (2, 1) decays, (0, 0) is new
    assert nxt[0, 2, 1, 2] == pytest.approx(24) and nxt[0, 2, 0, 0] == 30
    skip = GTPEncoder((2, 3), skip_border=True).encode(ev)
    assert skip[0, 0, 0] == 0 and skip[0, 1, 1] == 30  # (0, 0) is on row/column 0: ignored
    with pytest.raises(ValueError, match="order"):
        GTPEncoder((2, 3), order="rgb")


def test_crop_inside_frame_equals_the_slice_and_maps_back():
    frame = torch.arange(3 * 40 * 50, dtype=torch.float32).reshape(3, 40, 50)
    # box (10, 20, 8, 8), factor 2: side 16, corner (14 - 8, 24 - 8) = (6, 16)
    crop, tf = crop_around(frame, (10, 20, 8, 8), 2.0, 16)
    assert tf == CropTransform(6, 16, 16, 16)
    assert torch.equal(crop, frame[:, 16:32, 6:22])
    crop2, tf2 = crop_around(frame, (10, 20, 8, 8), 2.0, 32)
    assert crop2.shape == (3, 32, 32) and tf2.scale == 2.0
    # the box at the crop centre, 16 x 16 crop pixels, is the original box
    assert tf2.to_frame(np.array([8.0, 8.0, 16.0, 16.0])) == pytest.approx([10, 20, 8, 8])
    box = np.array([[3.0, 4.5, 7.0, 9.0], [30.0, 1.0, 2.0, 5.0]])
    assert tf2.to_frame(tf2.to_crop(box)) == pytest.approx(box)
    tb = torch.tensor(box)
    assert torch.allclose(tf2.to_frame(tf2.to_crop(tb)), tb)


def test_crop_pads_with_zeros_outside_the_frame():
    frame = torch.ones(2, 2, 10, 10)  # [T, 2, H, W] count frames work too
    crop, tf = crop_around(frame, (0, 0, 4, 4), 2.0, 8)  # side 8 centred on (2, 2): corner (-2, -2)
    assert (tf.x0, tf.y0) == (-2, -2)
    assert crop.shape == (2, 2, 8, 8)
    assert crop[..., :2, :].sum() == 0 and crop[..., :, :2].sum() == 0
    assert torch.all(crop[..., 2:, 2:] == 1)
    far, _ = crop_around(frame, (100, 100, 4, 4), 2.0, 8)
    assert far.sum() == 0
    with pytest.raises(ValueError, match="w > 0"):
        crop_around(frame, (0, 0, 0, 4), 2.0, 8)


def test_jitter_box_is_seeded_and_zero_jitter_is_identity():
    box = [10.0, 20.0, 8.0, 6.0]
    assert jitter_box(box, 0, 0, np.random.default_rng(0)) == pytest.approx(box)
    a = jitter_box(box, 3, 0.25, np.random.default_rng(1))
    b = jitter_box(box, 3, 0.25, np.random.default_rng(1))
    assert np.array_equal(a, b) and not np.allclose(a, box)
    assert np.all(a[2:] > 0)
