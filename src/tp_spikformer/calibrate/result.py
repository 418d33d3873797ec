"""What ``calibrate`` returns: the schedule, its cost, the uniform baseline of the same budget and the record
of the search. ``apply_tp(model, keep=result)`` and ``apply_tp(model, keep=result.schedule)`` both work;
``result.save(path)`` writes the schedule JSON (readable by ``--keep path``), ``result.save_report(path)``
the whole record including the history of every evaluated schedule."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..jsonio import dumps, write_json
from ..pruning import KeepSchedule
from ..pruning.schedule_file import save_schedule

METRIC_WORDS = {"macs": "MACs", "sops": "SOPs", "latency": "latency"}


@dataclass
class CalibrationResult:
    """A calibrated keep schedule and how it was found.

    ``cost`` and ``budget`` are fractions of the dense model's counted MACs / SOPs (per image, on the
    calibration images) or of its measured latency. ``objective_value`` is what the search minimised
    (lower is better), ``objective_report`` the readable numbers (e.g. ``top1``), both on the calibration
    images; ``dense_report`` the same for the dense model. ``uniform``: the uniform keep fraction of the
    same budget (the largest one within it), its cost and objective: the baseline the search must beat.
    ``chosen`` is ``"search"`` or ``"uniform"`` (when the uniform schedule was better on the calibration
    images, it is returned). ``history``: every evaluated schedule in order.
    """

    schedule: KeepSchedule
    scorer: str
    model: str
    block_names: list[str]
    grids: list[list[int] | None]
    kept: list[int | None]
    metric: str
    budget: float
    cost: float
    cost_absolute: float | None
    dense_cost_absolute: float | None
    objective: str
    objective_value: float
    objective_report: dict[str, float]
    dense_report: dict[str, float]
    uniform: dict[str, Any]
    chosen: str
    seconds: float
    settings: dict[str, Any]
    per_scorer: dict[str, dict[str, Any]] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def search_gain(self) -> float:
        """Uniform objective minus the returned schedule's (> 0: the search paid on the calibration
        images)."""
        return self.uniform["objective_value"] - self.objective_value

    def metadata(self) -> dict[str, Any]:
        """Everything but the history: what ``schedule.json`` stores beside the schedule."""
        return {
            "model": self.model,
            "scorer": self.scorer,
            "metric": self.metric,
            "budget": self.budget,
            "cost": self.cost,
            "cost_absolute": self.cost_absolute,
            "dense_cost_absolute": self.dense_cost_absolute,
            "grids": self.grids,
            "kept": self.kept,
            "objective": self.objective,
            "objective_value": self.objective_value,
            "objective_report": self.objective_report,
            "dense_report": self.dense_report,
            "uniform": self.uniform,
            "chosen": self.chosen,
            "search_gain": self.search_gain,
            "per_scorer": self.per_scorer,
            "seconds": self.seconds,
            "phases": self.phases,
            "search": self.settings,
            "notes": self.notes,
        }

    def to_dict(self) -> dict[str, Any]:
        values = self.schedule.values
        return {
            "keep": str(self.schedule),
            "rule": self.schedule.rule,
            "values": list(values) if isinstance(values, tuple) else values,
            "block_names": self.block_names,
            **self.metadata(),
            "history": self.history,
        }

    def save(self, path: str | os.PathLike) -> str:
        """Write ``schedule.json``: the schedule, the model, block names, budget, metric, cost, settings."""
        return save_schedule(path, self.schedule, **self.metadata())

    def save_report(self, path: str | os.PathLike) -> str:
        """Write the full record (``to_dict``, with the history) as JSON."""
        return write_json(path, self.to_dict())

    def to_json(self) -> str:
        return dumps(self.to_dict())

    def __str__(self) -> str:
        what = METRIC_WORDS[self.metric]
        head = (
            f"calibrated keep schedule for {self.model} (scorer {self.scorer}, objective {self.objective}): "
            f"budget {self.budget:.3g} of the dense model's {what}"
        )
        lines = [head, f"  {'block':<16} {'grid':>7} {'keep':>7} {'kept':>9}"]
        for name, grid, value, k in zip(self.block_names, self.grids, _values(self.schedule), self.kept):
            g = f"{grid[0]}x{grid[1]}" if grid else "-"
            kept = f"{k}/{grid[0] * grid[1]}" if grid and k is not None else "not run"
            lines.append(f"  {name:<16} {g:>7} {value:>7.4g} {kept:>9}")
        absolute = ""
        if self.cost_absolute is not None and self.dense_cost_absolute:
            absolute = (
                f" ({self.cost_absolute:.4g} ms vs {self.dense_cost_absolute:.4g} ms per batch)"
                if self.metric == "latency"
                else f" ({_si(self.cost_absolute)} of {_si(self.dense_cost_absolute)} per image)"
            )
        noisy = " (measured; noisy)" if self.metric == "latency" else ""
        lines.append(f"cost: {self.cost:.4f} of dense {what}{absolute}{noisy}")
        n = self.settings.get("calibration_size")
        lines.append(
            f"on {n} calibration images: {_report(self.objective_report)}; "
            f"dense: {_report(self.dense_report)}"
        )
        u = self.uniform
        lines.append(
            f"uniform keep {u['fraction']:.4g} (cost {u['cost']:.4f}): {_report(u['report'])}; "
            f"search gain {self.search_gain:+.4g} (objective, lower is better)"
            + ("; the uniform schedule was better and is returned" if self.chosen == "uniform" else "")
        )
        lines.append(f"search: {self.settings.get('passes')} calibration passes, {self.seconds:.1f} s")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _values(schedule: KeepSchedule) -> list[float]:
    return list(schedule.values) if schedule.per_block else [schedule.values]


def _report(rep: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in rep.items() if k != "value")


def _si(v: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.4g}{unit}"
    return f"{v:.4g}"
