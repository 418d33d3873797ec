"""SDT-V2 (Meta-SpikeFormer): RepConv border padding, ordered block parts, T, the kd head, input checks."""

import math

import pytest
import torch
from torch import nn

from tp_spikformer.models import create_model, load_checkpoint, token_blocks
from tp_spikformer.models.sdt_v2 import BNAndPad, MetaSpikeFormer, MetaSpikeFormerBlock, RepConv
from tp_spikformer.pruning import apply_tp

SMALL = {"embed_dim": (8, 16, 16, 24), "num_heads": 4, "num_classes": 5}


def _lively(model: nn.Module, seed: int = 0) -> nn.Module:
    """float64 weights and BN statistics under which the neurons of every layer fire (default init is silent)."""
    model = model.double().eval()
    g = torch.Generator().manual_seed(seed)

    def randn(t):
        return torch.randn(t.shape, generator=g, dtype=t.dtype)

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                m.weight.copy_(randn(m.weight) * (2.0 / math.sqrt(m.weight[0].numel())))
                if m.bias is not None:
                    m.bias.copy_(randn(m.bias) * 0.1)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.copy_(randn(m.running_mean) * 0.2)
                m.running_var.uniform_(0.5, 2.0, generator=g)
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.copy_(randn(m.bias) * 0.2 + 0.3)
    return model


def _images(b=2, size=64, seed=1):
    return torch.randn(b, 3, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _bn_with_stats(c: int, seed: int = 0) -> nn.BatchNorm2d:
    g = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(c).double().eval()
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(c, generator=g, dtype=torch.float64))
        bn.running_var.copy_(torch.rand(c, generator=g, dtype=torch.float64) + 0.5)
        bn.weight.copy_(torch.randn(c, generator=g, dtype=torch.float64))
        bn.bias.copy_(torch.randn(c, generator=g, dtype=torch.float64))
    return bn


def test_bn_and_pad_fills_the_border_with_the_bn_output_of_zero():
    layer = BNAndPad(pad_pixels=1, num_features=3).double().eval()
    layer.bn = _bn_with_stats(3)
    bn = layer.bn
    expected = bn.bias - bn.running_mean * bn.weight / torch.sqrt(bn.running_var + bn.eps)  # hand formula
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    with torch.no_grad():
        out = layer(x)
        zero_out = bn(torch.zeros(1, 3, 1, 1, dtype=torch.float64)).flatten()
    assert out.shape == (2, 3, 6, 7)
    assert torch.equal(out[:, :, 1:-1, 1:-1], bn(x).detach())  # interior: the BN output, unchanged
    border = torch.ones(6, 7, dtype=torch.bool)
    border[1:-1, 1:-1] = False
    for c in range(3):
        assert torch.all(out[:, c][:, border] == expected[c])
    torch.testing.assert_close(expected, zero_out, rtol=0, atol=1e-15)


def test_repconv_sees_a_zero_input_the_same_at_the_border_as_inside():
    # BN-valued padding makes a zero image look like an infinite zero plane: the output is constant.
    # Zero padding would make the border pixels differ (the check can fail: see the zero-padded variant).
    rep = RepConv(4, 6).double().eval()
    rep.body[1].bn = _bn_with_stats(4, seed=1)
    with torch.no_grad():
        rep.body[0].weight.normal_(generator=torch.Generator().manual_seed(2))
        rep.body[2][0].weight.normal_(generator=torch.Generator().manual_seed(3))
        rep.body[2][1].weight.normal_(generator=torch.Generator().manual_seed(4))
        out = rep(torch.zeros(1, 4, 5, 5, dtype=torch.float64))
        rep.body[1].pad_pixels = 0
        zero_padded = rep.body[2](
            nn.functional.pad(rep.body[1](rep.body[0](torch.zeros(1, 4, 5, 5).double())), [1] * 4)
        )
    assert out.shape == (1, 6, 5, 5)
    torch.testing.assert_close(out, out[:, :, 2:3, 2:3].expand_as(out), rtol=0, atol=1e-12)
    assert (zero_padded[:, :, 0, 0] - zero_padded[:, :, 2, 2]).abs().max() > 1e-3


def test_bn_and_pad_is_differentiable():
    layer = BNAndPad(1, 2).train()
    x = torch.randn(2, 2, 3, 3, requires_grad=True)
    layer(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert layer.bn.weight.grad is not None


def test_blocks_declare_ordered_dense_and_token_parts():
    model = create_model("sdt_v2_tiny")
    blocks = token_blocks(model)
    assert [n for n, _ in blocks] == [f"block3.{i}" for i in range(6)] + ["block4.0", "block4.1"]
    for _, b in blocks:
        assert isinstance(b, MetaSpikeFormerBlock) and b.token_layout == "TBCHW"
        assert [p.kind for p in b.block_parts()] == ["dense", "token", "dense", "token"]


def _block_and_input(seed=0):
    block = _lively(MetaSpikeFormerBlock(16, num_heads=4), seed)
    g = torch.Generator().manual_seed(seed + 10)
    x = torch.randn(2, 2, 16, 4, 5, generator=g, dtype=torch.float64) * 2  # [T, B, C, H, W], not square
    return block, x


def test_dense_run_of_the_parts_is_the_official_block():
    block, x = _block_and_input()
    with torch.no_grad():
        y = x + block.attn(x)  # the official MS_Block: x + attn(x), then x + mlp(x)
        y = y + block.mlp(y.flatten(-2)).unflatten(-1, y.shape[-2:])
        out = block(x)
    assert not torch.equal(out, x)
    assert torch.equal(out, y)


def test_token_parts_are_token_wise():
    block, x = _block_and_input(seed=3)
    parts = block.block_parts()
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        carry = tuple(c.flatten(-2) for c in parts[0].fn(x))  # (x, q, k, v) as tokens [T, B, C, N]
        xa = parts[1].fn(*carry)
        xa_perm = parts[1].fn(*(c[..., perm] for c in carry))
        assert xa[1].abs().sum() > 0  # the attention fires
        assert all(torch.equal(a[..., perm], b) for a, b in zip(xa, xa_perm))
        p = parts[2].fn(*(c.unflatten(-1, (4, 5)) for c in xa))[1].flatten(-2)
        y, y_perm = parts[3].fn(xa[0], p), parts[3].fn(xa[0][..., perm], p[..., perm])
    assert torch.equal(y[..., perm], y_perm)


def _gather(z, idx):  # [T, B, C, N] at idx [B, K] -> [T, B, C, K]
    return z.gather(-1, idx[None, :, None].expand(z.shape[0], -1, z.shape[2], -1))


def _scatter(base, idx, src):
    return base.scatter(-1, idx[None, :, None].expand(base.shape[0], -1, base.shape[2], -1), src)


def run_parts_on_kept_tokens(block, x, idx):
    """The ordered-parts rule of the protocol spec (issue 10 item 8), written out for one block: gather before
    each token part, scatter before each dense part (residual into its latest full value, intermediates into
    zeros), scatter the residual at the end."""
    hw = x.shape[-2:]
    residual, carry, on_grid = x.flatten(-2), (x,), True
    for part in block.block_parts():
        if part.kind == "token" and on_grid:
            residual = carry[0].flatten(-2)
            carry = tuple(_gather(c.flatten(-2), idx) for c in carry)
        elif part.kind == "dense" and not on_grid:
            residual = _scatter(residual, idx, carry[0])
            zeros = [
                residual.new_zeros(*residual.shape[:2], c.shape[2], residual.shape[3]) for c in carry[1:]
            ]
            carry = (residual, *(_scatter(z, idx, c) for z, c in zip(zeros, carry[1:])))
            carry = tuple(c.unflatten(-1, hw) for c in carry)
        on_grid = part.kind == "dense"
        out = part.fn(*carry)
        carry = out if isinstance(out, tuple) else (out,)
    last = carry[0].flatten(-2) if on_grid else _scatter(residual, idx, carry[0])
    return last.unflatten(-1, hw)


def test_parts_on_all_tokens_equal_the_block_and_stopped_tokens_stay_unchanged():
    block, x = _block_and_input(seed=1)
    b, n = x.shape[1], 20
    with torch.no_grad():
        dense = block(x)
        keep_all = run_parts_on_kept_tokens(block, x, torch.arange(n).expand(b, n))
        idx = torch.stack([torch.tensor([0, 3, 7, 8, 12, 19]), torch.tensor([1, 2, 5, 11, 16, 18])])
        pruned = run_parts_on_kept_tokens(block, x, idx)
    assert torch.equal(keep_all, dense)
    kept = torch.zeros(b, n, dtype=torch.bool).scatter_(1, idx, True)
    stopped = (~kept)[None, :, None].expand(x.shape[0], -1, x.shape[2], -1)
    flat_in, flat_out = x.flatten(-2), pruned.flatten(-2)
    assert torch.equal(flat_out[stopped], flat_in[stopped])
    assert not torch.equal(flat_out[~stopped], flat_in[~stopped])


def test_the_pruning_patch_runs_the_parts_as_the_protocol_says():
    model = _lively(create_model("sdt_v2_tiny"))
    x = _images()
    ios = {}
    for i, (_, b) in enumerate(token_blocks(model)):
        b.register_forward_hook(lambda m, a, out, i=i: ios.update({i: (a[0], out)}))
    with torch.no_grad():
        dense = model(x)
        state = apply_tp(model, keep=1.0)
        assert torch.equal(model(x), dense)  # keep-all: the dense model bit for bit
        state.keep = 0.5
        pruned = model(x)
        assert not torch.equal(pruned, dense)
        for i, (_, b) in enumerate(token_blocks(model)):
            block_in, block_out = ios[i]
            rec = state.records[i]
            assert rec.kept < rec.total
            expected = run_parts_on_kept_tokens(b, block_in, rec.indices.sort(dim=1).values)
            torch.testing.assert_close(block_out, expected, rtol=0, atol=1e-12)


def test_tp_defaults():
    model = create_model("sdt_v2_tiny")
    d = model.tp_defaults(8)
    assert d.window == 3 and d.keep_rule == "side_ratio"
    assert d.keep_values == (0.9, 0.8, 0.8, 0.8, 0.75, 0.65, 0.65, 0.65)
    assert model.tp_defaults(16).keep_values is None and model.tp_defaults(16).fallback_fraction == 0.54
    with torch.device("meta"):
        full = create_model("sdt_v2_55m_imagenet_kd")
    state = apply_tp(full, keep="official")
    assert [state.keep.count(i, 14, 14) for i in range(8)] == [144, 121, 121, 121, 100, 81, 81, 81]


def test_T_is_a_constructor_argument_and_an_attribute():
    model = MetaSpikeFormer(**SMALL).eval()
    assert model.T == 1  # the official __init__ value
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert model.forward_features(x).shape == (1, 2, 24, 2, 2)
        model.T = 3  # what the official scripts do (model.T = args.time_steps)
        assert model.forward_features(x).shape == (3, 2, 24, 2, 2)
    assert MetaSpikeFormer(**SMALL, T=4).T == 4
    with pytest.raises(ValueError, match="positive int"):
        MetaSpikeFormer(**SMALL, T=0)


def test_kd_head_averages_both_heads_of_the_same_spikes():
    model = _lively(MetaSpikeFormer(**SMALL, kd=True, T=2))
    x = _images(size=32)
    with torch.no_grad():
        feats = model.forward_features(x)
        spikes = model.lif(feats.flatten(3).mean(3))  # [T, B, C]
        expected = (model.head(spikes).mean(0) + model.head_kd(spikes).mean(0)) / 2
        assert torch.equal(model(x), expected)
        assert torch.equal(torch.stack(model.forward_kd_heads(feats)).mean(0), expected)
    assert {"head_kd.weight", "head_kd.bias"} <= set(model.state_dict())
    plain = MetaSpikeFormer(**SMALL)
    assert "head_kd.weight" not in plain.state_dict()
    with pytest.raises(ValueError, match="kd=True"):
        plain.forward_kd_heads(feats.float())


@pytest.mark.parametrize("layout, strides", [("detection", [4, 8, 16, 16]), ("segmentation", [2, 4, 8, 16])])
def test_official_downstream_layouts_on_a_non_square_image(layout, strides):
    backbone = create_model("sdt_v2_tiny", features_only=True, out_indices=layout).eval()
    assert not {"head.weight", "head_kd.weight"} & set(backbone.state_dict())
    with torch.no_grad():
        feats = backbone(torch.randn(1, 3, 64, 96))
    assert [d["reduction"] for d in backbone.feature_info] == strides
    assert [tuple(f.shape) for f in feats] == [
        (2, 1, d["num_chs"], 64 // s, 96 // s) for d, s in zip(backbone.feature_info, strides)
    ]


def test_a_kd_checkpoint_loads_into_a_backbone_without_both_heads():
    full = create_model("sdt_v2_tiny", kd=True)
    backbone = create_model("sdt_v2_tiny", features_only=True, out_indices="detection")
    load_checkpoint(backbone, {"model": full.state_dict(), "epoch": 1})  # the official misc.save_model layout
    assert backbone.load_report["dropped_head"] == [
        "head.weight",
        "head.bias",
        "head_kd.weight",
        "head_kd.bias",
    ]


def test_input_checks():
    model = create_model("sdt_v2_tiny").eval()
    with pytest.raises(ValueError, match="expects input of shape"):
        model(torch.randn(1, 2, 3, 64, 64))  # no event frames: static images only, as officially
    with pytest.raises(ValueError, match="multiples of 16"):
        model(torch.randn(1, 3, 56, 64))


def test_bad_constructor_arguments_are_explained():
    with pytest.raises(ValueError, match="4 stage widths"):
        MetaSpikeFormer(embed_dim=[64, 128, 256])  # the official class default, which crashes officially
    with pytest.raises(TypeError, match="one positive int"):
        MetaSpikeFormer(embed_dim=(8, 16, 16, 24), num_heads=[1, 2, 4])
    with pytest.raises(ValueError, match="divisible"):
        MetaSpikeFormer(embed_dim=(8, 16, 18, 24), num_heads=4)


def test_training_step_backpropagates_through_the_repconv():
    model = _lively(create_model("sdt_v2_tiny")).train()
    loss = model(_images()).logsumexp(-1).mean()
    loss.backward()
    grad = model.block3[0].attn.q_conv[0].body[1].bn.weight.grad  # the padded BN inside the RepConv
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert model.downsample1_1.encode_conv.weight.grad.abs().sum() > 0
