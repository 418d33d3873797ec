"""Event-camera tracking datasets on disk: FE108, VisEvent, FELT and our synthetic set (FE108 layout).

Layouts (``<root>/<split>/<seq>/``, split ``train`` or ``test``):

* ``fe108``: ``groundtruth_rect.txt`` and ``events.aedat4`` (FE108's recordings; frame timestamps from the
  file's APS frames, aligned by ``<root>/pair.txt``), or ``events.npz`` + ``meta.json`` (our synthetic
  set, or converted data); SDTrack's pre-converted frames ``<seq>/inter1_stack_3008/0001_1.png`` (frame k
  is ``{k+1:04}_{j}.png``) can be read instead of events.
* ``visevent`` and ``felt``: ``groundtruth.txt`` and ``<seq>/<seq>.aedat4`` (or ``events.npz`` +
  ``meta.json``); SDTrack's frames are ``{k:04}_{j}.png`` (numbered from 0).

Frame windows (SDTrack's pairing, from its ``GTP_FE108.py`` conversion script [unverified copy]): a
sequence with N boxes has N + 1 window bounds; frame i's events are ``bounds[i] <= t < bounds[i+1]``.
The bounds come from ``meta.json`` (``frame_timestamps_us``, N + 1 values) when present, else from the
AEDAT file's frame stream (DV's frame start time, ``aedat``'s ``begin_t``): FE108 takes frames ``p .. p+N``
where ``p`` is the sequence's number in ``<root>/pair.txt`` (lines ``<seq> <p>``); VisEvent and FELT take
frames ``0 .. N`` and, when the file has exactly N frames, close the last window one frame interval after
its start (our rule; their converters are not public). ``events.npz`` is read before ``.aedat4`` when both
exist. Real FE108 has ``events.aedat4`` only; ``aedat`` (``pip install aedat``) decodes it.

``meta.json``: ``{"sensor_size": [H, W], "frame_timestamps_us": [N + 1 ints], "fps": float, ...}``.
Box files: one ``x,y,w,h`` line per frame (:mod:`.box_text`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import UnknownNameError, UsageError
from ._pillow import require_pillow
from .aedat4 import read_aedat4, write_aedat4
from .box_text import read_box_file, write_box_file
from .errors import DatasetNotFoundError, bad_format, require_dir
from .esim import EVENT_DTYPE
from .event_repr import GTP_ORDERS, GTPEncoder, window_count_frames
from .events import EVENT_FIELDS, _hw, event_fields

LAYOUTS = ("fe108", "visevent", "felt")
GROUNDTRUTH = {"fe108": "groundtruth_rect.txt", "visevent": "groundtruth.txt", "felt": "groundtruth.txt"}
PNG_INDEX_BASE = {"fe108": 1, "visevent": 0, "felt": 0}
LAYOUT_TEXT = {
    "fe108": (
        "FE108 layout: <root>/{train,test}/<seq>/groundtruth_rect.txt with events.aedat4 (+ <root>/pair.txt) "
        "or events.npz + meta.json, or SDTrack frames <seq>/inter1_stack_3008/{k+1:04}_1.png"
    ),
    "visevent": (
        "VisEvent layout: <root>/{train,test}/<seq>/groundtruth.txt with <seq>.aedat4 or events.npz + "
        "meta.json, or SDTrack frames <seq>/inter1_stack_3008/{k:04}_1.png"
    ),
    "felt": (
        "FELT layout: <root>/{train,test}/<seq>/groundtruth.txt with <seq>.aedat4 or events.npz + "
        "meta.json, or SDTrack frames <seq>/inter1_stack_3008/{k:04}_1.png"
    ),
}
REPRESENTATIONS = ("counts", "gtp", "png")


def _check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise UsageError(f"layout must be one of {LAYOUTS}, got '{layout}'")
    return layout


def _slices_of(frames_dir: str) -> int:
    """Sub-slices per frame of an SDTrack frame folder: ``interS_stack_...`` -> S (1 otherwise)."""
    m = re.match(r"inter(\d+)_", os.path.basename(frames_dir.rstrip("/")))
    return int(m.group(1)) if m else 1


def read_pair_file(path: str | os.PathLike) -> dict[str, int]:
    """FE108's ``pair.txt``: ``<seq> <first frame index>`` per line -> {seq: index}."""
    path = os.fspath(path)
    out = {}
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise bad_format(
                    path, f"line {i + 1}: expected '<seq> <frame index>', got {line!r}", "FE108 pair.txt"
                )
            out[parts[0]] = int(parts[1])
    return out


class TrackingSequence:
    """One tracking sequence: ``name``, ``boxes`` ``[N, 4]`` (x, y, w, h float64), window ``bounds_us``
    ``[N + 1]`` (None when only PNG frames exist), ``sensor_size`` (H, W), and its frames.

    ``layout``: "fe108", "visevent" or "felt" (file names, see the module docstring); ``frames_dir``: an
    SDTrack frame folder name (e.g. ``inter1_stack_3008``) to read with :meth:`png_frames`; ``root``: the
    dataset root (where FE108's ``pair.txt`` is; default two folders up); ``cache_events``: keep the
    decoded events in memory after the first use (else they are read again for every call; see
    :meth:`release`).

    Frames: :meth:`events` (window i or all), :meth:`count_frames` ``[T, 2, H, W]``, :meth:`gtp_frames`
    ``[n, T, 3, H, W]`` (exact: computed from frame 0 so the trajectory state is right),
    :meth:`png_frames` ``[S, 3, H, W]``, and :meth:`iter_frames` to stream any of them in order.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        layout: str = "fe108",
        frames_dir: str | None = None,
        root: str | os.PathLike | None = None,
        cache_events: bool = True,
    ):
        self.layout = _check_layout(layout)
        self.path = os.fspath(path)
        self.cache_events = cache_events
        self.name = os.path.basename(os.path.normpath(self.path))
        self.root = os.fspath(root) if root is not None else os.path.dirname(os.path.dirname(self.path))
        self.frames_dir = frames_dir
        self._layout_text = LAYOUT_TEXT[layout]
        gt = os.path.join(self.path, GROUNDTRUTH[layout])
        if not os.path.isfile(gt):
            raise DatasetNotFoundError(f"missing ground-truth file {gt} ({self._layout_text})")
        self.boxes = read_box_file(gt, self._layout_text)
        self._events: np.ndarray | None = None
        self._meta = self._read_meta()
        self.event_file = self._find_event_file()
        if self.event_file is None and frames_dir is None:
            raise DatasetNotFoundError(
                f"no event file in {self.path}: expected events.npz + meta.json or "
                f"{self._aedat_name()} ({self._layout_text}); or pass frames_dir for SDTrack PNG frames"
            )
        self.bounds_us: np.ndarray | None = None
        self.sensor_size: tuple[int, int] | None = None
        if self._meta is not None:
            self._bounds_from_meta()
        if frames_dir is not None:
            folder = os.path.join(self.path, frames_dir)
            if not os.path.isdir(folder):
                raise DatasetNotFoundError(f"missing frame folder {folder} ({self._layout_text})")

    # --- files -----------------------------------------------------------------------------------------
    def _aedat_name(self) -> str:
        return "events.aedat4" if self.layout == "fe108" else f"{self.name}.aedat4"

    def _find_event_file(self) -> str | None:
        for name in ("events.npz", self._aedat_name()):
            p = os.path.join(self.path, name)
            if os.path.isfile(p):
                if name.endswith(".npz") and self._meta is None:
                    raise DatasetNotFoundError(
                        f"{p} needs {os.path.join(self.path, 'meta.json')} with sensor_size and "
                        f"frame_timestamps_us ({self._layout_text})"
                    )
                return p
        return None

    def _read_meta(self) -> dict[str, Any] | None:
        p = os.path.join(self.path, "meta.json")
        if not os.path.isfile(p):
            return None
        try:
            with open(p, encoding="utf-8") as f:
                meta = json.load(f)
        except (OSError, json.JSONDecodeError) as exc:
            raise bad_format(p, f"not valid JSON: {exc}", "meta.json") from exc
        missing = [k for k in ("sensor_size", "frame_timestamps_us") if k not in meta]
        if missing:
            raise bad_format(
                p, f"missing key(s) {missing}", "meta.json: sensor_size [H, W], frame_timestamps_us"
            )
        return meta

    def _bounds_from_meta(self) -> None:
        p = os.path.join(self.path, "meta.json")
        bounds = np.asarray(self._meta["frame_timestamps_us"], dtype=np.int64).reshape(-1)
        self._set_bounds(bounds, p)
        self.sensor_size = _hw(tuple(int(v) for v in self._meta["sensor_size"]))

    def _set_bounds(self, bounds: np.ndarray, source: str) -> None:
        n = len(self.boxes)
        if bounds.size != n + 1:
            raise bad_format(
                source,
                f"{bounds.size} frame timestamps for {n} boxes; need N + 1 = {n + 1} window bounds",
                self._layout_text,
            )
        if not np.all(np.diff(bounds) > 0):
            raise bad_format(source, "frame timestamps must increase", self._layout_text)
        self.bounds_us = bounds

    def _load_events(self) -> np.ndarray:
        if self._events is not None:
            return self._events
        if self.event_file is None:
            raise DatasetNotFoundError(f"no event file in {self.path} ({self._layout_text})")
        if self.event_file.endswith(".npz"):
            ev = self._load_npz(self.event_file)
        else:
            ev = self._load_aedat(self.event_file)
        if ev.size and not np.all(ev["t"][1:] >= ev["t"][:-1]):
            ev = ev[np.argsort(ev["t"], kind="stable")]
        if self.cache_events:
            self._events = ev
        return ev

    def release(self) -> None:
        """Drop the cached events (they are read again on the next use)."""
        self._events = None

    def _load_npz(self, path: str) -> np.ndarray:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in EVENT_FIELDS if k not in z.files]
            if missing:
                raise bad_format(
                    path, f"missing array(s) {missing}, found {sorted(z.files)}", self._layout_text
                )
            fields = event_fields({k: z[k] for k in EVENT_FIELDS})
        ev = np.empty(fields["t"].shape[0], dtype=EVENT_DTYPE)
        for k in EVENT_FIELDS:
            ev[k] = fields[k]
        return ev

    def _load_aedat(self, path: str) -> np.ndarray:
        rec = read_aedat4(path, frames=self.bounds_us is None)
        if self.sensor_size is None:
            self.sensor_size = rec.sensor_size
        if self.bounds_us is None:
            begin = rec.frame_times.get("begin_t")
            if begin is None or begin.size == 0:
                raise bad_format(
                    path,
                    "no frame stream to take frame timestamps from; add meta.json with frame_timestamps_us",
                    self._layout_text,
                )
            n = len(self.boxes)
            if self.layout == "fe108":
                pair = os.path.join(self.root, "pair.txt")
                if not os.path.isfile(pair):
                    raise DatasetNotFoundError(
                        f"FE108 events.aedat4 needs {pair} (lines '<seq> <first frame index>') to align the "
                        f"frames with the boxes, or a meta.json with frame_timestamps_us in {self.path}"
                    )
                pairs = read_pair_file(pair)
                if self.name not in pairs:
                    raise bad_format(pair, f"no line for sequence '{self.name}'", "FE108 pair.txt")
                start = pairs[self.name]
                bounds = begin[start : start + n + 1]
            else:
                bounds = begin[: n + 1]
                if bounds.size == n and n >= 2:
                    bounds = np.append(bounds, 2 * bounds[-1] - bounds[-2])
            self._set_bounds(np.asarray(bounds, dtype=np.int64), path)
        return rec.events

    def _need_events(self) -> np.ndarray:
        ev = self._load_events()  # also sets bounds and sensor size for .aedat4 files
        if self.bounds_us is None:  # pragma: no cover - _load_events sets them or raises
            raise RuntimeError("frame bounds unknown")
        return ev

    # --- frames ----------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.boxes)

    def window_us(self, i: int) -> tuple[int, int]:
        """``(t_start, t_end)`` of frame i's events (``t_start <= t < t_end``)."""
        self._need_events()
        i = self._index(i)
        return int(self.bounds_us[i]), int(self.bounds_us[i + 1])

    def _index(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"frame {i} out of range for sequence '{self.name}' with {n} frames")
        return i % n

    def events(self, i: int | None = None) -> np.ndarray:
        """Events (:data:`.esim.EVENT_DTYPE`, time-sorted) of frame i's window, or of the whole file."""
        ev = self._need_events()
        if i is None:
            return ev
        t0, t1 = self.window_us(i)
        a, b = np.searchsorted(ev["t"], t0, "left"), np.searchsorted(ev["t"], t1, "left")
        return ev[a:b]

    def count_frames(self, i: int, T: int = 1) -> torch.Tensor:
        """``[T, 2, H, W]`` event counts of frame i's window in T time bins (channel 0 OFF, 1 ON)."""
        ev = self._need_events()
        t0, t1 = self.window_us(i)
        return window_count_frames(ev, t0, t1, self.sensor_size, T)

    def gtp_frames(self, start: int = 0, stop: int | None = None, T: int = 1, **kwargs: Any) -> torch.Tensor:
        """SDTrack GTP frames ``[stop - start, T, 3, H, W]`` (``kwargs`` for :class:`.event_repr.GTPEncoder`,
        e.g. ``order="hnp"``); computed from frame 0 so that the trajectory state is exact."""
        stop = len(self) if stop is None else stop
        if not 0 <= start < stop <= len(self):
            raise IndexError(f"need 0 <= start < stop <= {len(self)}, got start={start}, stop={stop}")
        out = [f for i, f in enumerate(self.iter_frames("gtp", T, stop=stop, **kwargs)) if i >= start]
        return torch.stack(out)

    def png_frames(self, i: int, order: str = "pnh") -> torch.Tensor:
        """SDTrack's pre-converted frame i, ``[S, 3, H, W]`` float32 raw 0..255 (S sub-slices of an
        ``interS`` folder). The PNG's RGB holds (trajectory, OFF, ON); ``order="pnh"`` returns
        [ON, OFF, trajectory], ``"hnp"`` the file's (= SDTrack's network) order."""
        if self.frames_dir is None:
            raise UsageError(
                f"sequence '{self.name}' has no frames_dir; pass e.g. frames_dir='inter1_stack_3008'"
            )
        if order not in GTP_ORDERS:
            raise UsageError(f"order must be one of {GTP_ORDERS}, got '{order}'")
        Image = require_pillow()
        i = self._index(i)
        idx = i + PNG_INDEX_BASE[self.layout]
        out = []
        for j in range(1, _slices_of(self.frames_dir) + 1):
            p = os.path.join(self.path, self.frames_dir, f"{idx:04}_{j}.png")
            if not os.path.isfile(p):
                raise DatasetNotFoundError(f"missing frame {p} for frame {i} ({self._layout_text})")
            with Image.open(p) as im:
                arr = np.asarray(im.convert("RGB"), dtype=np.float32)  # [H, W, 3]
            chw = torch.from_numpy(arr.copy()).permute(2, 0, 1)  # [3, H, W]
            out.append(chw if order == "hnp" else chw.flip(0))
        frames = torch.stack(out)
        if self.sensor_size is None:
            self.sensor_size = (int(frames.shape[-2]), int(frames.shape[-1]))
        return frames

    def iter_frames(
        self, representation: str = "gtp", T: int = 1, start: int = 0, stop: int | None = None, **kwargs: Any
    ) -> Iterator[torch.Tensor]:
        """Frames in order, one ``[T, C, H, W]`` tensor per frame (C = 2 counts, 3 GTP / PNG), for an
        online tracking loop over long sequences. GTP runs from frame 0 (state) and yields from ``start``;
        ``kwargs`` go to :class:`.event_repr.GTPEncoder` (GTP) or :meth:`png_frames` (``order``)."""
        if representation not in REPRESENTATIONS:
            raise UsageError(f"representation must be one of {REPRESENTATIONS}, got '{representation}'")
        stop = len(self) if stop is None else min(stop, len(self))
        if representation == "png":
            for i in range(start, stop):
                yield self.png_frames(i, **kwargs)
            return
        ev = self._need_events()
        if representation == "counts":
            for i in range(start, stop):
                yield window_count_frames(ev, *self.window_us(i), self.sensor_size, T)
            return
        enc = GTPEncoder(self.sensor_size, **kwargs)
        for i in range(stop):
            f = enc.encode_window(ev, *self.window_us(i), T)
            if i >= start:
                yield f

    def write_gtp_pngs(self, frames_dir: str = "inter1_stack_3008", **kwargs: Any) -> str:
        """Write the GTP frames as SDTrack's PNG folder ``<seq>/<frames_dir>/{k + base:04}_{j}.png`` (RGB =
        trajectory, OFF, ON, truncated to uint8 as the official files); S sub-slices from the folder name
        (``interS_...``). Returns the folder."""
        Image = require_pillow()
        kwargs = {**kwargs, "order": "hnp", "as_png": True}
        folder = os.path.join(self.path, frames_dir)
        os.makedirs(folder, exist_ok=True)
        base = PNG_INDEX_BASE[self.layout]
        for i, f in enumerate(self.iter_frames("gtp", _slices_of(frames_dir), **kwargs)):
            for j, sl in enumerate(f):
                arr = sl.permute(1, 2, 0).numpy().astype(np.uint8)  # [H, W, 3]
                Image.fromarray(arr).save(os.path.join(folder, f"{i + base:04}_{j + 1}.png"))
        return folder

    def __repr__(self) -> str:
        src = os.path.basename(self.event_file) if self.event_file else self.frames_dir
        return f"TrackingSequence('{self.name}', frames={len(self)}, layout='{self.layout}', source='{src}')"


class TrackingDataset:
    """The sequences of ``<root>/<split>/`` in one of :data:`LAYOUTS` (sorted by folder name).

    Every sub-folder must be a sequence (ground-truth file present); ``frames_dir`` selects SDTrack's PNG
    frames; ``sequences`` restricts to the given names (in that order); ``cache_events`` as in
    :class:`TrackingSequence`. Indexing gives :class:`TrackingSequence` objects (ground truth read at
    construction, events on first use).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        layout: str = "fe108",
        split: str = "train",
        frames_dir: str | None = None,
        sequences: Sequence[str] | None = None,
        cache_events: bool = True,
    ):
        self.layout = _check_layout(layout)
        text = LAYOUT_TEXT[layout]
        self.root = require_dir(root, text)
        self.split = split
        folder = os.path.join(self.root, split)
        if not os.path.isdir(folder):
            found = sorted(d for d in os.listdir(self.root) if os.path.isdir(os.path.join(self.root, d)))
            raise DatasetNotFoundError(f"no split folder {folder} (found {found}; {text})")
        names = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
        if sequences is not None:
            missing = [s for s in sequences if s not in names]
            if missing:
                raise DatasetNotFoundError(f"sequence(s) {missing} not in {folder} ({text})")
            names = list(sequences)
        if not names:
            raise DatasetNotFoundError(f"split folder {folder} has no sequence folders ({text})")
        self.sequences = [
            TrackingSequence(os.path.join(folder, n), layout, frames_dir, self.root, cache_events)
            for n in names
        ]

    @property
    def names(self) -> list[str]:
        """Sequence names in dataset order."""
        return [s.name for s in self.sequences]

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int | str) -> TrackingSequence:
        if isinstance(index, str):
            for s in self.sequences:
                if s.name == index:
                    return s
            raise UnknownNameError(f"no sequence '{index}' in {os.path.join(self.root, self.split)}")
        return self.sequences[index]

    def __iter__(self) -> Iterator[TrackingSequence]:
        return iter(self.sequences)

    def __repr__(self) -> str:
        return (
            f"TrackingDataset('{self.root}', layout='{self.layout}', split='{self.split}', "
            f"sequences={len(self)})"
        )


def write_tracking_sequence(
    folder: str | os.PathLike,
    events: Any,
    boxes: np.ndarray,
    bounds_us: Sequence[int],
    sensor_size: int | Sequence[int],
    layout: str = "fe108",
    event_format: str = "npz",
    meta: dict[str, Any] | None = None,
) -> str:
    """Write one sequence folder and return it: the events (``events.npz`` with t/x/y/p, zip-compressed,
    or ``.aedat4`` named as the layout wants, with a frame stream at the window bounds), the ground-truth
    box file and ``meta.json`` (``sensor_size``, ``frame_timestamps_us`` = ``bounds_us`` (N + 1), plus
    ``meta``)."""
    layout = _check_layout(layout)
    if event_format not in ("npz", "aedat4"):
        raise UsageError(f"event_format must be 'npz' or 'aedat4', got '{event_format}'")
    folder = os.fspath(folder)
    boxes = np.asarray(boxes, dtype=np.float64)
    bounds = np.asarray(bounds_us, dtype=np.int64).reshape(-1)
    if bounds.size != len(boxes) + 1:
        raise UsageError(
            f"need N + 1 = {len(boxes) + 1} window bounds for {len(boxes)} boxes, got {bounds.size}"
        )
    H, W = _hw(sensor_size)
    os.makedirs(folder, exist_ok=True)
    ev = event_fields(events)
    if event_format == "npz":
        np.savez_compressed(
            os.path.join(folder, "events.npz"),
            t=ev["t"].astype(np.int64),
            x=ev["x"].astype(np.uint16),
            y=ev["y"].astype(np.uint16),
            p=ev["p"].astype(np.int8),
        )
    else:
        name = (
            "events.aedat4" if layout == "fe108" else f"{os.path.basename(os.path.normpath(folder))}.aedat4"
        )
        write_aedat4(os.path.join(folder, name), ev, (H, W), frame_times_us=bounds)
    write_box_file(os.path.join(folder, GROUNDTRUTH[layout]), boxes)
    info = {"sensor_size": [H, W], "frame_timestamps_us": bounds.tolist(), **(meta or {})}
    with open(os.path.join(folder, "meta.json"), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=1)
    return folder
