"""IDX files (the MNIST / Fashion-MNIST format), plain or gzip-compressed.

Header: two zero bytes, a type byte (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
0x0E float64), the number of dimensions, then each dimension as a big-endian int32; then the data,
big-endian, row-major. Magic numbers: 2051 (0x00000803) for uint8 image stacks [N, H, W] and 2049
(0x00000801) for uint8 label vectors [N].
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from collections.abc import Sequence

import numpy as np

from ..errors import UsageError
from .errors import bad_format, not_found

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049

_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(np.int16): 0x0B,
    np.dtype(np.int32): 0x0C,
    np.dtype(np.float32): 0x0D,
    np.dtype(np.float64): 0x0E,
}
_GZIP_MAGIC = b"\x1f\x8b"


MAX_IDX_BYTES = 2**31  # refuse headers that promise more data than this (a corrupt or hostile file)


def _open(path: str):
    with open(path, "rb") as f:
        gz = f.read(2) == _GZIP_MAGIC
    return gzip.open(path, "rb") if gz else open(path, "rb")


def _read_exact(f, n: int, path: str, layout: str, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise bad_format(path, f"truncated: {what} needs {n} bytes, the file has {len(data)}", layout)
    return data


def read_idx(
    path: str | os.PathLike, expected_magic: int | None = None, layout: str = "IDX file"
) -> np.ndarray:
    """Read an IDX file (gzip detected from the content) into a native-endian numpy array.

    The header is read first and the data is read exactly as the header declares it (at most
    ``MAX_IDX_BYTES``): a gzip bomb or a file with trailing data costs no more than its declared size.
    ``expected_magic`` (e.g. 2051 for images) is checked; a wrong magic, an unknown type or a data
    length that disagrees with the header raises :class:`.errors.DatasetFormatError` naming the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise not_found(os.path.basename(path), os.path.dirname(path) or ".", layout)
    try:
        with _open(path) as f:
            return _parse(f, path, expected_magic, layout)
    except (OSError, EOFError, zlib.error) as exc:  # includes gzip.BadGzipFile and truncated streams
        raise bad_format(path, f"cannot read: {exc}", layout) from exc


def _parse(f, path: str, expected_magic: int | None, layout: str) -> np.ndarray:
    head = _read_exact(f, 4, path, layout, "the IDX header")
    magic = struct.unpack(">I", head)[0]
    zero, type_code, ndim = head[0:2], head[2], head[3]
    expected = (
        f"expected magic {expected_magic}" if expected_magic is not None else "expected 00 00 <type> <ndim>"
    )
    if zero != b"\x00\x00" or type_code not in _TYPES or ndim == 0:
        raise bad_format(path, f"bad IDX magic {magic} (0x{magic:08x}), {expected}", layout)
    if expected_magic is not None and magic != expected_magic:
        raise bad_format(
            path,
            f"IDX magic {magic} (0x{magic:08x}), expected {expected_magic} (0x{expected_magic:08x})",
            layout,
        )
    dims = struct.unpack(f">{ndim}I", _read_exact(f, 4 * ndim, path, layout, f"a {ndim}-dimension header"))
    dtype = np.dtype(_TYPES[type_code])
    need = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    shape = " x ".join(str(d) for d in dims)
    if need > MAX_IDX_BYTES:
        raise bad_format(
            path, f"header declares {shape} ({need} bytes), more than the {MAX_IDX_BYTES} allowed", layout
        )
    data = f.read(need)
    if len(data) != need or f.read(1):
        have = len(data) if len(data) != need else f"more than {need}"
        raise bad_format(path, f"header says {shape} ({need} data bytes) but the file has {have}", layout)
    arr = np.frombuffer(data, dtype=dtype).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))  # a writable native-endian copy


def write_idx(path: str | os.PathLike, array: np.ndarray) -> str:
    """Write ``array`` as an IDX file, gzip-compressed when ``path`` ends in ``.gz``. Returns the path."""
    path = os.fspath(path)
    arr = np.asarray(array)
    if arr.dtype not in _CODES:
        raise UsageError(f"IDX cannot store dtype {arr.dtype}; valid: {[str(d) for d in _CODES]}")
    if arr.ndim == 0 or arr.ndim > 255:
        raise UsageError(f"IDX needs 1..255 dimensions, got {arr.ndim}")
    header = bytes([0, 0, _CODES[arr.dtype], arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    payload = header + np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder(">"))).tobytes()
    if path.endswith(".gz"):
        payload = gzip.compress(payload, mtime=0)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(payload)
    return path


def find_idx_file(root: str, stem: str, layout: str, subdirs: Sequence[str] = ("", "raw")) -> str:
    """``root/<stem>.gz`` or ``root/<stem>`` (also under ``subdirs``); else a clear not-found error."""
    for sub in subdirs:
        for name in (stem + ".gz", stem):
            p = os.path.join(root, sub, name)
            if os.path.isfile(p):
                return p
    raise not_found(f"{stem}.gz or {stem}", root, layout)
