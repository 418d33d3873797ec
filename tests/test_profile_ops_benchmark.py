"""benchmarks/profile_ops.py: the operator shares and the float32-rate bound it reports."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest


def _load():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "profile_ops.py"
    spec = importlib.util.spec_from_file_location("profile_ops", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rates_are_counted_macs_over_profiled_time():
    bench = _load()
    entry = {"self_cpu_ms": 200.0, "shares": {"convolution": 0.5, "gemm": 0.3, "elementwise_and_other": 0.2}}
    out = bench.with_rates(entry, macs=5e9, peak=100.0)
    assert out["gflops"] == pytest.approx(50.0)  # 1e10 FLOP in 0.2 s
    assert out["gflops_in_conv_and_gemm"] == pytest.approx(62.5)  # the same FLOP in 0.16 s
    assert out["share_of_reference_peak"] == pytest.approx(0.5)


@pytest.mark.slow
def test_profile_ops_runs_on_a_tiny_model(tmp_path):
    bench = _load()
    out = tmp_path / "profile.json"
    assert bench.main(["--models", "sdt_v3_tiny", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["reference_rates"]) == {"sgemm_2048_gflops", "conv3x3_gflops"}
    model = result["models"]["sdt_v3_tiny"]
    assert model["macs"] > 0
    peak = max(result["reference_rates"].values())
    expected = model["plain"]["self_cpu_ms"] / 1000.0 / (2 * model["macs"] / peak / 1e9)
    assert model["bound_at_reference_peak"] == pytest.approx(expected, rel=1e-2)
    for variant in ("plain", "optimized"):
        assert sum(model[variant]["shares"].values()) == pytest.approx(1.0, abs=1e-3)
