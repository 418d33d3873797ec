"""benchmarks/winograd_probe.py: its Winograd F(2x2, 3x3) convolution is a 3x3 convolution, and the probe runs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F


def _load():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "winograd_probe.py"
    spec = importlib.util.spec_from_file_location("winograd_probe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("shape", [(1, 3, 8, 8), (2, 5, 7, 9), (1, 4, 1, 1), (3, 2, 6, 5)])
def test_winograd_equals_direct_convolution_in_float64(shape):
    bench = _load()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    w = torch.randn(6, shape[1], 3, 3, generator=g, dtype=torch.float64)
    out = bench.winograd_conv3x3(x, bench.winograd_weight(w))
    torch.testing.assert_close(out, F.conv2d(x, w, padding=1), rtol=0, atol=1e-12)


def test_probe_runs_on_a_tiny_model(tmp_path):
    bench = _load()
    out = tmp_path / "probe.json"
    assert bench.main(["--models", "sdt_v3_tiny", "--repeats", "1", "--out", str(out)]) == 0
    model = json.loads(out.read_text())["models"]["sdt_v3_tiny"]
    assert model["conv3x3_calls"] == sum(layer["calls"] for layer in model["layers"]) > 0
    assert model["max_err_winograd"] < 1e-3
    speedups = [model[k] for k in ("model_speedup_winograd", "model_speedup_winograd_where_faster")]
    assert speedups[1] >= speedups[0] and speedups[1] >= 1.0  # per shape never worse than either choice
    rates = json.loads(out.read_text())["reference_rates"]
    assert rates["matmul_2048_float32_gflops"] > 0 and rates["matmul_2048_bfloat16_gflops"] > 0
