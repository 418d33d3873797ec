"""The one JSON writer: strict JSON (NaN and infinities become null), tensors and numpy values as lists
and numbers, anything else as its string. Imports nothing from the package: every layer may use it."""

from __future__ import annotations

import json
import math
import os
from typing import Any


def plain(obj: Any) -> Any:
    """``obj`` as plain JSON data: dicts, lists, str, int, float (finite) and None."""
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, str):
        return str(obj)  # plain str, also for subclasses such as torch's TorchVersion
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [plain(v) for v in obj]
    tolist = getattr(obj, "tolist", None)  # torch tensors, numpy arrays and scalars
    if callable(tolist):
        return plain(tolist())
    if hasattr(obj, "__dataclass_fields__"):
        return plain({k: getattr(obj, k) for k in obj.__dataclass_fields__})
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return str(obj)


def dumps(obj: Any, indent: int | None = 2) -> str:
    return json.dumps(plain(obj), indent=indent, allow_nan=False)


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> str:
    """Write ``obj`` as strict JSON to ``path`` (atomically: a temporary file, then a rename)."""
    path = os.fspath(path)
    text = dumps(obj, indent) + "\n"
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def print_and_write(obj: Any, path: str | os.PathLike | None) -> None:
    """A benchmark's result: strict JSON on stdout, and to ``path`` (atomically) when one is given."""
    print(dumps(obj))
    if path:
        write_json(path, obj)
