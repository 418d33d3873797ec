"""Where the golden reference cases live, and how tests find them.

``TP_REFERENCE_DIR`` names the folder when set; otherwise ``../shared/reference`` beside the checkout.
Every ``*.pt`` file in it or below it (``extra/``) is a case; every ``keys/*.txt`` and ``extra/keys/*.txt`` a key
list. Tests skip, saying why, only when the folder itself is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE_DIR = Path(os.environ.get("TP_REFERENCE_DIR", REPO.parent / "shared" / "reference"))
SKIP_REASON = (
    f"reference folder {REFERENCE_DIR} is absent: the golden cases made with the official code are not on "
    "this machine (set TP_REFERENCE_DIR to their folder to run these tests)"
)


def reference_cases() -> list:
    """One pytest param per ``*.pt`` case, or a single skipped param when the folder is absent."""
    if not REFERENCE_DIR.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=SKIP_REASON), id="no-reference-dir")]
    cases = sorted(REFERENCE_DIR.rglob("*.pt"))
    if not cases:
        return [
            pytest.param(None, marks=pytest.mark.skip(reason=f"no *.pt cases in {REFERENCE_DIR}"), id="empty")
        ]
    return [pytest.param(p, id=p.stem, marks=_pending_marks(p.stem)) for p in cases]


# Cases (file stems) or families not built yet: they run and may fail, without failing the suite.
_LIF_VARIANTS = (
    "SDTrack's T4D1 / T2D2 trackers (LIF and T=2 multi-spike backbones, their own key names) are "
    "not implemented; only the 1x4 tracker is (sdtrack_tiny, sdtrack_base)"
)
PENDING = {"sdtrack_tiny_T4D1": _LIF_VARIANTS, "sdtrack_tiny_T2D2": _LIF_VARIANTS}


def _pending_marks(stem: str) -> list:
    reason = PENDING.get(stem, PENDING.get(stem.split("_")[0]))
    return [pytest.mark.xfail(reason=reason, strict=False)] if reason else []


def key_files() -> list:
    keys_dirs = [REFERENCE_DIR / "keys", REFERENCE_DIR / "extra" / "keys"]
    if not keys_dirs[0].is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=SKIP_REASON), id="no-reference-dir")]
    files = sorted(p for d in keys_dirs if d.is_dir() for p in d.glob("*.txt"))
    return [pytest.param(p, id=p.stem, marks=_pending_marks(p.stem)) for p in files]


_CACHE: dict = {}


def load_case(path: Path) -> dict:
    import torch

    if path not in _CACHE:
        _CACHE[path] = torch.load(path, weights_only=True)
    return _CACHE[path]
