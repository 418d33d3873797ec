"""``tp_spikformer.optimize``: exactness (golden cases dense and with TP, the registry's tiny models), the
kernels, the BatchNorm-folding trace, checkpoints, training mode, TP in either order, official arithmetic,
and the ``--optimize`` / ``--official-arithmetic`` options."""

import copy
import json
import os

import pytest
import torch
from conftest import build_tiny, sample_inputs
from reference import load_case, reference_cases
from test_reference_models import TOLERANCE, build_case_model
from torch import nn

import tp_spikformer as tp
from tp_spikformer.errors import UsageError
from tp_spikformer.models import get_model_config, list_models
from tp_spikformer.models.layers import LIF, MultiSpike, ParametricLIF
from tp_spikformer.models.sdt_v3 import LinearSpikeAttention
from tp_spikformer.optimize import (
    attention,
    deoptimize,
    fold,
    is_optimized,
    kernels,
    optimization_report,
    optimize,
)
from tp_spikformer.pruning import KeepSchedule, apply_tp, default_scorer, get_tp_state, remove_tp

TINY = [n for n in list_models("*_tiny") if get_model_config(n).task == "classification"]
TRACKERS = ["sdtrack_tiny_test", "spikformer_track_test"]  # small configs of the two trackers


def golden_cases(tp_only: bool = False):
    """The reference cases (all families but SDTrack, whose tracker is not built), or one skipped param."""
    params = []
    for p in reference_cases():
        path = p.values[0]
        if path is None or (not path.stem.startswith("sdtrack") and (not tp_only or "tp" in load_case(path))):
            params.append(p)
    return params


def forward(model, x):
    with torch.no_grad():
        return model(x)


# -- golden cases --------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("path", golden_cases())
def test_optimized_model_matches_official_output(path):
    case = load_case(path)
    model = optimize(build_case_model(case), compile=False)
    assert optimization_report(model).folded, "no BatchNorm was folded"
    out = forward(model, case["input"])
    diff = (out - case["output"]).abs().max().item()
    assert diff <= TOLERANCE, f"{path.stem}: optimized model differs from the official code by {diff:.3e}"


@pytest.mark.slow
@pytest.mark.parametrize("path", golden_cases(tp_only=True))
@pytest.mark.parametrize("order", ["optimize_then_tp", "tp_then_optimize"])
def test_optimized_tp_matches_official_tp(path, order):
    case = load_case(path)
    tp_case = case["tp"]
    model = build_case_model(case)
    rule = model.tp_defaults(len(tp_case["k_values"])).keep_rule
    keep = KeepSchedule(rule, tuple(tp_case["k_values"]))
    if order == "optimize_then_tp":
        state = apply_tp(optimize(model, compile=False), keep=keep, scorer="official")
    else:
        state = apply_tp(model, keep=keep, scorer="official")
        optimize(model, compile=False)
    out = forward(model, case["input"])
    diff = (out - tp_case["output"]).abs().max().item()
    assert diff <= TOLERANCE, (
        f"{path.stem}: optimized TP logits differ from the official TP code by {diff:.3e}"
    )
    assert len(state.records) == len(tp_case["kept_indices"])
    for rec, ref in zip(state.records, tp_case["kept_indices"]):
        assert torch.equal(rec.indices.sort(1).values, ref.sort(1).values)


# -- the registry's tiny models ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", TINY)
def test_optimized_equals_plain_in_float64(name):
    plain = build_tiny(name).double()
    x = sample_inputs(plain, batch=2).double()
    fast = optimize(copy.deepcopy(plain), compile=False)
    report = optimization_report(fast)
    norms = [m for m in plain.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert sum(len(v) for v in report.folded.values()) == len(norms)  # every BatchNorm of the zoo folds
    assert report.fused and not report.compiled
    assert (forward(fast, x) - forward(plain, x)).abs().max().item() <= 1e-9


@pytest.mark.slow
@pytest.mark.parametrize("name", TINY)
def test_keep_all_is_dense_and_pruned_matches_plain_after_optimize(name):
    plain = build_tiny(name).double()
    x = sample_inputs(plain, batch=2).double()
    fast = optimize(copy.deepcopy(plain), compile=False)
    dense = forward(fast, x)
    state = apply_tp(fast, keep=1.0)
    assert torch.equal(forward(fast, x), dense)  # keep-all: the dense optimized model bit for bit
    state.keep = 0.5
    pruned_fast = forward(fast, x)
    fast_records = [r.indices for r in state.records]
    plain_state = apply_tp(plain, keep=0.5)
    assert (pruned_fast - forward(plain, x)).abs().max().item() <= 1e-9
    # the same kept sets (their order may differ where tied scores differ by one rounding)
    assert all(
        torch.equal(a.sort(1).values, b.indices.sort(1).values)
        for a, b in zip(fast_records, plain_state.records)
    )
    assert all(r.kept < r.total for r in plain_state.records)  # really pruned
    remove_tp(fast)
    assert is_optimized(fast) and torch.equal(forward(fast, x), dense)


@pytest.mark.slow
@pytest.mark.parametrize("name", TRACKERS)
def test_optimized_tracker_equals_plain_dense_and_pruned(name):
    """Trackers take ``(template, search)``: optimize traces them with their own ``example_inputs()``, and
    the optimized tracker gives the plain one's outputs, dense and with TP (template protected)."""
    plain = tp.create_model(name).double().eval()
    z, x = plain.example_inputs(batch=2, seed=1)
    fast = optimize(copy.deepcopy(plain), compile=False)
    assert sum(len(v) for v in optimization_report(fast).folded.values()) > 0
    for keep in (None, 0.5):
        if keep is not None:
            apply_tp(plain, keep=keep)
            apply_tp(fast, keep=keep)
        with torch.no_grad():
            a, b = fast(z, x), plain(z, x)
        for key in ("pred_boxes", "score_map", "size_map", "offset_map"):
            assert (a[key] - b[key]).abs().max().item() <= 1e-9, (keep, key)


@pytest.mark.slow
def test_pruned_blocks_run_only_their_kept_tokens_when_optimized():
    model = optimize(build_tiny("sdt_v3_tiny"), compile=False)
    apply_tp(model, keep=0.5)
    seen = []
    hook = model.block3[0].attn.q_conv[0].register_forward_hook(lambda m, i, o: seen.append(i[0].shape[-2]))
    forward(model, sample_inputs(model, batch=2))
    hook.remove()
    assert seen == [8]  # [B, C, N, 1] view of the kept 8 of the 16 tokens


# -- checkpoints, undo, training mode ------------------------------------------------------------------------


@pytest.mark.slow
def test_state_dict_is_the_plain_models_and_loading_refolds():
    plain = build_tiny("sdt_tiny").double()
    x = sample_inputs(plain, batch=2).double()
    fast = optimize(copy.deepcopy(plain), compile=False)
    before = plain.state_dict()
    after = fast.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)
    other = build_tiny("sdt_tiny", seed=5).double()  # other weights and BatchNorm statistics
    forward(fast, x)  # folded weights cached from the old weights
    fast.load_state_dict(other.state_dict())
    assert (forward(fast, x) - forward(other, x)).abs().max().item() <= 1e-9
    with torch.no_grad():  # an in-place edit of a BatchNorm is seen too
        fast.block[0].mlp.fc1_bn.running_mean.add_(0.5)
        other.block[0].mlp.fc1_bn.running_mean.add_(0.5)
    assert (forward(fast, x) - forward(other, x)).abs().max().item() <= 1e-9


@pytest.mark.slow
def test_deoptimize_restores_the_plain_model():
    plain = build_tiny("sdt_v2_tiny")
    x = sample_inputs(plain, batch=2)
    fast = optimize(copy.deepcopy(plain), compile=False)
    assert deoptimize(fast) is not None and not is_optimized(fast)
    assert [type(m) for m in fast.modules()] == [type(m) for m in plain.modules()]
    assert not [k for m in fast.modules() for k in m.__dict__ if k.startswith("_opt_")]
    assert torch.equal(forward(fast, x), forward(plain, x))
    assert deoptimize(fast) is None


def test_training_mode_runs_the_original_forward_with_gradients():
    plain = build_tiny("qkformer_tiny").double().train()
    fast = optimize(copy.deepcopy(plain), compile=False).train()
    x = sample_inputs(plain, batch=2).double()
    out_plain, out_fast = plain(x), fast(x)  # BatchNorm with batch statistics, surrogate gradients
    assert (out_plain - out_fast).abs().max().item() <= 1e-9
    out_plain.sum().backward()
    out_fast.sum().backward()
    for (name, p), q in zip(plain.named_parameters(), fast.parameters()):
        if p.grad is not None:
            assert (p.grad - q.grad).abs().max().item() <= 1e-9, name
    assert all(
        torch.equal(a, b) for a, b in zip(plain.buffers(), fast.buffers())
    )  # running stats updated alike


def test_optimize_is_repeatable_and_survives_deepcopy():
    model = build_tiny("spikformer_tiny")
    x = sample_inputs(model, batch=2)
    optimize(model, compile=False)
    out = forward(model, x)
    optimize(model, compile=False)  # again: re-optimized from scratch
    clone = copy.deepcopy(model)
    assert torch.equal(forward(clone, x), out) and torch.equal(forward(model, x), out)


@pytest.mark.slow
@pytest.mark.parametrize("name", TINY)
def test_measurement_counts_the_same_operations(name):
    from tp_spikformer.measure import count_ops

    plain = build_tiny(name).double()
    x = sample_inputs(plain, batch=2).double()
    fast = optimize(copy.deepcopy(plain), compile=False, reorder_attention=False)
    assert count_ops(fast, x).report().totals == count_ops(plain, x).report().totals  # MACs, SOPs, firing
    if name == "sdt_v3_tiny":  # the reordered attention: the products that ran, fewer MACs
        optimize(fast, compile=False)
        assert count_ops(fast, x).dense_macs() < count_ops(plain, x).dense_macs()


def test_optimized_model_runs_under_the_memory_tracker():
    from tp_spikformer.measure.tensor_memory import peak_tensor_bytes

    fast = optimize(build_tiny("qkformer_tiny"), compile=False)
    x = sample_inputs(fast, batch=2)
    with torch.no_grad():
        peak, out = peak_tensor_bytes(lambda: fast(x))  # a dispatch mode: compiled kernels stay out
    assert peak > 0 and torch.equal(out, forward(fast, x))


# -- options and refusals ------------------------------------------------------------------------------------


def test_official_arithmetic_runs_nchw_with_the_literal_scorer_and_refuses_optimize():
    model = tp.create_model("sdt_v3_tiny", official_arithmetic=True).eval()
    assert model.official_arithmetic and not model.channels_last
    x = sample_inputs(model, batch=1)
    with torch.no_grad():
        assert model.prepare_input(x).is_contiguous()
        default = tp.create_model("sdt_v3_tiny").eval()
        assert default.prepare_input(x).is_contiguous(memory_format=torch.channels_last)
    assert (
        default_scorer(model) == "official_literal"
        and default_scorer(tp.create_model("sdt_tiny")) == "official"
    )
    assert apply_tp(model, keep=0.5).scorer_name == "official_literal"
    assert get_tp_state(model).configure(scorer="paper").scorer_name == "paper"  # an explicit choice wins
    with pytest.raises(UsageError, match="official_arithmetic"):
        optimize(model)
    with pytest.raises(TypeError, match="True or False"):
        tp.create_model("sdt_tiny", official_arithmetic="yes")


def test_optimize_needs_an_example_input_for_foreign_models():
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).eval()
    with pytest.raises(UsageError, match="example_input"):
        optimize(net)
    with pytest.raises(TypeError, match="nn.Module"):
        optimize("model")


# -- the folding trace ---------------------------------------------------------------------------------------


class _Shapes(nn.Module):
    """Folds (conv -> BN, linear -> BN1d on a transposed view, conv -> BN -> BN) and non-folds (a conv
    output read twice, a BatchNorm reading a sum); a neuron reading a private BN output (in place), one
    reading an output that is read again later and one reading an output the forward returns (not in
    place)."""

    def __init__(self):
        super().__init__()
        self.lif_private, self.lif_shared, self.lif_returned = LIF(), LIF(), LIF()
        self.conv_ret, self.bn_ret = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)
        self.conv_a, self.bn_a = nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.conv_b, self.bn_b1, self.bn_b2 = (
            nn.Conv2d(6, 6, 1, bias=False),
            nn.BatchNorm2d(6),
            nn.BatchNorm2d(6),
        )
        self.lin, self.bn_lin = nn.Linear(6, 5), nn.BatchNorm1d(5)
        self.conv_c, self.bn_c = nn.Conv2d(6, 6, 1), nn.BatchNorm2d(6)  # conv_c output also read by an add
        self.bn_sum = nn.BatchNorm2d(6)

    def forward(self, x):
        returned = self.bn_ret(self.conv_ret(x))  # returned to the caller: no neuron may overwrite it
        x = x + self.lif_returned(returned.unsqueeze(0))[0]
        y = self.bn_a(self.conv_a(x))
        y = y + self.lif_shared(y.unsqueeze(0))[0]  # y is read again after the neuron
        y = self.bn_b2(self.bn_b1(self.conv_b(y)))
        y = self.lif_private(y.unsqueeze(0))[0] * y.shape[1]  # [1, B, C, H, W] view of a private output
        c = self.conv_c(y)
        y = self.bn_c(c) + c
        y = self.bn_sum(y + 1)
        tokens = self.lin(y.flatten(2).transpose(1, 2)).transpose(1, 2)  # [B, 5, HW]
        return self.bn_lin(tokens), returned


def _randomise_norms(model):
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.num_features, generator=g))
                m.bias.copy_(torch.randn(m.num_features, generator=g))
    return model


def test_trace_folds_only_batchnorms_that_read_a_private_layer_output():
    plain = _randomise_norms(_Shapes()).double().eval()
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    fast = optimize(copy.deepcopy(plain), compile=False, example_input=x)
    report = optimization_report(fast)
    assert report.folded == {
        "conv_ret": ["bn_ret"],
        "conv_a": ["bn_a"],
        "conv_b": ["bn_b1", "bn_b2"],
        "lin": ["bn_lin"],
    }
    assert type(fast.bn_c) is nn.BatchNorm2d and type(fast.bn_sum) is nn.BatchNorm2d
    assert report.in_place == ["lif_private"]
    for a, b in zip(forward(fast, x), forward(plain, x)):
        assert (a - b).abs().max().item() <= 1e-12


@pytest.mark.parametrize("layout", ["channels_last", "contiguous", "conv1d_tokens", "stride2"])
def test_pointwise_gemm_equals_the_convolution_with_its_layout(layout):
    g = torch.Generator().manual_seed(0)
    if layout == "conv1d_tokens":
        conv = nn.Conv1d(8, 5, 1).double()
        x = torch.randn(3, 7, 8, dtype=torch.float64, generator=g).transpose(1, 2)  # [M, C, N], C innermost
    else:
        conv = nn.Conv2d(8, 5, 1, stride=2 if layout == "stride2" else 1).double()
        x = torch.randn(3, 8, 6, 4, dtype=torch.float64, generator=g)
        if layout != "contiguous":
            x = x.contiguous(memory_format=torch.channels_last)
    ref = conv(x)
    out = fold.pointwise(x, conv.weight.flatten(1), conv.bias, conv.stride)
    assert out.shape == ref.shape and out.stride() == ref.stride()
    assert (out - ref).abs().max().item() <= 1e-12


@pytest.mark.parametrize("lead", [(3, 2), (2,)])
def test_gather_and_scatter_keep_the_channels_innermost_layout(lead):
    from tp_spikformer.pruning.select import _expand, gather_tokens, scatter_tokens, zeros_tokens_like

    g = torch.Generator().manual_seed(0)
    tokens = torch.randn(*lead, 30, 8, generator=g).transpose(-1, -2)  # [..., C=8, N=30], C innermost
    index = torch.stack([torch.randperm(30, generator=g)[:12] for _ in range(lead[-1])])  # [B, K]
    compact = gather_tokens(tokens, index)
    assert torch.equal(compact, tokens.contiguous().gather(-1, _expand(index, tokens)))
    assert compact.transpose(-1, -2).is_contiguous()
    values = torch.randn(compact.shape, generator=g).transpose(-1, -2).contiguous().transpose(-1, -2)
    full = scatter_tokens(tokens, index, values)
    assert torch.equal(full, tokens.contiguous().scatter(-1, _expand(index, tokens), values))
    assert full.transpose(-1, -2).is_contiguous()
    zeros = zeros_tokens_like(values, 30)
    assert zeros.shape == tokens.shape and not zeros.any() and zeros.transpose(-1, -2).is_contiguous()


# -- kernels -------------------------------------------------------------------------------------------------


def _lif_inputs():
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        yield torch.randn(4, 3, 7, 9, dtype=dtype, generator=g) * 2  # contiguous
        yield (torch.randn(4, 2, 5, 5, 6, dtype=dtype, generator=g) * 2).permute(
            0, 1, 4, 2, 3
        )  # channels innermost
        yield torch.randn(11, 2, 30, dtype=dtype, generator=g) * 2  # a long time axis (chunked when compiled)
        yield torch.randn(1, 40, dtype=dtype, generator=g) * 2


@pytest.mark.parametrize("tau, threshold", [(2.0, 1.0), (2.0, 0.5), (1.5, 1.0)])
def test_plain_lif_is_bit_identical_to_the_reference(tau, threshold):
    for x in _lif_inputs():
        ref = LIF(tau, threshold)._forward_inference(x)
        out = kernels.lif(x, tau, threshold)
        assert torch.equal(out, ref) and out.stride() == ref.stride()
    plif = ParametricLIF()
    with torch.no_grad():
        plif.w.fill_(0.3)
        x = torch.randn(4, 50) * 2
        assert torch.equal(kernels.lif(x, 2.0, 1.0, leak=plif.w.sigmoid()), plif._forward_inference(x))


def test_plain_multispike_is_bit_identical_to_the_reference():
    g = torch.Generator().manual_seed(0)
    for norm in (None, 1):
        layer = MultiSpike(norm=norm)
        for dtype in (torch.float32, torch.float64):
            x = (torch.randn(2, 5, 6, 7, dtype=dtype, generator=g) * 3).contiguous(
                memory_format=torch.channels_last
            )
            x[0, 0, 0, :4] = torch.tensor([0.5, 1.5, 2.5, 3.5], dtype=dtype)  # round half to even
            out = kernels.multispike(x, layer.max_value, layer.norm)
            assert torch.equal(out, layer(x)) and out.stride() == layer(x).stride()


needs_compile = pytest.mark.skipif(
    not os.environ.get("TP_SPIKFORMER_TEST_COMPILE"),
    reason="compiles kernels with torch.compile (20-80 s on a cold inductor cache); "
    "set TP_SPIKFORMER_TEST_COMPILE=1",
)


@needs_compile
def test_compiled_kernels_are_bit_identical(monkeypatch):
    monkeypatch.setattr(kernels, "LIF_MIN_NUMEL", 1)
    monkeypatch.setattr(kernels, "MULTISPIKE_MIN_NUMEL", 1)
    runtime = kernels.KernelRuntime(compiled=True)
    with torch.inference_mode():
        for tau, threshold in ((2.0, 1.0), (1.5, 1.0)):
            for x in _lif_inputs():
                ref = LIF(tau, threshold)._forward_inference(x)
                out = kernels.lif(x, tau, threshold, runtime=runtime)
                assert torch.equal(out, ref) and out.stride() == ref.stride()
        x = torch.randn(3, 4, 50) * 3
        assert torch.equal(kernels.multispike(x, 4.0, 4.0, runtime=runtime), MultiSpike()(x))
    assert runtime.compiled, runtime.error


@needs_compile
@pytest.mark.parametrize("path", golden_cases())
def test_compiled_optimized_model_matches_official_output(path, monkeypatch):
    monkeypatch.setattr(kernels, "LIF_MIN_NUMEL", 1)  # every activation through the compiled kernels
    monkeypatch.setattr(kernels, "MULTISPIKE_MIN_NUMEL", 1)
    case = load_case(path)
    model = optimize(build_case_model(case), compile=True)
    out = forward(model, case["input"])
    assert optimization_report(model).compiled, optimization_report(model).runtime.error
    assert (out - case["output"]).abs().max().item() <= TOLERANCE


@pytest.mark.slow
def test_a_failing_compiler_falls_back_to_plain_kernels_and_says_why(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(kernels, "_compiled", broken)
    model = build_tiny("sdt_tiny")
    x = sample_inputs(model, batch=2)
    ref = forward(model, x)
    optimize(model, compile=True)
    report = optimization_report(model)
    assert not report.compiled and "no C++ compiler" in report.runtime.error
    assert "no C++ compiler" in report.summary()
    monkeypatch.setattr(kernels, "LIF_MIN_NUMEL", 1)
    report.runtime.compiled = True  # as if compiling had worked: the first call fails, then plain
    with caplog.at_level("WARNING"):
        assert forward(model, x).shape == ref.shape
    assert not report.compiled and "plain kernels" in caplog.text


# -- SDT-V3 attention order ----------------------------------------------------------------------------------


def test_reordered_attention_is_bit_identical_in_float32():
    torch.manual_seed(0)
    attn = LinearSpikeAttention(32, num_heads=4).eval()
    fast = copy.deepcopy(attn)
    fast.__class__ = attention.ReorderedLinearSpikeAttention
    x = torch.randn(2, 32, 49) * 2
    assert torch.equal(forward(fast, x), forward(attn, x))
    assert attention.exact_in_either_order(torch.float32, 32, 196)
    assert not attention.exact_in_either_order(torch.float32, 64, 8192)  # 64 * 64 * 8192 > 2^24
    assert not attention.exact_in_either_order(torch.bfloat16, 8, 8)


# -- command line --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_optimize_option_on_inference_commands_only(tmp_path, capsys):
    from tp_spikformer.cli import build_parser, main

    parser = build_parser()
    assert parser.parse_args(["bench", "--model", "sdt_tiny", "--optimize"]).optimize == "compile"
    assert parser.parse_args(["eval", "--model", "sdt_tiny", "--optimize", "plain"]).optimize == "plain"
    for command in ("train", "finetune"):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--model", "sdt_tiny", "--optimize"])
    capsys.readouterr()
    argv = [
        "bench",
        "--model",
        "sdt_tiny",
        "--keeps",
        "0.5",
        "--batch-sizes",
        "1",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--optimize",
        "plain",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["optimize"]["folded_batchnorms"] == 17 and config["optimize"]["compiled"] is False
    assert main([*argv, "--official-arithmetic"]) == 2
    assert "--official-arithmetic" in capsys.readouterr().err


def test_evaluate_entry_point_optimizes(tmp_path):
    from tp_spikformer.evaluate import main

    out = tmp_path / "r"
    assert (
        main(
            [
                "--model",
                "sdt_tiny",
                "--dataset",
                "synthetic:8",
                "--batch-size",
                "4",
                "--keep",
                "0.5",
                "--optimize",
                "plain",
                "--threads",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert json.loads((out / "results.json").read_text())["n"] == 8
