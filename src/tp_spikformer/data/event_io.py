"""Reading one event sample from disk.

Accepted files:

* ``.npz`` with arrays ``t``, ``x``, ``y``, ``p`` (spikingjelly's ``events_np`` files, written by
  ``np.savez(f, t=..., x=..., y=..., p=...)``), or with ``frames`` ``[T, 2, H, W]`` (spikingjelly's
  ``frames_number_<T>_split_by_<...>`` files: already integrated).
* ``.npy`` holding a structured array with fields t, x, y, p (tonic's event format).
* ``.aedat``: CIFAR10-DVS's original AER-DAT 2.0 files. After ASCII header lines starting with
  ``#``, 8-byte big-endian records (uint32 address, uint32 timestamp in us). The DVS128 address
  holds ``polarity = addr & 1``, ``x = (addr & 0xFE) >> 1``, ``y = (addr & 0x7F00) >> 8``; like
  spikingjelly we return ``x' = 127 - y``, ``y' = 127 - x``, ``p' = 1 - polarity``, so frames match
  spikingjelly's CIFAR10DVS.
  Other AEDAT versions (DVS128 Gesture's AEDAT 3.1 with its label CSVs) are not read: convert them to
  per-sample ``.npz`` with spikingjelly (``DVS128Gesture(root, data_type='event')`` writes
  ``events_np/{train,test}/<class>/*.npz``) or tonic.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from typing import Any

import numpy as np

from .errors import DatasetFormatError, bad_format, not_found
from .events import EVENT_FIELDS

EVENT_EXTENSIONS = (".npz", ".npy", ".aedat")
EVENT_FILE_LAYOUT = (
    "event sample: .npz with t/x/y/p arrays (or 'frames' [T, 2, H, W]), .npy structured t/x/y/p, "
    "or CIFAR10-DVS .aedat (AER-DAT 2.0)"
)
AEDAT2_LAYOUT = "CIFAR10-DVS AER-DAT 2.0: '#' header lines, then big-endian uint32 (address, timestamp) pairs"


def _header_length(data: bytes) -> int:
    """Bytes taken by the leading '#' lines (spikingjelly's rule: stop at the first line that does not
    start with '#' after stripping, or does not decode as text)."""
    pos = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end + 1
        try:
            text = data[pos:end].decode().strip()
        except UnicodeDecodeError:
            break
        if not text or text[0] != "#":
            break
        pos = end
    return pos


def read_cifar10dvs_aedat(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Decode a CIFAR10-DVS ``.aedat`` (AER-DAT 2.0) file to t, x, y, p arrays (see module docstring)."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    start = _header_length(data)
    body = len(data) - start
    if body % 8:
        raise bad_format(path, f"{body} data bytes after the header, not a multiple of 8", AEDAT2_LAYOUT)
    words = np.frombuffer(data, dtype=">u4", offset=start).astype(np.uint32)
    addr, t = words[0::2], words[1::2]
    x = (addr & 0xFE) >> 1
    y = (addr & 0x7F00) >> 8
    pol = (addr & 1).astype(np.int64)
    return {"t": t, "x": (127 - y).astype(np.int64), "y": (127 - x).astype(np.int64), "p": 1 - pol}


def load_event_sample(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load one sample: a dict with t/x/y/p arrays, or ``{"frames": [T, 2, H, W]}``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise not_found(os.path.basename(path), os.path.dirname(path) or ".", EVENT_FILE_LAYOUT)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".aedat":
        return read_cifar10dvs_aedat(path)
    try:
        return _read_numpy_sample(path, ext)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        if isinstance(exc, DatasetFormatError):
            raise
        raise bad_format(
            path, f"cannot read (corrupt or not a numpy file): {exc}", EVENT_FILE_LAYOUT
        ) from exc


def _read_numpy_sample(path: str, ext: str) -> dict[str, np.ndarray]:
    loaded = np.load(path, allow_pickle=False)
    if ext == ".npz" or hasattr(loaded, "files"):
        with loaded as z:
            files = set(z.files)
            if "frames" in files:
                return {"frames": np.asarray(z["frames"])}
            missing = [k for k in EVENT_FIELDS if k not in files]
            if missing:
                raise bad_format(
                    path, f"missing array(s) {missing}, found {sorted(files)}", EVENT_FILE_LAYOUT
                )
            return {k: np.asarray(z[k]).reshape(-1) for k in EVENT_FIELDS}
    arr: Any = loaded
    if not (
        isinstance(arr, np.ndarray) and arr.dtype.names and all(k in arr.dtype.names for k in EVENT_FIELDS)
    ):
        got = arr.dtype.names if isinstance(arr, np.ndarray) else type(arr).__name__
        raise bad_format(
            path, f"expected a structured array with fields t, x, y, p, got {got}", EVENT_FILE_LAYOUT
        )
    return {k: np.asarray(arr[k]).reshape(-1) for k in EVENT_FIELDS}
