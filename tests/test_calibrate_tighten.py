"""The search's correction of its additive cost model (``_Search._allocate_verified``): when the allocated
schedule's real cost is over the budget, the next allocation must be a cheaper schedule, not the same one."""

from __future__ import annotations

from tp_spikformer.calibrate.evaluator import Evaluation
from tp_spikformer.calibrate.search import _Search


class _FakeEvaluator:
    """Real cost = the additive model's cost + a fixed interaction penalty (as SOPs can be: pruning one
    block changes how much a later block fires)."""

    metric = "sops"
    dense_cost_absolute = 100.0

    def __init__(self, options, saving, penalty):
        self.options, self.saving, self.penalty = options, saving, penalty
        self.evaluated = []

    def evaluate(self, values, with_cost=True):
        choice = tuple(
            next(j for j, o in enumerate(opts) if o[0] == v) for opts, v in zip(self.options, values)
        )
        self.evaluated.append(choice)
        modelled = sum(self.saving[b][j] for b, j in enumerate(choice))
        pruned = any(choice)
        absolute = self.dense_cost_absolute - modelled + (self.penalty if pruned else 0.0)
        return Evaluation(
            values, value=float(sum(choice)), report={}, cost=absolute / 100.0, cost_absolute=absolute
        )


def _search(budget, penalty):
    s = object.__new__(_Search)
    # two blocks, levels keep 1.0 / 0.5 / 0.1 (options: (fraction, kept count))
    s.options = [[(1.0, 10), (0.5, 5), (0.1, 1)], [(1.0, 10), (0.5, 5), (0.1, 1)]]
    saving = [[0.0, 20.0, 36.0], [0.0, 10.0, 18.0]]  # modelled SOP savings (of 100)
    s.ev = _FakeEvaluator(s.options, saving, penalty)
    s.budget, s.notes, s.history = budget, [], []
    s._record = lambda *a, **k: None
    return s, saving


def test_an_over_budget_allocation_is_followed_by_a_cheaper_one():
    """Budget 0.75 (need 25): the model allocates (0.1, 1.0) saving 36, but the real cost is 0.64 + 0.12 =
    0.76, over. Adding the overshoot (1 + unit) to the need (-> ~26) leaves that schedule feasible; the
    correction must ask for more than its modelled saving instead, so the next one is (0.1, 0.5)."""
    s, saving = _search(0.75, penalty=12.0)
    loss = [[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]]
    choice, e = s._allocate_verified("official", loss, saving, 25.0, 0.01, [2, 2])
    assert s.ev.evaluated[0] == (2, 0)
    assert s.ev.evaluated[1] != s.ev.evaluated[0]
    assert e.cost <= 0.75 and tuple(choice) == (2, 1)
    assert not s.notes  # no fall-back to the smallest levels
