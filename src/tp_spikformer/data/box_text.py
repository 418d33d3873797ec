"""Box text files of the tracking benchmarks: one ``x,y,w,h`` line per frame.

Ground truth (FE108 ``groundtruth_rect.txt``, VisEvent / FELT ``groundtruth.txt``) and tracker results
(pytracking's ``<results>/<seq>.txt``) share the format: ``x, y`` the top-left corner and ``w, h`` the size
in pixels, separated by commas (tabs or spaces are read too, as pytracking's ``load_text`` does). Empty
lines at the end of a file are ignored; an empty line inside the file is an error, because every line is
one frame.
"""

from __future__ import annotations

import os
import re

import numpy as np

from ..errors import UsageError
from .errors import DatasetNotFoundError, bad_format

BOX_FILE_LAYOUT = "one 'x,y,w,h' line per frame (comma, tab or space separated numbers)"
_SPLIT = re.compile(r"[,\t ]+")


def read_box_file(path: str | os.PathLike, layout: str = BOX_FILE_LAYOUT) -> np.ndarray:
    """Boxes ``[N, 4]`` float64 (x, y, w, h) of a text file, one line per frame.

    Raises :class:`.errors.DatasetNotFoundError` for a missing file and :class:`.errors.DatasetFormatError`
    naming the line number for a line that is not four numbers; ``layout`` is quoted in the messages.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DatasetNotFoundError(f"box file {path} does not exist ({layout})")
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise bad_format(path, "empty file, expected one box per frame", layout)
    boxes = np.empty((len(lines), 4), dtype=np.float64)
    for i, line in enumerate(lines):
        parts = [p for p in _SPLIT.split(line.strip()) if p]
        if len(parts) != 4:
            raise bad_format(path, f"line {i + 1}: expected 4 numbers x,y,w,h, got {line!r}", layout)
        try:
            boxes[i] = [float(p) for p in parts]
        except ValueError:
            raise bad_format(path, f"line {i + 1}: not numbers: {line!r}", layout) from None
    return boxes


def _number(v: float) -> str:
    text = f"{v:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def write_box_file(path: str | os.PathLike, boxes: np.ndarray) -> None:
    """Write boxes ``[N, 4]`` (x, y, w, h) as comma-separated lines (up to 4 decimals, trailing zeros
    dropped), creating the parent folder."""
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise UsageError(f"boxes must be [N, 4] (x, y, w, h), got shape {boxes.shape}")
    if not np.isfinite(boxes).all():
        raise UsageError("boxes contain NaN or infinite values; write finite x, y, w, h per frame")
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(",".join(_number(v) for v in row) + "\n" for row in boxes)
