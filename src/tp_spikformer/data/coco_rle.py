"""COCO run-length encoding of binary masks (the ``segmentation`` of an annotation), without pycocotools.

Format facts (COCO's mask API): the mask is read in column-major order (down the first column,
then the next); ``counts`` alternates run lengths of 0s and 1s, starting with 0s (so it begins with 0
when the top-left pixel is set). The *uncompressed* form keeps ``counts`` as a list of ints; the
*compressed* form is an ASCII string: each count (from the fourth on, minus the count two places
before it) is written in 5-bit groups, low bits first, each group + 48 as one character, with bit
0x20 marking "more groups follow" and bit 0x10 of the last group carrying the sign.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import UsageError


def mask_to_counts(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO run lengths of a bool ``[H, W]`` mask (column-major, starting with 0s)."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return []
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1  # positions where a new run starts
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    return [0, *runs] if flat[0] else runs


def counts_to_mask(counts: Sequence[int], size: Sequence[int]) -> np.ndarray:
    """Bool ``[H, W]`` mask from uncompressed run lengths and ``size = (H, W)``."""
    h, w = int(size[0]), int(size[1])
    counts = np.asarray(counts, dtype=np.int64)
    if counts.size and (counts < 0).any():
        raise UsageError("RLE counts must be non-negative")
    if int(counts.sum()) != h * w:
        raise UsageError(
            f"RLE counts sum to {int(counts.sum())}, but the mask size {h}x{w} has {h * w} pixels"
        )
    values = np.arange(counts.size) % 2 == 1  # runs alternate 0, 1, 0, ...
    return np.repeat(values, counts).reshape((h, w), order="F")


def counts_to_string(counts: Sequence[int]) -> str:
    """Compress run lengths into COCO's ASCII form."""
    out: list[str] = []
    for i, c in enumerate(counts):
        x = int(c) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            group = x & 0x1F
            x >>= 5  # arithmetic shift: negative deltas end at -1
            more = x != -1 if group & 0x10 else x != 0
            out.append(chr(group + (0x20 if more else 0) + 48))
    return "".join(out)


def string_to_counts(s: str) -> list[int]:
    """Inverse of :func:`counts_to_string`."""
    counts: list[int] = []
    p = 0
    while p < len(s):
        x, shift, more = 0, 0, True
        while more:
            if p >= len(s):
                raise UsageError("truncated compressed RLE string")
            group = ord(s[p]) - 48
            if not 0 <= group < 64:
                raise UsageError(f"invalid character {s[p]!r} in a compressed RLE string")
            x |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            p += 1
            shift += 5
            if not more and group & 0x10:
                x -= 1 << shift  # sign-extend
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def rle_encode(mask: np.ndarray, compressed: bool = True) -> dict[str, Any]:
    """COCO RLE of a bool ``[H, W]`` mask: ``{"size": [H, W], "counts": str | list[int]}``."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise UsageError(f"expected a [H, W] mask, got shape {mask.shape}")
    counts = mask_to_counts(mask)
    return {
        "size": [int(mask.shape[0]), int(mask.shape[1])],
        "counts": counts_to_string(counts) if compressed else counts,
    }


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """Bool ``[H, W]`` mask of a COCO RLE (compressed string or uncompressed list of counts)."""
    try:
        size, counts = rle["size"], rle["counts"]
    except (KeyError, TypeError) as exc:
        raise UsageError(f"an RLE must be a dict with 'size' and 'counts', got {rle!r:.80}") from exc
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if isinstance(counts, str):
        counts = string_to_counts(counts)
    return counts_to_mask(counts, size)


def mask_bbox(mask: np.ndarray) -> tuple[float, float, float, float]:
    """COCO box ``(x, y, w, h)`` in pixel edges of a non-empty bool mask: from the left edge of its
    first column to the right edge of its last (``w = last - first + 1``), likewise for rows."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise UsageError("the mask is empty: no bounding box")
    return float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)
