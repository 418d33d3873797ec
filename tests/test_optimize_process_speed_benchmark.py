"""benchmarks/optimize_process_speed.py runs every configuration in its own process and reports what each
one ran (the allocator setting only where it was asked for)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest


def _load():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "optimize_process_speed.py"
    spec = importlib.util.spec_from_file_location("optimize_process_speed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_each_configuration_runs_in_its_own_process(tmp_path):
    bench = _load()
    out = tmp_path / "speed.json"
    argv = [
        "--models",
        "sdt_v3_tiny",
        "--batch-sizes",
        "1",
        "--rounds",
        "1",
        "--repeats",
        "1",
        "--no-compile",
    ]
    assert bench.main([*argv, "--out", str(out)]) == 0
    (case,) = json.loads(out.read_text())["models"]["sdt_v3_tiny"]
    configs = case["configs"]
    assert set(configs) == set(bench.CONFIGS)
    assert set(configs["plain"]["wall_ms"]) == {"dense"} and set(configs["optimized"]["wall_ms"]) == {
        "dense",
        "tp",
    }
    assert "cpu_allocator" not in configs["plain"]  # the plain process never touched the allocator
    assert configs["optimized_no_allocator"]["cpu_allocator"] == "unchanged (cpu_allocator=False)"
    assert configs["optimized"]["cpu_allocator"] == configs["plain_kept_memory"]["cpu_allocator"]
    assert case["ideal_from_macs"] > 1.0
