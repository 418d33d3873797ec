"""Keep-schedule search: per-block keep fractions that do best within a cost budget.

    import tp_spikformer as tp
    model = tp.create_model("sdt_fmnist", pretrained=True)
    result = tp.calibrate(model, tp.load_dataset("fashion_mnist", split="train", data_cfg=model), budget=0.5)
    tp.apply_tp(model, keep=result)              # or keep=result.schedule, or keep="schedule.json"
    result.save("schedule.json")                  # --keep schedule.json works everywhere a keep does

The budget is a fraction of the DENSE model's counted MACs or SOPs per image (``measure``'s operation
counter: what actually ran, so it depends on the kept tokens), or of its measured latency.

Strategy (sensitivity profiling + exact knapsack allocation + joint refinement):

1. **Calibration set.** ``calibration_size`` samples drawn from ``data`` with the seed, batched once and kept
   on the device. The dense model runs once over them; what the objective compares with (dense logits or
   features) is cached. One patched copy of the model serves every candidate (``TPState`` switches).
2. **Cost model.** Each block may take the ``levels`` (default 1.0, 0.9, ..., 0.1; distinct token counts
   only). MACs: in stop mode a block's MACs depend only on its own kept count, so one count per level (on
   one image) gives every block's MACs at every level: the cost model is exact. SOPs depend on the data and
   on the earlier blocks (pruning changes later firing), so each block's SOP saving is counted over all
   calibration images while profiling (step 3); the additive model is then checked by counting. Latency:
   MACs as the proxy, mapped to latency through the measured (all-blocks-at-the-smallest-level, dense)
   pair and corrected after measuring.
3. **Profile.** For each block and level, only that block pruned: the objective increase over dense
   (``blocks x levels`` calibration passes; for SOPs the counter runs in the same pass).
4. **Allocate.** The multiple-choice knapsack "minimise the summed increases subject to the cost budget"
   solved exactly by dynamic programming over costs discretised to 1/10,000 of dense, rounded so the
   model cost never exceeds the budget (:mod:`.allocate`).
5. **Verify.** The allocated schedule runs jointly: its objective, and its real counted cost. If the
   real cost is over the budget (SOPs, latency: the additive model is approximate), the allocation is
   repeated, now required to save (in the model) more than the over-budget schedule did plus what it
   overshot, so every correction moves to a cheaper schedule (up to 6 times; then every block at its
   smallest level, which step 0 checked is within the budget). So a returned MAC/SOP schedule's counted
   cost on the calibration images is <= the budget, always.
6. **Refine.** Interactions between blocks are not additive: a few rounds of joint evaluations of
   neighbouring schedules (one block one level up, paid by another block going down; or one up when the
   slack allows), best predicted first, ``refine_width`` per round; the best real improvement is taken.
   Then the slack the coarse levels leave is spent (MACs, SOPs): per block the largest token count
   between levels that still fits, the best predicted ``refine_width`` evaluated jointly, the best taken
   if it is no worse (``refine_rounds`` rounds at most).
7. **Baseline.** The uniform keep fraction of the same budget (the largest that fits, by bisection over
   the fractions that change a count) is evaluated too; the result reports both (``result.uniform``,
   ``result.search_gain``), and if uniform is better on the calibration images it is what is returned.
8. With several ``scorers`` steps 3-7 run for each and the best schedule wins.

Cost: at most ``blocks x levels + 2 x refine_rounds x refine_width + ~6`` passes over the calibration images
(SOPs: each pass about twice as long, with the counter). Shipped Fashion-MNIST models, 256 images, one CPU
thread: about a minute; ImageNet-size models: a few hundred images on a GPU make it minutes, and the MAC
cost model needs no extra passes. Everything is deterministic given ``seed`` (the subset, the ``random``
scorer, ties in the allocation go to the level that keeps more tokens). Latency is wall-clock time:
repeat-to-repeat noise of several percent, so a latency budget is met as measured, not guaranteed.

Counted costs are per image on the calibration images at their size; SOPs on other images differ a little
(firing rates are data-dependent), MACs do not.

``tp_spikformer.calibrate`` is this package and is callable: ``tp.calibrate(model, data, budget=0.5)`` is
``tp_spikformer.calibrate.calibrate(...)`` (the package and the function share the name).
"""

import sys
import types

from ..pruning.schedule_file import load_schedule, read_schedule_file, save_schedule
from .allocate import allocate, neighbours
from .objectives import (
    OBJECTIVES,
    AccuracyObjective,
    FeatureObjective,
    LogitsKLObjective,
    Objective,
    get_objective,
)
from .result import CalibrationResult
from .samples import CalibrationSet, calibration_set
from .search import DEFAULT_LEVELS, calibrate

__all__ = [
    "DEFAULT_LEVELS",
    "OBJECTIVES",
    "AccuracyObjective",
    "CalibrationResult",
    "CalibrationSet",
    "FeatureObjective",
    "LogitsKLObjective",
    "Objective",
    "allocate",
    "calibrate",
    "calibration_set",
    "get_objective",
    "load_schedule",
    "neighbours",
    "read_schedule_file",
    "save_schedule",
]


class _CallablePackage(types.ModuleType):
    """Lets ``tp_spikformer.calibrate(...)`` call :func:`calibrate` while staying the package."""

    def __call__(self, *args, **kwargs) -> CalibrationResult:
        return calibrate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
