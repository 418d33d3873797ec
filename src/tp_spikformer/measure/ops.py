"""Count what actually ran, with forward hooks: MACs from real shapes, input sparsity, input kinds.

:class:`OpCounter` hooks every synaptic layer (``Conv1d``/``Conv2d``/``Conv3d`` incl. depthwise/grouped,
``Linear``), every :class:`~tp_spikformer.models.layers.SpikeProduct` and every neuron (``LIF``,
``MultiSpike``) of a model. Per call it records:

* **MACs** of the call from the ACTUAL input/output shapes: ``numel(out) x C_in/groups x prod(kernel)``
  for convolutions, ``numel(out) x in_features`` for Linear, ``numel(out) x K`` for a ``matmul`` product
  (``[..., N, K] @ [..., K, M]``), ``numel(out)`` for an element-wise ``mul`` product. Biases, BatchNorm
  (folded into the layer before it), residual adds, pooling and scales are not counted. A module that
  did not run counts nothing; in a TP-pruned block only the kept tokens enter the token-wise part, so
  the hooks see (and count) the reduced shapes.
* per input operand: elements, non-zeros, spike levels and the **kind** of the input:
  ``"binary"`` (all values 0 or 1), ``"multi-level"`` (the output of a ``MultiSpike``, recognised by
  its storage, so views/reshapes of it count; levels = value x norm, e.g. ``k / 4 -> k``), ``"integer"``
  (other non-negative integer values: sums of spikes, event counts; levels = value) or ``"real"``.
* the weighted event counts that SOPs are made of: ``sum over calls of MACs x non-zero / elements`` and
  ``MACs x levels / elements`` (the rate-based SOP convention ``SOPs = MACs x firing rate``, which for
  1x1 convolutions, Linear layers and products equals non-zero inputs x fan-out exactly; for k x k
  convolutions it averages the fan-out over border positions), plus, for products, the exact number of
  operations where both operands are non-zero.
* per time step (when ``T > 1`` and the leading axis of the input is ``T`` or ``T*B`` time-major, as in
  every model of the zoo): non-zeros and levels of each step, for per-step firing rates.

Which operations are then charged as MAC or AC, at what cost, is decided afterwards by
:class:`~tp_spikformer.measure.conventions.EnergyConventions` (``OpCounts.report(conventions)``), so the
same counts can be re-charged under other conventions without running the model again.

Layers are grouped by the :class:`~tp_spikformer.models.TokenBlock` they belong to (module path), else
by call order within a forward: ``"stem"`` (before the first block), ``"downsample"`` (between blocks),
``"head"`` (after the last block), or ``"other"`` for models without blocks. Inside a block, a layer
belongs to the ``"token"`` part (attention + MLP, run on the kept tokens only) or the ``"dense"`` part
(e.g. SDT-V3's SepConv, always on all tokens); the counter learns this by wrapping the block's
``dense_forward`` / ``token_forward`` while it is attached (do not deepcopy a model while attached).
"""

from __future__ import annotations

import copy
import math
import warnings
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import UsageError, UsageTypeError
from ..models.layers import LIF, MultiSpike, SpikeProduct
from ..models.protocol import TokenBlock, token_blocks
from ..pruning import get_tp_state, is_patched

SYNAPTIC_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
NEURON_TYPES = (LIF, MultiSpike)
KINDS = ("binary", "multi-level", "integer", "real")


@dataclass
class OperandCounts:
    """Accumulated statistics of one input operand of a layer (one kind, one call signature).

    ``levels`` is the number of spikes: non-zeros for binary input, ``value x norm`` summed for
    multi-level, ``value`` summed for integer input (for real input it is the plain sum, unused).
    ``ops_nonzero`` / ``ops_levels`` are ``sum over calls of MACs x nonzero / elements`` and
    ``MACs x levels / elements``. ``step_*`` hold per-time-step totals (None when not splittable).
    """

    elements: int = 0
    nonzero: int = 0
    levels: float = 0.0
    ops_nonzero: float = 0.0
    ops_levels: float = 0.0
    step_elements: list[int] | None = None
    step_nonzero: list[int] | None = None
    step_levels: list[float] | None = None
    _steps_ok: bool = True

    def add(self, macs: int, n: int, nnz: float, lv: float, steps: list[tuple[float, float]] | None) -> None:
        self.elements += n
        self.nonzero += int(nnz)
        self.levels += lv
        if n:
            self.ops_nonzero += macs * nnz / n
            self.ops_levels += macs * lv / n
        if steps is None or not self._steps_ok:
            self._steps_ok = False
            self.step_elements = self.step_nonzero = self.step_levels = None
            return
        per = n // len(steps)
        if self.step_elements is None:
            self.step_elements = [0] * len(steps)
            self.step_nonzero = [0] * len(steps)
            self.step_levels = [0.0] * len(steps)
        if len(self.step_elements) != len(steps):
            self._steps_ok = False
            self.step_elements = self.step_nonzero = self.step_levels = None
            return
        for t, (s_nnz, s_lv) in enumerate(steps):
            self.step_elements[t] += per
            self.step_nonzero[t] += int(s_nnz)
            self.step_levels[t] += s_lv


@dataclass
class CallBucket:
    """Calls of one layer that share a signature: first-layer flag, repeated-static-input flag (the
    first layer's input is identical at every time step), and the kind of each input operand."""

    first: bool
    repeated: bool
    kinds: tuple[str, ...]
    calls: int = 0
    macs: int = 0
    steps: int = 1  # T of these calls
    operands: list[OperandCounts] = field(default_factory=list)
    joint_nonzero: float = 0.0  # products: operations where both operands are non-zero
    joint_levels: float = 0.0  # products: sum of level products over all operations


@dataclass
class LayerCounts:
    """Everything counted for one module (a synaptic layer or a spike product)."""

    name: str
    op: str  # "Conv2d", "Linear", ..., "matmul" or "mul" (SpikeProduct)
    detail: str
    is_product: bool
    block: str | None
    part: str = ""  # "token" | "dense" | "block" (inside a block, other code path) | "" (outside)
    category: str = ""  # "block" | "stem" | "downsample" | "head" | "other"
    order: int = 0  # first-call order
    buckets: dict[tuple, CallBucket] = field(default_factory=dict)

    @property
    def group(self) -> str:
        return self.block if self.block is not None else (self.category or "other")

    @property
    def calls(self) -> int:
        return sum(b.calls for b in self.buckets.values())

    @property
    def macs(self) -> int:
        return sum(b.macs for b in self.buckets.values())


@dataclass
class GroupCounts:
    """Per group (block or stem/downsample/head): neuron updates and, for blocks, token slots."""

    name: str
    category: str
    order: int = 0
    neuron_updates: int = 0
    tokens_total: int = 0  # sum over forwards of grid tokens x batch
    tokens_kept: int = 0  # sum over forwards of tokens that ran the token-wise part x batch


@dataclass
class OpCounts:
    """Raw counts of one or more forwards; ``report(conventions)`` charges them (see ``report.py``)."""

    model_name: str
    layers: dict[str, LayerCounts]
    groups: dict[str, GroupCounts]
    samples: int
    forwards: int
    T: int
    tp: dict[str, Any] | None = None  # TP configuration when the model was patched

    def report(self, conventions=None, per_sample: bool = True):
        """Charge the counts under ``conventions`` (default :class:`EnergyConventions`)."""
        from .report import build_report

        return build_report(self, conventions, per_sample=per_sample)

    def dense_macs(self, ops: Iterable[str] | None = None) -> int:
        """Total dense MACs over all forwards (not per sample), optionally only of the given ops."""
        keep = set(ops) if ops is not None else None
        return sum(layer.macs for layer in self.layers.values() if keep is None or layer.op in keep)


# -- per-call statistics ------------------------------------------------------------------------------


def _layer_macs(m: nn.Module, out: torch.Tensor) -> int:
    if isinstance(m, nn.Linear):
        return out.numel() * m.in_features
    return out.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)


def _layer_detail(m: nn.Module) -> str:
    if isinstance(m, nn.Linear):
        return f"{m.in_features}->{m.out_features}"
    k = "x".join(str(s) for s in m.kernel_size)
    extra = f", s{m.stride[0]}" if any(s != 1 for s in m.stride) else ""
    extra += f", g{m.groups}" if m.groups != 1 else ""
    return f"{m.in_channels}->{m.out_channels}, k{k}{extra}"


def _splittable(x: torch.Tensor, T: int) -> bool:
    return T > 1 and x.dim() > 0 and x.numel() > 0 and x.shape[0] % T == 0


def _level_sum(x: torch.Tensor, dims_from: int, max_levels: float) -> torch.Tensor:
    """Float64 sums of ``x`` over its dims from ``dims_from`` on, for values ``k / norm`` with integer
    ``0 <= k <= max_levels`` and ``norm`` a power of two (a MultiSpike output): float32 sums over blocks of
    trailing dims short enough (``block x max_levels <= 2**24``) to be exact, then float64. (A float64
    reduction of float32 input converts element by element and is many times slower.)"""
    limit = 2**24 // max(math.ceil(max_levels), 1)
    split, block = x.dim(), 1
    while split > dims_from and block * x.shape[split - 1] <= limit:
        block *= x.shape[split - 1]
        split -= 1
    if split == x.dim():  # not even the last dim is short enough: the slow exact way
        return x.sum(dim=tuple(range(dims_from, x.dim())), dtype=torch.float64)
    partial = x.sum(dim=tuple(range(split, x.dim()))).to(torch.float64)
    return partial.sum(dim=tuple(range(dims_from, split))) if split > dims_from else partial


def _nonzero_indicator(x: torch.Tensor) -> torch.Tensor:
    """1.0 where ``x != 0`` (NaN included), else 0.0, in float32: summed in blocks it counts the non-zeros
    several times faster than ``torch.count_nonzero`` on the CPU."""
    out = torch.empty_like(x, dtype=torch.float32)
    return torch.ne(x, 0, out=out)


def _stats_tensor(
    x: torch.Tensor,
    T: int,
    check_repeat: bool,
    level_norms: tuple,
    check_values: bool = True,
    max_levels: float | None = None,
) -> torch.Tensor:
    """One float64 vector: ``[elements, nonzero, sum, is_binary, is_nonneg_int, repeated,
    on_level_grid per (norm, max) in level_norms..., (nonzero_t)*T, (sum_t)*T]``.

    Few passes over ``x`` (this runs on every counted layer input, so it sets what counting costs): the
    range by one ``aminmax``, integrality by one rounding; ``binary`` = non-negative integers at most 1,
    and a level grid ``(norm, max)`` = ``x * norm`` integral with its range (the range of ``x`` scaled:
    multiplying by a positive float is monotonic) inside ``[0, max]``. ``check_values=False`` (the
    operand's kind is already known, e.g. a tracked ``MultiSpike`` output) leaves those flags 0 and skips
    their passes; ``max_levels`` (values ``k / norm``, integer ``k <= max_levels``, norm a power of two)
    sums them in exact float32 blocks. On a CUDA device nothing here synchronises; on the CPU (where that
    is free) the range and integrality are read to sum small non-negative integers the same way."""
    x = x.detach()
    if not x.is_floating_point():
        x = x.float()
    f64 = torch.float64
    splittable = _splittable(x, T)
    zero = torch.zeros((), dtype=f64, device=x.device)
    if not check_values:
        lo = hi = is_int = None
    elif x.numel() == 0:
        lo = hi = torch.zeros((), dtype=x.dtype, device=x.device)
        is_int = torch.ones((), dtype=torch.bool, device=x.device)
    else:
        lo, hi = torch.aminmax(x)
        is_int = torch.eq(x, torch.round(x)).all() & (lo >= 0)
    # On the CPU a synchronisation costs nothing, and a float64 reduction of float32 input is ~40x slower
    # than a float32 one: small non-negative integers (spikes, spike sums) sum exactly in float32 blocks.
    cpu = is_int is not None and x.device.type == "cpu" and x.numel() > 0
    if max_levels is None and cpu and bool(is_int) and float(hi) <= 2**24:
        max_levels = float(hi)
    grid = max_levels is not None and x.dtype == torch.float32 and x.dim() > 0
    indicator = _nonzero_indicator(x)
    if splittable:
        xs = x.reshape(T, -1)  # [T, rest]: time-major leading axis
        step_nonzero = _level_sum(indicator.reshape(T, -1), 1, 1)
        step_sum = _level_sum(xs, 1, max_levels) if grid else xs.sum(dim=1, dtype=f64)
        nonzero, total = step_nonzero.sum(), step_sum.sum()
    else:
        nonzero = _level_sum(indicator, 0, 1) if x.dim() > 0 else indicator.to(f64)
        total = _level_sum(x, 0, max_levels) if grid else x.sum(dtype=f64)
    parts = [
        torch.tensor(float(x.numel()), dtype=f64, device=x.device),
        nonzero,
        total,
        zero if is_int is None else (is_int & (hi <= 1)).to(f64),
        zero if is_int is None else is_int.to(f64),
    ]
    if check_repeat and splittable:
        parts.append((xs == xs[:1]).all().to(f64))
    else:
        parts.append(zero)
    for norm, max_value in level_norms:
        if not check_values:
            parts.append(zero)
            continue
        y = x * norm
        if norm > 0:
            on_grid = torch.eq(y, torch.round(y)).all() & (lo * norm >= 0) & (hi * norm <= max_value)
        else:
            on_grid = ((y >= 0) & (y <= max_value) & (y == torch.round(y))).all()
        parts.append(on_grid.to(f64))
    if splittable:
        parts.append(step_nonzero)
        parts.append(step_sum)
    return torch.cat([p.reshape(-1) for p in parts])


def _stats_width(x: torch.Tensor, T: int, level_norms: tuple) -> int:
    return 6 + len(level_norms) + (2 * T if _splittable(x, T) else 0)


def _unpack(values: list[float], T: int, level_norms: tuple) -> dict[str, Any]:
    n, nnz, total, is_bin, is_int, repeated = values[:6]
    k = len(level_norms)
    grid = [norm for (norm, _), ok in zip(level_norms, values[6 : 6 + k]) if ok]
    rest = values[6 + k :]
    steps = list(zip(rest[:T], rest[T:])) if rest else None
    return dict(
        n=int(n),
        nnz=nnz,
        sum=total,
        binary=bool(is_bin),
        integer=bool(is_int),
        repeated=bool(repeated),
        level_grid=grid[0] if grid else None,
        steps=steps,
    )


def _joint_tensor(kind: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[ops where both operands are non-zero, sum of value products over all ops] of a product.

    Reduced in the operands' own dtype before anything is widened to float64 (converting whole operands
    made this the most expensive part of counting attention): exact for spike-valued operands, whose
    per-row sums are small integers or level multiples; the sums are only used when both operands are
    spike events (``report.charge``)."""
    a, b = a.detach(), b.detach()
    if not a.is_floating_point():
        a = a.float()
    if not b.is_floating_point():
        b = b.float()
    f64 = torch.float64
    if kind == "mul":
        both = _nonzero_indicator(a) * _nonzero_indicator(b)  # broadcast like the product
        both = _level_sum(both, 0, 1) if both.dim() else both.to(f64)
        return torch.stack([both.reshape(()), (a * b).sum(dtype=f64)])
    if a.dim() == 1:
        a = a.unsqueeze(0)
    if b.dim() == 1:
        b = b.unsqueeze(-1)
    # sum_{i,k,j} [a_ik b_kj] = sum_k (sum_i a_ik)(sum_j b_kj), batch dims broadcast
    a_nonzero = _nonzero_indicator(a).sum(-2).to(f64)  # counts below 2**24 per row: exact in float32
    b_nonzero = _nonzero_indicator(b).sum(-1).to(f64)
    a_sum, b_sum = a.sum(-2).to(f64), b.sum(-1).to(f64)
    return torch.stack([(a_nonzero * b_nonzero).sum(), (a_sum * b_sum).sum()])


class OpCounter:
    """Forward hooks that count the operations of ``model`` (module docstring).

    Use as a context manager around forwards of the model (call the model itself, not a submodule, so
    that the per-forward bookkeeping runs)::

        with OpCounter(model) as counter, torch.inference_mode():
            for x in batches:
                model(x)
        report = counter.counts().report()

    ``T``: time steps per forward; default ``model.T``, else dim 1 of a 5-D ``[B, T, C, H, W]`` input,
    else 1 (SDT-V3, plain modules). Used for per-step firing rates and the static-input check.

    Multi-level spikes are recognised by storage (the input is, or is a view of, the output of a
    ``MultiSpike`` of this forward); as a fallback, an input whose values all lie on the level grid
    ``{0, 1/norm, ..., max/norm}`` of one of the model's ``MultiSpike`` modules with ``norm != 1`` is
    multi-level too (a copy made between the neuron and the layer would otherwise hide it).
    """

    def __init__(self, model: nn.Module, T: int | None = None):
        self.model = model
        self.T_override = T
        self._handles: list[Any] = []
        self._wrapped: list[tuple[TokenBlock, str]] = []
        self.layers: dict[str, LayerCounts] = {}
        self.groups: dict[str, GroupCounts] = {}
        self.samples = 0
        self.forwards = 0
        self._T_seen: list[int] = []
        self._block_of: dict[nn.Module, str] = {}
        self._names: dict[nn.Module, str] = {}
        self._level_norms: tuple[tuple[float, float], ...] = ()
        self._attached = False
        self._pending: list[tuple[str, Any, int]] = []
        self._first_block_seq: int | None = None
        self._last_block_exit_seq: int | None = None
        self._reset_forward()

    # -- attach / detach ---------------------------------------------------------------------------
    def __enter__(self) -> OpCounter:
        self.attach()
        return self

    def __exit__(self, *exc) -> None:
        self.detach()

    def attach(self) -> OpCounter:
        """Register the hooks (idempotent)."""
        if self._attached:
            return self
        blocks = token_blocks(self.model)
        block_names = [n for n, _ in blocks]
        norms = set()
        for name, module in self.model.named_modules():
            self._names[module] = name
            owner = next((b for b in block_names if name == b or name.startswith(b + ".")), None)
            if owner is not None:
                self._block_of[module] = owner
            if isinstance(module, MultiSpike) and module.norm != 1.0:
                norms.add((module.norm, module.max_value))
        self._level_norms = tuple(sorted(norms))
        for i, (name, block) in enumerate(blocks):
            g = self.groups.setdefault(name, GroupCounts(name, "block"))
            g.order = i
            self._handles.append(block.register_forward_pre_hook(self._block_pre))
            self._handles.append(block.register_forward_hook(self._block_post))
            for meth, phase in (("dense_forward", "dense"), ("token_forward", "token")):
                setattr(block, meth, self._phase_wrapper(getattr(block, meth), phase))
                self._wrapped.append((block, meth))
        for module in self.model.modules():
            if isinstance(module, (*SYNAPTIC_TYPES, SpikeProduct)):
                self._handles.append(module.register_forward_hook(self._count_hook))
            elif isinstance(module, NEURON_TYPES):
                self._handles.append(module.register_forward_hook(self._neuron_hook))
        self._handles.append(self.model.register_forward_pre_hook(self._root_pre))
        self._handles.append(self.model.register_forward_hook(self._root_post))
        self._attached = True
        return self

    def detach(self) -> None:
        """Remove the hooks and the block wrappers; the counts stay available."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        for block, meth in self._wrapped:
            block.__dict__.pop(meth, None)
        self._wrapped.clear()
        self._finish_forward()
        self._attached = False

    def _phase_wrapper(self, fn, phase: str):
        def wrapped(*args, **kwargs):
            self._phase.append(phase)
            try:
                return fn(*args, **kwargs)
            finally:
                self._phase.pop()

        return wrapped

    # -- per-forward bookkeeping -------------------------------------------------------------------
    def _reset_forward(self) -> None:
        self._seq = 0
        self._first_done = False
        self._block_stack: list[tuple[str, int, int]] = []
        self._phase: list[str] = []
        self._first_block_seq = None
        self._last_block_exit_seq = None
        self._multispike: dict[int, tuple[Any, float, float]] = {}
        self._T = self.T_override or 1

    def _resolve_T(self, x: Any) -> int:
        if self.T_override:
            return int(self.T_override)
        t = getattr(self.model, "T", None)
        if isinstance(t, int) and t > 0:
            return t
        if isinstance(x, torch.Tensor) and x.dim() == 5:
            return int(x.shape[1])
        return 1

    def _root_pre(self, module, args) -> None:
        self._finish_forward()
        self._reset_forward()
        x = args[0] if args else None
        self._T = self._resolve_T(x)
        self._T_seen.append(self._T)
        if isinstance(x, torch.Tensor) and x.dim() > 0:
            self.samples += int(x.shape[0])
        self.forwards += 1

    def _root_post(self, module, args, output) -> None:
        self._finish_forward()

    def _finish_forward(self) -> None:
        """Assign stem/downsample/head (by call order) to what ran outside blocks in this forward."""
        pending, self._pending = self._pending, []
        for what, payload, seq in pending:
            if self._first_block_seq is None:
                cat = "other"
            elif seq < self._first_block_seq:
                cat = "stem"
            elif self._last_block_exit_seq is not None and seq > self._last_block_exit_seq:
                cat = "head"
            else:
                cat = "downsample"
            if what == "layer":
                if not payload.category:
                    payload.category = cat
                self._group(payload.category)
            else:
                self._group(cat).neuron_updates += payload

    def _group(self, name: str) -> GroupCounts:
        g = self.groups.get(name)
        if g is None:
            order = {"stem": -2, "other": -1, "downsample": 10_000, "head": 20_000}.get(name, 30_000)
            g = self.groups[name] = GroupCounts(name, name, order=order)
        return g

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _block_pre(self, block, args) -> None:
        seq = self._next_seq()
        if self._first_block_seq is None:
            self._first_block_seq = seq
        x = args[0] if args else None
        batch = tokens = 0
        if isinstance(x, torch.Tensor) and x.dim() >= 3:
            batch = int(x.shape[1] if block.has_time_axis else x.shape[0])
            tokens = int(x.shape[-2] * x.shape[-1])
        self._block_stack.append((self._names[block], batch, tokens))

    def _block_post(self, block, args, output) -> None:
        self._last_block_exit_seq = self._next_seq()
        if not self._block_stack:
            return
        name, batch, tokens = self._block_stack.pop()
        total = kept = tokens
        st = block.__dict__.get("_tp_state")  # the block's own TP state (also when a sub-model was patched)
        if st is not None and st.enabled:
            rec = st.last_record(st.block_names[block._tp_index])
            if rec is not None:
                total, kept = rec.total, rec.kept
        g = self.groups[name]
        g.tokens_total += total * batch
        g.tokens_kept += kept * batch

    # -- hooks -------------------------------------------------------------------------------------
    def _neuron_hook(self, module, args, output) -> None:
        x = args[0] if args else None
        n = x.numel() if isinstance(x, torch.Tensor) else 0
        if isinstance(module, MultiSpike) and isinstance(output, torch.Tensor):
            self._multispike[output.untyped_storage().data_ptr()] = (
                weakref.ref(output),
                module.norm,
                module.max_value,
            )
        block = self._block_of.get(module)
        if block is not None:
            self.groups[block].neuron_updates += n
        else:
            self._pending.append(("neuron", n, self._next_seq()))

    def _tracked(self, x: torch.Tensor) -> tuple[float, float] | None:
        """``(norm, max levels)`` of the ``MultiSpike`` of this forward whose output ``x`` is (or is a view
        of), else None."""
        entry = self._multispike.get(x.untyped_storage().data_ptr())
        if entry is None or entry[0]() is None:
            return None
        return entry[1], entry[2]

    def _tracked_norm(self, x: torch.Tensor) -> float | None:
        tracked = self._tracked(x)
        return None if tracked is None else tracked[0]

    def _operand_stats(self, x: torch.Tensor, check_repeat: bool) -> torch.Tensor:
        """``_stats_tensor`` of an operand; a tracked ``MultiSpike`` output skips the value checks (its kind
        is known) and, for a power-of-two norm, sums its levels in exact float32 blocks."""
        tracked = self._tracked(x)
        exact_blocks = tracked is not None and math.frexp(tracked[0])[0] == 0.5
        return _stats_tensor(
            x,
            self._T,
            check_repeat,
            self._level_norms,
            check_values=tracked is None,
            max_levels=tracked[1] if exact_blocks else None,
        )

    @staticmethod
    def _kind(s: dict[str, Any], norm: float | None) -> tuple[str, float, float]:
        """(kind, levels, norm) of an operand from its statistics and its tracked MultiSpike norm."""
        if norm is not None:
            return "multi-level", s["sum"] * norm, norm
        if s["binary"]:
            return "binary", s["nnz"], 1.0
        if s["level_grid"] is not None:
            return "multi-level", s["sum"] * s["level_grid"], s["level_grid"]
        if s["integer"]:
            return "integer", s["sum"], 1.0
        return "real", s["sum"], 1.0

    def _layer(self, module: nn.Module) -> LayerCounts:
        name = self._names.get(module) or f"({type(module).__name__})"  # the root module's name is ""
        layer = self.layers.get(name)
        if layer is None:
            if isinstance(module, SpikeProduct):
                op, detail, is_product = module.kind, "SpikeProduct", True
            else:
                op, detail, is_product = type(module).__name__, _layer_detail(module), False
            block = self._block_of.get(module)
            layer = self.layers[name] = LayerCounts(
                name=name,
                op=op,
                detail=detail,
                is_product=is_product,
                block=block,
                category="block" if block is not None else "",
                order=len(self.layers),
            )
            if block is not None:
                layer.part = self._phase[-1] if self._phase else "block"
        return layer

    def _count_hook(self, module, args, output) -> None:
        if not isinstance(output, torch.Tensor):
            return
        T, norms = self._T, self._level_norms
        layer = self._layer(module)
        seq = self._next_seq()
        if layer.block is None:
            self._pending.append(("layer", layer, seq))
        if isinstance(module, SpikeProduct):
            a, b = args[0], args[1]
            macs = output.numel() if module.kind == "mul" else output.numel() * a.shape[-1]
            operands, first = (a, b), False
            stats = torch.cat(
                [
                    self._operand_stats(a, False),
                    self._operand_stats(b, False),
                    _joint_tensor(module.kind, a, b),
                ]
            )
        else:
            x = args[0]
            macs = _layer_macs(module, output)
            operands, first = (x,), not self._first_done
            self._first_done = True
            stats = self._operand_stats(x, first)
        values = stats.tolist()  # one device sync per call (on the CPU, _stats_tensor may sync too)
        parsed, offset = [], 0
        for op in operands:
            width = _stats_width(op, T, norms)
            parsed.append(_unpack(values[offset : offset + width], T, norms))
            offset += width
        kinds = []
        for op, s in zip(operands, parsed):
            kind, lv, norm = self._kind(s, self._tracked_norm(op))
            s.update(kind=kind, levels=lv, norm=norm)
            kinds.append(kind)
        repeated = first and parsed[0]["repeated"]
        key = (first, repeated, tuple(kinds))
        bucket = layer.buckets.get(key)
        if bucket is None:
            bucket = layer.buckets[key] = CallBucket(
                first, repeated, tuple(kinds), steps=T, operands=[OperandCounts() for _ in operands]
            )
        bucket.calls += 1
        bucket.macs += macs
        bucket.steps = T
        for oc, s in zip(bucket.operands, parsed):
            steps = s["steps"]
            if steps is not None:
                scale = s["norm"] if s["kind"] == "multi-level" else 1.0
                steps = [(nnz, nnz if s["kind"] == "binary" else sm * scale) for nnz, sm in steps]
            oc.add(macs, s["n"], s["nnz"], s["levels"], steps)
        if layer.is_product:
            joint_nonzero, joint_values = values[offset : offset + 2]
            bucket.joint_nonzero += joint_nonzero
            bucket.joint_levels += joint_values * parsed[0]["norm"] * parsed[1]["norm"]

    # -- results -----------------------------------------------------------------------------------
    def counts(self) -> OpCounts:
        """Snapshot of what has been counted so far."""
        self._finish_forward()
        T_values = sorted(set(self._T_seen)) or [self.T_override or 1]
        if len(T_values) > 1:
            warnings.warn(
                f"forwards ran with different T {T_values}; the report states T={T_values[-1]}", stacklevel=2
            )
        tp = None
        if is_patched(self.model):
            st = get_tp_state(self.model)
            tp = {
                "keep": str(st.keep),
                "scorer": st.scorer_name,
                "mode": st.mode,
                "cumulative": st.cumulative,
                "window": st.window,
            }
        model_name = getattr(getattr(self.model, "config", None), "name", None) or type(self.model).__name__
        return OpCounts(
            model_name=model_name,
            layers=copy.deepcopy(self.layers),
            groups=copy.deepcopy(self.groups),
            samples=self.samples,
            forwards=self.forwards,
            T=T_values[-1],
            tp=tp,
        )


# -- convenience -------------------------------------------------------------------------------------


class ModelInputs(tuple):
    """The positional inputs of one forward of a model that takes several (a tracker's ``(template,
    search)``): a batch of this type is passed as ``model(*batch)``, never read as an ``(x, y)`` pair."""

    def to(self, device) -> ModelInputs:
        return ModelInputs(t.to(device) for t in self)


def call_model(model: nn.Module, batch: Any, device: torch.device) -> Any:
    """``model(*batch)`` for :class:`ModelInputs`, else ``model(batch)``, on ``device``."""
    if isinstance(batch, ModelInputs):
        return model(*batch.to(device))
    return model(batch.to(device))


def iter_batches(inputs: Any, max_batches: int | None = None):
    """Input tensors from a tensor, a list of tensors, or an iterable of batches (a DataLoader);
    a batch that is a tuple/list (``(x, y)``) gives its first element, a dict its ``"image"``/``"x"``;
    a :class:`ModelInputs` batch is kept whole (several positional inputs)."""
    if isinstance(inputs, torch.Tensor):
        inputs = [inputs]
    for i, batch in enumerate(inputs):
        if max_batches is not None and i >= max_batches:
            break
        if isinstance(batch, ModelInputs):
            yield batch
            continue
        if isinstance(batch, (tuple, list)):
            batch = batch[0]
        elif isinstance(batch, dict):
            batch = next((batch[k] for k in ("image", "x", "input", "inputs") if k in batch), None)
        if not isinstance(batch, torch.Tensor):
            raise UsageTypeError(
                f"batch {i} is not a tensor (got {type(batch).__name__}); pass tensors or (x, y) pairs"
            )
        yield batch


def _device_of(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def count_ops(
    model: nn.Module, inputs: Any, T: int | None = None, max_batches: int | None = None
) -> OpCounts:
    """Run ``model`` (eval mode, inference mode) on ``inputs`` and return the raw :class:`OpCounts`.

    ``inputs``: a tensor, a list of tensors or an iterable of batches (``(x, y)`` pairs are fine).
    The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    device = _device_of(model)
    try:
        with OpCounter(model, T=T) as counter, torch.inference_mode():
            for x in iter_batches(inputs, max_batches):
                call_model(model, x, device)
    finally:
        model.train(was_training)
    if counter.forwards == 0:
        raise UsageError("no batch was run: inputs is empty")
    return counter.counts()
