"""Keep-schedule search (``tp.calibrate``): budget accounting, the JSON round trip, ``--keep schedule.json``,
unlabelled objectives, bad budgets, and the allocation against brute force."""

import itertools
import json
import math
import random
import sys
import warnings

import pytest
import torch

import tp_spikformer as tp
from tp_spikformer.calibrate import CalibrationResult, allocate, calibrate
from tp_spikformer.calibrate.evaluator import Evaluator
from tp_spikformer.calibrate.search import calibrate as calibrate_fn
from tp_spikformer.cli import main
from tp_spikformer.data import synthetic_dataset
from tp_spikformer.errors import MissingPathError, UsageError, UsageTypeError
from tp_spikformer.measure import measure_energy
from tp_spikformer.pruning import KeepSchedule, apply_tp, get_tp_state, parse_keep

FAST = {
    "calibration_size": 24,
    "batch_size": 12,
    "levels": (0.75, 0.5, 0.25),
    "refine_rounds": 1,
    "verbose": False,
}


def data_for(model, n=48):
    c, h, _ = model.config.data.input_size
    return synthetic_dataset(n, h, c)


def calibration_inputs(result, data):
    """The calibration images ``calibrate`` used, batched as it batched them."""
    idx = result.settings["calibration_indices"]
    bs = result.settings["batch_size"]
    return [data.get_batch(torch.tensor(idx[i : i + bs])) for i in range(0, len(idx), bs)]


def path_text(path):
    with open(path) as f:
        return f.read()


def counted(model, keep, inputs, metric):
    """``metric`` per image of ``model`` with ``keep`` (None: dense), counted independently of calibrate."""
    m = tp.create_model(model.config.name)
    m.load_state_dict(model.state_dict())
    m.eval()
    if keep is not None:
        apply_tp(m, keep=keep)
    return measure_energy(m, inputs).totals[metric]


# -- budget accounting ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("metric,budget", [("macs", 0.85), ("sops", 0.7)])
def test_found_schedule_is_within_the_counted_budget(tiny, metric, budget):
    model = tiny("sdt_tiny")
    data = data_for(model)
    result = calibrate(model, data, budget, metric=metric, **FAST)
    assert result.cost <= budget
    inputs = calibration_inputs(result, data)
    dense = counted(model, None, inputs, metric)
    pruned = counted(model, result.schedule, inputs, metric)
    assert pruned / dense == pytest.approx(result.cost, rel=1e-9)
    assert pruned <= budget * dense
    assert result.cost_absolute == pytest.approx(pruned, rel=1e-9)
    assert result.schedule.rule == "fraction" and len(result.schedule.values) == 2
    assert result.uniform["cost"] <= budget


@pytest.mark.slow
def test_uniform_baseline_is_the_largest_uniform_keep_within_the_budget(tiny):
    model = tiny("spikformer_tiny")
    data = data_for(model)
    result = calibrate(model, data, 0.9, **FAST)
    f = result.uniform["fraction"]
    inputs = calibration_inputs(result, data)[:1]
    dense = counted(model, None, inputs, "macs")
    assert counted(model, f, inputs, "macs") <= 0.9 * dense
    grid = 8 * 8  # both blocks of spikformer_tiny run on 8x8
    next_up = (math.ceil(f * grid - 1e-9) + 1) / grid
    assert counted(model, next_up, inputs, "macs") > 0.9 * dense
    assert result.search_gain == pytest.approx(result.uniform["objective_value"] - result.objective_value)


@pytest.mark.slow
def test_search_stays_within_its_pass_count_and_is_deterministic(tiny):
    """A bounded number of calibration passes (blocks x levels + refinement + a few), the same result
    twice."""
    model = tiny("sdt_tiny")
    data = data_for(model)
    a = calibrate(model, data, 0.85, seed=3, **FAST)
    b = calibrate(model, data, 0.85, seed=3, **FAST)
    blocks, levels, width, rounds = 2, 3, 4, 1
    assert a.settings["passes"] <= blocks * levels + 2 * rounds * width + 6
    assert a.schedule == b.schedule and a.settings["calibration_indices"] == b.settings["calibration_indices"]
    assert [h["objective_value"] for h in a.history] == [h["objective_value"] for h in b.history]
    assert a.seconds > 0 and set(a.phases) >= {"profile", "allocate", "refine", "uniform"}


@pytest.mark.slow
def test_latency_budget_follows_the_measurement(tiny, monkeypatch):
    """The latency path (MAC proxy, correction by measurement) with a deterministic stand-in for the clock:
    latency ratio = 0.2 + 0.8 x MAC ratio."""

    def fake_latency(self, values, scorer, repeats=None):
        self._configure(tuple(values))
        pruned = self._count("macs").totals["macs"]
        self.state.enabled = False
        full = self._count("macs").totals["macs"]
        self.state.enabled = True
        ratio = 0.2 + 0.8 * pruned / full
        return {"ratio": ratio, "dense_ms": 10.0, "pruned_ms": 10.0 * ratio}

    monkeypatch.setattr(Evaluator, "latency", fake_latency)
    model = tiny("sdt_tiny")
    result = calibrate(model, data_for(model), 0.9, metric="latency", **FAST)
    assert result.metric == "latency" and result.cost <= 0.9
    assert result.cost_absolute == pytest.approx(10.0 * result.cost)


@pytest.mark.slow
def test_several_scorers_are_searched(tiny):
    model = tiny("sdt_tiny")
    result = calibrate(model, data_for(model), 0.85, scorers=["official", "random"], **FAST)
    assert set(result.per_scorer) == {"official", "random"}
    assert result.scorer in result.per_scorer
    assert result.objective_value == min(v["value"] for v in result.per_scorer.values())


# -- JSON round trip and --keep schedule.json ----------------------------------------------------------------


@pytest.mark.slow
def test_json_round_trip_applies_the_same_schedule(tiny, inputs, tmp_path):
    model = tiny("sdt_tiny")
    result = calibrate(model, data_for(model), 0.85, **FAST)
    path = result.save(tmp_path / "schedule.json")
    record = json.loads(path_text(path))
    for key in ("model", "block_names", "budget", "metric", "cost", "search", "scorer", "objective"):
        assert key in record, key
    assert record["model"] == "sdt_tiny" and record["block_names"] == ["block.0", "block.1"]
    assert record["budget"] == 0.85 and record["metric"] == "macs" and record["cost"] == result.cost
    loaded = KeepSchedule.load(path)
    assert loaded == result.schedule and loaded.block_names == ("block.0", "block.1")
    x = inputs(model, batch=2)

    def records(keep):
        st = apply_tp(model, keep=keep)
        with torch.inference_mode():
            out = model(x)
        recs = [(r.name, r.kept, None if r.indices is None else r.indices.tolist()) for r in st.records]
        tp.remove_tp(model)
        return out, recs

    out_a, rec_a = records(result.schedule)
    for keep in (loaded, str(path), path, result):
        out_b, rec_b = records(keep)
        assert rec_b == rec_a
        assert torch.equal(out_b, out_a)


def test_parse_keep_reads_schedule_files_and_reports_bad_ones(tmp_path):
    sched = KeepSchedule("fraction", (0.5, 0.25), block_names=("a", "b"))
    path = sched.save(tmp_path / "s.json", note="x")
    assert parse_keep(str(path)) == sched
    with pytest.raises(MissingPathError, match="missing.json does not exist"):
        parse_keep(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UsageError, match="bad.json is not valid JSON"):
        parse_keep(str(bad))
    bad.write_text(json.dumps({"rule": "fraction"}))
    with pytest.raises(UsageError, match="lacks \\['values'\\]"):
        parse_keep(str(bad))
    bad.write_text(json.dumps({"rule": "fraction", "values": [0.5, 1.5]}))
    with pytest.raises(UsageError, match="bad.json.*invalid fraction value 1.5"):
        parse_keep(str(bad))
    bad.write_text(json.dumps({"format": "something-else", "rule": "fraction", "values": 0.5}))
    with pytest.raises(UsageError, match="not a keep schedule"):
        parse_keep(str(bad))


def test_schedule_made_for_other_blocks_warns(tiny, tmp_path):
    model = tiny("sdt_tiny")
    path = KeepSchedule("fraction", (0.5, 0.5), block_names=("stage1.0", "stage2.0")).save(
        tmp_path / "s.json"
    )
    with pytest.warns(UserWarning, match="made for blocks"):
        apply_tp(model, keep=str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        get_tp_state(model).keep = KeepSchedule("fraction", (0.5, 0.5), block_names=("block.0", "block.1"))


@pytest.mark.slow
def test_cli_calibrate_then_eval_with_the_schedule_file(tmp_path, capsys):
    out = tmp_path / "cal"
    assert (
        main(
            [
                "calibrate",
                "--model",
                "sdt_tiny",
                "--dataset",
                "synthetic:48",
                "--budget",
                "0.85",
                "--calibration-size",
                "24",
                "--batch-size",
                "12",
                "--levels",
                "0.75",
                "0.5",
                "0.25",
                "--refine-rounds",
                "1",
                "--out",
                str(out),
                "--threads",
                "1",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "cost:" in printed and "schedule.json" in printed
    schedule = KeepSchedule.load(out / "schedule.json")
    report = json.loads((out / "calibration_report.json").read_text())
    assert report["history"] and report["keep"] == str(schedule)
    ev = tmp_path / "ev"
    assert (
        main(
            [
                "eval",
                "--model",
                "sdt_tiny",
                "--dataset",
                "synthetic:32",
                "--batch-size",
                "16",
                "--no-speed",
                "--energy-batches",
                "1",
                "--no-progress",
                "--keep",
                str(out / "schedule.json"),
                "--out",
                str(ev),
            ]
        )
        == 0
    )
    rows = json.loads((ev / "results.json").read_text())["rows"]
    assert rows[1]["keep"] == str(schedule)


def test_cli_calibrate_errors_exit_2(tmp_path, capsys):
    base = [
        "calibrate",
        "--model",
        "sdt_tiny",
        "--dataset",
        "synthetic:48",
        "--calibration-size",
        "24",
        "--out",
        str(tmp_path / "o"),
    ]
    assert main([*base, "--budget", "1.5"]) == 2
    assert "0 < budget <= 1" in capsys.readouterr().err
    assert main([*base, "--budget", "0.5", "--keep", "0.5"]) == 2
    assert "--keep is not used" in capsys.readouterr().err
    # options the search would not read are refused, not dropped
    assert (
        main([*base, "--budget", "0.5", "--scorer", "paper", "--search-scorers", "official", "random"]) == 2
    )
    assert "--scorer and --search-scorers exclude each other" in capsys.readouterr().err
    assert main([*base, "--budget", "0.5", "--latency-repeats", "3"]) == 2
    assert "--latency-repeats does nothing without --metric latency" in capsys.readouterr().err


def test_cli_calibrate_does_not_take_the_shipped_test_slice_for_training_images(tmp_path, capsys):
    argv = ["calibrate", "--model", "sdt_tiny", "--budget", "0.5", "--out", str(tmp_path)]
    assert main(argv) == 2  # default --dataset shipped, default --split train
    err = capsys.readouterr().err
    assert "Fashion-MNIST test split" in err and "--split test" in err and "--dataset fashion_mnist" in err


# -- objectives and inputs --------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["logits_kl", "features"])
def test_unlabelled_objectives_work_on_a_tensor_of_images(tiny, inputs, objective):
    model = tiny("spikformer_tiny")
    images = inputs(model, batch=20, seed=1)
    result = calibrate(
        model,
        images,
        0.9,
        objective=objective,
        calibration_size=16,
        batch_size=8,
        levels=(0.75, 0.5),
        refine_rounds=1,
        verbose=False,
    )
    assert result.objective == objective and not result.settings["labelled"]
    assert result.cost <= 0.9 and result.objective_value >= 0.0
    assert result.dense_report["value"] == 0.0  # the dense model does not diverge from itself


def test_accuracy_objective_needs_labels(tiny, inputs):
    model = tiny("spikformer_tiny")
    with pytest.raises(UsageError, match="logits_kl"):
        calibrate(model, inputs(model, batch=8), 0.9, calibration_size=8, verbose=False)


def test_calibration_size_larger_than_the_data_is_refused(tiny):
    model = tiny("spikformer_tiny")
    with pytest.raises(UsageError, match="only 48 samples"):
        calibrate(model, data_for(model), 0.9, calibration_size=100, verbose=False)


# -- bad budgets ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "budget,error",
    [
        (0, UsageError),
        (-0.2, UsageError),
        (1.01, UsageError),
        (float("nan"), UsageError),
        (True, UsageTypeError),
        ("0.5", UsageTypeError),
    ],
)
def test_invalid_budgets_raise(tiny, budget, error):
    model = tiny("spikformer_tiny")
    with pytest.raises(error, match="budget"):
        calibrate(model, data_for(model), budget, **FAST)


@pytest.mark.slow
def test_unreachable_budget_names_the_minimum_reachable_cost(tiny):
    model = tiny("spikformer_tiny")
    data = data_for(model)
    inputs = [data.get_batch(torch.arange(1))]
    smallest = counted(model, 0.25, inputs, "macs") / counted(
        model, None, inputs, "macs"
    )  # every block at 0.25
    with pytest.raises(UsageError) as err:
        calibrate(model, data, 0.3, **FAST)
    assert f"minimum reachable cost is {smallest:.4f}" in str(err.value)
    assert "Give a budget >=" in str(err.value)


def test_drop_and_cumulative_modes_are_refused(tiny):
    model = tiny("spikformer_tiny")
    for kwargs in ({"mode": "drop"}, {"cumulative": True}):
        with pytest.raises(UsageError, match="mode='stop'"):
            calibrate(model, data_for(model), 0.9, **kwargs, **FAST)


@pytest.mark.slow
def test_the_model_passed_in_is_left_unpatched(tiny):
    model = tiny("spikformer_tiny")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = calibrate_fn(model, data_for(model), 0.9, **FAST)
    assert isinstance(result, CalibrationResult)
    assert not hasattr(model, "_tp_state")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# -- the allocation ------------------------------------------------------------------------------------


def test_allocation_is_the_brute_force_optimum_of_its_discretised_model():
    rng = random.Random(0)
    for _ in range(80):
        blocks = rng.randint(1, 4)
        loss = [[0.0] + [rng.uniform(-0.05, 1.0) for _ in range(rng.randint(1, 4))] for _ in range(blocks)]
        saving = [[0.0] + sorted(rng.uniform(-1, 10) for _ in row[1:]) for row in loss]
        need, unit = rng.uniform(0, 15), 0.01
        got = allocate(loss, saving, need, unit)
        q = [[math.floor(s / unit + 1e-9) for s in row] for row in saving]
        need_u = math.ceil(need / unit - 1e-9)
        feasible = [
            c
            for c in itertools.product(*[range(len(r)) for r in loss])
            if sum(q[b][j] for b, j in enumerate(c)) >= need_u
        ]
        if not feasible:
            assert got is None
            continue
        best = min(sum(loss[b][j] for b, j in enumerate(c)) for c in feasible)
        assert got is not None
        assert sum(loss[b][j] for b, j in enumerate(got)) == pytest.approx(best)
        assert sum(saving[b][j] for b, j in enumerate(got)) >= need - 1e-9  # within the undiscretised model


# -- the benchmark script ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_schedule_search_benchmark_runs_on_a_tiny_model(tmp_path, monkeypatch):
    """benchmarks/schedule_search.py on a random-weight tiny model with an official schedule (SDT-V3,
    8 blocks):
    calibrated, uniform and official rows for both metrics, held-out images from another seed."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "schedule_search.py"
    spec = importlib.util.spec_from_file_location("schedule_search", path)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "schedule_search", bench)  # dataclasses look their module up there
    spec.loader.exec_module(bench)
    out = tmp_path / "search.json"
    assert (
        bench.main(
            [
                "--models",
                "sdt_v3_tiny",
                "--fire",
                "--budgets",
                "0.95",
                "--levels",
                "0.25",
                "--refine-rounds",
                "0",
                "--calibration-size",
                "8",
                "--batch-size",
                "8",
                "--limit",
                "8",
                "--cost-images",
                "8",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())["models"]["sdt_v3_tiny"]
    assert result["bed"] == "synthetic" and result["n_held_out"] == 8
    assert result["official"]["keep"].startswith("side_ratio:0.9,0.8")
    for metric in ("macs", "sops"):
        row = result["metrics"][metric]["budgets"]["0.95"]
        assert row["calibrated"][f"{metric}_calibration"] <= 0.95
        assert row["uniform"][f"{metric}_calibration"] <= 0.95
        assert row["calibrated"]["search_seconds"] > 0
        lo, hi = row["calibrated_minus_uniform"]["ci95"]
        assert lo <= row["calibrated_minus_uniform"]["mean"] <= hi
        at = result["metrics"][metric]["at_official_cost"]
        assert at["budget"] == pytest.approx(result["official"][f"{metric}_calibration"])
        assert at["calibrated"][f"{metric}_calibration"] <= at["budget"]
        assert at["uniform"][f"{metric}_calibration"] <= at["budget"]
    assert "_scores" not in json.dumps(result)
