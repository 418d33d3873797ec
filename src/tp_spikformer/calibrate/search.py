"""``calibrate``: the keep-schedule search (strategy in the package docstring, ``calibrate/__init__.py``)."""

from __future__ import annotations

import copy
import itertools
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import UsageError, UsageTypeError, check_int
from ..measure import EnergyConventions
from ..pruning import KeepSchedule, apply_tp, get_scorer, get_tp_state, is_patched
from .allocate import allocate, neighbours
from .evaluator import METRICS, Evaluation, Evaluator
from .objectives import Objective, get_objective
from .result import METRIC_WORDS, CalibrationResult
from .samples import calibration_set

DEFAULT_LEVELS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)
RESOLUTION = 10_000  # the allocation's cost step: 1/RESOLUTION of the dense model's cost
MAX_TIGHTEN = 6
_log = logging.getLogger(__name__)


def calibrate(
    model: nn.Module,
    data: Any,
    budget: float,
    *,
    metric: str = "macs",
    objective: str | Objective = "accuracy",
    scorers: str | Sequence[str] | None = None,
    calibration_size: int | None = 256,
    batch_size: int = 64,
    seed: int = 0,
    levels: Sequence[float] = DEFAULT_LEVELS,
    refine_rounds: int = 3,
    refine_width: int | None = None,
    conventions: EnergyConventions | None = None,
    latency_repeats: int = 15,
    latency_batch_size: int | None = None,
    device: str | torch.device | None = None,
    verbose: bool = True,
    **tp_kwargs: Any,
) -> CalibrationResult:
    """Find per-block keep fractions that do best on ``data`` within ``budget`` (strategy: package docstring).

    Args:
        model: the dense model (left untouched: the search patches a copy).
        data: calibration samples: a dataset, a tensor of inputs, ``(inputs, labels)`` or a DataLoader.
        budget: the cost allowed, as a fraction of the DENSE model's ``metric`` (``0 < budget <= 1``).
        metric: ``"macs"`` or ``"sops"`` (counted per image on the calibration images; the found schedule's
            counted cost is <= budget) or ``"latency"`` (measured on the first calibration batch, noisy).
        objective: ``"accuracy"`` (labelled data), ``"logits_kl"`` or ``"features"`` (unlabelled: divergence
            from the dense model's logits or ``forward_features``), or an :class:`Objective`.
        scorers: the token scorer (default ``"official"``), or a list of scorers to search over.
        calibration_size: samples drawn (seeded) from ``data``; None: all of it.
        batch_size: samples per forward.
        seed: seeds the calibration subset and the ``random`` scorer; the search is deterministic given it.
        levels: the keep fractions each block may take (1.0 is always added); the smallest sets the
            minimum reachable cost.
        refine_rounds / refine_width: rounds of the joint refinement and schedules evaluated per round
            (default: the number of pruned blocks, at least 4).
        conventions: :class:`EnergyConventions` for counting SOPs (default: the papers' conventions).
        latency_repeats / latency_batch_size: timing rounds per latency measurement and the batch timed
            (default: the first calibration batch).
        device: where to run (default: the model's device).
        verbose: print the schedule, its cost and the uniform baseline at the end.
        tp_kwargs: other ``apply_tp`` options (``window``, ``gather_order``, ``protect``); ``mode="drop"``
            and ``cumulative=True`` are refused (they tie the blocks' keep counts together).

    Returns:
        a :class:`CalibrationResult`: ``.schedule`` (a per-block ``fraction`` :class:`KeepSchedule` for
        ``apply_tp``), ``.cost``, ``.budget``, ``.objective_value``, ``.uniform``, ``.history``, ``.seconds``.
    """
    t_start = time.perf_counter()
    budget = _check_budget(budget)
    if metric not in METRICS:
        raise UsageError(f"unknown metric {metric!r}; choose one of {METRICS}")
    levels = _check_levels(levels)
    scorer_list = _check_scorers(scorers)
    obj = get_objective(objective)
    check_int("refine_rounds", refine_rounds, minimum=0)
    if refine_width is not None:
        check_int("refine_width", refine_width)
    check_int("latency_repeats", latency_repeats)
    if tp_kwargs.get("mode", "stop") != "stop" or tp_kwargs.get("cumulative", False):
        raise UsageError(
            "calibrate searches each block's keep on its own, which mode='drop' and cumulative=True "
            "forbid (there a block may not keep more tokens than the block before); use mode='stop', "
            "cumulative=False"
        )
    unknown = sorted(set(tp_kwargs) - {"window", "gather_order", "protect", "mode", "cumulative"})
    if unknown:
        raise UsageTypeError(
            f"calibrate got unknown option(s) {unknown}; TP options it takes: window, gather_order, protect"
        )
    _check_task_inputs(model, data)
    if device is None:
        param = next(iter(model.parameters()), None)
        device = param.device if param is not None else torch.device("cpu")
    device = torch.device(device)

    shared = copy.deepcopy(model).to(device).eval()
    options_tp = {k: v for k, v in tp_kwargs.items() if v is not None}
    if is_patched(shared):
        state = get_tp_state(shared).configure(
            keep=1.0, scorer=scorer_list[0], seed=seed, record=True, enabled=True, **options_tp
        )
    else:
        state = apply_tp(shared, keep=1.0, scorer=scorer_list[0], seed=seed, record=True, **options_tp)
    calib = calibration_set(data, calibration_size, batch_size, seed, device)
    if obj.needs_labels and not calib.labelled:
        raise UsageError(
            f"objective {obj.name!r} needs labelled data, and the calibration data ({calib.source}) has "
            "no labels; use objective='logits_kl' (or 'features') to match the dense model instead"
        )
    ev = Evaluator(shared, state, calib, obj, metric, conventions, latency_repeats, latency_batch_size)
    search = _Search(ev, levels, budget, scorer_list, refine_rounds, refine_width)
    result_parts = search.run()

    model_name = getattr(getattr(model, "config", None), "name", None) or type(model).__name__
    best = result_parts["best"]
    names = list(state.block_names)
    schedule = KeepSchedule("fraction", best["values"], block_names=tuple(names))
    settings = {
        "calibration_size": calib.size,
        "calibration_source": calib.source,
        "calibration_indices": calib.indices,
        "labelled": calib.labelled,
        "batch_size": batch_size,
        "seed": seed,
        "levels": list(levels),
        "scorers": scorer_list,
        "refine_rounds": refine_rounds,
        "refine_width": search.width,
        "resolution": RESOLUTION,
        "tp": {k: v for k, v in options_tp.items() if k != "protect"},
        "objective": obj.settings(),
        "conventions": (conventions or EnergyConventions()).__dict__,
        "latency_repeats": latency_repeats if metric == "latency" else None,
        "passes": ev.passes,
        "device": str(device),
        "torch": torch.__version__,
    }
    result = CalibrationResult(
        schedule=schedule,
        scorer=best["scorer"],
        model=model_name,
        block_names=names,
        grids=[list(g) if g else None for g in search.grids],
        kept=best["kept"],
        metric=metric,
        budget=budget,
        cost=best["cost"],
        cost_absolute=best["cost_absolute"],
        dense_cost_absolute=best["dense_cost_absolute"],
        objective=obj.name,
        objective_value=best["value"],
        objective_report=best["report"],
        dense_report=dict(ev.dense_report),
        uniform=best["uniform"],
        chosen=best["chosen"],
        seconds=time.perf_counter() - t_start,
        settings=settings,
        per_scorer=result_parts["per_scorer"],
        phases=search.phases,
        history=search.history,
        notes=search.notes,
    )
    _log.info(
        "calibrated %s: %s (cost %.4f of dense %s, budget %.4g)",
        model_name,
        schedule,
        result.cost,
        METRIC_WORDS[metric],
        budget,
    )
    if verbose:
        print(result)
    return result


# -- argument checks ---------------------------------------------------------------------------------------


def _check_task_inputs(model: nn.Module, data: Any) -> None:
    """Segmentation and detection models take prepared image tensors (normalised; detectors letterboxed),
    which their datasets' items are not: refuse anything else instead of calibrating on raw pixels."""
    task = getattr(getattr(model, "config", None), "task", "classification")
    if task not in ("segmentation", "detection"):
        return
    prepared = isinstance(data, torch.Tensor) or (
        isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], torch.Tensor)
    )
    if not prepared:
        raise UsageTypeError(
            f"{model.config.name} is a {task} model: calibrate it on prepared image tensors, not on "
            f"{type(data).__name__} items; get them with tp_spikformer.api.task_spec({task!r})"
            ".calibration_inputs(model, dataset, indices), or run `tp-spikformer calibrate --task "
            f"{task}`"
        )


def _check_budget(budget: Any) -> float:
    if isinstance(budget, bool) or not isinstance(budget, (int, float)):
        raise UsageTypeError(
            f"budget must be a number, the allowed cost as a fraction of the dense model's (e.g. "
            f"0.5), got {budget!r}"
        )
    budget = float(budget)
    if not (0.0 < budget <= 1.0):
        raise UsageError(
            f"budget must be a fraction of the dense model's cost with 0 < budget <= 1 (e.g. 0.5 for "
            f"half of the dense MACs), got {budget!r}"
        )
    return budget


def _check_levels(levels: Sequence[float]) -> tuple[float, ...]:
    try:
        vals = [float(v) for v in levels if not isinstance(v, bool)]
    except (TypeError, ValueError):
        raise UsageTypeError(f"levels must be keep fractions in (0, 1], got {levels!r}") from None
    if not vals or any(not (0.0 < v <= 1.0) for v in vals):
        raise UsageError(f"levels must be keep fractions in (0, 1], got {list(levels)!r}")
    return tuple(sorted(set(vals) | {1.0}, reverse=True))


def _check_scorers(scorers: str | Sequence[str] | None) -> list[str]:
    if scorers is None:
        return ["official"]
    names = [scorers] if isinstance(scorers, str) else list(scorers)
    if not names:
        raise UsageError("scorers is empty; pass a scorer name, a list of them, or None for 'official'")
    for s in names:
        if not isinstance(s, str):
            raise UsageTypeError(f"scorers must be registered scorer names, got {s!r}")
        get_scorer(s)  # raises with the valid names
    return list(dict.fromkeys(names))


# -- the search ----------------------------------------------------------------------------------------------


class _Search:
    """Profiling, allocation, verification, refinement and the uniform baseline for each scorer."""

    def __init__(
        self,
        ev: Evaluator,
        levels: tuple[float, ...],
        budget: float,
        scorers: list[str],
        refine_rounds: int,
        refine_width: int | None,
    ):
        self.ev, self.levels, self.budget, self.scorers = ev, levels, budget, scorers
        self.refine_rounds = refine_rounds
        self.history: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.phases: dict[str, float] = {}
        self.grids = ev.block_grids()
        self.active = [b for b, g in enumerate(self.grids) if g is not None]
        if not self.active:
            raise UsageError(
                "no patched block ran on the calibration input, so there is nothing to calibrate"
            )
        not_run = [ev.state.block_names[b] for b, g in enumerate(self.grids) if g is None]
        if not_run:
            self.notes.append(f"blocks {not_run} did not run on the calibration input; they keep 1.0")
        self.width = refine_width or max(4, len(self.active))
        # options[b]: (fraction, count) from most to fewest kept tokens; option 0 is every token
        self.options: list[list[tuple[float, int | None]]] = []
        for g in self.grids:
            if g is None:
                self.options.append([(1.0, None)])
                continue
            n = g[0] * g[1]
            counts = sorted({max(1, math.ceil(lv * n - 1e-9)) for lv in levels}, reverse=True)
            self.options.append([(k / n, k) for k in counts])

    # helpers
    def values(self, choice: Sequence[int]) -> tuple[float, ...]:
        return tuple(self.options[b][j][0] for b, j in enumerate(choice))

    def kept(self, choice: Sequence[int]) -> list[int | None]:
        return [self.options[b][j][1] for b, j in enumerate(choice)]

    def kept_of(self, values: Sequence[float]) -> list[int | None]:
        return [math.ceil(v * g[0] * g[1] - 1e-9) if g else None for v, g in zip(values, self.grids)]

    def saving_at(self, b: int, k: int, saving: Sequence[Sequence[float]]) -> float:
        """Model saving (or, given the loss table, loss) of block ``b`` keeping ``k`` tokens: linear between
        the profiled levels (for MACs, convex in ``k``, this underestimates the saving: conservative)."""
        pts = [(cnt, saving[b][j]) for j, (_, cnt) in enumerate(self.options[b])]  # counts descending
        for (k_hi, s_hi), (k_lo, s_lo) in itertools.pairwise(pts):
            if k_lo <= k <= k_hi:
                return s_hi if k_hi == k_lo else s_lo + (s_hi - s_lo) * (k - k_lo) / (k_hi - k_lo)
        return pts[0][1] if k >= pts[0][0] else pts[-1][1]

    def _timed(self, name: str, t0: float) -> None:
        self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - t0

    def _record(self, phase: str, scorer: str, e: Evaluation, choice=None, **extra: Any) -> None:
        kept = self.kept(choice) if choice is not None else self.kept_of(e.values)
        self.history.append(
            {
                "phase": phase,
                "scorer": scorer,
                "keep": list(e.values),
                "kept": kept,
                "objective_value": e.value,
                "report": e.report,
                "cost": e.cost,
                **extra,
            }
        )

    def within(self, cost: float) -> bool:
        return cost <= self.budget * (1 + 1e-12)

    # the run
    def run(self) -> dict[str, Any]:
        ev = self.ev
        t0 = time.perf_counter()
        dense = ev.dense()
        self.dense_value = dense.value
        self.history.append(
            {
                "phase": "dense",
                "scorer": None,
                "keep": None,
                "objective_value": dense.value,
                "report": dense.report,
                "cost": 1.0,
            }
        )
        self._timed("dense", t0)
        t0 = time.perf_counter()
        self._mac_table()
        self._timed("cost_table", t0)
        per_scorer, best = {}, None
        for scorer in self.scorers:
            ev.set_scorer(scorer)
            found = self._search_scorer(scorer)
            per_scorer[scorer] = {
                k: found[k] for k in ("values", "cost", "value", "report", "chosen", "uniform")
            }
            if best is None or found["value"] < best["value"]:
                best = found
        return {"best": best, "per_scorer": per_scorer}

    def _mac_table(self) -> None:
        """Counted MACs per block at each option (blocks are independent in stop mode: one count per option
        index gives every block's MACs), and the dense MACs per image."""
        depth = max(len(o) for o in self.options)
        names = self.ev.state.block_names
        self.block_macs = [[0.0] * len(o) for o in self.options]
        for j in range(depth):
            choice = [min(j, len(o) - 1) for o in self.options]
            row = self.ev.block_macs(self.values(choice))
            for b in self.active:
                if j < len(self.options[b]):
                    self.block_macs[b][j] = row.get(names[b], 0.0)
        self.ev.state.enabled = False
        try:
            self.dense_macs = self.ev._count("macs").totals["macs"]
        finally:
            self.ev.state.enabled = True
        self.mac_saving = [[row[0] - m for m in row] for row in self.block_macs]

    def _cost_of(self, e: Evaluation, scorer: str) -> tuple[float, float | None, float | None]:
        """(fraction of dense, absolute, dense absolute) of an evaluated schedule; latency is measured."""
        if self.ev.metric == "latency":
            lat = self.ev.latency(e.values, scorer)
            e.cost, e.cost_absolute = lat["ratio"], lat["pruned_ms"]
            e.extra["dense_ms"] = lat["dense_ms"]
            return lat["ratio"], lat["pruned_ms"], lat["dense_ms"]
        if e.cost is None:
            e.cost, e.cost_absolute = self.ev.cost(e.values)
        return e.cost, e.cost_absolute, self.ev.dense_cost_absolute

    def _search_scorer(self, scorer: str) -> dict[str, Any]:
        ev, metric = self.ev, self.ev.metric
        smallest = [len(o) - 1 for o in self.options]
        # 1. the minimum reachable cost (every block at its smallest level)
        t0 = time.perf_counter()
        min_values = self.values(smallest)
        min_cost = ev.latency(min_values, scorer)["ratio"] if metric == "latency" else ev.cost(min_values)[0]
        self.history.append(
            {
                "phase": "minimum",
                "scorer": scorer,
                "keep": list(min_values),
                "kept": self.kept(smallest),
                "objective_value": None,
                "report": None,
                "cost": min_cost,
            }
        )
        if not self.within(min_cost):
            kept = ", ".join(f"{k}/{g[0] * g[1]}" for k, g in zip(self.kept(smallest), self.grids) if g)
            raise UsageError(
                f"budget {self.budget:g} of the dense model's {METRIC_WORDS[metric]} cannot be reached: "
                f"the minimum reachable cost is {min_cost:.4f} of dense (every block at keep "
                f"{self.levels[-1]:g}: {kept} tokens{'; measured, so noisy' if metric == 'latency' else ''}); "
                "the layers outside the blocks are not "
                f"pruned. Give a budget >= {math.ceil(min_cost * 1000) / 1000:.3f}, or smaller levels"
            )
        self._timed("minimum", t0)
        # 2. profile: each block alone at each level, the others dense
        t0 = time.perf_counter()
        loss = [[0.0] * len(o) for o in self.options]
        sop_saving = [[0.0] * len(o) for o in self.options]
        for b in self.active:
            for j in range(1, len(self.options[b])):
                choice = [0] * len(self.options)
                choice[b] = j
                e = ev.evaluate(self.values(choice), with_cost=metric == "sops")
                loss[b][j] = e.value - self.dense_value
                if metric == "sops":
                    sop_saving[b][j] = ev.dense_cost_absolute - e.cost_absolute
                self._record("profile", scorer, e, choice)
        self._timed("profile", t0)
        # 3. allocate under the cost model, verify the real cost, tighten until within the budget
        t0 = time.perf_counter()
        if metric == "sops":
            saving, total = sop_saving, ev.dense_cost_absolute
            need = total * (1 - self.budget)
        else:
            saving, total = self.mac_saving, self.dense_macs
            need = total * (1 - self._mac_target(min_cost))
        unit = total / RESOLUTION
        choice, e = self._allocate_verified(scorer, loss, saving, need, unit, smallest)
        self._timed("allocate", t0)
        # 4. refine with joint evaluations: one level up for one block, paid by another block
        t0 = time.perf_counter()
        refined, e_ref = self._refine(scorer, choice, e, loss, saving, self.model_need)
        if refined != choice and metric == "latency":
            cost, _, _ = self._cost_of(e_ref, scorer)
            if not self.within(cost):
                self.notes.append(
                    f"{scorer}: the refined schedule measured {cost:.4f} of dense latency, over the "
                    "budget; the allocated schedule is kept"
                )
                refined, e_ref = choice, e
        if metric != "latency":
            e_ref = self._fill(scorer, e_ref, saving, loss, self.model_need)
        self._timed("refine", t0)
        # 5. the uniform schedule of the same budget
        t0 = time.perf_counter()
        uniform = self._uniform(scorer)
        self._timed("uniform", t0)
        cost, absolute, dense_abs = (
            self._cost_of(e_ref, scorer)
            if e_ref.cost is None
            else (e_ref.cost, e_ref.cost_absolute, e_ref.extra.get("dense_ms", ev.dense_cost_absolute))
        )
        found = {
            "scorer": scorer,
            "kept": self.kept_of(e_ref.values),
            "values": e_ref.values,
            "value": e_ref.value,
            "report": e_ref.report,
            "cost": cost,
            "cost_absolute": absolute,
            "dense_cost_absolute": dense_abs,
            "chosen": "search",
            "uniform": uniform,
        }
        if uniform["objective_value"] < e_ref.value and self.within(uniform["cost"]):
            found.update(
                values=(uniform["fraction"],) * len(self.options),
                value=uniform["objective_value"],
                report=uniform["report"],
                cost=uniform["cost"],
                cost_absolute=uniform["cost_absolute"],
                chosen="uniform",
                kept=uniform["kept"],
            )
        return found

    def _mac_target(self, min_cost: float) -> float:
        """The MAC budget (fraction of dense) the allocation uses: the budget itself for MACs; for latency
        a linear map through (min MACs, min latency) and (1, 1), corrected after measuring."""
        if self.ev.metric != "latency":
            return self.budget
        m_min = (
            sum(self.block_macs[b][-1] - self.block_macs[b][0] for b in self.active) / self.dense_macs + 1.0
        )
        self.lat_map = (m_min, min_cost)
        if min_cost >= 1.0:
            return self.budget  # pruning measured no faster: the map is undefined; start from the budget
        return 1.0 - (1.0 - self.budget) * (1.0 - m_min) / (1.0 - min_cost)

    def _allocate_verified(self, scorer, loss, saving, need, unit, smallest):
        ev, metric = self.ev, self.ev.metric
        extra = 0.0
        why = f"still over the budget after {MAX_TIGHTEN} corrections of the cost model"
        for attempt in range(MAX_TIGHTEN):
            self.model_need = need + extra
            choice = allocate(loss, saving, self.model_need, unit)
            if choice is None:
                why = (
                    "after correcting the cost model by the measured overshoot no schedule of the levels fits"
                )
                break
            e = ev.evaluate(self.values(choice), with_cost=metric != "latency")
            cost, _, _ = self._cost_of(e, scorer)
            self._record("allocate", scorer, e, choice, attempt=attempt, model_need=self.model_need)
            if self.within(cost):
                return choice, e
            if metric == "latency":
                m_min, l_min = self.lat_map
                slope = (1.0 - m_min) / max(1e-9, 1.0 - l_min)
                over = (cost - self.budget) * slope * self.dense_macs + unit
            else:
                over = (cost - self.budget) * ev.dense_cost_absolute + unit
            # the next allocation must save more, in the model, than this one did plus what it overshot:
            # adding the overshoot to the need alone can leave this very schedule feasible (its modelled
            # saving may exceed the need by more than the overshoot), and the correction would repeat it
            modelled = sum(saving[b][j] for b, j in enumerate(choice))
            extra = max(extra + over, modelled + over - need)
        self.model_need = sum(saving[b][j] for b, j in enumerate(smallest))
        e_min = ev.evaluate(self.values(smallest), with_cost=metric != "latency")
        cost, _, _ = self._cost_of(e_min, scorer)
        self._record("allocate", scorer, e_min, smallest, attempt=MAX_TIGHTEN, model_need=self.model_need)
        over = (
            ""
            if self.within(cost)
            else f"; it measured {cost:.4f} of dense this time, over the budget (noise)"
        )
        self.notes.append(
            f"{scorer}: the allocated schedule was {why}; every block keeps its smallest level{over}"
        )
        return smallest, e_min

    def _refine(self, scorer, choice, e, loss, saving, need):
        ev, metric = self.ev, self.ev.metric
        n_options = [len(o) for o in self.options]
        current, cur = list(choice), e
        for r in range(self.refine_rounds):
            moves = neighbours(current, n_options, loss, saving, need)
            best_move, best_e = None, cur
            for _, cand in moves[: self.width]:
                e2 = ev.evaluate(self.values(cand), with_cost=metric != "latency")
                ok = metric == "latency" or self.within(e2.cost)
                self._record("refine", scorer, e2, cand, round=r, within_budget=ok)
                if ok and e2.value < best_e.value - 1e-12:
                    best_move, best_e = list(cand), e2
            if best_move is None:
                break
            current, cur = best_move, best_e
        return current, cur

    def _fill(self, scorer: str, e: Evaluation, saving, loss, need: float) -> Evaluation:
        """Spend the slack the levels leave: per block, the largest token count (between levels) that fits
        the budget in the cost model; the ``refine_width`` best predicted are evaluated jointly (real cost),
        the best is taken if it is no worse; ``refine_rounds`` rounds at most."""
        ev, metric = self.ev, self.ev.metric
        cur = e
        for r in range(self.refine_rounds):
            kept = self.kept_of(cur.values)
            total = sum(self.saving_at(b, kept[b], saving) for b in self.active)
            proposals = []
            for b in self.active:
                g = self.grids[b]
                n = g[0] * g[1]
                base = total - self.saving_at(b, kept[b], saving)
                k = next(
                    (k for k in range(n, kept[b], -1) if base + self.saving_at(b, k, saving) >= need - 1e-9),
                    None,
                )
                if k is not None:
                    gain = self.saving_at(b, k, loss) - self.saving_at(
                        b, kept[b], loss
                    )  # interpolated loss change
                    proposals.append((gain, b, k))
            best = None
            for _, b, k in sorted(proposals)[: self.width]:
                n = self.grids[b][0] * self.grids[b][1]
                vals = list(cur.values)
                vals[b] = k / n
                while metric == "macs" and k > kept[b] and not self.within(ev.cost(tuple(vals))[0]):
                    k -= 1
                    vals[b] = k / n
                if k == kept[b]:
                    continue
                e2 = ev.evaluate(tuple(vals), with_cost=True)
                ok = self.within(e2.cost)
                self._record("fill", scorer, e2, None, round=r, within_budget=ok)
                if ok and e2.value <= cur.value + 1e-12 and (best is None or e2.value < best.value):
                    best = e2
            if best is None:
                break
            cur = best
        return cur

    def _uniform(self, scorer: str) -> dict[str, Any]:
        """The largest uniform keep fraction within the budget (MACs: exact; SOPs: counted; latency: within
        the final MAC target, then measured), found by bisection over the fractions that change a count."""
        ev, metric = self.ev, self.ev.metric
        lo_level = self.levels[-1]
        grids = [g for g in self.grids if g is not None]
        cands = sorted(
            {k / (g[0] * g[1]) for g in grids for k in range(1, g[0] * g[1] + 1)} | {1.0, lo_level}
        )
        cands = [f for f in cands if f >= lo_level]
        n_blocks = len(self.options)

        def fits(f: float) -> bool:
            vals = (f,) * n_blocks
            if metric == "latency":
                rows = ev.block_macs(vals)
                macs = self.dense_macs - sum(
                    self.block_macs[b][0] - rows.get(ev.state.block_names[b], 0.0) for b in self.active
                )
                return macs <= self.dense_macs - self.model_need + 1e-6
            return self.within(ev.cost(vals)[0])

        lo, hi = 0, len(cands) - 1  # cands[lo] fits (the minimum level was checked)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if fits(cands[mid]):
                lo = mid
            else:
                hi = mid - 1
        f = cands[lo]
        e = ev.evaluate((f,) * n_blocks, with_cost=metric != "latency")
        cost, absolute, _ = self._cost_of(e, scorer)
        self._record("uniform", scorer, e, None, fraction=f)
        kept = [math.ceil(f * g[0] * g[1] - 1e-9) if g else None for g in self.grids]
        return {
            "fraction": f,
            "kept": kept,
            "cost": cost,
            "cost_absolute": absolute,
            "objective_value": e.value,
            "report": e.report,
        }
