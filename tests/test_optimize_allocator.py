"""optimize's CPU allocator setting: large tensors stop costing page faults, the report says what happened,
``cpu_allocator=False`` and non-CPU models leave the allocator alone. Each case runs in a fresh process
(the setting is process-wide and one-way)."""

import json
import platform
import subprocess
import sys

import pytest

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting exists for glibc only")

_FAULTS = """
import json, resource, sys, torch
from tp_spikformer.optimize.allocator import keep_freed_memory
setting = keep_freed_memory() if sys.argv[1] == "keep" else None
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    x = torch.empty(16 * 2**20)  # 64 MiB, above any mmap threshold of glibc
    x.fill_(1.0)  # touch every page
    del x
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"faults": faults, "applied": setting.applied if setting else None}))
"""


def _run(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@glibc_only
def test_kept_freed_memory_is_reused_without_new_page_faults():
    default, kept = _run(_FAULTS, "default"), _run(_FAULTS, "keep")
    assert kept["applied"] is True
    pages = 10 * 64 * 2**20 // 4096  # what ten fresh 64 MiB blocks fault in (4 KiB pages)
    assert default["faults"] > 0.8 * pages  # glibc maps each block anew ...
    assert kept["faults"] < 0.3 * pages  # ... the kept heap faults in the first one only


_REPORT = """
import json, sys, torch
from tp_spikformer import create_model, optimize
from tp_spikformer.optimize import optimization_report
model = create_model("sdt_v3_tiny").eval()
optimize(model, compile=False, cpu_allocator=sys.argv[1] == "on")
print(json.dumps(optimization_report(model).to_dict()["cpu_allocator"]))
"""


def test_optimize_reports_the_allocator_setting_and_can_leave_it_alone():
    off = _run(_REPORT, "off")
    assert off == "unchanged (cpu_allocator=False)"
    on = _run(_REPORT, "on")
    if platform.libc_ver()[0] == "glibc":
        assert on.startswith("glibc") and "freed memory kept" in on
    else:
        assert on.startswith("not glibc")
