"""Scoring COCO results files with pycocotools (``COCO``, ``loadRes``, ``COCOeval``): no AP is computed
here, only read from ``COCOeval.stats``.

pycocotools is an optional extra: ``pip install pycocotools`` or ``pip install tp-spikformer[detection]``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Sequence
from typing import Any

# COCOeval.stats, bbox: the 12 numbers of COCOeval.summarize(), in its order
STAT_NAMES = ("mAP", "AP50", "AP75", "AP_S", "AP_M", "AP_L", "AR1", "AR10", "AR100", "AR_S", "AR_M", "AR_L")
INSTALL_HINT = "pip install pycocotools (or pip install 'tp-spikformer[detection]')"


def require_pycocotools():
    """``(COCO, COCOeval)`` from pycocotools, or an ImportError that says how to install it."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as exc:
        raise ImportError(
            f"COCO evaluation needs pycocotools, which is not installed: {INSTALL_HINT}"
        ) from exc
    return COCO, COCOeval


def pycocotools_available() -> bool:
    """True when pycocotools can be imported."""
    try:
        require_pycocotools()
    except ImportError:
        return False
    return True


def load_ground_truth(ground_truth: str | os.PathLike | dict[str, Any]):
    """A pycocotools ``COCO`` object from an ``instances_*.json`` path or an in-memory COCO dict."""
    COCO, _ = require_pycocotools()
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        if isinstance(ground_truth, dict):
            gt = COCO()
            gt.dataset = ground_truth
            gt.createIndex()
        else:
            gt = COCO(os.fspath(ground_truth))
    return gt


def score_results(
    ground_truth: str | os.PathLike | dict[str, Any],
    results: str | os.PathLike | Sequence[dict[str, Any]],
    image_ids: Sequence[int] | None = None,
) -> dict[str, Any]:
    """COCO box metrics of a results file (or list of entries) against the ground truth, restricted to
    ``image_ids`` (default: every image of the ground truth). Returns the 12 ``COCOeval.stats`` in percent
    under :data:`STAT_NAMES` (``mAP`` = AP@[.5:.95]; -1 where COCOeval has no ground truth in an area
    range), the number of images and detections, and the ``summary`` text pycocotools printed.

    An empty results list cannot be loaded by pycocotools (``loadRes`` indexes its first entry): it
    scores 0 for every AP and AR and says so in ``note``.
    """
    _, COCOeval = require_pycocotools()
    gt = load_ground_truth(ground_truth)
    if not isinstance(results, (list, tuple)):
        with open(os.fspath(results)) as f:
            results = json.load(f)
    ids = sorted(gt.getImgIds()) if image_ids is None else [int(i) for i in image_ids]
    out: dict[str, Any] = {"images": len(ids), "detections": len(results)}
    if not results:
        out.update(dict.fromkeys(STAT_NAMES, 0.0))
        out["note"] = "no detections: every AP and AR is 0 (pycocotools cannot load an empty results list)"
        return out
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        dt = gt.loadRes(list(results))
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.params.imgIds = ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    out.update({k: (float(v) * 100.0 if v >= 0 else -1.0) for k, v in zip(STAT_NAMES, ev.stats)})
    out["summary"] = "\n".join(line for line in text.getvalue().splitlines() if line.startswith(" Average"))
    return out
