"""Throughput / latency / peak-memory benchmark of model variants, interleaved in one run.

Protocol (``benchmark``):

* every variant in eval mode under ``torch.inference_mode()`` (modes restored afterwards);
* per batch size (the default sweep includes batch 1): one fixed random input shared by all variants;
  ``warmup`` untimed forwards per variant, interleaved; then ``repeats`` rounds, each timing one call
  (``number`` forwards) of EVERY variant, round-robin with the starting variant rotated every round, so
  slow drifts of the machine (other processes, clocks, thermals) hit all variants alike;
* a timed call is bracketed by ``torch.cuda.synchronize`` on CUDA; ``time.perf_counter`` wall time;
* statistics of the per-forward latency: median, quartiles (IQR), min, max, mean, std; throughput =
  batch / median latency; ratios to the FIRST variant (``latency_ratio = median / median_first``,
  ``speedup = median_first / median``);
* peak memory per variant and batch size, in a separate untimed forward after the timing rounds:
  CUDA: ``max_memory_allocated - memory_allocated`` before, after ``reset_peak_memory_stats`` (bytes
  the forward added at its peak, output included); CPU: the same quantity for tensor storages, tracked
  op by op (:mod:`.tensor_memory`; deterministic, excludes scratch memory inside kernels); or, with
  ``cpu_memory="rss"``, the growth of the resident set during the forward (Linux: ``VmHWM`` after
  resetting it by writing ``5`` to ``/proc/self/clear_refs``, minus ``VmRSS`` before, after
  ``gc.collect`` and ``malloc_trim``; else ``getrusage`` ``ru_maxrss`` growth, a lower bound), which
  also counts allocator caches and the Python heap and is noisy. The method is recorded with each number;
* the environment: date, torch / Python versions, threads, device and CPU model, and the CPU load of
  OTHER processes during the timing rounds (``/proc/stat`` busy time minus this process's own CPU time
  from ``/proc/self/stat``; ``os.getloadavg`` where those are missing).

Timings on a shared machine are noisy: compare variants within one run (the ratios), not across runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import torch
from torch import nn

from ..errors import UnknownNameError, UsageError
from ..jsonio import dumps, write_json
from .tensor_memory import peak_tensor_bytes

try:
    import resource
except ImportError:  # pragma: no cover - not on Windows
    resource = None

# -- environment -------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device | str | None = None) -> dict[str, Any]:
    """Where a measurement ran: date (UTC), versions, threads, device and CPU model, CPU counts."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    env: dict[str, Any] = {
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "device": str(device),
    }
    try:
        env["cpu_affinity"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        env["cpu_affinity"] = None
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(idx)
        env.update(
            device_name=torch.cuda.get_device_name(idx),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            gpu_memory_bytes=props.total_memory,
            cudnn_benchmark=torch.backends.cudnn.benchmark,
        )
    else:
        env["device_name"] = env["cpu_model"]
    return env


def _read_proc_stat() -> tuple[int, int, int, int] | None:
    """(busy, total, steal, cpus) jiffies from /proc/stat, or None."""
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    fields = [int(v) for v in lines[0].split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice (guest time is inside user)
    fields += [0] * (8 - len(fields))
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    busy = user + nice + system + irq + softirq + steal
    total = busy + idle + iowait
    cpus = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
    return busy, total, steal, max(cpus, 1)


def _read_self_ticks() -> int | None:
    """utime + stime of this process (all threads) in clock ticks, or None."""
    try:
        with open("/proc/self/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(rest[11]) + int(rest[12])  # fields 14 and 15 of proc(5)


class CpuLoadMeter:
    """CPU load of OTHER processes between ``start()`` and ``stop()``.

    Linux: busy jiffies of all CPUs (``/proc/stat``: user, nice, system, irq, softirq, steal) minus this
    process's own ``utime + stime`` (``/proc/self/stat``, same clock ticks). Reported as the average number
    of cores other processes kept busy (``other_busy_cores``) and as a share of all CPU time
    (``other_busy_fraction``), with this process's own use and the hypervisor steal beside them. In a
    container ``/proc/stat`` may cover the whole host. Elsewhere: ``os.getloadavg()`` (includes us).
    """

    def __init__(self):
        self._start: tuple | None = None

    def start(self) -> CpuLoadMeter:
        self._start = (_read_proc_stat(), _read_self_ticks(), time.perf_counter())
        return self

    def stop(self) -> dict[str, Any]:
        if self._start is None:
            raise RuntimeError("CpuLoadMeter.stop() before start()")
        stat0, own0, t0 = self._start
        stat1, own1, t1 = _read_proc_stat(), _read_self_ticks(), time.perf_counter()
        out: dict[str, Any] = {"window_s": t1 - t0}
        if stat0 and stat1 and own0 is not None and own1 is not None and stat1[1] > stat0[1]:
            busy, total, steal = stat1[0] - stat0[0], stat1[1] - stat0[1], stat1[2] - stat0[2]
            cpus = stat1[3]
            own = own1 - own0
            per_cpu = total / cpus  # elapsed jiffies of one CPU
            others = max(0, busy - own)
            out.update(
                method="/proc/stat busy jiffies minus own utime+stime from /proc/self/stat",
                cpus=cpus,
                other_busy_cores=others / per_cpu,
                other_busy_fraction=others / total,
                own_busy_cores=own / per_cpu,
                steal_fraction=steal / total,
            )
        else:
            try:
                out.update(
                    method="os.getloadavg 1-minute (includes this process)", loadavg_1min=os.getloadavg()[0]
                )
            except OSError:
                out.update(method="unavailable")
        return out


# -- memory ------------------------------------------------------------------------------------------

_CLEAR_REFS_OK: bool | None = None


def _malloc_trim() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _proc_status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    global _CLEAR_REFS_OK
    if _CLEAR_REFS_OK is False:
        return False
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        _CLEAR_REFS_OK = _proc_status_kb("VmHWM") is not None
    except OSError:
        _CLEAR_REFS_OK = False
    return bool(_CLEAR_REFS_OK)


CPU_MEMORY_METHODS = ("tensors", "rss")


def _check_cpu_memory(cpu_memory: str) -> None:
    if cpu_memory not in CPU_MEMORY_METHODS:
        raise UsageError(f"cpu_memory must be 'tensors' or 'rss', got {cpu_memory!r}")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory(
    fn: Callable[[], Any], device: torch.device | str, cpu_memory: str = "tensors"
) -> tuple[int | None, str]:
    """Bytes ``fn()`` adds at its peak on ``device`` and the method used (module docstring).

    ``cpu_memory``: ``"tensors"`` (default; peak bytes of the tensor storages the call creates, tracked
    per op, see :mod:`.tensor_memory`: deterministic) or ``"rss"`` (growth of the process's resident set:
    includes allocator caches and the Python heap, noisy).
    """
    _check_cpu_memory(cpu_memory)
    device = torch.device(device)
    gc.collect()
    if device.type == "cuda":
        _sync(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        out = fn()
        _sync(device)
        peak = torch.cuda.max_memory_allocated(device)
        del out
        return (
            int(peak - base),
            "cuda: max_memory_allocated after reset_peak_memory_stats minus memory_allocated before",
        )
    if cpu_memory == "tensors":
        peak, out = peak_tensor_bytes(fn)
        del out
        return peak, "cpu: peak bytes of the tensor storages the call created, tracked per op (dispatch mode)"
    _malloc_trim()
    rss0 = _proc_status_kb("VmRSS")
    if rss0 is not None and _reset_hwm():
        rss0 = _proc_status_kb("VmRSS")
        out = fn()
        hwm = _proc_status_kb("VmHWM")
        del out
        return (
            max(0, (hwm - rss0) * 1024),
            "linux: VmHWM after clear_refs=5 minus VmRSS before (after malloc_trim)",
        )
    if resource is None:
        fn()
        return None, "unavailable (no /proc and no resource module)"
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = fn()
    r1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    del out
    scale = 1 if platform.system() == "Darwin" else 1024  # bytes on macOS, KiB on Linux
    return max(0, (r1 - r0) * scale), "getrusage ru_maxrss growth (lower bound: the peak cannot be reset)"


# -- inputs and variants -----------------------------------------------------------------------------


def default_input(
    model: nn.Module, batch_size: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A random input of the model's configured size: ``randn`` images ``[B, C, H, W]``, or Poisson event
    counts ``[B, T, C, H, W]`` for frame-only models (a variant: of its shared model)."""
    from .variants import Variant

    if isinstance(model, Variant):
        model = model.model
    cfg = getattr(getattr(model, "config", None), "data", None)
    if cfg is None:
        raise UsageError(
            f"{type(model).__name__} has no .config.data; pass input_shape=(C, H, W) or make_input=..."
        )
    c, h, w = cfg.input_size
    if getattr(model, "static_input", True):
        return torch.randn(batch_size, c, h, w, generator=generator)
    t = getattr(model, "T", None) or getattr(model.config, "T", None)
    if not t:
        raise UsageError("frame-only model without T: pass input_shape=(T, C, H, W) or make_input=...")
    return torch.poisson(torch.rand(batch_size, t, c, h, w, generator=generator) * 1.5, generator=generator)


def _as_items(variants: Any) -> list[tuple[str, nn.Module]]:
    if isinstance(variants, nn.Module):
        return [("model", variants)]
    if isinstance(variants, Mapping):
        items = list(variants.items())
    else:
        items = [tuple(v) for v in variants]
    if not items:
        raise UsageError("no variants to benchmark")
    names = [n for n, _ in items]
    if len(set(names)) != len(names):
        raise UsageError(f"variant names must be unique, got {names}")
    return [(str(n), m) for n, m in items]


def _summary(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1e3 for s in seconds)
    if len(ms) >= 2:
        q1, med, q3 = statistics.quantiles(ms, n=4, method="inclusive")
    else:
        q1 = med = q3 = ms[0]
    return {
        "median": med,
        "q1": q1,
        "q3": q3,
        "iqr": q3 - q1,
        "min": ms[0],
        "max": ms[-1],
        "mean": statistics.fmean(ms),
        "std": statistics.stdev(ms) if len(ms) > 1 else 0.0,
        "n": len(ms),
    }


# -- result ------------------------------------------------------------------------------------------


@dataclass
class BenchmarkResult:
    """Plain, JSON-serialisable benchmark record.

    ``results``: one dict per (batch size, variant) with ``latency_ms`` statistics (per forward),
    ``throughput_per_s`` (images per second at the median), ``latency_ratio`` / ``speedup`` vs the
    first variant, ``peak_memory_bytes`` and ``memory_method``. ``cpu_load``: CPU load of other
    processes (:class:`CpuLoadMeter`) during the timing rounds of each batch size and over the whole
    run (the latter is also ``environment["cpu_load_others"]``).
    """

    environment: dict[str, Any]
    config: dict[str, Any]
    results: list[dict[str, Any]] = field(default_factory=list)
    cpu_load: dict[str, Any] = field(default_factory=dict)

    def get(self, variant: str, batch_size: int) -> dict[str, Any]:
        for r in self.results:
            if r["variant"] == variant and r["batch_size"] == batch_size:
                return r
        raise UnknownNameError(f"no result for variant {variant!r} at batch size {batch_size}")

    def throughput_vs(self, variant: str, reference: str) -> dict[str, dict[str, float]]:
        """Per batch size (str keys): ``images_per_s`` of ``variant`` and its ``speedup_vs_dense`` against
        ``reference`` (e.g. ``"backbone/tp_0.5"`` against ``"backbone/dense"``; ``speedup`` in ``results``
        is always against the first variant)."""
        out = {}
        for bs in self.config["batch_sizes"]:
            rate = self.get(variant, bs)["throughput_per_s"]
            out[str(bs)] = {
                "images_per_s": round(rate, 3),
                "speedup_vs_dense": round(rate / self.get(reference, bs)["throughput_per_s"], 4),
            }
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "config": self.config,
            "results": self.results,
            "cpu_load": self.cpu_load,
        }

    def to_json(self, path: str | None = None, indent: int = 2) -> str:
        """Strict JSON (NaN -> null); written to ``path`` when given."""
        if path is not None:
            write_json(path, self.to_dict(), indent)
        return dumps(self.to_dict(), indent)

    def to_markdown(self) -> str:
        env = self.environment
        head = (
            f"{env.get('device_name')} ({env.get('device')}), torch {env.get('torch')}, "
            f"{env.get('torch_threads')} threads, {env.get('date_utc')}; "
            f"{self.config.get('repeats')} interleaved repeats after {self.config.get('warmup')} warm-up"
        )
        load = self.cpu_load.get("overall", {})
        if "other_busy_cores" in load:
            head += f"; other processes kept {load['other_busy_cores']:.2f} of {load['cpus']} CPUs busy"
        header = [
            "batch",
            "variant",
            "median ms",
            "IQR ms",
            "min ms",
            "max ms",
            "img/s",
            "speedup",
            "peak MiB",
        ]
        rows = []
        for r in self.results:
            lat = r["latency_ms"]
            mem = r.get("peak_memory_bytes")
            rows.append(
                [
                    r["batch_size"],
                    r["variant"],
                    f"{lat['median']:.3f}",
                    f"{lat['iqr']:.3f}",
                    f"{lat['min']:.3f}",
                    f"{lat['max']:.3f}",
                    f"{r['throughput_per_s']:.1f}",
                    f"{r['speedup']:.3f}",
                    "-" if mem is None else f"{mem / 2**20:.1f}",
                ]
            )
        lines = [head, "", "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_markdown()


# -- the benchmark -----------------------------------------------------------------------------------


def benchmark(
    variants: nn.Module | Mapping[str, nn.Module] | Sequence[tuple[str, nn.Module]],
    batch_sizes: Sequence[int] = (1, 8, 32),
    *,
    input_shape: Sequence[int] | None = None,
    make_input: Callable[[int], torch.Tensor] | None = None,
    warmup: int = 3,
    repeats: int = 20,
    number: int = 1,
    device: torch.device | str | None = None,
    threads: int | None = None,
    memory: bool = True,
    cpu_memory: str = "tensors",
    seed: int = 0,
) -> BenchmarkResult:
    """Latency, throughput and peak memory of model variants, interleaved (module docstring).

    Args:
        variants: one model, ``{"dense": m, "tp": m2}``, or ``[(name, model), ...]``; ratios are vs the first.
        batch_sizes: the sweep (keep 1 in it for latency).
        input_shape: per-sample input shape without the batch axis; default from ``model.config.data``
            (``default_input``). ``make_input(batch_size) -> tensor`` overrides both.
        warmup / repeats: untimed forwards per variant, and timed rounds.
        number: forwards per timed call (latency is divided by it); raise it for very fast models.
        device: moves the variants there (in place); default: the first variant's device.
        threads: ``torch.set_num_threads`` for the run (restored afterwards).
        memory: measure peak memory (one extra untimed forward per variant and batch size).
        cpu_memory: how to measure it on CPU: ``"tensors"`` (default, deterministic) or ``"rss"``
            (see :func:`peak_memory`).
    """
    _check_cpu_memory(cpu_memory)  # before the timing rounds, not after them
    items = _as_items(variants)
    if warmup < 0 or repeats < 1 or number < 1:
        raise UsageError(f"need warmup >= 0, repeats >= 1, number >= 1 (got {warmup}, {repeats}, {number})")
    if not batch_sizes or any(int(b) < 1 for b in batch_sizes):
        raise UsageError(f"batch_sizes must be positive integers, got {batch_sizes}")
    first = items[0][1]
    param = next(iter(first.parameters()), None)
    if device is None:
        device = param.device if param is not None else torch.device("cpu")
    device = torch.device(device)
    for _, m in items:
        m.to(device)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    modes = [m.training for _, m in items]
    for _, m in items:
        m.eval()

    gen = torch.Generator().manual_seed(seed)

    def build_input(bs: int) -> torch.Tensor:
        if make_input is not None:
            x = make_input(bs)
        elif input_shape is not None:
            x = torch.randn(bs, *input_shape, generator=gen)
        else:
            x = default_input(first, bs, gen)
        return x.to(device=device, dtype=dtype if x.is_floating_point() else x.dtype)

    env = environment(device)
    result = BenchmarkResult(
        environment=env,
        config={
            "variants": [n for n, _ in items],
            "batch_sizes": [int(b) for b in batch_sizes],
            "warmup": warmup,
            "repeats": repeats,
            "number": number,
            "device": str(device),
            "dtype": str(dtype),
            "seed": seed,
            "input_shape": list(input_shape) if input_shape is not None else None,
            "mode": "eval + torch.inference_mode",
            "order": "round-robin, start rotated every repeat",
            "timer": "time.perf_counter" + (" with torch.cuda.synchronize" if device.type == "cuda" else ""),
        },
    )
    overall = CpuLoadMeter().start()
    try:
        with torch.inference_mode():
            for bs in batch_sizes:
                bs = int(bs)
                x = build_input(bs)
                for _ in range(warmup):
                    for _, m in items:
                        m(x)
                _sync(device)
                times: dict[str, list[float]] = {n: [] for n, _ in items}
                meter = CpuLoadMeter().start()
                for r in range(repeats):
                    k = r % len(items)
                    for name, m in items[k:] + items[:k]:
                        _sync(device)
                        t0 = time.perf_counter()
                        for _ in range(number):
                            out = m(x)
                        _sync(device)
                        times[name].append((time.perf_counter() - t0) / number)
                        del out
                result.cpu_load[f"batch_{bs}"] = meter.stop()
                base_median = None
                for name, m in items:
                    lat = _summary(times[name])
                    base_median = lat["median"] if base_median is None else base_median
                    entry: dict[str, Any] = {
                        "variant": name,
                        "batch_size": bs,
                        "latency_ms": lat,
                        "throughput_per_s": bs / (lat["median"] / 1e3) if lat["median"] > 0 else float("inf"),
                        "latency_ratio": lat["median"] / base_median if base_median else None,
                        "speedup": base_median / lat["median"] if lat["median"] > 0 else None,
                        # per round, this variant's time over the first variant's time in the same round:
                        # neighbours in time, so slow drifts of the machine's load cancel
                        "paired_ratio_median": statistics.median(
                            a / b for a, b in zip(times[name], times[items[0][0]])
                        ),
                        "samples_ms": [1e3 * t for t in times[name]],
                    }
                    if memory:
                        entry["peak_memory_bytes"], entry["memory_method"] = peak_memory(
                            lambda m=m, x=x: m(x), device, cpu_memory
                        )
                    result.results.append(entry)
    finally:
        result.cpu_load["overall"] = overall.stop()
        result.environment["cpu_load_others"] = result.cpu_load["overall"]
        for (_, m), mode in zip(items, modes):
            m.train(mode)
        torch.set_num_threads(old_threads)
    return result
