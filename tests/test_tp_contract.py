"""The pruning patch on any grid, any call pattern, any family: protected tokens, call scopes, ordered block
parts, models' own defaults, atomic reconfiguration and no host-device sync on the hot path."""

import logging

import pytest
import torch
from conftest import build_tiny
from torch import nn

from tp_spikformer.models import (
    BlockPart,
    TokenBlock,
    create_model,
    get_model_config,
    list_models,
    token_blocks,
)
from tp_spikformer.pruning import (
    apply_tp,
    get_tp_state,
    register_scorer,
    remove_tp,
    side,
    side_ratio,
)

TINY = [n for n in list_models("*_tiny") if get_model_config(n).task == "classification"]


def non_square(model):
    c, h, w = model.config.data.input_size
    return h, w + model.input_multiple * 2  # two more token columns in the first grid


# -- any grid -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in TINY if create_model(n).fixed_input_size is None])
def test_non_square_grids_and_grids_that_change_between_calls(name, tiny, inputs):
    model = tiny(name)
    square, wide = inputs(model), inputs(model, size=non_square(model))
    with torch.no_grad():
        dense_wide = model.forward_features(wide)
        state = apply_tp(model, keep=0.5, scorer="official")
        for x in (square, wide, square):
            feats = model.forward_features(x)
            for rec in state.records:
                n = rec.grid[0] * rec.grid[1]
                assert rec.kept == -(-n // 2) and rec.indices.shape == (x.shape[0], rec.kept)
        pruned_wide = model.forward_features(wide)
    assert pruned_wide.shape == dense_wide.shape  # the layout is kept on the non-square grid
    assert any(r.grid[0] != r.grid[1] for r in state.records)
    assert feats.shape[-2:] != pruned_wide.shape[-2:]  # the grid changed between calls


def test_side_rules_on_non_square_grids():
    assert side_ratio(0.75).count(0, 4, 6) == 3 * 4  # int(4 * 0.75) * int(6 * 0.75)
    assert side_ratio(0.9).count(0, 14, 14) == 12 * 12  # the official square rule is unchanged
    assert side(3).count(0, 4, 6) == 9
    with pytest.raises(ValueError, match="0 tokens per side"):
        side_ratio(0.2).count(0, 4, 20)


# -- protected tokens ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sdt_tiny", "sdt_v3_tiny", "qkformer_tiny"])
def test_protected_tokens_are_always_kept_and_count_toward_k(name, tiny, inputs):
    model = tiny(name)
    x = inputs(model, batch=3)
    apply_tp(model, keep=0.5, scorer="official")
    with torch.no_grad():
        model(x)
    first = get_tp_state(model).records[0]
    h, w = first.grid
    # protect the tokens the scorer ranks LAST, so protection really changes the selection
    worst = first.scores.argsort(dim=1)[:, : max(1, first.kept // 2)]  # [B, n]
    mask = torch.zeros(x.shape[0], h * w, dtype=torch.bool).scatter_(1, worst, True)
    state = apply_tp(model, protect=lambda grid: mask if grid == (h, w) else None)
    with torch.no_grad():
        model(x)
    for rec in state.records:
        if rec.grid != (h, w):
            continue
        kept = rec.kept_mask().view(x.shape[0], -1)
        assert bool(kept[mask].all()), "a protected token was stopped"
        assert int(kept.sum(1)[0]) == rec.kept == -(-h * w // 2), "protected tokens must count toward k"


def test_protect_mask_forms_and_errors(tiny, inputs):
    model = tiny("sdt_tiny")  # 8x8 grid
    x = inputs(model)
    one = torch.zeros(64, dtype=torch.bool)
    one[:3] = True
    state = apply_tp(model, keep=0.25, protect=one)
    with torch.no_grad():
        model(x)
    assert all(bool(r.kept_mask()[:, 0, :3].all()) for r in state.records)
    state.protect = one.unsqueeze(0).expand(x.shape[0], 64).clone()  # [B, N]
    with torch.no_grad():
        model(x)
    many = torch.ones(64, dtype=torch.bool)
    state.protect = many
    with pytest.raises(ValueError, match="64 protected tokens but the keep schedule keeps only 16"):
        model(x)
    state.protect = torch.ones(10, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"expected a bool mask \[64\]"):
        model(x)
    with pytest.raises(TypeError, match="bool tensor"):
        state.protect = torch.ones(64)  # float, not bool
    assert state.protect.shape == (10,)  # the refused value left the previous one in place


# -- call patterns -----------------------------------------------------------------------------------


class TwoPasses(nn.Module):
    """A tracker-like module: one backbone, two passes per forward (template, then search)."""

    def __init__(self):
        super().__init__()
        self.net = build_tiny("sdt_tiny")

    def forward(self, a, b):
        return self.net.forward_features(a), self.net.forward_features(b)


def test_a_block_called_twice_in_one_forward_records_both_calls(inputs):
    model = TwoPasses()
    a, b = inputs(model.net, seed=1), inputs(model.net, seed=2)
    state = apply_tp(model, keep=0.5, scorer="paper")
    with torch.no_grad():
        fa, fb = model(a, b)
        assert torch.equal(fa, model.net.forward_features(a))  # same as a pass of its own
    with torch.no_grad():
        model(a, b)
    names = [n for n, _ in token_blocks(model)]
    assert [(r.name, r.call) for r in state.records] == [(n, 0) for n in names] + [(n, 1) for n in names]
    assert state.last_record(names[0]).call == 1


class SecondBlockOnly(nn.Module):
    """Skips block 0: a forward pass must still begin (the old patch began it in block 0)."""

    def __init__(self):
        super().__init__()
        self.net = build_tiny("sdt_tiny")

    def forward(self, x):
        feats = self.net.patch_embed(self.net.prepare_input(x))
        return self.net.block[1](feats)


def test_skipped_blocks_and_cumulative_state_belong_to_one_pass(inputs):
    model = SecondBlockOnly()
    x = inputs(model.net)
    state = apply_tp(model, keep=0.5, cumulative=True)
    with torch.no_grad():
        first = model(x)
        second = model(x)
    assert torch.equal(first, second)
    assert [r.name for r in state.records] == ["net.block.1"]  # one record per pass, not accumulating


def test_two_patched_backbones_inside_one_module(tiny, inputs):
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = build_tiny("sdt_tiny"), build_tiny("sdt_v3_tiny")

        def forward(self, x, y):
            return self.a(x), self.b(y)

    two = Two()
    x, y = inputs(two.a), inputs(two.b)
    sa = apply_tp(two.a, keep=0.25)
    sb = apply_tp(two.b, keep=0.75)
    with torch.no_grad():
        two(x, y)
    assert [r.kept for r in sa.records] == [16, 16] and len(sb.records) == 8
    assert all(r.kept == 12 for r in sb.records)  # ceil(0.75 * 16)
    with pytest.raises(ValueError, match="already patched"):
        apply_tp(two, keep=0.5)
    assert remove_tp(two) == [n for n, _ in token_blocks(two)]


def test_direct_calls_of_forward_features_and_of_a_block_open_their_own_pass(tiny, inputs):
    model = tiny("sdt_tiny")
    x = inputs(model)
    state = apply_tp(model, keep=0.5, cumulative=True)
    with torch.no_grad():
        model.forward_features(x)
        model.forward_features(x)
        assert len(state.records) == 2
        grid = model.patch_embed(model.prepare_input(x))
        model.block[0](grid)
    assert [r.name for r in state.records] == ["block.0"]


# -- ordered block parts ---------------------------------------------------------------------------------


class SpatialBlock(TokenBlock):
    """A block shaped like SDT-V2's: 3x3 projections (dense) around a token-wise attention and MLP."""

    token_layout = "BCHW"

    def __init__(self, c=4):
        super().__init__()
        self.qkv = nn.Conv2d(c, 2 * c, 3, padding=1)
        self.proj = nn.Conv2d(c, c, 3, padding=1)
        self.mlp = nn.Conv1d(c, c, 1)
        self.seen = []

    def block_parts(self):
        return (
            BlockPart("dense", self._project),
            BlockPart("token", self._attend),
            BlockPart("dense", self._out),
            BlockPart("token", self._finish),
        )

    def _project(self, x):
        q, v = self.qkv(x).chunk(2, dim=1)  # [B, C, H, W] each
        return x, q, v

    def _attend(self, x, q, v):
        self.seen.append(x.shape[-1])
        attn = torch.softmax(q.transpose(1, 2) @ q / 2, dim=-1)  # [B, N, N] over the tokens given
        return x, (v @ attn.transpose(1, 2)).relu()  # [B, C, N]

    def _out(self, x, a):
        self.proj_input = a
        return x, self.proj(a)

    def _finish(self, x, p):
        self.seen.append(x.shape[-1])
        x = x + p
        return x + self.mlp(x)


class SpatialNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.ModuleList([SpatialBlock(), SpatialBlock()])

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return x


def test_ordered_parts_gather_before_token_parts_and_scatter_before_dense_parts():
    net = SpatialNet()
    x = torch.randn(2, 4, 5, 6)
    with torch.no_grad():
        dense = net(x)
        state = apply_tp(net, keep=1.0, scorer="firing_rate")
        assert torch.equal(net(x), dense)  # keep-all: the dense model bit for bit
        state.keep = 0.5
        ins = []
        net.blocks[0].register_forward_hook(lambda m, a, o: ins.append((a[0], o)))
        for b in net.blocks:
            b.seen.clear()
        out = net(x)
    assert out.shape == dense.shape
    assert [b.seen for b in net.blocks] == [[15, 15], [15, 15]]  # token parts saw the 15 kept tokens only
    rec = state.records[0]
    stopped = ~rec.kept_mask()  # [B, H, W]
    block_in, block_out = ins[0]
    mask = stopped[:, None].expand_as(block_out)
    assert torch.equal(block_out[mask], block_in[mask]), "stopped tokens must leave the block unchanged"
    a = net.blocks[0].proj_input  # the intermediate scattered back before the dense projection
    assert a.shape == (2, 4, 5, 6)
    assert bool((a[stopped[:, None].expand_as(a)] == 0).all()), "stopped tokens' intermediates are zeros"


# -- models own their defaults -------------------------------------------------------------------------


class PlainBlock(TokenBlock):
    def __init__(self):
        super().__init__()
        self.fc = nn.Conv1d(3, 3, 1)

    def token_forward(self, tokens):
        return tokens + self.fc(tokens.flatten(0, 1)).unflatten(0, tokens.shape[:2])


class UnknownFamily(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.Sequential(PlainBlock(), PlainBlock())

    def forward(self, x):  # [T, B, C, H, W]
        return self.blocks(x)


def test_a_model_of_an_unknown_family_is_pruned_with_the_fallback_window(caplog):
    model = UnknownFamily()
    with caplog.at_level(logging.INFO, logger="tp_spikformer.pruning"):
        state = apply_tp(model, keep=0.5, scorer="paper")
    assert state.window == 3 and "declares no TP defaults" in caplog.text
    x = torch.randn(2, 2, 3, 4, 4)
    with torch.no_grad():
        assert model(x).shape == x.shape
    assert [r.kept for r in state.records] == [8, 8]
    with pytest.raises(ValueError, match="declares none"):
        apply_tp(UnknownFamily(), keep="official")


@pytest.mark.parametrize("name", TINY)
def test_every_registered_model_has_a_working_default(name, tiny, inputs):
    model = tiny(name)
    defaults = model.tp_defaults(len(token_blocks(model)))
    if not all(b.supports_token_subset for _, b in token_blocks(model)):
        pytest.skip("blocks cannot be pruned")
    state = apply_tp(model)  # keep="official", scorer="official"
    assert state.window == defaults.window
    with torch.no_grad():
        model(inputs(model))
    assert state.records


# -- atomic reconfiguration ------------------------------------------------------------------------------


def test_reconfiguration_is_atomic_and_keeps_options_not_passed(tiny):
    model = tiny("qkformer_tiny")
    state = apply_tp(model, keep=0.5, scorer="paper", cumulative=True)
    with pytest.raises(ValueError, match="mode='stop'"):
        apply_tp(model, mode="drop", keep=0.25)
    assert (state.mode, str(state.keep), state.scorer_name, state.cumulative) == (
        "stop",
        "fraction:0.5",
        "paper",
        True,
    )
    with pytest.raises(ValueError, match="unknown scorer"):
        apply_tp(model, keep=0.3, scorer="bogus")
    assert str(state.keep) == "fraction:0.5"
    assert apply_tp(model, keep=0.25) is state
    assert (str(state.keep), state.scorer_name, state.cumulative, state.window) == (
        "fraction:0.25",
        "paper",
        True,
        7,
    )


@pytest.mark.parametrize(
    "field, value, error",
    [
        ("window", 20001, ValueError),
        ("window", True, ValueError),
        ("window", 4, ValueError),
        ("mode", "drop", ValueError),
        ("mode", "fast", ValueError),
        ("gather_order", "best", ValueError),
        ("cumulative", "yes", TypeError),
        ("seed", 1.5, TypeError),
        ("scorer", 3, TypeError),
    ],
)
def test_state_fields_refuse_bad_values(field, value, error, tiny):
    state = apply_tp(tiny("sdt_v3_tiny"), keep=0.5)
    before = getattr(state, field)
    with pytest.raises(error):
        setattr(state, field, value)
    assert getattr(state, field) == before


# -- no host-device sync ---------------------------------------------------------------------------------


def test_host_checks_run_on_the_first_forward_of_a_configuration_or_always_with_check(tiny, inputs):
    calls = []

    @register_scorer("_nan_after_first")
    def nan_after_first(x, ctx):
        calls.append(1)
        s = x.abs().mean(dim=(0, 2)).flatten(1)
        return s if len(calls) <= 2 else s * float("nan")

    model = tiny("sdt_tiny")
    x = inputs(model)
    state = apply_tp(model, keep=0.5, scorer="_nan_after_first")
    with torch.no_grad():
        model(x)  # first forward of this configuration: checked, scores are finite
        model(x)  # NaN scores, but no check (it would sync with an accelerator)
        state.keep = 0.25  # a new configuration is checked again
        with pytest.raises(ValueError, match="NaN/Inf"):
            model(x)
        state.check = True
        with pytest.raises(ValueError, match="NaN/Inf"):
            model(x)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(
    "name", ["sdt_tiny", "sdt_v3_tiny", "qkformer_tiny", "sdt_v2_tiny", "spikingformer_tiny"]
)
def test_pruned_forward_never_syncs_on_cuda(name, tiny, inputs):
    model = tiny(name).cuda()
    x = inputs(model).cuda()
    apply_tp(model, keep=0.5, scorer="official", cumulative=True)
    with torch.no_grad():
        model(x)  # the first forward of a configuration may check on the host
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            model(x)
        finally:
            torch.cuda.set_sync_debug_mode("default")


def test_a_backbone_called_on_its_own_runs_as_one_pass(inputs):
    class Detectorish(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = build_tiny("sdt_tiny", features_only=True)

        def forward(self, x):
            return self.backbone(x)[-1].mean()

    det = Detectorish()
    x = inputs(det.backbone)
    state = apply_tp(det, keep=0.5, cumulative=True)
    with torch.no_grad():
        det.backbone(x)  # not through the detector's forward: still one pass, cumulative across blocks
    recs = state.records
    assert [r.name for r in recs] == ["backbone.block.0", "backbone.block.1"]
    assert bool((recs[1].kept_mask() <= recs[0].kept_mask()).all())
    assert get_tp_state(det.backbone) is state
    remove_tp(det)
    assert type(det.backbone).__name__ == "SpikeDrivenTransformer"
