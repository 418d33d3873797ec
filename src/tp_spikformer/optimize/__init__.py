"""``optimize(model)``: the inference fast path, in place; ``deoptimize(model)`` undoes it.

What changes (each part documented in its module):

* **BatchNorm folding** (``fold.py``): every BatchNorm whose input is, in a traced forward, the output of
  one convolution / linear layer read by nothing else folds into that layer (SDT-V2's ``BNAndPad``
  included: the padding value stays the BatchNorm's value at zero input).
* **Pointwise convolutions as one GEMM** (``fold.py``): 1x1 convolutions, folded or not, run as one
  ``F.linear`` / ``W @ x`` call instead of torch's im2col path; other 2-D convolutions keep a
  channels-last copy of their (folded) weight for channels-last inputs (torch would reorder the weight on
  every call).
* **Fused spiking activations** (``kernels.py``, ``spiking.py``): the multi-step LIF and the multi-spike
  quantiser run fewer passes over memory; with ``compile=True`` large tensors go through kernels built by
  ``torch.compile`` (CPU only; a plain fallback, with the reason kept in the report, where compiling fails).
  The LIF's spikes are bit-identical to ``layers.LIF``'s in float32 and float64.
* **SDT-V3 attention** (``attention.py``): ``q (k^T v)`` instead of ``(q k^T) v`` where both are exact.
* **The CPU allocator** (``allocator.py``, process-wide): glibc's malloc keeps freed memory for reuse, so
  large activations stop costing page faults (for CPU models; ``cpu_allocator=False`` leaves it alone).

How it is done, and what it means for you:

* Modules keep their parameters and buffers; only their classes change (to subclasses with a fast
  inference path), so ``state_dict()`` keys, values and order are the model's own: checkpoints saved from an
  optimized model load into a plain one and vice versa. ``load_state_dict`` on an optimized model works;
  folded weights are recomputed on the next forward (they track their source tensors' storage and version).
* The fast path runs in eval mode without autograd (``torch.no_grad`` / ``torch.inference_mode``). In
  training mode, or with grad enabled, every module runs its own forward, so ``model.train()`` on an
  optimized model trains it correctly (BatchNorm statistics, surrogate gradients); fine-tune a plain model
  anyway, it is not slower.
* Compatible with ``apply_tp`` / ``remove_tp`` in either order: TP swaps the blocks' classes, optimize the
  classes of the layers inside them; pruned blocks still run only their kept tokens.
* Memory: folded weights are extra copies of the folded layers' weights (one more copy of most weights).
* Float64 results equal the plain model's to rounding (the golden cases to <= 1e-9); float32 results may
  differ in rare spikes (other kernels round differently, and a threshold can turn one ulp into a spike).
  For float32 agreement with the official code use ``create_model(..., official_arithmetic=True)``, which
  :func:`optimize` refuses.
* Measurement: BatchNorm is already counted as folded; the SDT-V3 attention counts the order that ran.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import UsageError, UsageTypeError
from ..models.base import SpikingTransformer
from ..models.layers import LIF, MultiSpike, ParametricLIF
from . import allocator, attention, fold, kernels, spiking
from .kernels import KernelRuntime

__all__ = ["OptimizeReport", "deoptimize", "is_optimized", "optimization_report", "optimize"]

_log = logging.getLogger(__name__)
_REPORT = "_opt_report"


@dataclass
class OptimizeReport:
    """What :func:`optimize` did to a model."""

    folded: dict[str, list[str]] = field(default_factory=dict)  # layer -> BatchNorms folded into it
    pointwise: list[str] = field(default_factory=list)  # 1x1 convolutions on the GEMM path
    fused: dict[str, int] = field(default_factory=dict)  # fused activation kind -> modules
    attention: list[str] = field(default_factory=list)  # SDT-V3 attentions in the cheaper order
    in_place: list[str] = field(default_factory=list)  # activations that overwrite their (private) input
    compile_requested: bool = False
    runtime: KernelRuntime = field(default_factory=KernelRuntime)
    trace_seconds: float = 0.0
    cpu_allocator: str = "unchanged"  # what allocator.keep_freed_memory did, or why it was not asked

    @property
    def compiled(self) -> bool:
        """Whether the fused activations use compiled kernels (False after a compile failure)."""
        return self.runtime.compiled

    @property
    def compile_seconds(self) -> float:
        """Seconds spent compiling (warming up) the kernels in :func:`optimize`; cached compiles are fast."""
        return round(sum(self.runtime.compile_seconds.values()), 3)

    def to_dict(self) -> dict[str, Any]:
        return {
            "folded_batchnorms": sum(len(v) for v in self.folded.values()),
            "folded": self.folded,
            "pointwise_gemm": self.pointwise,
            "fused_activations": self.fused,
            "reordered_attention": self.attention,
            "in_place_activations": self.in_place,
            "compile_requested": self.compile_requested,
            "compiled": self.compiled,
            "compile_seconds": self.compile_seconds,
            "compile_seconds_per_kernel": dict(self.runtime.compile_seconds),
            "compile_error": self.runtime.error,
            "trace_seconds": round(self.trace_seconds, 3),
            "cpu_allocator": self.cpu_allocator,
        }

    def summary(self) -> str:
        n_bn = sum(len(v) for v in self.folded.values())
        fused = ", ".join(f"{n} {k}" for k, n in sorted(self.fused.items())) or "none"
        if self.compiled:
            kernels_line = f"compiled ({self.compile_seconds:.1f} s to compile or load from the cache)"
        elif self.compile_requested:
            kernels_line = f"plain (compiling failed or unavailable: {self.runtime.error})"
        else:
            kernels_line = "plain (compile=False)"
        return (
            f"optimized: {n_bn} BatchNorms folded into {len(self.folded)} layers, {len(self.pointwise)} "
            f"pointwise convolutions as GEMMs, fused activations: {fused}; kernels {kernels_line}"
            + (f"; {len(self.attention)} attentions reordered" if self.attention else "")
            + f"; CPU allocator: {self.cpu_allocator}"
        )


def is_optimized(model: nn.Module) -> bool:
    """Whether :func:`optimize` was applied to ``model`` (and not undone)."""
    return isinstance(model.__dict__.get(_REPORT), OptimizeReport)


def optimization_report(model: nn.Module) -> OptimizeReport | None:
    """The :class:`OptimizeReport` of an optimized model, else None."""
    report = model.__dict__.get(_REPORT)
    return report if isinstance(report, OptimizeReport) else None


def optimize(
    model: nn.Module,
    *,
    compile: bool = True,
    fold_bn: bool = True,
    reorder_attention: bool = True,
    example_input: torch.Tensor | tuple[torch.Tensor, ...] | None = None,
    cpu_allocator: bool = True,
) -> nn.Module:
    """Make ``model`` faster for inference, in place, and return it (see the module docstring).

    Args:
        compile: build the fused activations' large-tensor kernels with ``torch.compile`` now (the compile
            time is in ``report.compile_seconds``; inductor caches the code on disk, so later processes
            are quick). Where compiling fails (no C++ compiler, an unsupported device) the plain kernels
            run and ``report.runtime.error`` says why. Compiled kernels run on the CPU only.
        fold_bn: fold BatchNorms into the layers before them (False: only the other changes).
        reorder_attention: SDT-V3's attention in the cheaper exact order.
        example_input: the input of the traced forward that finds the foldable BatchNorms (default: a
            small random input of the model's own layout; needed for models that are not a
            ``SpikingTransformer`` and have no ``config`` or ``example_inputs()``). A tuple is passed as
            several positional inputs (a tracker's ``(template, search)``).
        cpu_allocator: for a model on the CPU, make this process's malloc keep freed memory for reuse
            (:func:`.allocator.keep_freed_memory`: process-wide, one-way, glibc only; the resident size then
            stays near its peak). False: the allocator is left as it is.

    A second call re-optimizes from scratch. Raises ``UsageError`` for a model built with
    ``official_arithmetic=True`` (it exists to reproduce the official code's float32 arithmetic).

    The report is ``tp_spikformer.optimize.optimization_report(model)``.
    """
    if not isinstance(model, nn.Module):
        raise UsageTypeError(f"optimize expects a torch.nn.Module, got {type(model).__name__}")
    official = [
        name or "model" for name, m in model.named_modules() if getattr(m, "official_arithmetic", False)
    ]
    if official:
        raise UsageError(
            f"{official[0]} was built with official_arithmetic=True (NCHW, unfolded BatchNorms, the literal "
            "scorer) to reproduce the official code's float32 outputs; optimize() would change that "
            "arithmetic. Build the model without official_arithmetic to optimize it."
        )
    if is_optimized(model):
        deoptimize(model)
    report = OptimizeReport(compile_requested=bool(compile))
    names = {m: n for n, m in model.named_modules()}

    t0 = time.perf_counter()
    trace, activations = _trace(model, _example_input(model) if example_input is None else example_input)
    report.trace_seconds = time.perf_counter() - t0

    plan = fold.fold_plan(trace) if fold_bn else {}
    for m in list(model.modules()):
        pointwise = fold.is_pointwise(m)
        if m in plan:
            _swap(m, fold.SWAPS)
            m.__dict__["_opt_norms"] = tuple(plan[m])
            for norm in plan[m]:
                _swap(norm, fold.SWAPS)
                norm.__dict__["_opt_folded_into"] = names[m]
            report.folded[names[m]] = [names[n] for n in plan[m]]
        elif pointwise or fold.is_conv2d(m):
            _swap(m, fold.SWAPS)  # the GEMM path, or a cached channels-last weight
        if pointwise:
            m.__dict__["_opt_pointwise"] = True
            report.pointwise.append(names[m])

    runtime = report.runtime
    in_place = set(fold.private_inputs(trace))
    for m in model.modules():
        cls = type(m)
        if cls in spiking.SWAPS:
            _swap(m, spiking.SWAPS)
            m.__dict__["_opt_runtime"] = runtime
            if m in in_place:
                m.__dict__["_opt_in_place"] = True
                report.in_place.append(names[m])
            kind = "parametric LIF" if cls is ParametricLIF else "LIF" if cls is LIF else "multi-spike"
            report.fused[kind] = report.fused.get(kind, 0) + 1
        elif reorder_attention and cls in attention.SWAPS and attention.reorder_applies(m):
            _swap(m, attention.SWAPS)
            report.attention.append(names[m])

    if compile:
        _compile(model, runtime, activations)
    if not cpu_allocator:
        report.cpu_allocator = "unchanged (cpu_allocator=False)"
    elif any(t.device.type != "cpu" for t in model.parameters()):
        report.cpu_allocator = "unchanged (the model is not on the CPU)"
    else:
        report.cpu_allocator = allocator.keep_freed_memory().detail
    model.__dict__[_REPORT] = report
    _log.info("%s", report.summary())
    return model


def deoptimize(model: nn.Module) -> OptimizeReport | None:
    """Undo :func:`optimize`: every module gets its class back and loses the cached folded weights.

    Parameters and buffers were never changed, so the model is the plain model again. Returns the report
    of the undone optimization (None if the model was not optimized).
    """
    report = model.__dict__.pop(_REPORT, None)
    for m in model.modules():
        original = m.__dict__.pop("_opt_original_class", None)
        if original is not None:
            m.__class__ = original
        for key in [k for k in m.__dict__ if k.startswith("_opt_")]:
            del m.__dict__[key]
    return report if isinstance(report, OptimizeReport) else None


# -- helpers ------------------------------------------------------------------------------------------


def _swap(module: nn.Module, table: dict[type, type]) -> None:
    if "_opt_original_class" not in module.__dict__:
        module.__dict__["_opt_original_class"] = type(module)
        module.__class__ = table[type(module)]


def _example_input(model: nn.Module) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """A small random input of the model's layout (batch 1) for the traced forward: the model's own
    ``example_inputs()`` where it has one (a tracker's ``(template, search)`` tuple)."""
    if callable(getattr(model, "example_inputs", None)):
        return model.example_inputs()
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None else torch.get_default_dtype()
    device = param.device if param is not None else torch.device("cpu")
    g = torch.Generator().manual_seed(0)
    if isinstance(model, SpikingTransformer):
        h, w = model.fixed_input_size or (2 * model.input_multiple, 2 * model.input_multiple)
        c = model.in_channels
        if model.static_input:
            x = torch.randn(1, c, h, w, generator=g)
        else:
            t = model.T or getattr(getattr(model, "config", None), "T", None) or 4
            x = torch.poisson(torch.rand(1, t, c, h, w, generator=g) * 1.5, generator=g)
        return x.to(device=device, dtype=dtype)
    data = getattr(getattr(model, "config", None), "data", None)
    if data is None:
        raise UsageError(
            f"optimize cannot guess an input for {type(model).__name__} (not a SpikingTransformer, no "
            "config.data); pass example_input=<a batch the model accepts>"
        )
    c, h, w = data.input_size
    return torch.randn(1, c, h, w, generator=g).to(device=device, dtype=dtype)


def _tp_states(model: nn.Module) -> list:
    states, seen = [], set()
    for m in model.modules():
        st = m.__dict__.get("_tp_state")
        if st is not None and id(st) not in seen:
            seen.add(id(st))
            states.append(st)
    return states


def _trace(model: nn.Module, x) -> tuple[fold.FoldTrace, dict[str, set]]:
    """One forward (eval, no grad, TP switched off) under :class:`fold.FoldTrace`; also records the
    (dtype, steps, constants) variants of the spiking layers, for the compile warm-up."""
    activations: dict[str, set] = {"lif": set(), "multispike": set()}

    def enter(module, inputs):
        trace.active = module
        trace.activation_inputs[module].append(inputs[0])

    def record(module, inputs, _output):
        trace.active = None
        x = inputs[0]
        if isinstance(module, MultiSpike):
            activations["multispike"].add((x.dtype, module.max_value, module.norm))
        elif isinstance(module, LIF):
            parametric = isinstance(module, ParametricLIF)
            tau = 0.0 if parametric else module.tau
            activations["lif"].add((x.shape[0], x.dtype, tau, module.v_threshold, parametric))

    training = {m: m.training for m in model.modules()}
    states = _tp_states(model)
    enabled = [st.enabled for st in states]
    trace = fold.FoldTrace(model)
    hooks = []
    for m in model.modules():
        if isinstance(m, (LIF, MultiSpike)):
            hooks += [m.register_forward_pre_hook(enter), m.register_forward_hook(record)]
    try:
        model.eval()
        for st in states:
            st.enabled = False
        with torch.no_grad(), trace:
            result = model(*x) if isinstance(x, tuple) else model(x)  # a tuple: several positional inputs
        trace.mark_returned(result)
    finally:
        for h in hooks:
            h.remove()
        for st, on in zip(states, enabled):
            st.enabled = on
        for m, was in training.items():
            m.training = was
    return trace, activations


def _compile(model: nn.Module, runtime: KernelRuntime, activations: dict[str, set]) -> None:
    param = next(model.parameters(), None)
    if param is not None and param.device.type != "cpu":
        runtime.error = f"compiled kernels run on the CPU only; the model is on {param.device}"
        _log.info("tp_spikformer.optimize: %s (plain kernels)", runtime.error)
        return
    runtime.compiled = True
    kernels.warm_up(runtime, activations["lif"], activations["multispike"])
