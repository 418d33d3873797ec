"""The calibration images: a seeded subset of what the user passed, batched once and kept in memory.

Accepted data: a dataset (in-memory image sets with ``get_batch``/``targets``, or any map-style dataset of
``(x, y)`` items, ``x`` alone or dicts with ``image``/``label``), a tensor of inputs (unlabelled), a pair
``(inputs, labels)`` of tensors, or any other iterable of batches (a ``DataLoader``: its first
``size`` samples in its order, since an iterable cannot be subsampled without reading all of it).

For datasets and tensors the subset is ``size`` indices drawn without replacement by
``numpy.random.default_rng(seed)``, sorted (so batches read the data in order); ``size=None`` takes all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import UsageError, UsageTypeError, check_int


@dataclass
class CalibrationSet:
    """Batches ``(x, y or None)`` on the device, the dataset indices they came from and a description."""

    batches: list[tuple[torch.Tensor, torch.Tensor | None]]
    indices: list[int] | None  # None: the first ``size`` samples of an iterable
    labelled: bool
    source: str

    @property
    def size(self) -> int:
        return sum(int(x.shape[0]) for x, _ in self.batches)

    def inputs(self) -> list[torch.Tensor]:
        return [x for x, _ in self.batches]


def calibration_set(
    data: Any, size: int | None, batch_size: int, seed: int, device: torch.device | str = "cpu"
) -> CalibrationSet:
    """``size`` samples of ``data`` (module docstring), in batches of ``batch_size`` on ``device``."""
    if size is not None:
        check_int("calibration_size", size, hint="; or None for all of the data")
    check_int("batch_size", batch_size)
    if isinstance(data, torch.Tensor):
        data = (data, None)
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        x_all, y_all = data
        if y_all is not None:
            y_all = torch.as_tensor(y_all)
            if len(y_all) != len(x_all):
                raise UsageError(f"calibration data: {len(x_all)} inputs but {len(y_all)} labels")
        idx = pick_indices(len(x_all), size, seed)
        batches = [(x_all[c], None if y_all is None else y_all[c]) for c in _chunks(idx, batch_size)]
        return _on(batches, idx, y_all is not None, f"tensor of {len(x_all)} samples", device)
    if hasattr(data, "__len__") and hasattr(data, "__getitem__"):
        n = len(data)
        idx = pick_indices(n, size, seed)
        batches = [_read(data, chunk) for chunk in _chunks(idx, batch_size)]
        labelled = all(y is not None for _, y in batches)
        return _on(batches, idx, labelled, getattr(data, "source", None) or type(data).__name__, device)
    if hasattr(data, "__iter__"):
        return _from_iterable(data, size, batch_size, device)
    raise UsageTypeError(
        f"cannot calibrate on a {type(data).__name__}; pass a dataset, a tensor of inputs, a pair "
        "(inputs, labels) or a DataLoader"
    )


def pick_indices(n: int, size: int | None, seed: int) -> list[int]:
    """``size`` sorted indices of ``range(n)`` drawn without replacement (seeded); all when None."""
    if n == 0:
        raise UsageError("the calibration data is empty; pass a dataset with samples")
    if size is None:
        return list(range(n))
    if size > n:
        raise UsageError(
            f"calibration_size={size} but the data has only {n} samples; pass calibration_size <= "
            f"{n} (command line: --calibration-size) or None for all of them"
        )
    return sorted(int(i) for i in np.random.default_rng(seed).choice(n, size, replace=False))


def _chunks(idx: list[int], batch_size: int) -> list[list[int]]:
    return [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]


def _read(data: Any, chunk: list[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
    if hasattr(data, "get_batch") and hasattr(data, "targets"):  # in-memory sets: batched preprocessing
        return data.get_batch(torch.tensor(chunk)), torch.as_tensor(data.targets)[chunk]
    xs, ys = [], []
    for i in chunk:
        x, y = _split_item(data[i], i)
        xs.append(x)
        ys.append(y)
    labels = None if any(y is None for y in ys) else torch.as_tensor([int(y) for y in ys])
    return torch.stack(xs), labels


def _split_item(item: Any, i: int) -> tuple[torch.Tensor, Any]:
    if isinstance(item, dict):
        x = next((item[k] for k in ("image", "x", "input") if k in item), None)
        y = next((item[k] for k in ("label", "target", "y") if k in item), None)
    elif isinstance(item, (tuple, list)):
        x, y = item[0], (item[1] if len(item) > 1 else None)
    else:
        x, y = item, None
    if not isinstance(x, torch.Tensor):
        raise UsageTypeError(
            f"calibration sample {i} has no tensor input (got {type(x).__name__}); items must be "
            "tensors, (tensor, label) pairs or dicts with an 'image'"
        )
    if y is not None and not (isinstance(y, int) or (isinstance(y, torch.Tensor) and y.numel() == 1)):
        y = None  # dense targets (masks, boxes) are not class labels: the sample counts as unlabelled
    return x, y


def _from_iterable(data: Any, size: int | None, batch_size: int, device) -> CalibrationSet:
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor | None] = []
    seen = 0
    for i, batch in enumerate(data):
        if isinstance(batch, torch.Tensor):
            x, y = batch, None
        else:
            x, y = _split_item(batch, i)
            y = None if y is None else torch.as_tensor(y)
        xs.append(x)
        ys.append(y)
        seen += int(x.shape[0])
        if size is not None and seen >= size:
            break
    if seen == 0:
        raise UsageError("the calibration data gave no batches")
    if size is not None and seen < size:
        raise UsageError(
            f"calibration_size={size} but the data gave only {seen} samples; pass a smaller "
            "calibration_size or None"
        )
    x_all = torch.cat(xs)[:size]
    y_all = None if any(y is None for y in ys) else torch.cat([y.reshape(-1) for y in ys])[:size]
    idx = list(range(len(x_all)))
    batches = [
        (x_all[c[0] : c[-1] + 1], None if y_all is None else y_all[c[0] : c[-1] + 1])
        for c in _chunks(idx, batch_size)
    ]
    return _on(
        batches, None, y_all is not None, f"first {len(x_all)} samples of a {type(data).__name__}", device
    )


def _on(batches, idx, labelled: bool, source: str, device) -> CalibrationSet:
    moved = [
        (x.to(device), None if y is None or not labelled else y.to(device=device, dtype=torch.long))
        for x, y in batches
    ]
    return CalibrationSet(moved, idx, labelled, source)
