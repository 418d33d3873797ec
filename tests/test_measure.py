"""measure: golden counts on hand-computable modules, conventions, dense vs pruned, FLOP counter, benchmark."""

import json
import math

import pytest
import torch
from torch import nn

from tp_spikformer.measure import (
    EnergyConventions,
    benchmark,
    compare_dense_pruned,
    count_ops,
    cross_check_flops,
    energy_preset,
    make_variants,
    measure_energy,
    measure_many,
)
from tp_spikformer.measure.benchmark import CpuLoadMeter
from tp_spikformer.measure.ops import OpCounter
from tp_spikformer.models import create_model, get_model_config, list_models, token_blocks
from tp_spikformer.models.layers import LIF, MultiSpike, SpikeProduct
from tp_spikformer.pruning import get_tp_state

PJ = 1e-9  # pJ -> mJ


def tiny(name, seed=0):
    """A tiny model with random BN statistics so that neurons fire at useful rates."""
    torch.manual_seed(seed)
    model = create_model(name).eval()
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.normal_(0, 0.2, generator=g)
            m.running_var.uniform_(0.5, 2.0, generator=g)
            m.weight.data.uniform_(2.0, 4.0, generator=g)
            m.bias.data.normal_(0.3, 0.3, generator=g)
    return model


def images(model, batch=2, seed=0):
    c, h, w = model.config.data.input_size
    return torch.randn(batch, c, h, w, generator=torch.Generator().manual_seed(seed))


class Chain(nn.Module):
    """Runs its modules in order (a Sequential whose children are addressable by name)."""

    def __init__(self, **mods):
        super().__init__()
        for k, v in mods.items():
            setattr(self, k, v)
        self.order = list(mods)

    def forward(self, x):
        for k in self.order:
            x = getattr(self, k)(x)
        return x


class Binarize(nn.Module):
    def forward(self, x):
        return (x > 0).float()


class Product(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.p = SpikeProduct(kind)

    def forward(self, a, b):
        return self.p(a, b)


def conv1x1(cin, cout):
    conv = nn.Conv2d(cin, cout, 1, bias=False)
    nn.init.normal_(conv.weight)
    return conv


def identity_conv(c):
    conv = nn.Conv2d(c, c, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(c).reshape(c, c, 1, 1))
    return conv


# -- golden counts -----------------------------------------------------------------------------------


def test_conv1x1_on_known_spikes_by_hand():
    conv = conv1x1(3, 2)
    x = torch.zeros(1, 3, 2, 2)
    x[0, 0, 0, 0] = x[0, 0, 1, 1] = x[0, 1, 0, 1] = x[0, 2, 1, 0] = x[0, 2, 1, 1] = 1.0  # 5 spikes of 12
    report = measure_energy(Chain(conv=conv), x)
    row = report.layer("conv")
    # MACs = numel(out) x C_in = (1*2*2*2) * 3 = 24; fan-out of an input spike = C_out = 2
    assert row.macs == 24
    assert row.input_elements == 12 and row.input_nonzero == 5
    assert row.input_kind == "binary" and row.charged_as == "AC"
    assert row.firing_rate == pytest.approx(5 / 12)
    assert row.sops == pytest.approx(10)  # 5 spikes x fan-out 2 = 24 x 5/12
    assert row.mac_ops == 0
    assert row.energy_mj == pytest.approx(10 * 0.9 * PJ)
    assert report.totals["energy_mj"] == pytest.approx(10 * 0.9 * PJ)
    assert report.totals["flops"] == 48


def test_grouped_conv_and_linear_macs_from_actual_shapes():
    dw = nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False)
    lin = nn.Linear(4, 3)
    model = Chain(dw=dw, bin=Binarize(), flat=nn.Flatten(2), tr=_Transpose(), lin=lin)
    x = torch.randn(2, 4, 5, 5)
    counts = count_ops(model, x)
    # depthwise 3x3: numel(out) x (C_in/groups) x 9 = (2*4*5*5) * 1 * 9
    # Linear: numel(out) x in_features = (2*25*3) * 4
    assert counts.layers["dw"].macs == 2 * 4 * 5 * 5 * 9
    assert counts.layers["lin"].macs == 2 * 25 * 3 * 4


class _Transpose(nn.Module):
    def forward(self, x):
        return x.transpose(1, 2)


def test_spike_matmul_counts_by_hand():
    a = torch.tensor([[1.0, 0, 1], [0, 1, 0]])  # [2, 3], 3 spikes
    b = torch.tensor([[1.0, 1, 0, 0], [0, 0, 0, 1], [1, 1, 1, 1]])  # [3, 4], row sums 2, 1, 4
    model = Product("matmul")
    with OpCounter(model) as counter, torch.inference_mode():
        model(a, b)
    counts = counter.counts()
    row = counts.report(per_sample=False).layer("p")
    assert row.macs == 2 * 3 * 4  # numel(out) x K
    assert row.input_kind == "binary" and row.input2_kind == "binary"
    # "first": every op whose first-operand element is non-zero: 3 spikes x fan-out M=4
    assert row.sops == pytest.approx(12)
    assert row.energy_mj == pytest.approx(12 * 0.9 * PJ)
    # "both": sum_k colsum(a)_k x rowsum(b)_k = 1*2 + 1*1 + 1*4 = 7 = number of (i, k, j) with a_ik b_kj = 1
    both = counts.report(EnergyConventions(product_rule="both"), per_sample=False).layer("p")
    assert both.sops == pytest.approx(7) == ((a != 0).float() @ (b != 0).float()).sum().item()
    excluded = counts.report(EnergyConventions(count_products=False), per_sample=False)
    assert excluded.layer("p").charged_as == "excluded" and excluded.totals["energy_mj"] == 0
    assert excluded.layer("p").macs == 24


def test_spike_mul_with_broadcast_by_hand():
    a = torch.tensor([[[1.0, 0, 1]], [[0, 0, 1]]])  # [2, 1, 3], 3 spikes
    b = torch.ones(2, 4, 3)
    row = _product_row("mul", a, b)
    assert row.macs == 2 * 4 * 3  # numel(out)
    assert row.sops == pytest.approx(3 * 4)  # each spike of a meets 4 elements of b


def _product_row(kind, a, b, conventions=None):
    model = Product(kind)
    with OpCounter(model) as counter, torch.inference_mode():
        model(a, b)
    return counter.counts().report(conventions, per_sample=False).layer("p")


def test_product_with_real_operand_is_mac_by_default():
    a = torch.tensor([[1.0, 0], [0, 1]])
    b = torch.tensor([[0.5, -1.0], [2.0, 0.25]])
    assert _product_row("matmul", a, b).charged_as == "MAC"
    assert _product_row("matmul", a, b).mac_ops == 8
    ac = _product_row("matmul", a, b, EnergyConventions(mixed_products="ac"))
    assert ac.charged_as == "AC" and ac.sops == pytest.approx(2 * 2)  # 2 spikes x fan-out 2


# -- conventions -------------------------------------------------------------------------------------


def test_first_layer_real_input_charged_as_mac_and_static_repeat_once():
    conv1, conv2 = conv1x1(3, 4), conv1x1(4, 2)
    model = Chain(conv1=conv1, bin=Binarize(), conv2=conv2)
    img = torch.randn(1, 3, 2, 2)
    x = img.repeat(2, 1, 1, 1)  # T = 2 identical steps, time-major [T*B, C, H, W]
    counts = count_ops(model, x, T=2)
    rep = counts.report(per_sample=False)
    first = rep.layer("conv1")
    assert first.first_layer and first.input_kind == "real" and first.charged_as == "MAC"
    assert first.macs == 2 * 4 * 4 * 3  # all T steps ran: numel(out) = 2*4*2*2, x C_in 3
    assert first.mac_ops == first.macs / 2  # a static image repeated over T is charged once
    assert first.energy_mj == pytest.approx(first.macs / 2 * 4.6 * PJ)
    per_step = counts.report(EnergyConventions(first_layer_repeats="per_step"), per_sample=False)
    assert per_step.layer("conv1").mac_ops == first.macs
    assert rep.layer("conv2").charged_as == "AC" and not rep.layer("conv2").first_layer


def test_first_layer_binary_input_auto_ac_or_forced_mac():
    model = Chain(conv1=conv1x1(2, 3))
    x = torch.tensor([[[[1.0, 0], [0, 0]], [[1, 1], [0, 0]]]])  # 3 events of 8
    counts = count_ops(model, x)
    auto = counts.report(per_sample=False).layer("conv1")
    assert auto.charged_as == "AC" and auto.sops == pytest.approx(3 * 3)  # 3 events x fan-out 3
    forced = counts.report(EnergyConventions(first_layer="mac"), per_sample=False).layer("conv1")
    assert forced.charged_as == "MAC" and forced.mac_ops == 4 * 3 * 2


def test_event_counts_as_first_layer_input_charged_per_count():
    model = Chain(conv1=conv1x1(1, 2))
    x = torch.tensor([[[[2.0, 0], [1, 3]]]])  # event counts: 6 events, 3 non-zero pixels
    row = count_ops(model, x).report(per_sample=False).layer("conv1")
    assert row.input_kind == "integer" and row.charged_as == "AC"
    assert row.sops == pytest.approx(6 * 2)


def test_non_binary_input_to_later_layer_charged_as_mac():
    conv1, conv2 = conv1x1(2, 3), conv1x1(3, 2)
    model = Chain(conv1=conv1, conv2=conv2)  # conv2 reads conv1's real-valued output
    x = (torch.rand(1, 2, 3, 3) > 0.5).float()
    rep = measure_energy(model, x)
    assert rep.layer("conv1").charged_as == "AC"
    row = rep.layer("conv2")
    assert row.input_kind == "real" and row.charged_as == "MAC"
    assert row.mac_ops == row.macs == 9 * 2 * 3 and row.sops == 0
    assert row.energy_mj == pytest.approx(54 * 4.6 * PJ)


def test_sums_of_spikes_charged_as_mac_unless_asked():
    model = Chain(pre=conv1x1(2, 2), bin=Binarize(), add=_AddSelf(), conv=conv1x1(2, 2))
    counts = count_ops(model, torch.randn(1, 2, 2, 2))
    row = counts.report(per_sample=False).layer("conv")
    assert row.input_kind == "integer" and row.charged_as == "MAC"  # values 0 or 2 are not binary
    assert row.input_spikes == 2 * row.input_nonzero
    as_levels = counts.report(EnergyConventions(integer_inputs="per_level"), per_sample=False).layer("conv")
    assert as_levels.charged_as == "AC" and as_levels.sops == pytest.approx(row.input_spikes * 2)  # fan-out 2


class _AddSelf(nn.Module):
    def forward(self, x):
        return x + x  # 0 or 2: a non-binary integer input


def test_multi_level_spikes_counted_per_level():
    model = Chain(pre=identity_conv(1), ms=MultiSpike(), conv=conv1x1(1, 3))  # conv is not the first layer
    # MultiSpike: round(clamp(x, 0, 4)) / 4 -> levels 0, 1, 2, 4, 3 (sum 10), 4 non-zero of 6
    x = torch.tensor([0.0, 1.2, 2.0, 9.0, 3.4, -1.0]).reshape(1, 1, 2, 3)
    counts = count_ops(model, x)
    row = counts.report(per_sample=False).layer("conv")
    assert row.input_kind == "multi-level" and row.charged_as == "AC"
    assert row.input_spikes == pytest.approx(10) and row.input_nonzero == 4
    assert row.firing_rate == pytest.approx(10 / 6)
    assert row.sops == pytest.approx(10 * 3)  # each unit level is one spike, fan-out 3
    per_event = counts.report(EnergyConventions(multi_level="per_event"), per_sample=False).layer("conv")
    assert per_event.sops == pytest.approx(4 * 3)
    as_mac = counts.report(EnergyConventions(multi_level="mac"), per_sample=False).layer("conv")
    assert as_mac.charged_as == "MAC" and as_mac.mac_ops == 18


def test_multi_level_output_that_looks_binary_still_counts_levels():
    model = Chain(ms=MultiSpike(), conv=conv1x1(1, 1))
    x = torch.tensor([4.0, 0, 4, 0]).reshape(1, 1, 2, 2)  # MultiSpike output 1, 0, 1, 0 = 4 + 4 levels
    row = count_ops(model, x).report(per_sample=False).layer("conv")
    assert row.input_kind == "multi-level" and row.input_spikes == pytest.approx(8)


def test_head_integer_multispike_and_copied_levels():
    head = Chain(ms=MultiSpike(norm=1), conv=conv1x1(1, 1))
    x = torch.tensor([0.0, 1, 3, 4]).reshape(1, 1, 2, 2)
    row = count_ops(head, x).report(per_sample=False).layer("conv")
    assert row.input_kind == "multi-level" and row.input_spikes == pytest.approx(8)
    # a copy between the neuron and the layer hides the storage; the model's level grid still finds it
    copied = Chain(ms=MultiSpike(), cp=_Clone(), conv=conv1x1(1, 1))
    x = torch.tensor([1.0, 2, 0, 3]).reshape(1, 1, 2, 2)
    row = count_ops(copied, x).report(per_sample=False).layer("conv")
    assert row.input_kind == "multi-level" and row.input_spikes == pytest.approx(6)


class _Clone(nn.Module):
    def forward(self, x):
        return x.clone() + 0.0


def test_multi_level_product_both_rule_multiplies_levels():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.ms = MultiSpike()
            self.p = SpikeProduct("mul")

        def forward(self, x):
            a = self.ms(x)  # levels 2, 0, 3
            return self.p(a, torch.tensor([1.0, 1.0, 0.0]))

    model = Net()
    with OpCounter(model) as c, torch.inference_mode():
        model(torch.tensor([2.0, 0.0, 3.0]))
    first = c.counts().report(per_sample=False).layer("p")
    assert first.sops == pytest.approx(5)  # 2 + 3 levels of a, fan-out 1
    both = c.counts().report(EnergyConventions(product_rule="both"), per_sample=False).layer("p")
    assert both.sops == pytest.approx(2)  # only a = 2/4 meets a non-zero b: 2 x 1 levels


def test_per_step_firing_rates_and_neuron_counts():
    lif = LIF(v_threshold=0.5)
    conv = conv1x1(2, 1)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lif, self.conv = lif, conv

        def forward(self, x):  # x: [T, B, C, H, W]
            s = self.lif(x)
            return self.conv(s.flatten(0, 1))

    x = torch.zeros(2, 1, 2, 2, 2)
    x[1, 0, 0] = 5.0  # step 0 silent, step 1: 4 of 8 fire
    rep = count_ops(Net(), x, T=2).report(per_sample=False)
    row = rep.layer("conv")
    assert row.firing_rate_per_step == pytest.approx([0.0, 0.5])
    assert row.firing_rate == pytest.approx(0.25) and row.T == 2
    assert row.sops == pytest.approx(row.macs / row.T * row.T * row.firing_rate)
    assert rep.totals["neuron_updates"] == 16


def test_energy_presets_recharge_without_rerunning():
    model = tiny("sdt_tiny")
    counts = count_ops(model, images(model))
    fp32 = counts.report()
    int8 = counts.report(energy_preset("45nm_int8"))
    assert int8.totals["sops"] == fp32.totals["sops"] and int8.totals["mac_ops"] == fp32.totals["mac_ops"]
    expected = (fp32.totals["mac_ops"] * 0.23 + fp32.totals["sops"] * 0.03) * PJ
    assert int8.totals["energy_mj"] == pytest.approx(expected)
    with pytest.raises(ValueError):
        EnergyConventions(first_layer="sometimes")
    with pytest.raises(KeyError):
        energy_preset("7nm")


# -- models ------------------------------------------------------------------------------------------


def test_only_modules_that_ran_are_counted():
    model = tiny("sdt_tiny")
    rep = measure_energy(model, images(model))
    names = {r.name for r in rep.layers}
    assert not any("talking_heads" in n for n in names)  # built but never called, as officially
    assert "patch_embed.proj_conv" in names and "head" in names
    assert rep.layer("patch_embed.proj_conv").first_layer
    assert [g.group for g in rep.groups] == ["stem", "block.0", "block.1", "head"]


@pytest.mark.slow
def test_sdt_tiny_pruned_block_macs_scale_with_kept_tokens():
    model = tiny("sdt_tiny")
    x = images(model, batch=3)
    pruned = make_variants(model, [(0.5, "official")])[0].activate()
    reports = measure_many({"dense": model, "pruned": pruned}, x, per_sample=False)
    dense, tp = reports["dense"], reports["pruned"]
    records = get_tp_state(pruned).records
    T, C, B = 2, 32, 3
    for rec in records:
        d, p = dense.group(rec.name), tp.group(rec.name)
        assert rec.total == 64 and rec.kept == 32
        # token-wise part per token and step: q, k, v, proj (C x C) + fc1, fc2 (C x 4C) + two C-wide masks
        per_token = 12 * C * C + 2 * C
        assert d.macs_token == T * B * rec.total * per_token
        assert p.macs_token == T * B * rec.kept * per_token
        assert p.macs_token == d.macs_token * rec.kept / rec.total
        assert p.macs_dense == d.macs_dense == 0
        assert p.kept_fraction == rec.kept / rec.total and d.kept_fraction == 1.0
    for name in ("stem",):
        assert tp.group(name).macs == dense.group(name).macs
        assert tp.group(name).sops == dense.group(name).sops
        assert tp.group(name).energy_mj == dense.group(name).energy_mj
    assert tp.group("head").macs == dense.group("head").macs


@pytest.mark.slow
def test_sdt_v3_tiny_dense_part_unchanged_token_part_by_hand():
    model = tiny("sdt_v3_tiny")
    x = images(model, batch=1)
    cmp = compare_dense_pruned(model, x, keep=0.5, scorer="official")
    C, N, k = 32, 16, 8  # 4x4 grid, keep ceil(0.5 * 16) = 8
    for name, _ in token_blocks(model):
        d, p = cmp.first.group(name), cmp.second.group(name)
        # SepConv (dense part): 1x1 C->2C, 3x3 depthwise on 2C, 1x1 2C->C, on all N tokens
        assert d.macs_dense == p.macs_dense == N * (2 * C * C + 2 * C * 9 + 2 * C * C)
        # token part: q, k (C x C), v, proj, fc1, fc2 (C x 4C) per token + Q K^T (C N^2) + (QK) V (4 C N^2)
        assert d.macs_token == 18 * C * C * N + 5 * C * N * N
        assert p.macs_token == 18 * C * C * k + 5 * C * k * k
    assert cmp.row("stem")["macs_ratio"] == 1.0 and cmp.row("downsample")["macs_ratio"] == 1.0
    assert cmp.row("total")["macs_ratio"] < 1.0
    grp = {r.name: (r.group, r.part) for r in cmp.first.layers}
    assert grp["downsample1_1.encode_conv"] == ("stem", "")
    assert grp["downsample4.encode_conv"] == ("downsample", "")
    assert grp["head"] == ("head", "")
    assert grp["block3.0.conv.dwconv.0"] == ("block3.0", "dense")
    assert grp["block3.0.attn.qk_product"] == ("block3.0", "token")
    assert cmp.first.layer("block3.0.attn.q_conv.0").input_kind == "multi-level"
    assert cmp.first.layer("head").input_kind == "multi-level"


@pytest.mark.parametrize(
    "name", [n for n in list_models("*_tiny") if get_model_config(n).task == "classification"]
)
@pytest.mark.slow
def test_macs_match_flop_counter_mode(name):
    model = tiny(name)
    x = images(model)
    check = cross_check_flops(model, x)
    assert check["match"], check
    pruned = cross_check_flops(make_variants(model, [(0.5, "official")])[0].activate(), x)
    assert pruned["match"], pruned
    assert pruned["ours_macs"] < check["ours_macs"]


@pytest.mark.slow
def test_report_serialises():
    model = tiny("sdt_tiny")
    cmp = compare_dense_pruned(model, [images(model, seed=s) for s in range(2)], keep=0.5)
    rep = cmp.second
    assert rep.samples == 4 and rep.forwards == 2 and rep.T == 2 and rep.tp["scorer"] == "official"
    data = json.loads(rep.to_json())
    assert data["conventions"]["e_mac_pj"] == 4.6 and data["totals"]["energy_mj"] > 0
    assert {"macs", "sops", "energy_mj", "firing_rate", "firing_rate_per_step", "T"} <= set(data["layers"][0])
    layer_csv = rep.to_csv(level="layer").splitlines()
    assert layer_csv[0].startswith("name,op,") and len(layer_csv) == len(rep.layers) + 1
    block_csv = rep.to_csv(level="block").splitlines()
    assert block_csv[-1].startswith("total,")
    assert "| group |" in rep.to_markdown() and "| layer |" in rep.to_markdown("layer")
    assert "ratio" in cmp.to_markdown() and cmp.to_csv().startswith("group,")
    total = cmp.row("total")
    assert total["macs_ratio"] == pytest.approx(total["macs_pruned"] / total["macs_dense"])
    assert json.loads(cmp.to_json())["names"] == ["dense", "pruned"]


def test_counter_detaches_cleanly():
    model = tiny("sdt_tiny")
    x = images(model)
    with torch.no_grad():
        before = model(x)
    with OpCounter(model), torch.no_grad():
        during = model(x)
    with torch.no_grad():
        after = model(x)
    assert torch.equal(before, during) and torch.equal(before, after)
    assert all("token_forward" not in b.__dict__ for _, b in token_blocks(model))
    assert not model._forward_hooks and not model._forward_pre_hooks


# -- benchmark ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_benchmark_returns_expected_keys_and_positive_numbers():
    model = tiny("sdt_tiny")
    variants = {v.label: v for v in make_variants(model, [(None, None), (0.5, "official")])}
    res = benchmark(variants, batch_sizes=(1, 2), warmup=1, repeats=3)
    data = json.loads(res.to_json())
    assert set(data) == {"environment", "config", "results", "cpu_load"}
    env = data["environment"]
    for key in ("torch", "torch_threads", "device", "device_name", "cpu_model", "date_utc"):
        assert env[key] not in (None, "")
    assert len(data["results"]) == 4
    for r in data["results"]:
        lat = r["latency_ms"]
        assert lat["n"] == 3 and 0 < lat["min"] <= lat["median"] <= lat["max"] and lat["iqr"] >= 0
        assert r["throughput_per_s"] > 0 and r["speedup"] > 0
        assert r["peak_memory_bytes"] is not None and r["peak_memory_bytes"] >= 0 and r["memory_method"]
    assert res.get("dense", 1)["latency_ratio"] == 1.0
    assert {"batch_1", "batch_2", "overall"} <= set(data["cpu_load"])
    assert "method" in data["cpu_load"]["overall"]
    assert "| batch |" in res.to_markdown()
    assert not model.training


def test_cpu_load_meter():
    meter = CpuLoadMeter().start()
    sum(i * i for i in range(200_000))
    load = meter.stop()
    assert load["window_s"] > 0
    if "other_busy_cores" in load:
        assert load["other_busy_cores"] >= 0 and 0 <= load["other_busy_fraction"] <= 1
        assert not math.isnan(load["own_busy_cores"])


# -- tensor memory tracking ---------------------------------------------------------------------------


def test_peak_tensor_bytes_counts_exactly_what_the_call_allocates():
    from tp_spikformer.measure.tensor_memory import peak_tensor_bytes

    # ones (4000 B) and the sum (4000 B) live together; the scalar result adds 4 B after ones is freed
    peak, out = peak_tensor_bytes(lambda: (torch.ones(1000) + 1).sum())
    assert peak == 8000 and out.item() == 2000
    x = torch.zeros(1000)
    peak, _ = peak_tensor_bytes(lambda: x.add_(1).view(10, 100)[0])  # in place and views: nothing new
    assert peak == 0 and x[0].item() == 1
    peak, _ = peak_tensor_bytes(lambda: [torch.empty(250) for _ in range(3)])  # all three stay alive
    assert peak == 3000


@pytest.mark.slow
def test_peak_tensor_bytes_frees_and_is_deterministic():
    from tp_spikformer.measure import peak_memory
    from tp_spikformer.measure.tensor_memory import TensorMemoryTracker

    def step():
        a = torch.ones(1000)
        del a
        return torch.ones(500)

    with TensorMemoryTracker() as tracker:
        out = step()
        assert tracker.current == 2000
        del out
    assert tracker.peak == 4000 and tracker.current == 0
    model = tiny("sdt_tiny").eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.inference_mode():
        first = peak_memory(lambda: model(x), "cpu")
        second = peak_memory(lambda: model(x), "cpu")
    assert first == second and first[0] > x.numel() * 4 and "tensor storages" in first[1]
    with pytest.raises(ValueError, match="'tensors' or 'rss'"):
        peak_memory(lambda: model(x), "cpu", cpu_memory="vms")
