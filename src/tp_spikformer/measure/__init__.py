"""Measurement: operation counts, SOPs and energy, the FLOP-counter cross-check, and the benchmark.

* :func:`measure_energy` / :func:`compare_dense_pruned`: per-layer and per-block MACs, SOPs and energy
  (conventions: :class:`EnergyConventions`, with the papers' 45 nm defaults E_MAC 4.6 pJ, E_AC 0.9 pJ).
* :class:`OpCounter` / :func:`count_ops`: the forward hooks behind them (raw counts, re-chargeable).
* :func:`cross_check_flops`: our MACs vs ``torch.utils.flop_counter.FlopCounterMode``.
* :func:`benchmark`: latency / throughput / peak memory of variants (dense, pruned) interleaved in one run.

``measure`` imports ``models`` and ``pruning``; neither imports ``measure``.
"""

from .benchmark import BenchmarkResult, benchmark, peak_memory
from .conventions import ENERGY_PRESETS, EnergyConventions, energy_preset
from .energy import compare_dense_pruned, measure_energy, measure_many
from .flops import cross_check_flops
from .ops import ModelInputs, count_ops
from .report import EnergyReport, ReportComparison, compare_reports
from .variants import Variant, make_variants, variant_label

# what users call; the internals (OpCounter, report rows, CPU-load meter, test helpers such as
# variants.make_neurons_fire) stay importable from their modules
__all__ = [
    "ENERGY_PRESETS",
    "BenchmarkResult",
    "EnergyConventions",
    "EnergyReport",
    "ModelInputs",
    "ReportComparison",
    "Variant",
    "benchmark",
    "compare_dense_pruned",
    "compare_reports",
    "count_ops",
    "cross_check_flops",
    "energy_preset",
    "make_variants",
    "measure_energy",
    "measure_many",
    "peak_memory",
    "variant_label",
]
