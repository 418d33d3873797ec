"""Errors raised by the data package.

Both carry the offending path and the expected layout in their message, so that a user can fix the
files without reading the code.
"""

from __future__ import annotations

import os

from ..errors import MissingPathError, UsageError


class DatasetNotFoundError(MissingPathError):
    """A dataset root or one of its files is missing."""


class DatasetFormatError(UsageError):
    """A dataset file exists but its content is not what the layout requires."""


def not_found(what: str, path: str | os.PathLike, layout: str) -> DatasetNotFoundError:
    """``expected <what> in <path> (<layout>)``."""
    return DatasetNotFoundError(f"expected {what} in {os.fspath(path)} ({layout})")


def bad_format(path: str | os.PathLike, problem: str, layout: str) -> DatasetFormatError:
    """``<path>: <problem> (<layout>)``."""
    return DatasetFormatError(f"{os.fspath(path)}: {problem} ({layout})")


def require_dir(path: str | os.PathLike, layout: str) -> str:
    """Return ``path`` as a string if it is a directory, else raise :class:`DatasetNotFoundError`."""
    path = os.fspath(os.path.expanduser(path))
    if not os.path.isdir(path):
        state = "is not a directory" if os.path.exists(path) else "does not exist"
        raise DatasetNotFoundError(f"dataset root {path} {state} (expected layout: {layout})")
    return path
