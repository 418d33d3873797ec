"""ESIM-style event-camera simulator: grey frames in [0, 1] -> events ``(t, x, y, p)``, vectorised (numpy).

The model (ESIM, Rebecq et al. 2018; the rules of ``rpg_vid2e``'s ``esim.cpp``, thresholds as v2e draws them):

* log intensity ``L = log(I + log_eps)`` per pixel;
* a per-pixel reference level ``L_ref``, set to ``L`` of the first frame;
* per-pixel contrast thresholds ``C+`` and ``C-`` drawn once from ``N(C, threshold_sigma)`` and clamped at
  ``>= 0.01`` (v2e's rule; the clamp is part of the model, not a repair of bad input);
* between two frames ``(t0, L0) -> (t1, L1)`` ``L`` moves linearly; the direction is the sign of
  ``L1 - L0``; every level ``L_ref + k * pol * C`` (k = 1, 2, ...) strictly past ``L0`` and not past ``L1``
  is a crossing: an event at ``t = t0 + (level - L0) * (t1 - t0) / (L1 - L0)``, and ``L_ref`` moves to that
  level (by exactly ``pol * C``, it is never reset to ``L1``), so one pixel can fire several events per pair;
* refractory period: a crossing less than ``refractory_us`` after the pixel's last *emitted* event is not
  emitted, but ``L_ref`` still advances;
* optional shot noise: ``noise_rate_hz`` events per pixel and second at uniform random pixels, times and
  polarities; they neither move ``L_ref`` nor count for the refractory period (a simplification of v2e).

Events come back as a structured array (:data:`EVENT_DTYPE`: ``t`` int64 us, ``x``/``y`` uint16, ``p`` int8)
sorted by time (ties by pixel index y * W + x). Polarity is ``p = 1`` for ON (brighter) and ``p = 0`` for
OFF, as in AEDAT 4 / FE108 files (``on`` flag); :func:`.events.events_to_frames` counts ``p <= 0`` in
channel 0 and ``p > 0`` in channel 1. Times are computed in float and rounded to the nearest microsecond at
the end (the refractory test uses the unrounded times).

Use :meth:`EventSimulator.simulate` for a whole clip or :meth:`EventSimulator.step` frame by frame for long
sequences. Loops run over the crossing rank (at most the largest number of crossings of one pixel in one
frame pair), never over pixels.
"""

from __future__ import annotations

import numpy as np

from ..errors import UsageError

EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<u2"), ("y", "<u2"), ("p", "i1")])
"""Structured dtype of simulated events (also what the tracking readers return)."""


def empty_events() -> np.ndarray:
    """A zero-length event array of :data:`EVENT_DTYPE`."""
    return np.zeros(0, dtype=EVENT_DTYPE)


class EventSimulator:
    """Frames -> events with the ESIM model (see the module docstring).

    ``contrast_threshold_pos`` / ``_neg``: mean thresholds C+ / C- in log units; ``threshold_sigma``:
    per-pixel spread (standard deviation; 0 for identical thresholds); ``refractory_us``: dead time per pixel;
    ``log_eps``: offset in ``log(I + eps)``; ``noise_rate_hz``: shot-noise events per pixel and second;
    ``seed``: the thresholds and the noise come from ``numpy.random.default_rng(seed)``, so two simulators
    with the same arguments produce the same events.
    """

    def __init__(
        self,
        contrast_threshold_pos: float = 0.2,
        contrast_threshold_neg: float = 0.2,
        threshold_sigma: float = 0.03,
        refractory_us: float = 1000,
        log_eps: float = 1e-3,
        noise_rate_hz: float = 0.0,
        seed: int = 0,
    ):
        for name, value in (
            ("contrast_threshold_pos", contrast_threshold_pos),
            ("contrast_threshold_neg", contrast_threshold_neg),
        ):
            if not value > 0:
                raise UsageError(f"{name} must be > 0 (log-intensity units, e.g. 0.2), got {value}")
        for name, value in (
            ("threshold_sigma", threshold_sigma),
            ("refractory_us", refractory_us),
            ("noise_rate_hz", noise_rate_hz),
        ):
            if not value >= 0:
                raise UsageError(f"{name} must be >= 0, got {value}")
        if not log_eps > 0:
            raise UsageError(f"log_eps must be > 0 (log(I + eps) of frames in [0, 1]), got {log_eps}")
        self.contrast_threshold_pos = float(contrast_threshold_pos)
        self.contrast_threshold_neg = float(contrast_threshold_neg)
        self.threshold_sigma = float(threshold_sigma)
        self.refractory_us = float(refractory_us)
        self.log_eps = float(log_eps)
        self.noise_rate_hz = float(noise_rate_hz)
        self.seed = seed
        self.reset()

    def reset(self) -> None:
        """Forget the state (reference levels, thresholds, last frame); the next :meth:`step` starts over
        with the same random draws as a fresh simulator."""
        self._rng = np.random.default_rng(self.seed)
        self._shape: tuple[int, int] | None = None
        self._l_ref: np.ndarray | None = None
        self._l_prev: np.ndarray | None = None
        self._t_prev: float | None = None
        self._t_last: np.ndarray | None = None
        self.c_pos: np.ndarray | None = None
        self.c_neg: np.ndarray | None = None

    @property
    def reference(self) -> np.ndarray | None:
        """The per-pixel reference levels ``L_ref`` ``[H, W]`` (None before the first frame)."""
        return None if self._l_ref is None else self._l_ref.reshape(self._shape)

    def _log(self, frame: np.ndarray) -> np.ndarray:
        return np.log(frame.astype(np.float64).reshape(-1) + self.log_eps)

    def _check_frame(self, frame: np.ndarray) -> np.ndarray:
        frame = np.asarray(frame)
        if frame.ndim != 2:
            raise UsageError(f"a frame must be a grey image [H, W], got shape {frame.shape}")
        if self._shape is not None and frame.shape != self._shape:
            raise UsageError(f"frame shape {frame.shape} differs from the first frame's {self._shape}")
        if frame.size and (np.nanmin(frame) < 0 or np.nanmax(frame) > 1 or np.isnan(frame).any()):
            raise UsageError(
                f"frame values must lie in [0, 1] (grey intensity), got [{np.nanmin(frame)}, "
                f"{np.nanmax(frame)}] (NaN: {bool(np.isnan(frame).any())}); scale uint8 images by 1/255"
            )
        return frame

    def _thresholds(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        def draw(mean: float) -> np.ndarray:
            if self.threshold_sigma == 0:
                return np.full(n, mean)
            return np.maximum(self._rng.normal(mean, self.threshold_sigma, n), 0.01)

        return draw(self.contrast_threshold_pos), draw(self.contrast_threshold_neg)

    def step(self, frame: np.ndarray, t_us: float) -> np.ndarray:
        """Feed the next frame ``[H, W]`` (values in [0, 1]) taken at ``t_us`` microseconds; returns the
        events since the previous frame (none for the first frame, which initialises the state)."""
        frame = self._check_frame(frame)
        t_us = float(t_us)
        log_now = self._log(frame)
        if self._l_ref is None:
            self._shape = frame.shape
            self.c_pos, self.c_neg = self._thresholds(log_now.size)
            self._l_ref = log_now.copy()
            self._l_prev, self._t_prev = log_now, t_us
            self._t_last = np.full(log_now.size, -np.inf)
            return empty_events()
        if not t_us > self._t_prev:
            raise UsageError(f"timestamps must increase: got {t_us} us after {self._t_prev} us")
        t_float, pix, pol = self._crossings(self._l_prev, log_now, self._t_prev, t_us)
        if self.noise_rate_hz > 0:
            t_float, pix, pol = self._add_noise(t_float, pix, pol, self._t_prev, t_us)
        self._l_prev, self._t_prev = log_now, t_us
        order = np.lexsort((pix, t_float))
        width = self._shape[1]
        out = np.empty(order.size, dtype=EVENT_DTYPE)
        out["t"] = np.rint(t_float[order]).astype(np.int64)
        out["x"] = (pix[order] % width).astype(np.uint16)
        out["y"] = (pix[order] // width).astype(np.uint16)
        out["p"] = pol[order]
        return out

    def _crossings(
        self, l0: np.ndarray, l1: np.ndarray, t0: float, t1: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Threshold crossings of all pixels between two log frames (updates ``L_ref`` and last times)."""
        diff = l1 - l0
        up = diff > 0
        step = np.where(up, self.c_pos, -self.c_neg)  # signed threshold per pixel
        # number of levels L_ref + k * step (k >= 1) passed when going from L0 to L1
        with np.errstate(invalid="ignore"):
            count = np.floor((l1 - self._l_ref) / step)
        count = np.where(diff != 0, np.maximum(count, 0), 0).astype(np.int64)
        pix = np.flatnonzero(count)
        ts, pixels, pols = [], [], []
        if pix.size:
            cnt, ref, stp = count[pix], self._l_ref[pix], step[pix]
            a, d = l0[pix], diff[pix]
            last = self._t_last[pix]
            pol = up[pix].astype(np.int8)
            for k in range(1, int(cnt.max()) + 1):
                live = cnt >= k  # pixels with a k-th crossing
                level = ref[live] + k * stp[live]
                t = t0 + (level - a[live]) * (t1 - t0) / d[live]
                keep = t - last[live] >= self.refractory_us
                idx = np.flatnonzero(live)[keep]
                last[idx] = t[keep]
                ts.append(t[keep])
                pixels.append(pix[idx])
                pols.append(pol[idx])
            self._l_ref[pix] = ref + cnt * stp
            self._t_last[pix] = last
        if not ts:
            return np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int8)
        return np.concatenate(ts), np.concatenate(pixels), np.concatenate(pols)

    def _add_noise(
        self, t: np.ndarray, pix: np.ndarray, pol: np.ndarray, t0: float, t1: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n_pix = self._l_ref.size
        n = self._rng.poisson(self.noise_rate_hz * n_pix * (t1 - t0) * 1e-6)
        if n == 0:
            return t, pix, pol
        nt = self._rng.uniform(t0, t1, n)
        npix = self._rng.integers(0, n_pix, n)
        npol = self._rng.integers(0, 2, n).astype(np.int8)
        return np.concatenate([t, nt]), np.concatenate([pix, npix]), np.concatenate([pol, npol])

    def simulate(self, frames: np.ndarray, timestamps_us: np.ndarray) -> np.ndarray:
        """Events of a whole clip: ``frames`` ``[N, H, W]`` in [0, 1], ``timestamps_us`` ``[N]`` increasing.

        Starts from a fresh state (:meth:`reset`), so the result depends only on the arguments and the
        simulator's settings."""
        frames = np.asarray(frames)
        timestamps_us = np.asarray(timestamps_us).reshape(-1)
        if frames.ndim != 3:
            raise UsageError(f"frames must be [N, H, W] grey images, got shape {frames.shape}")
        if timestamps_us.shape[0] != frames.shape[0]:
            raise UsageError(f"{frames.shape[0]} frames but {timestamps_us.shape[0]} timestamps")
        self.reset()
        chunks = [self.step(frame, t) for frame, t in zip(frames, timestamps_us)]
        return np.concatenate(chunks) if chunks else empty_events()
