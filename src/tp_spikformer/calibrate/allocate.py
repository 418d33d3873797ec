"""Allocation: per-block keep levels that minimise the summed sensitivity under a cost budget.

The model (from per-block profiling): choosing option ``j`` for block ``b`` costs ``loss[b][j]`` (objective
increase over dense when only that block is pruned) and saves ``saving[b][j]`` (cost units: MACs, SOPs).
:func:`allocate` solves the multiple-choice knapsack

    minimise sum_b loss[b][j_b]   subject to   sum_b saving[b][j_b] >= need

exactly by dynamic programming over savings discretised to ``resolution`` steps of ``unit``. Savings are
rounded DOWN (and ``need`` up), so a returned choice saves at least ``need`` in the undiscretised model too.
Negative savings (a pruned block that makes later layers fire more) are allowed. Ties go to the option
listed first (the one that keeps more tokens). :func:`neighbours` proposes the moves of the refinement.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def allocate(
    loss: Sequence[Sequence[float]], saving: Sequence[Sequence[float]], need: float, unit: float
) -> list[int] | None:
    """One option index per block (module docstring), or None when no choice saves ``need``."""
    if unit <= 0:
        raise ValueError(f"unit must be > 0, got {unit}")
    q = [[math.floor(s / unit + 1e-9) for s in row] for row in saving]  # savings in units, rounded down
    need_u = max(0, math.ceil(need / unit - 1e-9))
    drops = [-min(0, min(row)) for row in q]  # the most each block can lower the saving (negative savings)
    lo = -sum(drops)  # lowest reachable state
    # states above ``cap`` are merged into it: whatever the later blocks lower, cap - their drops >= need_u,
    # so a merged state stays feasible (the state is a lower bound of the true saving once merged)
    cap = need_u + sum(drops)
    size = cap - lo + 1
    f = np.full(size, np.inf)
    f[-lo] = 0.0  # index = state - lo
    states = np.arange(lo, cap + 1)
    choice, source = [], []
    for b in range(len(loss)):
        new = np.full(size, np.inf)
        pick = np.full(size, -1, dtype=np.int64)
        src = np.full(size, -1, dtype=np.int64)
        finite = np.isfinite(f)
        for j, (d, s) in enumerate(zip(loss[b], q[b])):
            cand = np.full(size, np.inf)
            cand_src = np.full(size, -1, dtype=np.int64)
            t = states + s
            ok = finite & (t < cap) & (t >= lo)
            cand[t[ok] - lo] = f[ok] + d
            cand_src[t[ok] - lo] = states[ok]
            capped = finite & (t >= cap)
            if capped.any():
                best = int(np.argmin(np.where(capped, f, np.inf)))
                cand[cap - lo] = f[best] + d
                cand_src[cap - lo] = states[best]
            better = cand < new
            new[better], pick[better], src[better] = cand[better], j, cand_src[better]
        f = new
        choice.append(pick)
        source.append(src)
    feasible = f[need_u - lo :]
    if not np.isfinite(feasible).any():
        return None
    out, state = [], need_u + int(np.argmin(feasible))
    for b in range(len(loss) - 1, -1, -1):
        out.append(int(choice[b][state - lo]))
        state = int(source[b][state - lo])
    return out[::-1]


def neighbours(
    current: Sequence[int],
    n_options: Sequence[int],
    loss: Sequence[Sequence[float]],
    saving: Sequence[Sequence[float]],
    need: float,
) -> list[tuple[float, tuple[int, ...]]]:
    """Moves around ``current`` that stay within the model budget, best predicted first.

    A move raises one block by one option (keeps more) and, if needed, lowers another block by as few
    options as pay for it; or raises one block alone when the slack allows. Returned as
    ``(predicted loss change, new choice)``, sorted by predicted change, then by the choice (deterministic).
    """
    cur = list(current)
    total = sum(saving[b][j] for b, j in enumerate(cur))
    out: dict[tuple[int, ...], float] = {}
    for a in range(len(cur)):
        if cur[a] == 0:
            continue
        up = cur[a] - 1
        gain = loss[a][up] - loss[a][cur[a]]
        after = total - saving[a][cur[a]] + saving[a][up]
        if after >= need - 1e-9:
            nxt = cur.copy()
            nxt[a] = up
            out[tuple(nxt)] = gain
        for c in range(len(cur)):
            if c == a:
                continue
            for down in range(cur[c] + 1, n_options[c]):
                if after - saving[c][cur[c]] + saving[c][down] >= need - 1e-9:
                    nxt = cur.copy()
                    nxt[a], nxt[c] = up, down
                    key = tuple(nxt)
                    out[key] = min(out.get(key, math.inf), gain + loss[c][down] - loss[c][cur[c]])
                    break
    return sorted(((d, k) for k, d in out.items()), key=lambda item: (item[0], item[1]))
