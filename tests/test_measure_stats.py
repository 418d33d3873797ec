"""The per-operand statistics of the op counter (``measure.ops._stats_tensor``), computed in few passes,
against their plain definitions; the exact float32 block sums of tracked multi-level spikes."""

from __future__ import annotations

import pytest
import torch

from tp_spikformer.measure.ops import _level_sum, _stats_tensor, _stats_width, _unpack

NORMS = ((4.0, 4.0), (2.0, 8.0))  # (norm, max levels) of the model's MultiSpike modules


def _definition(x: torch.Tensor, T: int, check_repeat: bool) -> list[float]:
    """The statistics as defined, one obvious expression each, all in float64."""
    x = x.detach().double()
    nz = x != 0
    out = [
        float(x.numel()),
        float(nz.sum()),
        float(x.sum()),
        float((~nz | (x == 1)).all()),
        float(((x >= 0) & (x == torch.round(x))).all()),
    ]
    splittable = T > 1 and x.dim() > 0 and x.numel() > 0 and x.shape[0] % T == 0
    out.append(
        float((x.reshape(T, -1) == x.reshape(T, -1)[:1]).all()) if check_repeat and splittable else 0.0
    )
    for norm, top in NORMS:
        y = x * norm
        out.append(float(((y >= 0) & (y <= top) & (y == torch.round(y))).all()))
    if splittable:
        xs = x.reshape(T, -1)
        out += [float(v) for v in (xs != 0).sum(dim=1)] + [float(v) for v in xs.sum(dim=1)]
    return out


def _cases():
    g = torch.Generator().manual_seed(0)
    binary = (torch.rand(4, 3, 5, 5, generator=g) < 0.3).float()
    levels = torch.randint(0, 5, (4, 3, 5, 5), generator=g).float() / 4
    counts = torch.poisson(torch.rand(2, 2, 6, 6, generator=g) * 3, generator=g)
    real = torch.randn(4, 3, 5, 5, generator=g)
    return {
        "binary": binary,
        "multi-level": levels,
        "above the grid": levels * 3,
        "event counts": counts,
        "real": real,
        "negative integers": -counts,
        "with nan": torch.where(binary > 0, torch.tensor(float("nan")), binary),
        "with inf": torch.where(binary > 0, torch.tensor(float("inf")), binary),
        "negative zero": -torch.zeros(2, 3),
        "channels-last": levels.contiguous(memory_format=torch.channels_last),
        "repeated steps": binary[:1].expand(4, 3, 5, 5).contiguous(),
        "empty": torch.zeros(0, 3),
        "scalar": torch.tensor(1.0),
    }


@pytest.mark.parametrize("case", list(_cases()))
@pytest.mark.parametrize("T", [1, 2, 4])
def test_stats_equal_their_definition(case, T):
    x = _cases()[case]
    got = _stats_tensor(x, T, True, NORMS).tolist()
    expected = _definition(x, T, True)
    assert len(got) == _stats_width(x, T, NORMS) == len(expected)
    assert got == pytest.approx(expected, rel=1e-12, nan_ok=True)


@pytest.mark.parametrize("T", [1, 4])
def test_known_kind_skips_the_value_checks_but_keeps_the_counts(T):
    x = torch.randint(0, 5, (8, 16, 9, 9), generator=torch.Generator().manual_seed(1)).float() / 4
    full = _unpack(_stats_tensor(x, T, True, NORMS).tolist(), T, NORMS)
    fast = _unpack(_stats_tensor(x, T, True, NORMS, check_values=False, max_levels=4).tolist(), T, NORMS)
    for key in ("n", "nnz", "sum", "repeated", "steps"):
        assert fast[key] == full[key]
    assert not fast["binary"] and not fast["integer"] and fast["level_grid"] is None  # not checked


def test_level_sums_are_exact_in_float32_blocks():
    """Sums over millions of quarter levels: the blocked float32 sum equals the float64 sum exactly, per
    step and in total."""
    g = torch.Generator().manual_seed(2)
    x = torch.randint(0, 5, (4, 64, 128, 128), generator=g).float() / 4  # 4.2 M values, sum ~ 2.1 M
    exact = x.double().sum(dim=(1, 2, 3))
    assert torch.equal(_level_sum(x, 1, 4), exact)
    assert torch.equal(_level_sum(x, 0, 4), exact.sum())
    big = torch.full((8, 1 << 22), 0.75)  # 33.5 M values in blocks of 4.2 M: each block sum exact
    assert _level_sum(big, 0, 3).item() == 0.75 * (1 << 25)
    long_row = torch.ones(1, 40)  # no trailing block short enough: falls back to the float64 reduction
    assert _level_sum(long_row, 0, 2**24).item() == 40.0
