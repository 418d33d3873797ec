"""Scorer invariants (property-based) and the official closed form vs the literal official convolution."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tp_spikformer.pruning import ScoreContext, get_scorer, scorer_names

DETERMINISTIC = [s for s in scorer_names() if s != "random"]
TIME_FREE = ["official", "official_spatial", "official_literal", "paper", "spatial", "firing_rate", "random"]


@st.composite
def block_inputs(draw, max_t=4, max_c=12, max_side=7):
    t = draw(st.integers(1, max_t))
    b = draw(st.integers(1, 3))
    c = draw(st.integers(1, max_c))
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    kind = draw(st.sampled_from(["spikes", "counts", "real", "zeros"]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    shape = (t, b, c, h, w)
    if kind == "spikes":
        x = (torch.rand(shape, generator=g) < draw(st.floats(0.0, 1.0))).double()
    elif kind == "counts":
        x = torch.randint(0, 4, shape, generator=g).double()
    elif kind == "real":
        x = torch.randn(shape, generator=g, dtype=torch.float64)
    else:
        x = torch.zeros(shape, dtype=torch.float64)
    return x, draw(st.sampled_from([1, 3, 5, 7]))


def run(name, x, window, has_time=True):
    ctx = ScoreContext(window=window, has_time=has_time, generator=torch.Generator().manual_seed(0))
    return get_scorer(name)(x, ctx)


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(block_inputs(), st.sampled_from(scorer_names()))
def test_shape_and_finite(inp, name):
    x, window = inp
    s = run(name, x, window)
    assert s.shape == (x.shape[1], x.shape[3] * x.shape[4])
    assert torch.isfinite(s).all()


@settings(max_examples=40, deadline=None)
@given(block_inputs(), st.sampled_from(DETERMINISTIC))
def test_batch_permutation_equivariance(inp, name):
    x, window = inp
    perm = torch.randperm(x.shape[1], generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(run(name, x[:, perm], window), run(name, x, window)[perm], rtol=0, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(block_inputs(), st.sampled_from(DETERMINISTIC))
def test_channel_permutation_invariance(inp, name):
    x, window = inp
    perm = torch.randperm(x.shape[2], generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(run(name, x[:, :, perm], window), run(name, x, window), rtol=1e-9, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(block_inputs(), st.sampled_from(DETERMINISTIC))
def test_spatial_flip_equivariance(inp, name):
    """Symmetric windows: mirroring the grid mirrors the scores."""
    x, window = inp
    h, w = x.shape[-2:]
    flipped = run(name, x.flip(-1), window).view(-1, h, w).flip(-1).flatten(1)
    torch.testing.assert_close(flipped, run(name, x, window), rtol=1e-9, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(block_inputs(), st.sampled_from(["official_temporal", "temporal", "firing_rate"]))
def test_token_wise_scorers_are_permutation_equivariant(inp, name):
    """Scorers without a neighbourhood: any permutation of the tokens permutes the scores."""
    x, window = inp
    t, b, c, h, w = x.shape
    perm = torch.randperm(h * w, generator=torch.Generator().manual_seed(3))
    xp = x.flatten(3)[..., perm].unflatten(3, (h, w))
    torch.testing.assert_close(run(name, xp, window), run(name, x, window)[:, perm], rtol=1e-9, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(block_inputs(max_c=16))
def test_official_closed_form_equals_literal_convolution(inp):
    x, window = inp
    torch.testing.assert_close(
        run("official", x, window), run("official_literal", x, window), rtol=1e-10, atol=1e-14
    )
    torch.testing.assert_close(
        run("official", x, window, has_time=False),
        run("official_literal", x, window, has_time=False),
        rtol=1e-10,
        atol=1e-14,
    )


@settings(max_examples=30, deadline=None)
@given(block_inputs())
def test_paper_scores_are_distributions(inp):
    x, window = inp
    for name in ("spatial", "temporal"):
        s = run(name, x, window)
        assert (s >= 0).all()
        torch.testing.assert_close(s.sum(1), torch.ones(s.shape[0], dtype=s.dtype))
    torch.testing.assert_close(run("paper", x, window).sum(1), torch.full((x.shape[1],), 2.0, dtype=x.dtype))


def test_official_temporal_is_guarded_at_one_step():
    x = torch.rand(1, 2, 4, 3, 3)
    s = run("official_temporal", x, 3)
    torch.testing.assert_close(s, torch.full_like(s, 1 / 9))


def test_temporal_needs_a_time_axis():
    x = torch.rand(1, 2, 4, 3, 3)
    for name in ("temporal", "official_temporal"):
        with pytest.raises(ValueError, match="time axis"):
            run(name, x, 3, has_time=False)
    # the combined scorers fall back to the spatial part, as the official SDT-V3 code does
    torch.testing.assert_close(run("official", x, 3, has_time=False), run("official_spatial", x, 3))


def test_paper_spatial_prefers_the_odd_token_out():
    x = torch.zeros(1, 1, 4, 5, 5)
    x[..., 0, :, :] = 1.0  # every token fires on channel 0 ...
    x[..., 2, 2] = torch.tensor([0.0, 1.0, 0.0, 0.0])  # ... but the centre fires on channel 1
    s = run("spatial", x, 3)
    assert s.argmax().item() == 12


def test_paper_temporal_counts_first_step_and_changes():
    x = torch.zeros(3, 1, 2, 1, 3)
    x[0, 0, :, 0, 0] = 1.0  # token 0 active at t=1 only: |X_1| then one flip
    x[:, 0, 0, 0, 1] = 1.0  # token 1 constantly active: only |X_1|
    s = run("temporal", x, 1)
    assert s[0, 0] > s[0, 1] > s[0, 2]  # a step without any change counts every token equally


def test_official_spatial_depends_on_neighbourhood_only_through_sign():
    """paper.md §1.2: with the dense all-ones kernel, the local mean enters only through its sign."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 6, 4, 4, generator=g, dtype=torch.float64)  # non-negative: box mean > 0 everywhere
    base = run("official_spatial", x, 3)
    y = x.clone()
    y[..., 0, 0] *= 5  # changes neighbours' box means but not their signs
    changed = run("official_spatial", y, 3).view(4, 4)
    mask = torch.ones(4, 4, dtype=torch.bool)
    mask[0, 0] = False
    # the softmax normaliser changes with token 0's score; compare the raw ordering of the others
    assert torch.equal(changed[mask].argsort(), base.view(4, 4)[mask].argsort())
    assert math.isclose(float(base.sum()), 1.0, rel_tol=1e-12)


@settings(max_examples=40, deadline=None)
@given(block_inputs())
def test_paper_spatial_equals_its_definition(case):
    """The fast paper spatial score (separable box sums, written-out cosine) equals the definition
    computed with avg_pool2d(count_include_pad=False) and F.cosine_similarity."""
    import torch.nn.functional as F

    x, window = case
    t, b, c, h, w = x.shape
    flat = x.flatten(0, 1)
    local = F.avg_pool2d(flat, window, stride=1, padding=window // 2, count_include_pad=False)
    dissim = 1.0 - F.cosine_similarity(flat, local, dim=1, eps=1e-6)
    dissim = dissim.masked_fill(dissim < 16 * torch.finfo(dissim.dtype).eps, 0.0).reshape(t, b, h * w)
    total = dissim.sum(-1, keepdim=True)
    expected = torch.where(total > 0, dissim / total.clamp_min(1e-300), torch.full_like(dissim, 1 / (h * w)))
    assert torch.allclose(run("spatial", x, window), expected.mean(0), rtol=0, atol=1e-12)
