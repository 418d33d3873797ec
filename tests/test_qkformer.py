"""QKFormer: the stage-3 ``proj_lif`` modes (batch_coupled = official, per_sample = corrected)."""

import pytest
import torch
from torch import nn

from tp_spikformer.models import build_from_official_kwargs, create_model, get_model_config, list_models
from tp_spikformer.models.layers import LIF
from tp_spikformer.models.qkformer import SpikingTransformerBlock, TokenSpikingTransformer

EXACT = 1e-12  # float64; only BLAS batching differences (~1e-16) are allowed


def _firing_tiny(seed: int = 0) -> nn.Module:
    """``qkformer_tiny`` in float64 whose BNs are calibrated on a random batch so that every stage fires
    (stage-3 Q/K/V get a +0.5 BN bias so that the attention neurons fire ~10 % of the time)."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = create_model("qkformer_tiny").double()
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
                m.momentum = None  # running stats := statistics of the calibration batch
                m.weight.copy_(torch.rand(m.weight.shape, generator=g, dtype=torch.float64) + 1.0)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g, dtype=torch.float64) * 0.2)
                if name.startswith("stage3") and name.split(".")[-1] in ("q_bn", "k_bn", "v_bn"):
                    m.bias.add_(0.5)
        model.train()
        model(torch.randn(4, 3, 64, 64, generator=g, dtype=torch.float64))
    return model.eval()


@pytest.fixture(scope="module")
def tiny():
    return _firing_tiny()


@pytest.fixture(scope="module")
def images():
    return torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def _run(model, x, mode):
    model.proj_lif_mode = mode
    try:
        with torch.no_grad():
            return model(x)
    finally:
        model.proj_lif_mode = "batch_coupled"


def test_stage3_proj_lif_fires(tiny, images):
    rates = {}
    hooks = [
        m.register_forward_hook(lambda mod, inp, out, n=n: rates.__setitem__(n, out.mean().item()))
        for n, m in tiny.named_modules()
        if isinstance(m, LIF) and n.startswith("stage3") and n.endswith(("attn.attn_lif", "attn.proj_lif"))
    ]
    with torch.no_grad():
        tiny(images)
    for h in hooks:
        h.remove()
    assert len(rates) == 2 and all(0.02 < r < 0.5 for r in rates.values()), rates


def test_per_sample_is_batch_composition_independent(tiny, images):
    batch = _run(tiny, images, "per_sample")
    alone = torch.cat([_run(tiny, images[i : i + 1], "per_sample") for i in range(len(images))])
    assert (batch - alone).abs().max().item() <= EXACT
    # a different companion does not change sample 0 either
    other = torch.cat([images[:1], images[2:]])
    assert (_run(tiny, other, "per_sample")[0] - batch[0]).abs().max().item() <= EXACT


def test_batch_coupled_depends_on_the_batch_and_agrees_at_b1(tiny, images):
    coupled = _run(tiny, images, "batch_coupled")
    per_sample = _run(tiny, images, "per_sample")
    alone = torch.cat([_run(tiny, images[i : i + 1], "batch_coupled") for i in range(len(images))])
    # B = 1: no other sample to couple with, so both modes agree
    assert (alone - per_sample).abs().max().item() <= EXACT
    # B > 1: the official membrane runs across samples, so the batch changes the result
    assert (coupled - alone).abs().max().item() > 1e-6
    assert (coupled - per_sample).abs().max().item() > 1e-6
    # the first sample of a t-major/b-minor sweep at t=0 starts from a fresh membrane, but its later
    # steps inherit the last sample's membrane: even sample 0 depends on its companions
    swapped = torch.stack([images[0], images[2], images[1]])
    assert (_run(tiny, swapped, "batch_coupled")[0] - coupled[0]).abs().max().item() > 0.0


def test_order_sensitive_flags_follow_the_mode(tiny):
    stage3 = list(tiny.stage3)
    token_qk = [*tiny.stage1, *tiny.stage2]
    assert stage3 and all(isinstance(b, SpikingTransformerBlock) for b in stage3)
    assert all(isinstance(b, TokenSpikingTransformer) and not b.order_sensitive for b in token_qk)
    assert tiny.proj_lif_mode == "batch_coupled"
    assert all(b.order_sensitive for b in stage3)
    tiny.proj_lif_mode = "per_sample"
    try:
        assert all(not b.order_sensitive for b in stage3)
        assert all(not b.order_sensitive for b in token_qk)
    finally:
        tiny.proj_lif_mode = "batch_coupled"
    built = create_model("qkformer_tiny", proj_lif_mode="per_sample")
    assert built.proj_lif_mode == "per_sample" and not any(b.order_sensitive for b in built.stage3)


def _stage3_tokens(model, x):
    feats = {}
    h = model.stage3[0].register_forward_pre_hook(lambda mod, args: feats.__setitem__("x", args[0]))
    with torch.no_grad():
        model(x)
    h.remove()
    return feats["x"].flatten(-2)  # [T, B, C, N]


def test_token_order_matters_only_in_batch_coupled_mode(tiny, images):
    block = tiny.stage3[0]
    tokens = _stage3_tokens(tiny, images)
    t, b, _, n = tokens.shape
    g = torch.Generator().manual_seed(2)
    per_sample_idx = torch.stack([torch.randperm(n, generator=g) for _ in range(b)])  # [B, N]
    shared_idx = torch.randperm(n, generator=g).expand(b, n)

    def gather(z, idx):
        return z.gather(-1, idx[None, :, None, :].expand(t, b, z.shape[2], n))

    with torch.no_grad():
        for mode, expect_equal_per_sample in (("per_sample", True), ("batch_coupled", False)):
            block.proj_lif_mode = mode
            ref = block.token_forward(tokens)
            out = block.token_forward(gather(tokens, per_sample_idx))
            diff = (out - gather(ref, per_sample_idx)).abs().max().item()
            assert (diff <= EXACT) == expect_equal_per_sample, (mode, diff)
            # one permutation shared by all samples keeps the coupling partners: equivariant in both modes
            out = block.token_forward(gather(tokens, shared_idx))
            assert (out - gather(ref, shared_idx)).abs().max().item() <= EXACT
    block.proj_lif_mode = "batch_coupled"


def test_registered_configs_default_to_the_official_mode():
    """Every configuration for official weights uses the official mode (our own trained models, which
    ship their weights, were trained per-sample and may say so)."""
    names = [
        n
        for n in list_models("qkformer*")
        if not get_model_config(n).source.startswith("tp_spikformer")
        and get_model_config(n).task == "classification"
    ]
    assert {"qkformer_10_384_imagenet", "qkformer_4_384_cifar100", "qkformer_tiny"} <= set(names)
    for name in names:
        cfg = get_model_config(name)
        assert cfg.kwargs["proj_lif_mode"] == "batch_coupled", name
        assert "batch_coupled" in cfg.notes and "per_sample" in cfg.notes, name
    # a task model on the official backbone config inherits its mode
    seg = create_model("qkformer_tiny_semfpn")
    assert {m.proj_lif_mode for m in seg.modules() if hasattr(m, "proj_lif_mode")} == {"batch_coupled"}
    # built from the official constructor kwargs (no proj_lif_mode), the model is in the official mode
    for variant in ("imagenet", "cifar", "cifar10dvs", "gesture"):
        model = build_from_official_kwargs("qkformer", variant, embed_dims=64, depths=4)
        assert model.proj_lif_mode == "batch_coupled"


def test_invalid_mode_is_refused():
    with pytest.raises(ValueError, match="per_sample"):
        create_model("qkformer_tiny", proj_lif_mode="fixed")
    model = create_model("qkformer_tiny")
    with pytest.raises(ValueError, match="batch_coupled"):
        model.proj_lif_mode = "per-sample"


def test_features_readout_and_non_square_input(tiny):
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with torch.no_grad():
        feats = tiny.forward_features(x)
        assert feats.shape == (2, 2, 64, 4, 6)  # [T, B, C, H/16, W/16]
        expected = tiny.head(feats.mean(dim=(3, 4)).mean(0))
        assert torch.equal(tiny.forward_head(feats), expected)
    with pytest.raises(ValueError, match="multiples of 16"):
        tiny(torch.randn(1, 3, 64, 72, dtype=torch.float64))


def test_dvs_models_take_frames_and_follow_the_official_layout():
    model = create_model("qkformer_2_256_cifar10dvs").eval()
    tops = list(dict.fromkeys(k.split(".")[0] for k in model.state_dict()))
    assert tops == ["patch_embed1", "stage1", "patch_embed2", "stage2", "head"]
    assert "stage2.0.ssa.proj_conv.weight" in model.state_dict()
    assert "patch_embed2.proj_conv.weight" in model.state_dict()
    # models.md table: 1.50M (CIFAR10-DVS) / 2.00M (Gesture)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == 1.50
    gesture = create_model("qkformer_2_256_gesture")
    assert round(sum(p.numel() for p in gesture.parameters()) / 1e6, 2) == 2.00
    with torch.no_grad():
        assert model(torch.rand(1, 3, 2, 32, 32)).shape == (1, 10)  # T taken from the frames
    with pytest.raises(ValueError):
        model(torch.rand(1, 2, 32, 32))  # DVS models take [B, T, C, H, W] frames only
