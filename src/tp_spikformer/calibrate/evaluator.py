"""Runs ONE TP-patched copy of the model on the calibration batches: objective and cost of a schedule.

* the dense pass (TP switched off) runs once and caches what the objective compares with (dense logits or
  features) plus the dense cost;
* a candidate is a tuple of keep fractions, one per patched block, applied as ``fraction(values)``; results
  are cached per tuple, so the search never runs a schedule twice;
* cost, as a fraction of the dense model's: ``macs`` counted by the operation counter on one calibration
  image (MACs depend on the kept counts, not on the pixels); ``sops`` counted over ALL calibration images,
  in the same pass as the objective when the objective runs ``model(x)``; ``latency`` measured (the dense
  and the pruned model interleaved, median of the per-round ratios, on the first calibration batch):
  noisy, see :meth:`Evaluator.latency`.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import UsageError
from ..measure import EnergyConventions, benchmark
from ..measure.ops import OpCounter, count_ops
from ..measure.variants import Variant
from ..pruning import KeepSchedule, TPState
from .objectives import Objective
from .samples import CalibrationSet

METRICS = ("macs", "sops", "latency")


@dataclass
class Evaluation:
    """Objective (and cost, when measured) of one schedule on the calibration images."""

    values: tuple[float, ...]
    value: float  # the objective to minimise
    report: dict[str, float]
    cost: float | None = None  # fraction of the dense model's cost
    cost_absolute: float | None = None  # per image (MACs, SOPs) or ms per batch (latency)
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class Evaluator:
    """Objective and cost of keep schedules on ``calib`` (module docstring)."""

    def __init__(
        self,
        model: nn.Module,
        state: TPState,
        calib: CalibrationSet,
        objective: Objective,
        metric: str,
        conventions: EnergyConventions | None = None,
        latency_repeats: int = 15,
        latency_batch_size: int | None = None,
    ):
        self.model, self.state, self.calib = model, state, calib
        self.objective, self.metric = objective, metric
        self.conventions = conventions or EnergyConventions()
        self.latency_repeats = latency_repeats
        first = calib.batches[0][0]
        self.latency_input = first if latency_batch_size is None else first[:latency_batch_size]
        self.targets: list[Any] = []
        self.dense_report: dict[str, float] = {}
        self.dense_value = float("nan")
        self.dense_cost_absolute = float("nan")
        self.dense_block_macs: dict[str, float] = {}
        self.passes = 0
        self._cache: dict[tuple, Evaluation] = {}
        self._cost_cache: dict[tuple, tuple[float, float]] = {}

    # -- set-up ------------------------------------------------------------------------------------
    def set_scorer(self, scorer: str) -> None:
        if scorer != self.state.scorer_name:
            self.state.scorer = scorer
            self._cache.clear()
            if self.metric != "macs":  # counted MACs do not depend on which tokens are kept; SOPs do
                self._cost_cache.clear()

    def dense(self) -> Evaluation:
        """The dense pass: caches the objective's targets and the dense cost."""
        self.state.enabled = False
        try:
            self.targets = []
            sums: dict[str, float] = {}
            with torch.inference_mode():
                for x, y in self.calib.batches:
                    out = self.objective.output(self.model, x)
                    target = self.objective.target(out, y)
                    self.targets.append(target)
                    _add(sums, self.objective.terms(out, target, y))
            n = self.calib.size
            self.dense_value = self.objective.value(sums, n)
            self.dense_report = self.objective.report(sums, n)
            if self.metric in ("macs", "sops"):
                rep = self._count(self.metric)
                self.dense_cost_absolute = rep.totals[self.metric]
                if not self.dense_cost_absolute > 0:
                    raise UsageError(
                        f"the dense model's counted {self.metric.upper()} on the calibration images are "
                        f"{self.dense_cost_absolute:g} (no neuron fired?), so a budget relative to them "
                        "means nothing; use metric='macs' or check the model and the data"
                    )
                self.dense_block_macs = {g.group: g.macs for g in rep.groups if g.category == "block"}
        finally:
            self.state.enabled = True
        return Evaluation((), self.dense_value, dict(self.dense_report), 1.0, self.dense_cost_absolute)

    def block_grids(self) -> list[tuple[int, int] | None]:
        """The token grid of every patched block in one forward (None: the block did not run)."""
        self._configure((1.0,) * len(self.state.block_names))
        with torch.inference_mode():
            self.model(self.calib.batches[0][0][:1])
        grids: list[tuple[int, int] | None] = [None] * len(self.state.block_names)
        for rec in self.state.records:
            if grids[rec.index] is None:
                grids[rec.index] = rec.grid
        return grids

    # -- schedules ---------------------------------------------------------------------------------
    def _configure(self, values: tuple[float, ...]) -> None:
        self.state.configure(enabled=True, keep=KeepSchedule("fraction", tuple(values)))

    def evaluate(self, values: tuple[float, ...], with_cost: bool = True) -> Evaluation:
        """Objective of ``values`` on the calibration images, and (``with_cost``) its counted cost; latency
        is never measured here (see :meth:`latency`)."""
        key = tuple(values)
        hit = self._cache.get(key)
        count_here = with_cost and self.metric == "sops" and key not in self._cost_cache
        if hit is not None and not count_here:
            if with_cost and hit.cost is None and self.metric != "latency":
                hit.cost, hit.cost_absolute = self.cost(values)
            return hit
        t0 = time.perf_counter()
        self._configure(key)
        together = count_here and self.objective.uses_forward
        counter = OpCounter(self.model) if together else None
        sums: dict[str, float] = {}
        with torch.inference_mode(), counter if counter is not None else contextlib.nullcontext():
            for (x, y), target in zip(self.calib.batches, self.targets):
                out = self.objective.output(self.model, x)
                _add(sums, self.objective.terms(out, target, y))
        self.passes += 1
        if counter is not None:
            absolute = counter.counts().report(self.conventions).totals["sops"]
            self._cost_cache[key] = (absolute / self.dense_cost_absolute, absolute)
        n = self.calib.size
        ev = Evaluation(key, self.objective.value(sums, n), self.objective.report(sums, n))
        if with_cost and self.metric != "latency":
            ev.cost, ev.cost_absolute = self.cost(key)
        ev.seconds = time.perf_counter() - t0
        self._cache[key] = ev
        return ev

    def cost(self, values: tuple[float, ...]) -> tuple[float, float]:
        """Counted ``(fraction of dense, per image)`` MACs or SOPs of ``values``."""
        key = tuple(values)
        if key not in self._cost_cache:
            self._configure(key)
            absolute = self._count(self.metric).totals[self.metric]
            self._cost_cache[key] = (absolute / self.dense_cost_absolute, absolute)
        return self._cost_cache[key]

    def block_macs(self, values: tuple[float, ...]) -> dict[str, float]:
        """Counted MACs per image of every patched block under ``values`` (one image)."""
        self._configure(tuple(values))
        rep = self._count("macs")
        return {g.group: g.macs for g in rep.groups if g.category == "block"}

    def _count(self, metric: str):
        inputs = [self.calib.batches[0][0][:1]] if metric == "macs" else self.calib.inputs()
        self.passes += metric != "macs"
        return count_ops(self.model, inputs).report(self.conventions)

    def latency(
        self, values: tuple[float, ...] | None, scorer: str, repeats: int | None = None
    ) -> dict[str, float]:
        """Measured latency of ``values`` vs the dense model, interleaved in one benchmark on the first
        calibration batch: ``{"ratio": median over rounds of pruned / dense, "dense_ms", "pruned_ms"}``.
        Wall-clock time on a machine shared with other work: repeat-to-repeat noise of several percent."""
        dense = Variant(self.model, None, label="dense")
        cand = Variant(
            self.model,
            None if values is None else KeepSchedule("fraction", tuple(values)),
            scorer,
            label="pruned",
        )
        x = self.latency_input
        res = benchmark(
            [("dense", dense), ("pruned", cand)],
            batch_sizes=[int(x.shape[0])],
            make_input=lambda bs: x,
            warmup=2,
            repeats=repeats or self.latency_repeats,
            memory=False,
        )
        self.state.enabled = True
        d, p = res.get("dense", int(x.shape[0])), res.get("pruned", int(x.shape[0]))
        return {
            "ratio": p["paired_ratio_median"],
            "dense_ms": d["latency_ms"]["median"],
            "pruned_ms": p["latency_ms"]["median"],
        }


def _add(sums: dict[str, float], terms: dict[str, float]) -> None:
    for k, v in terms.items():
        sums[k] = sums.get(k, 0.0) + v
