"""TP engine properties on the tiny configuration of every family in the registry."""

import copy

import pytest
import torch
from conftest import per_sample

from tp_spikformer.measure.variants import make_neurons_fire
from tp_spikformer.models import create_model, get_model_config, list_models, token_blocks
from tp_spikformer.models.protocol import BlockPart
from tp_spikformer.pruning import (
    KeepSchedule,
    apply_tp,
    count,
    fraction,
    get_tp_state,
    prune_ratio,
    remove_tp,
    side,
    side_ratio,
)

TINY = [n for n in list_models("*_tiny") if get_model_config(n).task == "classification"]
SCORERS = ["official", "paper", "spatial", "official_spatial", "random", "firing_rate"]


@pytest.mark.parametrize("name", TINY)
def test_keep_all_equals_dense_bit_for_bit(name, tiny, inputs):
    model = tiny(name)
    x = inputs(model)
    with torch.no_grad():
        dense = model(x)
        apply_tp(model, keep=1.0, scorer="official")
        pruned = model(x)
    assert torch.equal(dense, pruned)


@pytest.mark.parametrize("name", TINY)
def test_patch_unpatch_round_trip(name, tiny, inputs):
    model = tiny(name)
    x = inputs(model)
    keys_before = {k: v.clone() for k, v in model.state_dict().items()}
    classes = [type(m) for m in model.modules()]
    with torch.no_grad():
        dense = model(x)
        state = apply_tp(model, keep=0.5, scorer="official")
        pruned = model(x)
        assert state.block_names == [n for n, _ in token_blocks(model)]
        assert not torch.equal(dense, pruned), "pruning half the tokens should change the logits"
        assert remove_tp(model) == state.block_names
        restored = model(x)
    assert torch.equal(dense, restored)
    assert [type(m) for m in model.modules()] == classes
    assert all(torch.equal(keys_before[k], v) for k, v in model.state_dict().items())
    assert remove_tp(model) == []


@pytest.mark.parametrize("name", TINY)
def test_apply_is_idempotent_and_reconfigurable(name, tiny, inputs):
    model = tiny(name)
    x = inputs(model)
    s1 = apply_tp(model, keep=0.5, scorer="official")
    with torch.no_grad():
        a = model(x)
    s2 = apply_tp(model, keep=0.5, scorer="official")
    assert s1 is s2
    assert all(
        type(type(b)).__name__ == "type" and type(b).__name__.count("TP") == 1 for _, b in token_blocks(model)
    )
    with torch.no_grad():
        b = model(x)
        kept_half = [r.kept for r in s2.records]
        s2.keep = 0.25
        c = model(x)
        kept_quarter = [r.kept for r in s2.records]
    assert torch.equal(a, b)  # re-applying the same configuration changes nothing
    assert all(q < h for q, h in zip(kept_quarter, kept_half)), "the new keep schedule was not used"
    assert not torch.equal(a, c)
    s2.scorer = "paper"
    with torch.no_grad():
        d = model(x)
    assert s2.scorer_name == "paper" and not torch.equal(c, d), "the new scorer was not used"


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("scorer", SCORERS)
def test_batch_composition_independence(name, scorer, tiny, inputs):
    if scorer == "random":
        pytest.skip("random scores depend on the batch by construction")
    model = per_sample(tiny(name))
    x = inputs(model, batch=4)
    apply_tp(model, keep=0.5, scorer=scorer)
    with torch.no_grad():
        together = model(x)
        alone = torch.cat([model(x[i : i + 1]) for i in range(4)])
        reordered = model(x.flip(0)).flip(0)
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-5)
    torch.testing.assert_close(together, reordered, rtol=0, atol=1e-5)


def _recording(fn, seen, i):
    def wrapped(*carry):
        seen.append((i, carry[0].shape[-1]))
        return fn(*carry)

    return wrapped


def _constant(parts):
    return lambda: parts


@pytest.mark.parametrize("name", TINY)
def test_real_compute_skip(name, tiny, inputs):
    """Blocks' token-wise parts see only the kept tokens: the tensors entering them are compact."""
    model = tiny(name)
    x = inputs(model)
    seen = []
    state = apply_tp(model, keep=0.5, scorer="official")
    for i, (_, b) in enumerate(token_blocks(model)):  # record what every token part of block i receives
        parts = tuple(
            BlockPart("token", _recording(p.fn, seen, i)) if p.kind == "token" else p for p in b.block_parts()
        )
        b.block_parts = _constant(parts)
    with torch.no_grad():
        model(x)
    assert {i for i, _ in seen} == set(range(len(state.records)))
    assert all(n == state.records[i].kept for i, n in seen)
    assert all(r.kept < r.grid[0] * r.grid[1] for r in state.records)


@pytest.mark.parametrize("name", TINY)
def test_stopped_tokens_pass_through_unchanged(name, tiny, inputs):
    model = tiny(name)
    x = inputs(model)
    blocks = token_blocks(model)
    ins, outs = {}, {}

    def keep_io(module, args, output):
        ins[module], outs[module] = args[0], output

    for _, b in blocks:
        b.register_forward_hook(keep_io)
    state = apply_tp(model, keep=0.5, scorer="official")
    with torch.no_grad():
        model(x)
        for (_, b), rec in zip(blocks, state.records):
            check_stopped_tokens(b, rec, ins[b], outs[b])


def check_stopped_tokens(b, rec, block_in, block_out):
    """Stopped tokens of the output equal the block input after its dense part (identity but for SDT-V3)."""
    xin = b.dense_forward(block_in)
    stopped = ~rec.kept_mask()  # [B, H, W]
    if b.has_time_axis:
        stopped = stopped[None, :, None].expand_as(block_out)
    else:
        stopped = stopped[:, None].expand_as(block_out)
    assert stopped.any()
    assert torch.equal(block_out[stopped], xin[stopped])


@pytest.mark.parametrize("name", TINY)
def test_time_steps_one(name, tiny, inputs):
    model = tiny(name)
    if model.T is None:
        pytest.skip("no time axis")
    model = create_model(name, T=1).eval()
    make_neurons_fire(model, seed=1)
    x = inputs(model)
    for scorer in ("official", "paper", "temporal", "official_temporal"):
        apply_tp(model, keep=0.5, scorer=scorer)
        with torch.no_grad():
            out = model(x)
        assert torch.isfinite(out).all(), scorer


@pytest.mark.parametrize("name", TINY)
def test_cumulative_stopping_never_revives(name, tiny, inputs):
    model = tiny(name)
    x = inputs(model)
    n = len(token_blocks(model))
    state = apply_tp(
        model, keep=[0.8 - 0.5 * i / max(1, n - 1) for i in range(n)], scorer="official", cumulative=True
    )
    with torch.no_grad():
        model(x)
    recs = state.records
    for a, b in zip(recs, recs[1:]):
        if a.grid == b.grid:
            assert bool((b.kept_mask() <= a.kept_mask()).all()), "a stopped token came back"


def test_keep_rules():
    assert side(12).count(0, 14, 14) == 144
    assert side_ratio(0.9).count(0, 56, 56) == 50 * 50  # int(56 * 0.9) = 50, as officially
    assert side_ratio(0.75).count(0, 14, 14) == 100
    assert prune_ratio(0.3).count(0, 10, 10) == 70  # ceil((1 - 0.3) * 100) without float noise
    assert fraction(0.5).count(0, 14, 14) == 98
    assert count(7).count(0, 4, 4) == 7
    assert KeepSchedule("fraction", (1.0, 0.5)).count(1, 4, 4) == 8


@pytest.mark.parametrize(
    "spec, error",
    [
        (0.0, ValueError),
        (1.5, ValueError),
        (-0.2, ValueError),
        ("side:0", ValueError),
        ("prune_ratio:1.0", ValueError),
        ("bogus:1", ValueError),
        ([], ValueError),
        (True, TypeError),
        ("count:2.5", ValueError),
        (object(), TypeError),
    ],
)
def test_invalid_keep_values_raise(spec, error, tiny):
    model = tiny("sdt_tiny")
    with pytest.raises(error):
        apply_tp(model, keep=spec)


def test_keep_errors_are_clear(tiny, inputs):
    model = tiny("sdt_tiny")  # 2 blocks on an 8x8 grid
    with pytest.raises(ValueError, match="2 patched blocks"):
        apply_tp(model, keep=[0.5, 0.5, 0.5])
    state = apply_tp(model, keep="official")  # no official 2-block schedule: the documented fraction
    assert str(state.keep) == "fraction:0.52"
    apply_tp(model, keep=side(9))
    with pytest.raises(ValueError, match="81 tokens but the block has a 8x8 grid"):
        model(inputs(model))
    with pytest.raises(ValueError, match="unknown scorer"):
        apply_tp(model, keep=0.5, scorer="nope")


def test_nothing_to_patch_raises():
    with pytest.raises(ValueError, match="no transformer block"):
        apply_tp(torch.nn.Sequential(torch.nn.Linear(2, 2)), keep=0.5)


def test_unsupported_block_is_refused():
    model = create_model("sdt_2_256_cifar10dvs")  # DVS mode: Erode pooling needs the full grid
    with pytest.raises(ValueError, match="Erode"):
        apply_tp(model, keep=0.5)


def test_official_schedule_on_full_configs():
    for name, kept in [
        ("sdt_8_768_imagenet", [144, 144, 100, 100, 100, 100, 64, 64]),
        ("qkformer_10_768_imagenet", [2500, 625, 484, 121, 121, 121, 121, 100, 100, 100]),
        ("sdt_v3_l", [144, 121, 121, 121, 100, 81, 81, 81]),
    ]:
        with torch.device("meta"):
            model = create_model(name)
        state = apply_tp(model, keep="official")
        grids = {"sdt": [(14, 14)] * 8, "qkf": [(56, 56)] + [(28, 28)] * 2 + [(14, 14)] * 7}.get(
            name[:3], [(14, 14)] * 8
        )
        assert [state.keep.count(i, *g) for i, g in enumerate(grids)] == kept


@pytest.mark.parametrize("name", ["sdt_tiny", "spikformer_tiny", "spikingformer_tiny"])
def test_drop_mode_removes_tokens(name, tiny, inputs):
    if name not in TINY:
        pytest.skip(f"{name} not registered")
    model = tiny(name)
    x = inputs(model)
    state = apply_tp(model, keep=[0.75, 0.5], scorer="random", mode="drop")
    with torch.no_grad():
        feats = model.forward_features(x)
        out = model(x)
    assert feats.shape[-2:] == (state.records[-1].kept, 1)
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match="must not grow"):
        state.keep = [0.5, 0.75]
        model(x)


@pytest.mark.parametrize("name", [n for n in TINY if not get_model_config(n).builder.supports_token_drop])
def test_drop_mode_refused_for_hierarchical_models(name, tiny):
    with pytest.raises(ValueError, match="mode='stop'"):
        apply_tp(tiny(name), keep=0.5, mode="drop")


@pytest.mark.slow
def test_forward_features_keeps_layout_when_pruned(tiny, inputs):
    for name in TINY:
        model = tiny(name)
        x = inputs(model)
        with torch.no_grad():
            dense = model.forward_features(x)
            apply_tp(model, keep=0.5)
            pruned = model.forward_features(x)
        assert dense.shape == pruned.shape


def test_deepcopy_of_patched_model(tiny, inputs):
    model = tiny("sdt_tiny")
    apply_tp(model, keep=0.5)
    clone = copy.deepcopy(model)
    x = inputs(model)
    with torch.no_grad():
        assert torch.equal(model(x), clone(x))
    assert get_tp_state(clone) is not get_tp_state(model)


@pytest.mark.parametrize("name", ["sdt_tiny", "spikformer_tiny", "qkformer_tiny", "sdt_v3_tiny"])
def test_gradients_flow_through_every_pruned_block(name, tiny, inputs):
    """Each pruned block's own parameters get a gradient (a detached block would leave them without), and
    the stem before the blocks too (the scatter keeps the path from the output to the block inputs)."""
    model = tiny(name).train()
    state = apply_tp(model, keep=0.5)
    out = model(inputs(model))
    out.float().sum().backward()
    assert all(r.kept < r.grid[0] * r.grid[1] for r in state.records)
    for block_name, block in token_blocks(model):
        grads = [p.grad for p in block.parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), f"{block_name} got no gradient"
    first = next(p for n, p in model.named_parameters() if not n.startswith(("block", "stage", "head")))
    assert first.grad is not None and first.grad.abs().sum() > 0, "no gradient reached the stem"
