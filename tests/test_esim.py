"""ESIM-style simulator against hand-computed events."""

import numpy as np
import pytest

from tp_spikformer.data import events_to_frames
from tp_spikformer.data.esim import EVENT_DTYPE, EventSimulator

EPS = 1e-3


def grey(log_level: float) -> np.ndarray:
    """A 1x1 frame whose log(I + eps) is ``log_level``."""
    return np.full((1, 1), np.exp(log_level) - EPS)


def test_single_pixel_ramp_crossings_refractory_and_reference():
    # C = 0.2 exactly (no spread), refractory 300 us.
    sim = EventSimulator(0.2, 0.2, threshold_sigma=0.0, refractory_us=300, log_eps=EPS)
    assert sim.step(grey(-1.0), 0).size == 0  # first frame: initialises L_ref = -1.0
    assert sim.reference[0, 0] == pytest.approx(-1.0)
    # L: -1.0 -> -0.3 over 700 us: levels -0.8, -0.6, -0.4 at t = 200, 400, 600 (L1 = -0.3 < -0.2: no 4th).
    # 400 is only 200 us after 200 -> dropped; 600 is 400 us after the last EMITTED event (200) -> kept.
    ev = sim.step(grey(-0.3), 700)
    assert ev.dtype == EVENT_DTYPE
    assert ev["t"].tolist() == [200, 600]
    assert ev["p"].tolist() == [1, 1]
    assert ev["x"].tolist() == [0, 0] and ev["y"].tolist() == [0, 0]
    # L_ref advanced by exactly 3 * C (the dropped crossing included), not reset to L1 = -0.3
    assert sim.reference[0, 0] == pytest.approx(-0.4)
    # darkening -0.3 -> -1.1 over 800 us (700 -> 1500): levels -0.6, -0.8, -1.0 at t = 1000, 1200, 1400;
    # 1000 - 600 >= 300 kept, 1200 dropped, 1400 - 1000 >= 300 kept; OFF polarity is p = 0.
    ev = sim.step(grey(-1.1), 1500)
    assert ev["t"].tolist() == [1000, 1400]
    assert ev["p"].tolist() == [0, 0]
    assert sim.reference[0, 0] == pytest.approx(-1.0)


def test_no_refractory_emits_every_crossing():
    sim = EventSimulator(0.2, 0.2, threshold_sigma=0.0, refractory_us=0, log_eps=EPS)
    frames = np.stack([grey(-1.0), grey(-0.3)])
    ev = sim.simulate(frames, np.array([0, 700]))
    assert ev["t"].tolist() == [200, 400, 600]


def test_separate_on_and_off_thresholds():
    # C+ = 0.25, C- = 0.1: -1.0 -> -0.4 crosses -0.75, -0.5 (t = 250, 500 over 600 us);
    # then -0.4 -> -0.75 (600 -> 950) from L_ref -0.5 crosses -0.6, -0.7 at t = 600 + 200 = 800, 900.
    sim = EventSimulator(0.25, 0.1, threshold_sigma=0.0, refractory_us=0, log_eps=EPS)
    ev = sim.simulate(np.stack([grey(-1.0), grey(-0.4), grey(-0.75)]), np.array([0, 600, 950]))
    assert ev["t"].tolist() == [250, 500, 800, 900]
    assert ev["p"].tolist() == [1, 1, 0, 0]


def test_darkening_pixel_is_off_and_counted_in_channel_0():
    frames = np.stack([np.full((4, 5), 0.8), np.full((4, 5), 0.8)])
    frames[1, 2, 3] = 0.1  # one pixel darkens: log(0.101) - log(0.801) = -2.07 -> 10 crossings at C = 0.2
    sim = EventSimulator(threshold_sigma=0.0, refractory_us=0)
    ev = sim.simulate(frames, np.array([0, 10_000]))
    assert len(ev) == 10
    assert set(ev["p"].tolist()) == {0}
    assert set(zip(ev["x"].tolist(), ev["y"].tolist())) == {(3, 2)}
    assert np.all(np.diff(ev["t"]) >= 0)
    fr = events_to_frames(ev, (4, 5), T=1)
    assert fr[0, 0, 2, 3] == 10 and fr[0, 1].sum() == 0


def test_static_scene_without_noise_has_no_events():
    rng = np.random.default_rng(3)
    img = rng.uniform(0, 1, (16, 16))
    sim = EventSimulator()
    ev = sim.simulate(np.stack([img] * 5), np.arange(5) * 1000)
    assert ev.size == 0


def test_shot_noise_on_static_scene():
    img = np.full((32, 32), 0.5)
    sim = EventSimulator(noise_rate_hz=50.0, seed=1)
    ev = sim.simulate(np.stack([img] * 11), np.arange(11) * 10_000)  # 0.1 s
    expected = 50.0 * 32 * 32 * 0.1  # Poisson mean 5120
    assert abs(len(ev) - expected) < 5 * np.sqrt(expected)
    assert np.all(np.diff(ev["t"]) >= 0)
    assert set(np.unique(ev["p"]).tolist()) == {0, 1}


def moving_edge(n=6, size=24):
    xs = np.arange(size)
    frames = [np.clip((xs[None, :] - 3 * k) / 6.0, 0, 1) * np.ones((size, 1)) * 0.9 + 0.05 for k in range(n)]
    return np.stack(frames), np.arange(n) * 2000


def test_determinism_by_seed_and_sorted_output():
    frames, ts = moving_edge()
    a = EventSimulator(seed=5, noise_rate_hz=20).simulate(frames, ts)
    b = EventSimulator(seed=5, noise_rate_hz=20).simulate(frames, ts)
    c = EventSimulator(seed=6, noise_rate_hz=20).simulate(frames, ts)
    assert a.size > 0
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.all(np.diff(a["t"]) >= 0)
    # simulate() restarts from a fresh state: the same simulator twice gives the same events
    sim = EventSimulator(seed=5, noise_rate_hz=20)
    assert np.array_equal(sim.simulate(frames, ts), sim.simulate(frames, ts))


def test_streaming_steps_equal_whole_clip():
    frames, ts = moving_edge()
    whole = EventSimulator(seed=2).simulate(frames, ts)
    sim = EventSimulator(seed=2)
    parts = np.concatenate([sim.step(f, t) for f, t in zip(frames, ts)])
    assert np.array_equal(whole, parts)


def test_threshold_spread_is_drawn_per_pixel_and_clamped():
    sim = EventSimulator(contrast_threshold_pos=0.02, threshold_sigma=0.05, seed=0)
    sim.step(np.full((30, 30), 0.5), 0)
    assert sim.c_pos.shape == (900,)
    assert sim.c_pos.min() == pytest.approx(0.01)  # many draws fall below 0.01 and are clamped
    assert np.std(sim.c_neg) > 0.03


def test_input_errors_name_the_fix():
    sim = EventSimulator()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sim.step(np.full((2, 2), 255.0), 0)
    sim.step(np.zeros((2, 2)), 0)
    with pytest.raises(ValueError, match="increase"):
        sim.step(np.zeros((2, 2)), 0)
    with pytest.raises(ValueError, match="shape"):
        sim.step(np.zeros((3, 2)), 10)
    with pytest.raises(ValueError, match="contrast_threshold_pos"):
        EventSimulator(contrast_threshold_pos=0)
