"""Keep schedules on disk: one JSON file per schedule, e.g. the ``schedule.json`` that ``calibrate`` writes.

The file holds the rule and its values (what :class:`KeepSchedule` needs), the patched blocks' names (when
known) and free metadata (model, budget, metric, cost, search settings). Anything that takes a keep
(``apply_tp(model, keep="schedule.json")``, ``--keep schedule.json``) reads it through :func:`parse_keep`,
which treats every string ending in ``.json`` as such a file::

    {
      "format": "tp-spikformer-keep-schedule",
      "version": 1,
      "keep": "fraction:0.875,0.5",
      "rule": "fraction",
      "values": [0.875, 0.5],
      "block_names": ["block.0", "block.1"],
      "model": "sdt_fmnist", "metric": "macs", "budget": 0.7, "cost": 0.69, "search": {...}
    }

``keep`` is only for people reading the file; ``rule`` and ``values`` are what is loaded.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ..errors import MissingPathError, UsageError
from ..jsonio import write_json
from .schedule import KeepSchedule

FORMAT = "tp-spikformer-keep-schedule"
VERSION = 1
_RESERVED = ("format", "version", "keep", "rule", "values", "block_names")


def save_schedule(path: str | os.PathLike, schedule: KeepSchedule, **metadata: Any) -> str:
    """Write ``schedule`` (and ``metadata``: model, budget, metric, cost, search settings, ...) as JSON."""
    if not isinstance(schedule, KeepSchedule):
        raise UsageError(f"save_schedule needs a KeepSchedule, got {type(schedule).__name__}")
    clash = sorted(set(metadata) & set(_RESERVED))
    if clash:
        raise UsageError(f"metadata keys {clash} are reserved for the schedule itself; rename them")
    values = list(schedule.values) if schedule.per_block else schedule.values
    record = {
        "format": FORMAT,
        "version": VERSION,
        "keep": str(schedule),
        "rule": schedule.rule,
        "values": values,
        "block_names": list(schedule.block_names) if schedule.block_names else None,
        **metadata,
    }
    return write_json(path, record)


def read_schedule_file(path: str | os.PathLike) -> tuple[KeepSchedule, dict[str, Any]]:
    """The schedule in a JSON file written by :func:`save_schedule`, and the file's other entries."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        what = "is a folder" if os.path.isdir(path) else "does not exist"
        raise MissingPathError(
            f"keep schedule file {path} {what}; give the schedule.json that "
            "`tp-spikformer calibrate --out DIR` "
            "wrote (DIR/schedule.json), or a keep such as 0.5 or 'side_ratio:0.9,0.8'"
        )
    try:
        with open(path) as f:
            record = json.load(f)
    except json.JSONDecodeError as err:
        raise UsageError(
            f"keep schedule file {path} is not valid JSON ({err}); re-create it with calibrate"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read the keep schedule file {path}: {err}") from None
    if not isinstance(record, dict):
        raise UsageError(f"keep schedule file {path} holds a {type(record).__name__}, expected a JSON object")
    fmt = record.get("format", FORMAT)
    if fmt != FORMAT:
        raise UsageError(f"{path} is a {fmt!r} file, not a keep schedule ({FORMAT!r})")
    version = record.get("version", VERSION)
    if version != VERSION:
        raise UsageError(
            f"{path}: keep schedule format version {version!r} is not supported (this release reads "
            f"version {VERSION}); re-create the file with this release's calibrate"
        )
    missing = [k for k in ("rule", "values") if k not in record]
    if missing:
        raise UsageError(
            f"keep schedule file {path} lacks {missing}; it needs 'rule' (e.g. \"fraction\") and "
            "'values' (a number or one number per block)"
        )
    names = record.get("block_names")
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
        raise UsageError(f"keep schedule file {path}: 'block_names' must be a list of strings or null")
    values = record["values"]
    try:
        schedule = KeepSchedule(
            record["rule"],
            tuple(values) if isinstance(values, list) else values,
            block_names=tuple(names) if names else None,
        )
    except UsageError as err:
        raise type(err)(f"keep schedule file {path}: {err}") from None
    if names and schedule.per_block and len(names) != len(schedule.values):
        raise UsageError(
            f"keep schedule file {path} has {len(schedule.values)} values but names {len(names)} blocks"
        )
    return schedule, {k: v for k, v in record.items() if k not in _RESERVED}


def load_schedule(path: str | os.PathLike) -> KeepSchedule:
    """The :class:`KeepSchedule` in a JSON file written by :func:`save_schedule` (or ``calibrate``)."""
    return read_schedule_file(path)[0]
