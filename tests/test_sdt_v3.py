"""SDT-V3 (E-SpikeFormer base): multi-spike rounding, token-order independence, input checks."""

import math

import pytest
import torch
from torch import nn

from tp_spikformer.models import create_model, token_blocks
from tp_spikformer.models.layers import MultiSpike
from tp_spikformer.models.sdt_v3 import LinearSpikeAttention, SepConvTransformerBlock


def _lively_tiny_model(seed: int = 0) -> nn.Module:
    """The tiny config in float64 with weights that make every spike layer fire (default init is silent)."""
    model = create_model("sdt_v3_tiny").double().eval()
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


def _input(seed: int = 1) -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def test_multispike_rounds_half_to_even():
    x = torch.tensor([0.5, 1.5, 2.5, 3.5, 4.5, -0.5, 0.49, 2.51], dtype=torch.float64)
    assert (MultiSpike()(x) * 4).tolist() == [0, 2, 2, 4, 4, 0, 0, 3]
    model = create_model("sdt_v3_tiny")
    assert model.spike(torch.tensor([1.5, 2.5, 7.0])).tolist() == [2, 2, 4]  # head input: integers, Norm=1
    attn_spike = model.block3[0].attn.attn_spike
    assert (attn_spike(torch.tensor([2.5, 3.5])) * 4).tolist() == [2, 4]


def test_attention_lands_on_half_and_rounds_to_even():
    # head_dim 16: the scale 2/sqrt(16) = 0.5 can put the attention output exactly on k + 0.5.
    attn = LinearSpikeAttention(16, num_heads=1).eval()
    assert attn.scale * 2 == 0.5
    with torch.no_grad():  # make q, k, v constant spike maps: conv weight 0, BN output = its bias
        for seq, level in (
            (attn.q_conv, [4.0] * 5 + [0.0] * 11),
            (attn.k_conv, [4.0] * 16),
            (attn.v_conv, [2.0] * 64),
        ):
            seq[0].weight.zero_()
            seq[1].weight.zero_()
            seq[1].bias.copy_(torch.tensor(level))
    seen = {}
    attn.attn_spike.register_forward_hook(lambda m, i, o: seen.update(pre=i[0], out=o))
    attn(torch.rand(1, 16, 2))  # 2 tokens: sum_j (q.k_j) v_j * 0.5 = 2 * 5 * 0.5 * 0.5 = 2.5
    assert torch.all(seen["pre"] == 2.5)
    assert torch.all(seen["out"] == 0.5)  # round(2.5) = 2 (half to even), / 4


def test_blocks_are_token_blocks_with_bchw_layout():
    model = create_model("sdt_v3_tiny")
    blocks = token_blocks(model)
    assert [n for n, _ in blocks] == [f"block3.{i}" for i in range(6)] + ["block4.0", "block4.1"]
    assert all(isinstance(b, SepConvTransformerBlock) and b.token_layout == "BCHW" for _, b in blocks)


def test_forward_independent_of_token_order():
    model = _lively_tiny_model()
    x = _input()
    with torch.no_grad():
        ref = model.forward_features(x)
        assert ref.shape == (2, 32, 4, 4)
        assert ref.abs().sum() > 0

    g = torch.Generator().manual_seed(7)
    originals = {}

    def permuted(block, unpermute=True):
        orig = block.token_forward

        def token_forward(tokens):
            perm = torch.randperm(tokens.shape[-1], generator=g)
            out = orig(tokens[..., perm])
            if not unpermute:
                return out
            restored = torch.empty_like(out)
            restored[..., perm] = out
            return restored

        return token_forward

    for unpermute in (True, False):
        for _, blk in token_blocks(model):
            originals.setdefault(blk, blk.token_forward)
            blk.token_forward = permuted(blk, unpermute)
        with torch.no_grad():
            out = model.forward_features(x)
        for blk, orig in originals.items():
            blk.token_forward = orig
        if unpermute:
            torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
        else:  # the check can fail: leaving the tokens shuffled changes the grid
            assert (out - ref).abs().max() > 1e-3


def test_five_d_input_rejected_with_clear_message():
    model = create_model("sdt_v3_tiny").eval()
    with pytest.raises(ValueError, match="no time axis"):
        model(torch.randn(2, 4, 3, 64, 64))


def test_tiny_forward_shapes_and_size_check():
    model = create_model("sdt_v3_tiny").eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    with pytest.raises(ValueError, match="multiples of 16"):
        model(torch.randn(1, 3, 60, 64))
