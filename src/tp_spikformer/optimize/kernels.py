"""Fused spiking activations: the multi-step LIF and the multi-spike quantiser, plain and compiled.

Both kernels are element-wise (the LIF along its leading time axis), so they run on a flat view of any
dense tensor: the LIF on ``[T, M]`` (time outermost, ``M`` = everything else, in memory order), the
quantiser on ``[M]``. The result has the input's strides (channels-last stays channels-last).

* **Plain** kernels are in-place torch loops with fewer passes over memory than the model's reference
  forwards (``layers.LIF._forward_inference``, ``layers.MultiSpike.forward``) and the same roundings, so
  their outputs are bit-identical to the reference in every dtype.
* **Compiled** kernels are the same arithmetic traced by ``torch.compile`` (inductor, C++ on the CPU): one
  loop over the memory that reads ``x`` once and writes the spikes once, with the membrane in registers.
  Inductor keeps true division and compiles with ``-ffp-contract=off`` on the CPU, so the arithmetic is
  the reference's; a test checks bit-identity in float32 and float64. They are built lazily, once per
  process and (dtype, chunk length, variant), and inductor caches the generated code on disk (its
  ``fx_graph_cache``), so later processes skip most of the compile time. Compiled kernels are used on the
  CPU only, for tensors of at least :data:`LIF_MIN_NUMEL` / :data:`MULTISPIKE_MIN_NUMEL` elements, never
  under a Python dispatch or function mode (measurement trackers, tracing), and not for neurons that
  overwrite a private input (``in_place``): there the plain kernels run.

A long time axis (QKFormer's batch-coupled ``proj_lif`` integrates over ``T * B`` steps) runs in chunks of
at most :data:`MAX_CHUNK` steps with the membrane carried between chunks, so a compiled kernel never
depends on the batch size.
"""

from __future__ import annotations

import logging
import math
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

_log = logging.getLogger(__name__)

MAX_CHUNK = 8  # time steps per compiled LIF call
# Below these sizes a compiled call's fixed cost (torch.compile's guards and wrapper: 50-70 us per call on
# this project's 2-core CPU) outweighs what the fused loop saves over the plain kernel. Measured (best of
# 30, one thread): LIF T=4 x 100k elements 179 us compiled vs 188 us plain, x 800k 1.49 ms vs 2.31 ms;
# the quantiser on 800k elements 238 us vs 221 us (its plain kernel is three cheap in-place passes).
LIF_MIN_NUMEL = 1 << 19
MULTISPIKE_MIN_NUMEL = 1 << 22


@dataclass
class KernelRuntime:
    """Whether a model's fused activations use compiled kernels; shared by all its fused modules.

    ``compiled`` turns False (with ``error`` set and a logged warning) the first time a compiled kernel
    fails, after which every module runs the plain kernels.
    """

    compiled: bool = False
    error: str | None = None
    compile_seconds: dict[str, float] = field(default_factory=dict)

    def disable(self, reason: str) -> None:
        if self.compiled:
            _log.warning(
                "tp_spikformer.optimize: compiled spiking kernels disabled, plain kernels used instead (%s)",
                reason,
            )
        self.compiled = False
        self.error = reason


# -- layouts ----------------------------------------------------------------------------------------------


def _dense_permutation(x: torch.Tensor, first: int | None = None) -> list[int] | None:
    """Dims of ``x`` ordered outermost to innermost in memory (``first`` forced first), if ``x`` is dense
    in that order (its permuted view is contiguous); else None."""
    rest = [d for d in range(x.dim()) if d != first]
    rest.sort(key=lambda d: -x.stride(d))  # stable: equal strides keep their order
    perm = ([first] if first is not None else []) + rest
    return perm if x.permute(perm).is_contiguous() else None


def _inverse(perm: list[int]) -> list[int]:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return inv


def time_major_2d(x: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """``x`` ``[T, ...]`` as a contiguous ``[T, M]`` view (no copy when ``x`` is dense with time
    outermost, else one copy), and a function mapping a ``[T, M]`` result back to ``x``'s shape/strides."""
    t = x.shape[0]
    perm = _dense_permutation(x, first=0) if x.dim() > 1 else [0]
    if perm is None:
        x = x.contiguous()
        perm = list(range(x.dim()))
    y = x.permute(perm)
    shape, inv = y.shape, _inverse(perm)
    return y.reshape(t, -1), lambda r: r.view(shape).permute(inv)


def flat_1d(x: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """``x`` as a contiguous 1-D view in memory order (a copy only if ``x`` is not dense), and the inverse."""
    perm = _dense_permutation(x)
    if perm is None:
        x = x.contiguous()
        perm = list(range(x.dim()))
    y = x.permute(perm)
    shape, inv = y.shape, _inverse(perm)
    return y.reshape(-1), lambda r: r.view(shape).permute(inv)


# -- plain kernels (bit-identical to the reference forwards) -------------------------------------------------


def _power_of_two(value: float) -> bool:
    m, _ = math.frexp(value)
    return value > 0 and m == 0.5


def lif_plain(
    x: torch.Tensor,
    tau: float,
    v_threshold: float,
    leak: torch.Tensor | None = None,
    v: torch.Tensor | None = None,
    want_v: bool = False,
    out: torch.Tensor | None = None,
):
    """Multi-step LIF over dim 0 of ``x``, in place on one membrane buffer.

    Per step the reference computes ``step = x_t - v``, ``step = step / tau`` (``* leak`` for the
    parametric LIF), ``v = v + step``, spike ``v >= v_threshold``, hard reset. Here: the first step from a
    zero membrane is ``x_0 / tau`` (the same value; only the sign of a zero may differ, which no spike
    sees), and for ``1 / tau`` a power of two the charge is one ``add_(step, alpha=1/tau)`` (exact scaling,
    one rounding, as the reference). ``v`` continues from a membrane; ``want_v`` also returns it. ``out``
    receives the spikes (it may be ``x`` itself: step ``t`` reads ``x[t]`` before it writes ``out[t]``).
    """
    steps = x.shape[0]
    out = torch.empty_like(x) if out is None else out
    mem = torch.empty_like(x[0]) if v is None else v.clone()
    step = torch.empty_like(mem)
    alpha = 1.0 / tau if leak is None and _power_of_two(1.0 / tau) else None
    for t in range(steps):
        if t == 0 and v is None:
            if leak is None:
                torch.div(x[0], tau, out=mem)
            else:
                torch.mul(x[0], leak, out=mem)
        else:
            torch.sub(x[t], mem, out=step)
            if alpha is not None:
                mem.add_(step, alpha=alpha)
            else:
                step.div_(tau) if leak is None else step.mul_(leak)
                mem.add_(step)
        spike = out[t]
        torch.ge(mem, v_threshold, out=spike)  # straight into the float output (bool tensors are slow here)
        if t < steps - 1 or want_v:
            mem.addcmul_(mem, spike, value=-1.0)  # hard reset: exactly 0 where it spiked
    return (out, mem) if want_v else out


def multispike_plain(x: torch.Tensor, max_value: float, norm: float, in_place: bool = False) -> torch.Tensor:
    """``round(clamp(x, 0, max_value)) / norm`` with one new tensor (the reference makes three), or none
    with ``in_place`` (``x`` is overwritten)."""
    q = x.clamp_(0.0, max_value) if in_place else torch.clamp(x, 0.0, max_value)
    q.round_()
    return q.div_(norm) if norm != 1.0 else q


# -- compiled kernels --------------------------------------------------------------------------------------


def _lif_kernel(tau: float, v_threshold: float, parametric: bool, first: bool, want_v: bool) -> Callable:
    """The function torch.compile traces for one LIF variant: ``x`` [Tc, M] contiguous, ``v`` [M] (ignored
    when ``first``: a zero membrane), ``leak`` a 0-d tensor (parametric LIF) or None. The constants sit in
    the closure, so the compiled code has them inlined and its guards are cheap."""

    def lif_steps(x, v, leak):
        spikes = []
        for t in range(x.shape[0]):
            if first and t == 0:
                h = x[0] * leak if parametric else x[0] / tau
            else:
                h = v + ((x[t] - v) * leak if parametric else (x[t] - v) / tau)
            fired = h >= v_threshold
            spikes.append(fired.to(x.dtype))
            v = torch.where(fired, torch.zeros_like(h), h)
        out = torch.stack(spikes)
        return (out, v) if want_v else out

    return lif_steps


def _multispike_kernel(max_value: float, norm: float) -> Callable:
    """The function torch.compile traces for the quantiser: ``x`` [M] contiguous."""

    def multispike(x):
        return torch.round(torch.clamp(x, 0.0, max_value)) / norm

    return multispike


_COMPILED: dict[tuple, Callable] = {}
_FACTORIES = {"lif": _lif_kernel, "multispike": _multispike_kernel}


def _compiled(name: str, constants: tuple, dtype: torch.dtype, steps: int = 0) -> Callable:
    """The compiled kernel ``name`` for one variant: its ``constants`` (the factory's arguments), dtype and
    chunk length.

    Every variant gets its own copy of the function's code object: torch.compile keeps its cache and its
    recompile limit per code object, so the variants of one model never crowd each other out.
    """
    key = (name, constants, dtype, steps)
    fn = _COMPILED.get(key)
    if fn is None:
        source = _FACTORIES[name](*constants)
        tag = "_".join(
            str(v).replace("torch.", "").replace(".", "p").replace("-", "m")
            for v in (*constants, dtype, steps)
        )
        code = source.__code__.replace(co_name=f"{source.__name__}_{tag}")
        fresh = types.FunctionType(code, source.__globals__, code.co_name, None, source.__closure__)
        fn = _COMPILED[key] = torch.compile(fresh, dynamic=True, fullgraph=True)
    return fn


def _modes_active() -> bool:
    """A Python dispatch or function mode is active (a tracker or a tracer): compiled kernels stay out."""
    from torch.overrides import _get_current_function_mode_stack
    from torch.utils._python_dispatch import _get_current_dispatch_mode

    return _get_current_dispatch_mode() is not None or bool(_get_current_function_mode_stack())


def can_compile(x: torch.Tensor, runtime: KernelRuntime | None, min_numel: int) -> bool:
    """Whether ``x`` goes through a compiled kernel. The kernels get detached (base-less) contiguous views
    of at least 2 elements per step, so their guards see one layout; what is left to specialise on is the
    grad mode and whether ``x`` is an inference tensor (at most 4 compiled graphs per kernel variant)."""
    return (
        x.dim() > 0
        and x.numel() >= 2 * x.shape[0]
        and runtime is not None
        and runtime.compiled
        and x.device.type == "cpu"
        and x.numel() >= min_numel
        and x.dtype in (torch.float32, torch.float64)
        and not _modes_active()
    )


def lif(
    x: torch.Tensor,
    tau: float,
    v_threshold: float,
    leak: torch.Tensor | None = None,
    runtime: KernelRuntime | None = None,
    in_place: bool = False,
) -> torch.Tensor:
    """The fused multi-step LIF (see the module docstring); spikes with ``x``'s shape and strides.

    ``in_place``: ``x`` is a temporary nobody else reads; the spikes overwrite it (plain kernel: a fresh
    output of the size of a large activation costs more in page faults than the compiled kernel saves).
    """
    if in_place:
        return lif_plain(x, tau, v_threshold, leak, out=x)
    if not can_compile(x, runtime, LIF_MIN_NUMEL):
        return lif_plain(x, tau, v_threshold, leak)
    x2d, restore = time_major_2d(x)
    try:
        out = _lif_chunks(x2d.detach(), tau, v_threshold, None if leak is None else leak.to(x.dtype))
    except Exception as err:  # noqa: BLE001 - any compiler failure: fall back, say why
        runtime.disable(f"LIF kernel: {type(err).__name__}: {err}")
        return lif_plain(x, tau, v_threshold, leak)
    return restore(out)


def _lif_chunks(x2d: torch.Tensor, tau: float, v_threshold: float, leak: torch.Tensor | None) -> torch.Tensor:
    steps, parametric = x2d.shape[0], leak is not None
    if parametric:
        tau = 0.0  # unused: the leak tensor replaces 1 / tau
    if steps <= MAX_CHUNK:
        return _compiled("lif", (tau, v_threshold, parametric, True, False), x2d.dtype, steps)(
            x2d, None, leak
        )
    out = torch.empty_like(x2d)
    v = None
    for start in range(0, steps, MAX_CHUNK):
        stop = min(start + MAX_CHUNK, steps)
        more = stop < steps
        kernel = _compiled("lif", (tau, v_threshold, parametric, v is None, more), x2d.dtype, stop - start)
        res = kernel(x2d[start:stop].detach(), v, leak)  # detach: not a view, so no guards on its base
        if more:
            res, v = res
        out[start:stop] = res
    return out


def multispike(
    x: torch.Tensor,
    max_value: float,
    norm: float,
    runtime: KernelRuntime | None = None,
    in_place: bool = False,
) -> torch.Tensor:
    """The fused multi-spike quantiser; output with ``x``'s shape and strides (``in_place``: ``x``, a
    temporary nobody else reads, is overwritten)."""
    if in_place:
        return multispike_plain(x, max_value, norm, in_place=True)
    if not can_compile(x, runtime, MULTISPIKE_MIN_NUMEL):
        return multispike_plain(x, max_value, norm)
    flat, restore = flat_1d(x)
    try:
        out = _compiled("multispike", (max_value, norm), flat.dtype)(flat.detach())
    except Exception as err:  # noqa: BLE001 - any compiler failure: fall back, say why
        runtime.disable(f"multi-spike kernel: {type(err).__name__}: {err}")
        return multispike_plain(x, max_value, norm)
    return restore(out)


# -- warm-up ----------------------------------------------------------------------------------------------


def warm_up(runtime: KernelRuntime, lif_variants: set, multispike_variants: set) -> None:
    """Compile the kernels a model needs now (not on its first forward) and record the seconds per kernel.

    ``lif_variants``: ``(steps, dtype, tau, v_threshold, parametric)`` seen in the model;
    ``multispike_variants``: ``(dtype, max_value, norm)``. Each kernel is compiled under ``no_grad`` and
    under ``inference_mode`` (torch guards on the grad mode). On failure the runtime falls back to the plain
    kernels and keeps the reason.
    """
    jobs: list[tuple[str, Callable[[], object]]] = []
    for steps, dtype, tau, v_threshold, parametric in sorted(lif_variants, key=str):
        leak = torch.tensor(0.5, dtype=dtype) if parametric else None
        x = torch.zeros(steps, LIF_MIN_NUMEL, dtype=dtype)
        name = "parametric lif" if parametric else f"lif tau={tau:g}"
        label = f"{name} threshold={v_threshold:g} T={steps} {_dtype_name(dtype)}"
        jobs.append((label, lambda x=x, leak=leak, a=tau, b=v_threshold: _lif_chunks(x, a, b, leak)))
    for dtype, max_value, norm in sorted(multispike_variants, key=str):
        x = torch.zeros(MULTISPIKE_MIN_NUMEL, dtype=dtype)
        label = f"multispike max={max_value:g} norm={norm:g} {_dtype_name(dtype)}"
        jobs.append((label, lambda x=x, a=max_value, b=norm: _compiled("multispike", (a, b), x.dtype)(x)))
    for label, job in jobs:
        t0 = time.perf_counter()
        try:
            with torch.no_grad():
                job()
            with torch.inference_mode():
                job()
        except Exception as err:  # noqa: BLE001 - any compiler failure: fall back, say why
            runtime.disable(f"compiling the {label} kernel failed: {type(err).__name__}: {err}")
            return
        runtime.compile_seconds[label] = round(time.perf_counter() - t0, 3)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")
