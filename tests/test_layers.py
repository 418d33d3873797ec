"""Spiking layers: LIF semantics, inference path == training path, surrogate gradient, multi-spike, PLIF."""

import math

import pytest
import torch

from tp_spikformer.models.layers import LIF, MultiSpike, ParametricLIF, SpikeProduct, make_lif


def reference_lif(x, tau=2.0, v_th=1.0):
    """The published semantics written the plain way: charge, fire on v >= v_th, hard reset to 0."""
    v = torch.zeros_like(x[0])
    out = []
    for t in range(x.shape[0]):
        v = v + (x[t] - v) / tau
        s = (v >= v_th).to(x.dtype)
        v = v * (1 - s)
        out.append(s)
    return torch.stack(out)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("v_th", [1.0, 0.5])
def test_inference_path_matches_reference_bit_for_bit(dtype, v_th):
    x = torch.randn(6, 3, 5, 7, dtype=dtype) * 2
    with torch.no_grad():
        out = LIF(v_threshold=v_th)(x)
    assert torch.equal(out, reference_lif(x, v_th=v_th))
    assert 0 < out.mean() < 1


def test_training_path_equals_inference_path():
    x = torch.randn(4, 2, 33, dtype=torch.float64) * 2
    lif = LIF()
    with torch.no_grad():
        fast = lif(x)
    slow = lif(x.clone().requires_grad_())
    assert torch.equal(fast, slow.detach())


def test_known_spike_train():
    # constant input 1.5: v = 0.75, 1.125 -> spike, reset, 0.75, 1.125 -> spike
    x = torch.full((4, 1), 1.5)
    with torch.no_grad():
        assert LIF()(x).flatten().tolist() == [0.0, 1.0, 0.0, 1.0]
    # threshold is inclusive: input 2 reaches exactly v = 1 at the first step
    with torch.no_grad():
        assert LIF()(torch.full((1, 1), 2.0)).item() == 1.0


def test_state_does_not_leak_between_calls():
    lif = LIF()
    x = torch.randn(3, 10) * 3
    with torch.no_grad():
        assert torch.equal(lif(x), lif(x))


def test_surrogate_gradient_is_sigmoid_derivative_and_reset_detached():
    x = torch.tensor([[0.4]], dtype=torch.float64, requires_grad=True)  # one step: v = 0.2
    LIF()(x).sum().backward()
    sg = 1 / (1 + math.exp(-4 * (0.2 - 1.0)))
    assert x.grad.item() == pytest.approx(4 * sg * (1 - sg) * 0.5)  # dv/dx = 1/tau


def test_time_axis_is_dim_zero_whatever_the_shape():
    x = torch.randn(5, 4, 3) * 2
    with torch.no_grad():
        a = LIF()(x)
        b = LIF()(x.permute(0, 2, 1)).permute(0, 2, 1)
    assert torch.equal(a, b)


def test_plif_has_official_key_and_init():
    plif = make_lif("plif")
    assert isinstance(plif, ParametricLIF)
    assert list(plif.state_dict()) == ["w"] and plif.w.item() == 0.0  # -ln(2 - 1)
    x = torch.randn(4, 8) * 2
    with torch.no_grad():
        assert torch.equal(plif(x), reference_lif(x))  # sigmoid(0) = 1/2 = 1/tau
    out = plif(x)
    out.sum().backward()
    assert plif.w.grad is not None
    with pytest.raises(ValueError, match="spike_mode"):
        make_lif("alif")


def test_multispike_levels_and_round_half_to_even():
    q = MultiSpike()
    x = torch.tensor([-1.0, 0.4, 0.5, 1.5, 2.5, 3.49, 9.0])
    with torch.no_grad():
        assert (q(x) * 4).tolist() == [0.0, 0.0, 0.0, 2.0, 2.0, 3.0, 4.0]
        assert MultiSpike(norm=1)(x).tolist() == [0.0, 0.0, 0.0, 2.0, 2.0, 3.0, 4.0]
    y = torch.tensor([-1.0, 2.0, 5.0], requires_grad=True)
    q(y).sum().backward()
    assert y.grad.tolist() == [0.0, 0.25, 0.0]  # straight-through inside [0, 4], divided by the norm


def test_spike_product():
    a, b = torch.rand(2, 3, 4), torch.rand(2, 4, 5)
    assert torch.equal(SpikeProduct("matmul")(a, b), a @ b)
    assert torch.equal(SpikeProduct("mul")(a, a), a * a)
    with pytest.raises(ValueError):
        SpikeProduct("add")


def test_bit_equal_to_spikingjelly_when_installed():
    neuron = pytest.importorskip(
        "spikingjelly.activation_based.neuron",
        reason="spikingjelly not installed (optional: pip install --no-deps spikingjelly==2.0.0 loguru)",
    )
    for v_th in (1.0, 0.5):
        sj = neuron.LIFNode(tau=2.0, v_threshold=v_th, detach_reset=True, step_mode="m")
        for dtype in (torch.float32, torch.float64):
            x = torch.randn(8, 4, 64, dtype=dtype) * 2
            with torch.no_grad():
                sj.reset()
                assert torch.equal(LIF(v_threshold=v_th)(x), sj(x))


@pytest.mark.slow
def test_training_runs_nchw_so_the_channels_last_conv_backward_bug_cannot_strike():
    """torch 2.13's CPU backward of a 1x1 stride-2 convolution on a channels-last input corrupts the heap
    (QKFormer's shortcut convolutions); a training step of a QKFormer must run (in a child process, so a
    crash fails this test instead of killing the suite) and forwards with a gradient use NCHW."""
    import subprocess
    import sys

    code = (
        "import torch; from tp_spikformer.models import create_model\n"
        "m = create_model('qkformer_tiny', img_size_h=112, img_size_w=112, depths=3, num_heads=4,\n"
        "                 proj_lif_mode='per_sample').train()  # crashed in backward with channels-last\n"
        "x = m.prepare_input(torch.randn(2, 3, 112, 112))\n"
        "assert x.is_contiguous(), 'a forward with grad must be NCHW'\n"
        "m(torch.randn(2, 3, 112, 112)).sum().backward(); print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]
    from tp_spikformer.models import create_model

    with torch.no_grad():  # inference keeps the faster channels-last layout
        x = create_model("qkformer_tiny").prepare_input(torch.randn(2, 3, 64, 64))
    assert not x.is_contiguous()
