"""Spikformer family: behaviour the reference cases do not pin down (fast, tiny models only)."""

import pytest
import torch
from torch import nn

from tp_spikformer.models import create_model, token_blocks
from tp_spikformer.models.spikformer import (
    SpikformerCifar,
    SpikformerCifar10DVS,
    SpikformerImageNet,
    SpikingSelfAttention,
)

SMALL = {"embed_dims": 16, "num_heads": 2, "depths": 1, "num_classes": 5}


def _lively(model: nn.Module, gain: float = 3.0, seed: int = 0) -> nn.Module:
    """Re-draw conv/linear weights large enough that every neuron layer of a block fires (2-40 %)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            w = torch.randn(m.weight.shape, generator=g, dtype=m.weight.dtype)
            w *= gain / m.weight[0].numel() ** 0.5
            m.weight.data.copy_(w)
            if m.bias is not None:
                m.bias.data.copy_(torch.randn(m.bias.shape, generator=g, dtype=m.bias.dtype) * 0.5)
    return model


def _random_spikes(*shape, p=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g, dtype=torch.float64) < p).to(torch.float64)


@pytest.mark.parametrize("variant, scale", [("imagenet", 0.125), ("cifar", 0.125), ("cifar10dvs", 0.25)])
def test_attention_order_equals_direct_nxn(variant, scale):
    attn = SpikingSelfAttention(32, num_heads=4, variant=variant)
    q, k, v = (_random_spikes(2, 3, 4, 13, 8, seed=s) for s in range(3))  # [T, B, h, N, d]
    ours = attn.attention(q, k, v)
    direct = torch.einsum("tbhnd,tbhmd,tbhme->tbhne", q, k, v) * scale
    assert ours.shape == direct.shape
    assert torch.equal(ours, direct)  # integer sums times a power of two: exact in any order


@pytest.mark.parametrize(
    "variant, first_shape",
    [("imagenet", (2, 1, 2, 8, 8)), ("cifar", (2, 1, 2, 5, 5)), ("cifar10dvs", (2, 1, 2, 5, 5))],
)
def test_attention_products_have_the_official_shapes(variant, first_shape):
    # ImageNet multiplies K^T V first (D x D per head), CIFAR and DVS Q K^T first (N x N)
    attn = SpikingSelfAttention(16, num_heads=2, variant=variant).double().eval()
    shapes = []
    for m in attn.modules():
        if type(m).__name__ == "SpikeProduct":
            m.register_forward_hook(lambda mod, args, out: shapes.append(tuple(out.shape)))
    with torch.no_grad():
        attn(_random_spikes(2, 1, 16, 5))
    assert shapes == [first_shape, (2, 1, 2, 5, 8)]


def test_heads_split_channels_in_official_order():
    # channel c belongs to head c // head_dim: zeroing head 1's channels of q must zero head 1's output only
    attn = SpikingSelfAttention(8, num_heads=2, variant="cifar")
    q = _random_spikes(1, 1, 8, 5, p=0.9, seed=1)
    heads = attn._split_heads(q)  # [T, B, h, N, d]
    assert torch.equal(heads[0, 0, 1], q[0, 0, 4:8].T)


def test_dvs_rejects_non_128_frames_with_a_clear_error():
    model = SpikformerCifar10DVS(**SMALL).eval()
    with pytest.raises(ValueError, match="only accepts 128x128"):
        model(torch.zeros(1, 2, 2, 64, 64))


def test_dvs_takes_T_from_the_input_unless_built_with_T():
    model = SpikformerCifar10DVS(**SMALL).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 2, 128, 128)).shape == (1, 5)
        feats = model.forward_features(torch.rand(1, 2, 2, 128, 128))
    assert feats.shape == (2, 1, 16, 8, 8)
    fixed = SpikformerCifar10DVS(**SMALL, T=4).eval()
    with pytest.raises(ValueError, match="T=4"):
        fixed(torch.rand(1, 3, 2, 128, 128))
    with pytest.raises(ValueError, match="expects input of shape"):
        fixed(torch.rand(1, 2, 128, 128))  # a static image is not event frames


def test_imagenet_needs_multiples_of_16_and_cifar_multiples_of_4():
    with pytest.raises(ValueError, match="multiples of 16"):
        SpikformerImageNet(**SMALL)(torch.zeros(1, 3, 40, 40))
    with pytest.raises(ValueError, match="multiples of 4"):
        SpikformerCifar(**SMALL)(torch.zeros(1, 3, 30, 30))


def test_imagenet_T_defaults_to_the_hard_coded_4():
    assert SpikformerImageNet(**SMALL).T == 4
    assert SpikformerImageNet(**SMALL, T=2).T == 2


def test_forward_features_shape_and_readout():
    model = create_model("spikformer_tiny").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model(x)
    assert feats.shape == (2, 2, 32, 8, 8)  # [T, B, C, H, W]
    assert set(feats.unique().tolist()) <= set(range(7))  # integer spike sums in the residual stream
    expected = model.head(feats.flatten(3).mean(-1).mean(0))
    assert torch.equal(logits, expected)


@pytest.mark.parametrize("cls", [SpikformerImageNet, SpikformerCifar, SpikformerCifar10DVS])
def test_blocks_are_token_order_equivariant(cls):
    model = _lively(cls(**SMALL).double().eval())
    ((_, block),) = token_blocks(model)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 3, (2, 2, 16, 12), generator=g).double()  # [T, B, C, N], N not a square
    perm = torch.randperm(12, generator=g)
    with torch.no_grad():
        attn_out = block.attn(tokens)
        out = block.token_forward(tokens)
        out_perm = block.token_forward(tokens[..., perm])
        grid_out = block(tokens.unflatten(-1, (3, 4)))  # the dense path: [T, B, C, H, W]
    assert attn_out.abs().sum() > 0 and not torch.equal(out, tokens + attn_out)  # attention and MLP both fire
    assert torch.equal(out_perm, out[..., perm])
    assert torch.equal(grid_out.flatten(-2), out)


def test_unused_official_parameters_exist():
    dvs = SpikformerCifar10DVS(**SMALL)
    keys = dvs.state_dict().keys()
    assert next(iter(keys)) == "pos_embed" and "norm.weight" in keys and "block.0.norm1.weight" in keys
    assert tuple(dvs.pos_embed.shape) == (1, 64, 16)
    cifar = SpikformerCifar(**SMALL).state_dict()
    assert "block.0.attn.q_linear.bias" in cifar  # the CIFAR file's q/k/v always have a bias
    assert "block.0.attn.q_conv.bias" not in SpikformerImageNet(**SMALL).state_dict()


def test_training_step_backpropagates():
    model = create_model("spikformer_tiny").train()
    loss = model(torch.randn(2, 3, 32, 32)).logsumexp(-1).mean()
    loss.backward()
    grads = [p.grad for p in model.patch_embed.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_bad_constructor_arguments_are_explained():
    with pytest.raises(ValueError, match="divisible"):
        SpikformerCifar(embed_dims=30, num_heads=4)
    with pytest.raises(ValueError, match="positive int"):
        SpikformerImageNet(embed_dims=[64, 128, 256])  # the official class default, which crashes officially
