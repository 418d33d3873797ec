"""Training pairs for a tracker: a template crop from one frame, a jittered search crop from a later one.

As SDTrack / OSTrack sample them (``lib/train/data/sampler.py``, ``processing.py``; the factors and jitters
of ``experiments/SDTrack/SDTrack-tiny-fe108.yaml``): a sequence uniformly at random, a template frame, a
search frame after it at most ``max_interval`` frames later (both with a valid box); the template crop is
centred on the template box (factor 2, no jitter), the search crop on the search box moved and rescaled by
:func:`~tp_spikformer.data.event_repr.jitter_box` (centre jitter 3, scale jitter 0.25, factor 4). The
target is the search box in the search crop, ``x, y, w, h`` divided by the crop size.

Frames come from :class:`FrameSource` in the tracker's representation (``tracker.input_spec()``):
``"gtp"`` frames are SDTrack's PNG content (the trajectory channel truncated to integers, as the official
pre-converted frames; read from those PNGs when the sequence was opened with a ``frames_dir``) and are
cached per sequence as uint8 (about 2.4 MB per 48-frame 128 x 128 sequence); ``"counts"`` frames are
binned from the sequence's events on demand.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ...data.event_repr import crop_around, jitter_box
from ...data.tracking import TrackingSequence

REPRESENTATIONS = ("gtp", "counts")


class FrameSource:
    """Per-frame tracker inputs of tracking sequences: ``frame(seq, i)`` -> ``[3, H, W]`` (GTP) or
    ``[T, 2, H, W]`` (counts), float32. ``spec``: a tracker's ``input_spec()``."""

    def __init__(self, spec: dict[str, Any], cache: bool = True):
        rep = spec.get("representation")
        if rep not in REPRESENTATIONS:
            raise ValueError(f"representation must be one of {REPRESENTATIONS}, got {rep!r}")
        self.representation = rep
        self.T = int(spec.get("T", 1))
        self.gtp_kwargs = dict(spec.get("gtp_kwargs", {}))
        self.cache = cache
        self._gtp: dict[int, torch.Tensor] = {}

    def sequence_frames(self, seq: TrackingSequence) -> torch.Tensor:
        """All GTP frames of ``seq`` as uint8 ``[N, 3, H, W]`` (cached when ``cache``)."""
        key = id(seq)
        if key in self._gtp:
            return self._gtp[key]
        if uses_png_frames(seq):  # SDTrack's pre-converted frames (slice 1 of each frame)
            order = self.gtp_kwargs.get("order", "pnh")
            frames = torch.stack([seq.png_frames(i, order=order)[0] for i in range(len(seq))])
        else:
            frames = seq.gtp_frames(T=1, as_png=True, **self.gtp_kwargs)[:, 0]  # [N, 3, H, W] integer values
        packed = frames.to(torch.uint8)
        if not torch.equal(packed.float(), frames):
            raise ValueError(
                f"GTP frames of '{seq.name}' are not integers in 0..255; cannot store them as uint8"
            )
        if self.cache:
            self._gtp[key] = packed
        return packed

    def frame(self, seq: TrackingSequence, i: int) -> torch.Tensor:
        if self.representation == "counts" and uses_png_frames(seq):
            raise ValueError(
                f"sequence '{seq.name}' has only SDTrack PNG frames ({seq.frames_dir}); a tracker that reads "
                "event counts needs the events (events.aedat4 or events.npz + meta.json)"
            )
        if self.representation == "gtp":
            return self.sequence_frames(seq)[i].float()  # [3, H, W]
        return seq.count_frames(i, self.T)  # [T, 2, H, W]

    def clear(self) -> None:
        self._gtp.clear()


def uses_png_frames(seq: TrackingSequence) -> bool:
    """True when ``seq`` is read from SDTrack's PNG frames: it was opened with a ``frames_dir``."""
    return seq.frames_dir is not None


def valid_frames(boxes: np.ndarray) -> np.ndarray:
    """Indices of the frames whose box has w > 0 and h > 0 (finite)."""
    b = np.asarray(boxes, dtype=np.float64)
    ok = np.isfinite(b).all(axis=1) & (b[:, 2] > 0) & (b[:, 3] > 0)
    return np.flatnonzero(ok)


class PairSampler:
    """Random (template crop, search crop, target box) triples from ``sequences`` (module docstring).

    ``spec``: the tracker's ``input_spec()`` (representation, T, crop sizes). Every sequence needs at least
    two frames with a valid box; one that has fewer is an error (pass ``TrackingDataset(...,
    sequences=[...])`` without it).
    """

    def __init__(
        self,
        sequences: Sequence[TrackingSequence],
        spec: dict[str, Any],
        *,
        template_factor: float = 2.0,
        search_factor: float = 4.0,
        center_jitter: float = 3.0,
        scale_jitter: float = 0.25,
        max_interval: int = 200,
        cache: bool = True,
    ):
        self.sequences = list(sequences)
        if not self.sequences:
            raise ValueError("no sequences to sample training pairs from")
        if max_interval < 1:
            raise ValueError(f"max_interval must be >= 1 frame, got {max_interval}")
        self.source = FrameSource(spec, cache=cache)
        self.template_size, self.search_size = int(spec["template_size"]), int(spec["search_size"])
        self.template_factor, self.search_factor = float(template_factor), float(search_factor)
        self.center_jitter, self.scale_jitter = float(center_jitter), float(scale_jitter)
        self.max_interval = int(max_interval)
        self._valid = [valid_frames(s.boxes) for s in self.sequences]
        short = [s.name for s, v in zip(self.sequences, self._valid) if v.size < 2]
        if short:
            raise ValueError(
                f"sequences with fewer than two valid boxes (w, h > 0) cannot give a template/search pair: "
                f"{short[:10]}; leave them out (TrackingDataset(..., sequences=[...]))"
            )

    def indices(self, rng: np.random.Generator) -> tuple[int, int, int]:
        """(sequence, template frame, search frame) drawn as the module docstring says."""
        s = int(rng.integers(len(self.sequences)))
        valid = self._valid[s]
        t = int(valid[rng.integers(valid.size - 1)])  # any valid frame but the last one
        later = valid[(valid > t) & (valid <= t + self.max_interval)]
        if later.size == 0:  # the next valid frame is further away than max_interval
            later = valid[valid > t][:1]
        return s, t, int(later[rng.integers(later.size)])

    def sample(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One pair: template ``[..., Z, Z]``, search ``[..., X, X]`` (float32) and the target box ``[4]``
        (x, y, w, h in the search crop / X)."""
        s, t, u = self.indices(rng)
        seq = self.sequences[s]
        template, _ = crop_around(
            self.source.frame(seq, t), seq.boxes[t], self.template_factor, self.template_size
        )
        box = seq.boxes[u]
        jittered = jitter_box(box, self.center_jitter, self.scale_jitter, rng)
        search, tf = crop_around(self.source.frame(seq, u), jittered, self.search_factor, self.search_size)
        target = torch.as_tensor(tf.to_crop(box) / self.search_size, dtype=torch.float32)
        return template, search, target

    def batch(
        self, batch_size: int, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``batch_size`` pairs stacked: templates ``[B, ...]``, searches ``[B, ...]``, targets ``[B, 4]``."""
        pairs = [self.sample(rng) for _ in range(batch_size)]
        return tuple(torch.stack(p) for p in zip(*pairs))  # type: ignore[return-value]
