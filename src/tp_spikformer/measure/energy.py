"""One-call entry points: the SOP / energy report of a model, and dense vs pruned on the same inputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..errors import UsageError
from .conventions import EnergyConventions
from .ops import OpCounter, _device_of, call_model, iter_batches
from .report import EnergyReport, ReportComparison, compare_reports
from .variants import make_variants


def measure_energy(
    model: nn.Module,
    inputs: Any,
    conventions: EnergyConventions | None = None,
    *,
    T: int | None = None,
    max_batches: int | None = None,
    per_sample: bool = True,
) -> EnergyReport:
    """Run ``model`` on ``inputs`` (eval + inference mode) and report MACs, SOPs and energy.

    ``inputs``: a tensor, a list of tensors, or an iterable of batches such as a DataLoader (``(x, y)``
    pairs are fine); firing rates are measured over all of them. Numbers are per image unless
    ``per_sample=False``. The model's train/eval mode is restored afterwards. See ``EnergyConventions``
    for how operations are charged and ``report.py`` for the quantities.
    """
    return measure_many(
        {"model": model}, inputs, conventions, T=T, max_batches=max_batches, per_sample=per_sample
    )["model"]


def measure_many(
    models: dict[str, nn.Module],
    inputs: Any,
    conventions: EnergyConventions | None = None,
    *,
    T: int | None = None,
    max_batches: int | None = None,
    per_sample: bool = True,
) -> dict[str, EnergyReport]:
    """Reports of several models on exactly the same batches (one pass over ``inputs``: each batch is
    run through every model in turn, so a one-shot iterator is fine)."""
    counters = {name: OpCounter(m, T=T) for name, m in models.items()}
    modes = {name: m.training for name, m in models.items()}
    try:
        for name, m in models.items():
            m.eval()
            counters[name].attach()
        with torch.inference_mode():
            for x in iter_batches(inputs, max_batches):
                for m in models.values():
                    call_model(m, x, _device_of(m))
    finally:
        for name, m in models.items():
            counters[name].detach()
            m.train(modes[name])
    reports = {}
    for name, c in counters.items():
        if c.forwards == 0:
            raise UsageError("no batch was run: inputs is empty")
        reports[name] = c.counts().report(conventions, per_sample=per_sample)
    return reports


def compare_dense_pruned(
    model: nn.Module,
    inputs: Any,
    keep: Any = "official",
    scorer: str | Callable = "official",
    conventions: EnergyConventions | None = None,
    *,
    T: int | None = None,
    max_batches: int | None = None,
    per_sample: bool = True,
    **tp_kwargs: Any,
) -> ReportComparison:
    """Dense copy vs TP-pruned copy of ``model`` (``apply_tp(keep=..., scorer=..., **tp_kwargs)``) on the
    same inputs: per-block and total MACs, SOPs and energy side by side with ratios pruned / dense.
    ``model`` itself is not modified."""
    batches = list(iter_batches(inputs, max_batches))  # both variants see the same batches
    dense, pruned = make_variants(model, [(None, None), (keep, scorer)], **tp_kwargs)
    reports = {
        v.label: measure_energy(v.activate(), batches, conventions, T=T, per_sample=per_sample)
        for v in (dense, pruned)
    }
    reports = {"dense": reports[dense.label], "pruned": reports[pruned.label]}
    return compare_reports(reports["dense"], reports["pruned"], names=("dense", "pruned"))
