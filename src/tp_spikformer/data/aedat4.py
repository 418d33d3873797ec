"""AEDAT 4.0 files (iniVation DV): reading through the optional ``aedat`` package, writing in pure Python.

File layout (AEDAT 4.0, as the ``aedat`` decoder reads it):

* the ASCII line ``#!AER-DAT4.0\\r\\n``;
* int32 little-endian length + an ``IOHeader`` flatbuffer (file identifier ``IOHE``; fields ``compression``
  int32 enum (0 = none), ``file_data_position`` int64 (-1 = no data table), ``description`` string: a DV
  XML tree ``<dv><node name="outInfo"><node name="<stream id>">`` with ``typeIdentifier`` (``EVTS``,
  ``FRME``, ...) and an ``info`` node holding ``sizeX`` / ``sizeY``);
* packets: int32 stream id + int32 byte size + a size-prefixed flatbuffer: ``EventPacket`` (identifier
  ``EVTS``; a vector of 16-byte structs ``t`` int64, ``x`` int16, ``y`` int16, ``on`` bool) or ``Frame``
  (``FRME``; ``t``, ``begin_t``, ``end_t``, ``exposure_begin_t``, ``exposure_end_t`` int64, ``format``
  int8 (0 grey), ``width``, ``height``, ``offset_x``, ``offset_y`` int16, ``pixels`` [uint8]).

:func:`write_aedat4` writes uncompressed files with an events stream (id 0) and optionally a grey frames
stream (id 1), packets ordered by their first timestamp and no data table at the end
(``file_data_position = -1``, which readers take as "read to the end"); enough to hand synthetic data to
tools that expect real recordings. :func:`read_aedat4` needs ``pip install aedat``
(``tp-spikformer[events]``) and returns the events (polarity ``p = on``: 1 ON, 0 OFF) and the frame
timestamps. FE108's frame timestamp is DV's ``timestampStartOfFrame``, which ``aedat`` calls ``begin_t``.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import UsageError
from .errors import bad_format, not_found
from .esim import EVENT_DTYPE, empty_events
from .events import _hw, event_fields

MAGIC = b"#!AER-DAT4.0\r\n"
AEDAT4_LAYOUT = "AEDAT 4.0 file (iniVation DV) with an 'events' stream"
FRAME_TIME_FIELDS = ("t", "begin_t", "end_t", "exposure_begin_t", "exposure_end_t")
_EVENT_STRUCT = np.dtype(
    {
        "names": ["t", "x", "y", "on"],
        "formats": ["<i8", "<i2", "<i2", "u1"],
        "offsets": [0, 8, 10, 12],
        "itemsize": 16,
    }
)


def require_aedat() -> Any:
    """Return the ``aedat`` module, or raise an ImportError telling how to install it."""
    try:
        import aedat
    except ImportError as exc:
        raise ImportError(
            "reading .aedat4 files needs the 'aedat' package: `pip install aedat` "
            "(or `pip install tp-spikformer[events]`); or convert the events to events.npz (t, x, y, p)"
        ) from exc
    return aedat


@dataclass
class Aedat4Recording:
    """What :func:`read_aedat4` returns: events (:data:`.esim.EVENT_DTYPE`, file order), the sensor size
    (H, W) of the events stream, and per frame the timestamps of :data:`FRAME_TIME_FIELDS` (int64 us)."""

    events: np.ndarray
    sensor_size: tuple[int, int]
    frame_times: dict[str, np.ndarray] = field(default_factory=dict)


def read_aedat4(path: str | os.PathLike, frames: bool = True) -> Aedat4Recording:
    """Decode an AEDAT 4 file with the ``aedat`` package: all packets of its first events stream (lowest
    id) and, when ``frames``, the timestamps of its first frames stream (no pixels are kept)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise not_found(os.path.basename(path), os.path.dirname(path) or ".", AEDAT4_LAYOUT)
    aedat = require_aedat()
    try:
        decoder = aedat.Decoder(path)
        streams = decoder.id_to_stream()
    except Exception as exc:  # the Rust decoder raises its own exception types
        raise bad_format(path, f"cannot decode: {exc}", AEDAT4_LAYOUT) from exc
    ev_ids = sorted(i for i, s in streams.items() if s.get("type") == "events")
    fr_ids = sorted(i for i, s in streams.items() if s.get("type") == "frame")
    if not ev_ids:
        found = {i: s.get("type") for i, s in streams.items()}
        raise bad_format(path, f"no events stream (streams: {found})", AEDAT4_LAYOUT)
    ev_id, fr_id = ev_ids[0], (fr_ids[0] if fr_ids and frames else None)
    chunks, times = [], {k: [] for k in FRAME_TIME_FIELDS}
    try:
        for packet in decoder:
            if packet["stream_id"] == ev_id and "events" in packet:
                chunks.append(packet["events"])
            elif fr_id is not None and packet["stream_id"] == fr_id and "frame" in packet:
                for k in FRAME_TIME_FIELDS:
                    times[k].append(packet["frame"][k])
    except Exception as exc:
        raise bad_format(path, f"cannot decode a packet: {exc}", AEDAT4_LAYOUT) from exc
    raw = np.concatenate(chunks) if chunks else None
    events = empty_events() if raw is None else np.empty(raw.shape[0], dtype=EVENT_DTYPE)
    if raw is not None:
        events["t"] = raw["t"].astype(np.int64)
        events["x"], events["y"] = raw["x"], raw["y"]
        names = raw.dtype.names
        events["p"] = raw["on" if "on" in names else "polarity" if "polarity" in names else "p"].astype(
            np.int8
        )
    info = streams[ev_id]
    frame_times = {k: np.asarray(v, dtype=np.int64) for k, v in times.items()} if fr_id is not None else {}
    return Aedat4Recording(events, (int(info["height"]), int(info["width"])), frame_times)


# --- writing: a minimal forward flatbuffer builder ------------------------------------------------------


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def _flatbuffer(
    ident: bytes,
    scalars: dict[int, tuple[str, Any]],
    objects: dict[int, tuple[bytes, int, int]],
    size_prefixed: bool,
) -> bytes:
    """One root table: ``scalars`` slot -> (struct format, value); ``objects`` slot -> (payload, element
    count or -1 for a string, element alignment). Laid out front to back: [size] root-offset identifier
    vtable table objects (offsets are unsigned and point forward, the vtable sits before its table)."""
    buf = bytearray(4 if size_prefixed else 0)
    root_pos = len(buf)
    buf += bytes(4) + ident
    inline = {s: struct.calcsize("<" + f) for s, (f, _) in scalars.items()}
    inline.update(dict.fromkeys(objects, 4))
    offsets, off = {}, 4  # field offsets inside the table (the table starts with its int32 vtable offset)
    for slot in sorted(inline, key=lambda s: (-inline[s], s)):
        off = _align(off, inline[slot])
        offsets[slot] = off
        off += inline[slot]
    n_slots = max(inline) + 1
    vt_pos = len(buf)
    buf += struct.pack("<HH", 4 + 2 * n_slots, off)
    buf += struct.pack(f"<{n_slots}H", *(offsets.get(s, 0) for s in range(n_slots)))
    buf += bytes(_align(len(buf), max(4, *inline.values())) - len(buf))
    table = len(buf)
    buf += struct.pack("<i", table - vt_pos) + bytes(off - 4)
    for slot, (fmt, value) in scalars.items():
        struct.pack_into("<" + fmt, buf, table + offsets[slot], value)
    for slot, (payload, count, elem_align) in objects.items():
        start = _align(len(buf) + 4, max(4, elem_align)) - 4  # the element data after the length is aligned
        buf += bytes(start - len(buf))
        if count < 0:  # string: length, bytes, NUL
            buf += struct.pack("<I", len(payload)) + payload + b"\0"
        else:
            buf += struct.pack("<I", count) + payload
        struct.pack_into("<I", buf, table + offsets[slot], start - (table + offsets[slot]))
    buf += bytes(_align(len(buf), 4) - len(buf))
    struct.pack_into("<I", buf, root_pos, table - root_pos)
    if size_prefixed:
        struct.pack_into("<I", buf, 0, len(buf) - 4)
    return bytes(buf)


def _stream_xml(stream_id: int, type_id: str, name: str, description: str, size: tuple[int, int]) -> str:
    h, w = size
    path = f"/mainloop/tp_spikformer/outInfo/{stream_id}/"
    return (
        f'<node name="{stream_id}" path="{path}">'
        f'<attr key="compression" type="string">NONE</attr>'
        f'<attr key="originalModuleName" type="string">tp_spikformer</attr>'
        f'<attr key="originalOutputName" type="string">{name}</attr>'
        f'<attr key="typeDescription" type="string">{description}</attr>'
        f'<attr key="typeIdentifier" type="string">{type_id}</attr>'
        f'<node name="info" path="{path}info/">'
        f'<attr key="sizeX" type="int">{w}</attr><attr key="sizeY" type="int">{h}</attr>'
        f'<attr key="source" type="string">tp_spikformer</attr></node></node>'
    )


def _event_packet(ev: dict[str, np.ndarray]) -> bytes:
    rec = np.zeros(ev["t"].shape[0], dtype=_EVENT_STRUCT)
    rec["t"], rec["x"], rec["y"] = ev["t"], ev["x"], ev["y"]
    rec["on"] = ev["p"] > 0
    return _flatbuffer(b"EVTS", {}, {0: (rec.tobytes(), rec.shape[0], 8)}, size_prefixed=True)


def _frame_packet(t: int, exposure_us: int, pixels: np.ndarray) -> bytes:
    h, w = pixels.shape
    scalars = {0: ("q", t), 1: ("q", t), 2: ("q", t + exposure_us), 3: ("q", t), 4: ("q", t + exposure_us)}
    scalars.update({6: ("h", w), 7: ("h", h), 8: ("h", 0), 9: ("h", 0)})  # slot 5 format: 0 (grey) default
    pix = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    return _flatbuffer(b"FRME", scalars, {10: (pix, len(pix), 1)}, size_prefixed=True)


def write_aedat4(
    path: str | os.PathLike,
    events: Any,
    sensor_size: int | Sequence[int],
    frame_times_us: Sequence[int] | None = None,
    frames: np.ndarray | None = None,
    packet_size: int = 8192,
    exposure_us: int = 0,
) -> None:
    """Write events (t us, x, y, p with p > 0 = ON) as an uncompressed AEDAT 4 file.

    ``sensor_size`` (H, W); ``frame_times_us``: add a frames stream, one frame per time (its ``t`` and
    ``begin_t``; ``end_t = begin_t + exposure_us``); ``frames`` ``[N, H, W]`` uint8 grey pixels for them
    (zeros when omitted); events go in packets of ``packet_size``, in the given order.
    """
    H, W = _hw(sensor_size)
    ev = event_fields(events)
    if ev["t"].size and (ev["x"].max() >= min(W, 32768) or ev["y"].max() >= min(H, 32768)):
        raise UsageError(f"event coordinates exceed the sensor size (H, W) = {(H, W)}")
    if packet_size < 1:
        raise UsageError(f"packet_size must be >= 1, got {packet_size}")
    streams = [_stream_xml(0, "EVTS", "events", "Array of events (polarity ON/OFF).", (H, W))]
    packets: list[tuple[int, int, bytes]] = []  # (first timestamp, stream id, flatbuffer)
    for a in range(0, ev["t"].size, packet_size):
        part = {k: v[a : a + packet_size] for k, v in ev.items()}
        packets.append((int(part["t"][0]), 0, _event_packet(part)))
    if frame_times_us is not None:
        times = np.asarray(frame_times_us, dtype=np.int64).reshape(-1)
        pix = np.zeros((times.size, H, W), np.uint8) if frames is None else np.asarray(frames)
        if pix.shape != (times.size, H, W):
            raise UsageError(f"frames must be [N={times.size}, H={H}, W={W}] uint8, got {pix.shape}")
        streams.append(_stream_xml(1, "FRME", "frames", "Standard frame (8-bit image).", (H, W)))
        packets += [(int(t), 1, _frame_packet(int(t), exposure_us, p)) for t, p in zip(times, pix)]
    packets.sort(key=lambda p: p[0])  # stable: events before a frame with the same first timestamp
    xml = '<dv version="2.0"><node name="outInfo" path="/mainloop/tp_spikformer/outInfo/">'
    xml += "".join(streams) + "</node></dv>"
    header = _flatbuffer(
        b"IOHE", {0: ("i", 0), 1: ("q", -1)}, {2: (xml.encode(), -1, 1)}, size_prefixed=False
    )
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    with open(path, "wb") as f:
        f.write(MAGIC + struct.pack("<i", len(header)) + header)
        f.writelines(struct.pack("<ii", stream_id, len(body)) + body for _, stream_id, body in packets)
