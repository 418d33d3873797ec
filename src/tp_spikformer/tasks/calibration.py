"""Calibration images of the dense tasks for the keep-schedule search (``tp.calibrate``, ``tp-spikformer
calibrate --task ...``): a task model does not normalise or letterbox its own inputs, so each task turns its
dataset into the tensors its model takes, and names the objective that fits it (``TaskSpec.calibration_*``).

The images are drawn as ``tp.calibrate`` draws from a dataset: ``size`` indices without replacement from
``numpy.random.default_rng(seed)``, sorted (all of them when ``size`` is None).
"""

from __future__ import annotations

import numpy as np

from ..errors import UsageError


def pick_indices(n: int, size: int | None, seed: int) -> list[int]:
    """``size`` sorted indices of ``range(n)`` drawn without replacement (seeded); all when None."""
    if n == 0:
        raise UsageError("the calibration data is empty; pass a dataset with samples")
    if size is None:
        return list(range(n))
    if size > n:
        raise UsageError(
            f"calibration size {size} but the data has only {n} samples; pass a size <= {n} "
            "(command line: --calibration-size)"
        )
    return sorted(int(i) for i in np.random.default_rng(seed).choice(n, size, replace=False))
