"""Where the golden reference cases live, and how tests find them.

``TP_REFERENCE_DIR`` names the folder when set; otherwise ``../shared/reference`` beside the checkout.
Every ``*.pt`` file in it is a case. Tests skip, saying why, only when the folder itself is absent.
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
    cases = sorted(REFERENCE_DIR.glob("*.pt"))
    if not cases:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no *.pt cases in {REFERENCE_DIR}"), id="empty")]
    return [pytest.param(p, id=p.stem) for p in cases]


def key_files() -> list:
    keys_dir = REFERENCE_DIR / "keys"
    if not keys_dir.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=SKIP_REASON), id="no-reference-dir")]
    return [pytest.param(p, id=p.stem) for p in sorted(keys_dir.glob("*.txt"))]


_CACHE: dict = {}


def load_case(path: Path) -> dict:
    import torch

    if path not in _CACHE:
        _CACHE[path] = torch.load(path, weights_only=True)
    return _CACHE[path]
