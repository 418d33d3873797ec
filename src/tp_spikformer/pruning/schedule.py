"""Keep schedules: how many tokens each patched block keeps.

Rules (``KeepSchedule.rule``), each with one value for every block or a per-block list:

* ``fraction``: keep ``ceil(f * N)`` of the block's ``N = H * W`` tokens, ``0 < f <= 1``.
* ``count``: keep exactly ``K`` tokens, ``1 <= K <= N``.
* ``side``: official SDT-V1 rule, integer side ``k``: keep ``k * k`` tokens (on any grid).
* ``side_ratio``: official QKFormer / SDT-V3 rule: ``k = int(H * ratio)`` (Python float product, truncated),
  keep ``k * k`` tokens, ``0 < ratio <= 1``. On a non-square grid (which the official code does not
  handle) ``int(H * ratio) * int(W * ratio)`` tokens.
* ``prune_ratio``: the paper's rule ``K = ceil((1 - r) * H * W)``, ``0 <= r < 1``.

Values outside these ranges raise; nothing is clamped. Ceilings ignore float noise below 1e-9
(``ceil(0.7 * 100)`` is 70, not 71).

A schedule may name the blocks it was made for (``block_names``, e.g. a calibrated schedule): applying it to
a model whose patched blocks have other names warns. Schedules are saved and loaded as JSON
(:meth:`KeepSchedule.save`, :meth:`KeepSchedule.load`, :mod:`.schedule_file`); :func:`parse_keep` reads
any string ending in ``.json`` as such a file.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError, UsageTypeError

RULES = ("fraction", "count", "side", "side_ratio", "prune_ratio")
_CEIL_SLACK = 1e-9


@dataclass(frozen=True)
class KeepSchedule:
    """A keep rule with one value (all blocks) or one value per block.

    ``block_names`` (optional, not part of equality): the patched blocks the schedule was made for.
    """

    rule: str
    values: float | int | tuple[float | int, ...]
    block_names: tuple[str, ...] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.rule not in RULES:
            raise UsageError(f"unknown keep rule {self.rule!r}; choose one of {RULES}")
        if isinstance(self.values, (list, tuple)):
            if not self.values:
                raise UsageError("a per-block keep list must not be empty")
            object.__setattr__(self, "values", tuple(self.values))
        for v in self._all_values():
            _check_value(self.rule, v)
        if self.block_names is not None:
            names = tuple(self.block_names)
            if not all(isinstance(n, str) for n in names):
                raise UsageTypeError(f"block_names must be strings, got {self.block_names!r}")
            if self.per_block and len(names) != len(self.values):
                raise UsageError(f"{len(self.values)} keep values but {len(names)} block names")
            object.__setattr__(self, "block_names", names)

    def save(self, path: str | os.PathLike, **metadata: Any) -> str:
        """Write the schedule as JSON (see :mod:`.schedule_file`); ``metadata`` is stored beside it."""
        from .schedule_file import save_schedule

        return save_schedule(path, self, **metadata)

    @classmethod
    def load(cls, path: str | os.PathLike) -> KeepSchedule:
        """The schedule in a JSON file written by :meth:`save` or by ``calibrate``."""
        from .schedule_file import load_schedule

        return load_schedule(path)

    def _all_values(self) -> tuple:
        return self.values if isinstance(self.values, tuple) else (self.values,)

    @property
    def per_block(self) -> bool:
        return isinstance(self.values, tuple)

    def check_length(self, num_blocks: int, block_names: Sequence[str] = ()) -> None:
        """Raise when a per-block schedule does not fit ``num_blocks``; warn when the schedule names other
        blocks than ``block_names`` (a schedule made for another model)."""
        made_for = f" (it was made for blocks {', '.join(self.block_names)})" if self.block_names else ""
        if self.per_block and len(self.values) != num_blocks:
            names = f" ({', '.join(block_names)})" if block_names else ""
            raise UsageError(
                f"the keep schedule has {len(self.values)} values but the model has {num_blocks} patched "
                f"blocks{names}{made_for}; give one value per block or a single value for all"
            )
        if self.block_names and block_names and tuple(block_names) != self.block_names:
            warnings.warn(
                f"the keep schedule {self} was made for blocks {list(self.block_names)} but is applied "
                f"to blocks {list(block_names)}; check that it belongs to this model",
                stacklevel=3,
            )

    def value_for(self, block: int) -> float | int:
        return self.values[block] if self.per_block else self.values

    def count(self, block: int, h: int, w: int) -> int:
        """Tokens kept by block ``block`` on an ``h x w`` grid; raises if the rule cannot be met."""
        n = h * w
        v = self.value_for(block)
        if self.rule == "fraction":
            k = math.ceil(v * n - _CEIL_SLACK)
        elif self.rule == "count":
            k = int(v)
        elif self.rule == "side":
            k = int(v) * int(v)
        elif self.rule == "side_ratio":
            side_h, side_w = int(h * v), int(w * v)
            if side_h < 1 or side_w < 1:
                raise UsageError(
                    f"block {block}: side ratio {v} on a {h}x{w} grid keeps int({min(h, w)}*{v}) = 0 tokens per side"
                )
            k = side_h * side_w
        else:  # prune_ratio
            k = math.ceil((1.0 - v) * n - _CEIL_SLACK)
        if not 1 <= k <= n:
            raise UsageError(
                f"block {block}: keep rule {self.rule}={v} asks for {k} tokens but the block has a {h}x{w} grid "
                f"({n} tokens); choose a value that keeps between 1 and {n}"
            )
        return k

    def __str__(self) -> str:
        vals = ",".join(f"{v:g}" for v in self._all_values())
        return f"{self.rule}:{vals}"


def _check_value(rule: str, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise UsageTypeError(f"keep values must be numbers, got {v!r}")
    ok = {
        "fraction": 0 < v <= 1,
        "count": v >= 1 and float(v).is_integer(),
        "side": v >= 1 and float(v).is_integer(),
        "side_ratio": 0 < v <= 1,
        "prune_ratio": 0 <= v < 1,
    }[rule]
    if not ok:
        valid = {
            "fraction": "0 < f <= 1",
            "count": "an integer >= 1",
            "side": "an integer >= 1",
            "side_ratio": "0 < ratio <= 1",
            "prune_ratio": "0 <= r < 1",
        }[rule]
        raise UsageError(f"invalid {rule} value {v!r}: must be {valid}")


def fraction(values) -> KeepSchedule:
    return KeepSchedule("fraction", values)


def count(values) -> KeepSchedule:
    return KeepSchedule("count", values)


def side(values) -> KeepSchedule:
    return KeepSchedule("side", values)


def side_ratio(values) -> KeepSchedule:
    return KeepSchedule("side_ratio", values)


def prune_ratio(values) -> KeepSchedule:
    return KeepSchedule("prune_ratio", values)


def parse_keep(spec: Any) -> KeepSchedule | str:
    """Turn a user's ``keep`` into a :class:`KeepSchedule` (or ``"official"``, resolved per family).

    Accepts a :class:`KeepSchedule`; a number or list of numbers (keep fractions); ``"official"``; a
    string ``"<rule>:<v>[,<v>...]"`` such as ``"side:12,12,10"``, ``"prune_ratio:0.3"`` or ``"0.5"``; the
    path of a schedule JSON file (any string or path ending in ``.json``, e.g. ``calibrate``'s
    ``schedule.json``); or an object with a ``schedule`` attribute holding a :class:`KeepSchedule` (a
    calibration result).
    """
    if isinstance(spec, KeepSchedule):
        return spec
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if isinstance(getattr(spec, "schedule", None), KeepSchedule):
        return spec.schedule
    if isinstance(spec, str):
        text = spec.strip()
        if text == "official":
            return "official"
        if text.lower().endswith(".json"):
            from .schedule_file import load_schedule

            return load_schedule(text)
        rule, sep, vals = text.partition(":")
        if not sep:
            rule, vals = "fraction", text
        rule = rule.strip()
        if rule not in RULES:
            raise UsageError(
                f"unknown keep rule {rule!r} in {spec!r}; use 'official' or one of {RULES}, e.g. 'side_ratio:0.9,0.8'"
            )
        try:
            numbers = [float(v) for v in vals.split(",") if v.strip()]
        except ValueError:
            raise UsageError(f"cannot read the numbers in keep spec {spec!r}") from None
        if rule in ("count", "side"):
            numbers = [int(v) if v.is_integer() else v for v in numbers]
        return KeepSchedule(rule, numbers[0] if len(numbers) == 1 else tuple(numbers))
    if isinstance(spec, (list, tuple)):
        return KeepSchedule("fraction", tuple(float(v) if not isinstance(v, bool) else v for v in spec))
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return KeepSchedule("fraction", float(spec))
    raise UsageTypeError(
        f"cannot use {spec!r} as a keep schedule; pass a fraction (0.5), a list of fractions, 'official', "
        "a KeepSchedule (e.g. side_ratio([0.9, 0.8])), a string like 'side:12,12,10' or a schedule .json file"
    )
