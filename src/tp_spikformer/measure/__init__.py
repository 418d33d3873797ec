"""Measurement: operation counts, SOPs and energy, the FLOP-counter cross-check, and the benchmark.

* :func:`measure_energy` / :func:`compare_dense_pruned`: per-layer and per-block MACs, SOPs and energy
  (conventions: :class:`EnergyConventions`, with the papers' 45 nm defaults E_MAC 4.6 pJ, E_AC 0.9 pJ).
* :class:`OpCounter` / :func:`count_ops`: the forward hooks behind them (raw counts, re-chargeable).
* :func:`cross_check_flops`: our MACs vs ``torch.utils.flop_counter.FlopCounterMode``.
* :func:`benchmark`: latency / throughput / peak memory of variants (dense, pruned) interleaved in one run.

``measure`` imports ``models`` and ``pruning``; neither imports ``measure``.
"""

from .benchmark import BenchmarkResult, CpuLoadMeter, benchmark, default_input, environment, peak_memory
from .conventions import ENERGY_PRESETS, EnergyConventions, energy_preset
from .energy import compare_dense_pruned, measure_energy, measure_many
from .flops import cross_check_flops, flop_counter_flops
from .ops import OpCounter, OpCounts, count_ops, iter_batches
from .report import EnergyReport, GroupRow, LayerRow, ReportComparison, build_report, compare_reports
from .variants import dense_variant, make_neurons_fire, make_variants, pruned_variant

__all__ = [
    "ENERGY_PRESETS",
    "BenchmarkResult",
    "CpuLoadMeter",
    "EnergyConventions",
    "EnergyReport",
    "GroupRow",
    "LayerRow",
    "OpCounter",
    "OpCounts",
    "ReportComparison",
    "benchmark",
    "build_report",
    "compare_dense_pruned",
    "compare_reports",
    "count_ops",
    "cross_check_flops",
    "default_input",
    "dense_variant",
    "energy_preset",
    "environment",
    "flop_counter_flops",
    "iter_batches",
    "make_neurons_fire",
    "make_variants",
    "measure_energy",
    "measure_many",
    "peak_memory",
    "pruned_variant",
]
