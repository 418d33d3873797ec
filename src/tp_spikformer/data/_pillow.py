"""Optional Pillow import: only the functions that decode or resize PIL images need it."""

from __future__ import annotations

import sys
from typing import Any


def require_pillow() -> Any:
    """Return the ``PIL.Image`` module, or raise an ImportError telling how to install it."""
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - Pillow is installed in the test environment
        raise ImportError(
            "decoding or resizing PIL images needs Pillow: `pip install pillow` "
            "(or `pip install tp-spikformer[all]`)"
        ) from exc
    return Image


def is_pil_image(obj: Any) -> bool:
    """True for a ``PIL.Image.Image`` (without importing Pillow when it was never imported)."""
    mod = sys.modules.get("PIL.Image")
    return mod is not None and isinstance(obj, mod.Image)
