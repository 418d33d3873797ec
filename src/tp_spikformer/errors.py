"""User-input errors: the one exception family the command line turns into a message and exit code 2.

Every place that validates what a user gave (an option, a path, a checkpoint, a dataset, a keep schedule)
raises a :class:`UsageError` whose message names the option or path and the fix. Anything else is a bug
and keeps its traceback. ``UsageError`` derives from ``ValueError`` (and the variants below from the
matching built-ins), so library callers can keep catching the built-in exceptions.

This module imports nothing from the package: every layer may use it.
"""

from __future__ import annotations


class UsageError(ValueError):
    """Something the user asked for cannot be done; the message says what to do instead."""


class UsageTypeError(UsageError, TypeError):
    """A user-given value has the wrong type."""


class UnknownNameError(UsageError, KeyError):
    """A name (model, dataset, preset) that is not registered; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class MissingPathError(UsageError, FileNotFoundError):
    """A file or folder the user named does not exist."""


def check_int(name: str, value: object, minimum: int | None = 1, hint: str = "") -> int:
    """``value`` as an int >= ``minimum``; bools, floats with a fraction and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageTypeError(f"{name} must be an integer{_at_least(minimum)}, got {value!r}{hint}")
    if minimum is not None and value < minimum:
        raise UsageError(f"{name} must be an integer{_at_least(minimum)}, got {value}{hint}")
    return value


def _at_least(minimum: int | None) -> str:
    return "" if minimum is None else f" >= {minimum}"
