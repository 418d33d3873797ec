"""Spikingformer: tokenizers, attention orders, tau 1.5 (DVS), spike-driven residuals, input checks, TP."""

import re

import pytest
import torch
from torch import nn

from tp_spikformer.models import create_model, token_blocks
from tp_spikformer.models.layers import LIF
from tp_spikformer.models.spikingformer import (
    SpikingformerCifar,
    SpikingformerCifar10DVS,
    SpikingformerImageNet,
    SpikingSelfAttention,
)
from tp_spikformer.pruning import apply_tp

SMALL = {"embed_dims": 16, "num_heads": 2, "depths": 1, "num_classes": 5}
CLASSES = [SpikingformerImageNet, SpikingformerCifar, SpikingformerCifar10DVS]


def _lively(model: nn.Module, gain: float = 3.0, seed: int = 0) -> nn.Module:
    """float64, conv/linear weights large enough that the neurons of every layer fire."""
    model = model.double().eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g, dtype=m.weight.dtype))
                m.weight.mul_(gain / m.weight[0].numel() ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g, dtype=m.bias.dtype) * 0.5)
    return model


def _input(model, b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    if model.event_input:
        return torch.poisson(
            torch.rand(b, 3, 2, 128, 128, generator=g, dtype=torch.float64) * 1.5, generator=g
        )
    size = 64 if model.variant == "imagenet" else 32
    return torch.randn(b, 3, size, size, generator=g, dtype=torch.float64)


def _spikes(*shape, p=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g, dtype=torch.float64) < p).to(torch.float64)


@pytest.mark.parametrize(
    "cls, names, grid",
    [
        (SpikingformerImageNet, ["proj_conv", "maxpool1", "maxpool4", "proj4_bn"], (4, 4)),
        (SpikingformerCifar, ["block0_conv", "block3_mp", "block4_mp", "block4_bn"], (8, 8)),
        (SpikingformerCifar10DVS, ["proj_conv", "maxpool1", "maxpool4", "proj4_bn"], (8, 8)),
    ],
)
def test_tokenizer_layers_and_grid(cls, names, grid):
    model = cls(**SMALL).double().eval()
    assert all(hasattr(model.patch_embed, n) for n in names)
    with torch.no_grad():
        feats = model.forward_features(_input(model))
    t = 3 if cls is SpikingformerCifar10DVS else 4
    assert feats.shape == (t, 2, 16, *grid)
    assert [(d["module"], d["num_chs"], d["reduction"]) for d in model.feature_info] == [
        ("block.0", 16, model.patch_embed.downsample)
    ]


@pytest.mark.parametrize("variant, first_shape", [("imagenet", (2, 1, 2, 8, 8)), ("cifar", (2, 1, 2, 5, 5))])
def test_attention_order_and_scale(variant, first_shape):
    # ImageNet/DVS multiply K^T V first (D x D per head), CIFAR Q K^T first (N x N); both times 0.125
    attn = SpikingSelfAttention(16, num_heads=2, variant=variant).double().eval()
    q, k, v = (_spikes(2, 3, 2, 13, 8, seed=s) for s in range(3))  # [T, B, h, N, d]
    direct = torch.einsum("tbhnd,tbhmd,tbhme->tbhne", q, k, v) * 0.125
    assert torch.equal(attn.attention(q, k, v), direct)  # integer sums times a power of two: exact
    shapes = []
    for m in attn.modules():
        if type(m).__name__ == "SpikeProduct":
            m.register_forward_hook(lambda mod, args, out: shapes.append(tuple(out.shape)))
    with torch.no_grad():
        attn(_spikes(2, 1, 16, 5))
    assert shapes == [first_shape, (2, 1, 2, 5, 8)]


def test_dvs_neurons_leak_with_tau_one_and_a_half():
    # constant input 1.2: tau 1.5 charges 0.8, then 0.8 + 0.4 / 1.5 = 1.067 >= 1 (spike, reset), then 0.8;
    # tau 2 charges 0.6, 0.9, then 1.05 (spike on the third step)
    x = torch.full((3, 1), 1.2, dtype=torch.float64)
    dvs, cifar = SpikingformerCifar10DVS(**SMALL), SpikingformerCifar(**SMALL)
    dvs_lifs = [m for m in dvs.modules() if isinstance(m, LIF)]
    assert len(dvs_lifs) == 4 + 5 + 2 and {m.tau for m in dvs_lifs} == {1.5}
    assert {m.tau for m in cifar.modules() if isinstance(m, LIF)} == {2.0}
    assert dvs.block[0].attn.proj_lif(x).flatten().tolist() == [0.0, 1.0, 0.0]
    assert cifar.block[0].attn.proj_lif(x).flatten().tolist() == [0.0, 0.0, 1.0]
    assert dvs.block[0].attn.attn_lif.v_threshold == 0.5


def test_branches_read_spikes_and_the_stream_stays_analog():
    model = _lively(create_model("spikingformer_tiny"))
    seen = {}
    block = model.block[0]
    for name, mod in (("q", block.attn.q_conv), ("mlp", block.mlp.mlp1_conv), ("head", model.head)):
        mod.register_forward_hook(lambda m, args, out, name=name: seen.update({name: args[0]}))
    with torch.no_grad():
        feats = model.forward_features(_input(model))
        logits = model.forward_head(feats)
    for name in ("q", "mlp"):  # the branch inputs are LIF spikes of the residual stream
        assert set(seen[name].unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(feats, feats.round())  # the stream (BN outputs added up) is analog
    assert torch.equal(seen["head"], feats.flatten(3).mean(3).mean(0))  # no neuron before the head
    assert torch.equal(logits, model.head(seen["head"]))


@pytest.mark.parametrize("cls", CLASSES)
def test_blocks_are_token_order_equivariant(cls):
    model = _lively(cls(**SMALL))
    ((_, block),) = token_blocks(model)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randn(2, 2, 16, 12, generator=g, dtype=torch.float64) * 2  # [T, B, C, N], N not a square
    perm = torch.randperm(12, generator=g)
    with torch.no_grad():
        attn_out = block.attn(tokens)
        out = block.token_forward(tokens)
        out_perm = block.token_forward(tokens[..., perm])
        grid_out = block(tokens.unflatten(-1, (3, 4)))  # the dense path: [T, B, C, H, W]
    assert attn_out.abs().sum() > 0 and not torch.equal(out, tokens + attn_out)  # attention and MLP both act
    assert torch.equal(out_perm, out[..., perm])
    assert torch.equal(grid_out.flatten(-2), out)


def test_input_checks():
    with pytest.raises(ValueError, match="multiples of 16"):
        SpikingformerImageNet(**SMALL)(torch.zeros(1, 3, 40, 40))
    with pytest.raises(ValueError, match="multiples of 4"):
        SpikingformerCifar(**SMALL)(torch.zeros(1, 3, 30, 30))
    dvs = SpikingformerCifar10DVS(**SMALL).eval()
    with pytest.raises(ValueError, match="only accepts 128x128"):
        dvs(torch.zeros(1, 2, 2, 64, 64))
    with pytest.raises(ValueError, match="expects input of shape"):
        dvs(torch.zeros(1, 2, 128, 128))  # a static image is not event frames
    with torch.no_grad():
        assert dvs(torch.rand(1, 5, 2, 128, 128)).shape == (1, 5)  # T from the frames, as officially
    with pytest.raises(ValueError, match="T=4"):
        SpikingformerCifar10DVS(**SMALL, T=4)(torch.rand(1, 3, 2, 128, 128))


def test_unused_norm_keys_exist_and_are_declared_unused():
    model = SpikingformerImageNet(**SMALL)
    unused = [k for k in model.state_dict() if any(re.fullmatch(p, k) for p in model.unused_keys)]
    assert unused == [
        "block.0.norm1.weight",
        "block.0.norm1.bias",
        "block.0.norm2.weight",
        "block.0.norm2.bias",
    ]
    assert (
        "block.0.attn.q_conv.bias" not in model.state_dict()
        and "block.0.attn.proj_conv.bias" in model.state_dict()
    )


def test_bad_constructor_arguments_are_explained():
    with pytest.raises(ValueError, match="divisible"):
        SpikingformerCifar(embed_dims=40, num_heads=3)
    with pytest.raises(ValueError, match="positive int"):  # the official class default, crashing officially
        SpikingformerImageNet(embed_dims=[64, 128, 256])
    with pytest.raises(ValueError, match="time steps"):
        SpikingformerImageNet(T=None)


def test_keep_all_tp_is_the_dense_model_and_pruning_keeps_the_layout():
    model = _lively(create_model("spikingformer_tiny"))
    x = _input(model)
    with torch.no_grad():
        dense_feats = model.forward_features(x)
        state = apply_tp(model, keep=1.0)
        assert torch.equal(model.forward_features(x), dense_feats)
        state.keep = 0.5
        pruned = model.forward_features(x)
    assert pruned.shape == dense_feats.shape and not torch.equal(pruned, dense_feats)
    assert [r.kept for r in state.records] == [32, 32]


@pytest.mark.parametrize(
    "name, kept",
    [
        ("spikingformer_8_768_imagenet", [144, 144, 121, 121, 100, 100, 100, 81]),  # 14 x 0.785714 = 10.99999
        ("spikingformer_4_384_cifar10", [49, 36, 36, 25]),
        ("spikingformer_2_256_cifar10dvs", [49, 25]),
    ],
)
def test_tp_defaults_on_full_configs(name, kept):
    with torch.device("meta"):
        model = create_model(name)
    state = apply_tp(model, keep="official")
    assert state.window == 3
    grid = 14 if "imagenet" in name else 8
    assert [state.keep.count(i, grid, grid) for i in range(len(kept))] == kept


def test_training_step_backpropagates():
    model = create_model("spikingformer_tiny").train()
    model(torch.randn(2, 3, 32, 32)).logsumexp(-1).mean().backward()
    grads = [p.grad for p in model.patch_embed.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
