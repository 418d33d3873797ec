"""BatchNorm folding and the GEMM path of pointwise convolutions.

Which BatchNorms fold is read from one traced forward, not from a table of families: a
``TorchFunctionMode`` follows every output of a convolution, linear layer or BatchNorm through the ops
that read it. A BatchNorm folds into the layer before it when, in the traced forward,

* every call of the BatchNorm normalises an output of that one layer (or a view of it with the same
  channel axis: ``[M, C, N, 1]`` -> ``[M, C, N]``, a transposed ``Linear`` output, ...), and
* every output of that layer is read by nothing but this BatchNorm (views do not count as readers;
  in-place ops and copies do).

Then ``BN(layer(x)) = layer'(x)`` with ``W' = W * s`` and ``b' = (b - mean) * s + beta`` per output channel,
``s = gamma / sqrt(var + eps)``, for any kernel, stride, padding or groups. A BatchNorm that reads another
folded BatchNorm's output folds into the same layer (SDT-V2's ``RepConv`` body ends in two BatchNorms).

SDT-V2's ``BNAndPad`` normalises, then pads with the BatchNorm's value at zero input
(``beta - mean * s``). Its BatchNorm folds into the 1x1 convolution before it: that convolution has no
bias, so the folded one outputs exactly ``beta - mean * s`` for a zero input, which is the padding value
``BNAndPad`` still computes from the (unchanged) statistics. The padding itself stays; what the official
forward computes is unchanged.

A folded layer keeps its parameters and its BatchNorms keep theirs (the state_dict does not change); the
folded weights are computed on first use, in float64, and recomputed whenever a source tensor changes
(its storage or its in-place version counter: ``load_state_dict``, ``.to()``, in-place edits). The fast
path runs in eval mode without autograd; in training mode, or with grad enabled, every module runs its
own forward (BatchNorm with batch statistics, gradients to the original parameters).

Pointwise (1x1, no padding, one group) convolutions run as one GEMM, folded or not: ``F.linear`` on the
channels-innermost view of a channels-last grid, ``W @ x`` otherwise (``Conv1d`` token tensors, NCHW
grids), with the output layout torch's convolution would give. torch runs 1x1 convolutions through its
im2col path (``_slow_conv2d_forward``), which is a GEMM too; measured in thread CPU time on this project's
CPU the two are within noise for the block shapes, the GEMM path a little faster for ``Conv1d`` token
tensors (SDT-V3-l: 27 -> 24 ms per forward).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

PRODUCER_TYPES = (nn.Conv1d, nn.Conv2d, nn.Linear)
NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)
_CONV_FUNCS = (F.conv1d, F.conv2d)


# -- the trace -------------------------------------------------------------------------------------------


@dataclass
class _Output:
    """One output of a producer (conv / linear / BatchNorm) in the traced forward."""

    module: nn.Module
    tensor: torch.Tensor  # held, so its storage (our key) is not reused during the trace
    channel_dim: int
    readers: list = field(default_factory=list)  # BatchNorm modules, or None for any other reader


def _storage(t: torch.Tensor) -> int | None:
    if t.numel() == 0 or t.is_sparse:
        return None
    return t.untyped_storage().data_ptr()


# functions that return no tensor and read no values (shape, strides, storage, ...): not readers
_METADATA = {
    "__get__",
    "size",
    "dim",
    "ndimension",
    "stride",
    "storage_offset",
    "is_contiguous",
    "numel",
    "nelement",
    "untyped_storage",
    "data_ptr",
    "element_size",
    "__len__",
    "is_floating_point",
    "is_complex",
    "get_device",
    "__hash__",
    "__format__",
}


def _name(func) -> str:
    return getattr(func, "__name__", "")


def _in_place(func, kwargs: dict) -> bool:
    name = _name(func)
    return "out" in kwargs or name == "__setitem__" or (name.endswith("_") and not name.endswith("__"))


class FoldTrace(TorchFunctionMode):
    """Follows producer outputs through one forward (see the module docstring)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.by_weight = {id(m.weight): m for m in model.modules() if type(m) in PRODUCER_TYPES}
        self.by_stats = {
            id(m.running_mean): m
            for m in model.modules()
            if type(m) in NORM_TYPES and m.running_mean is not None
        }
        self.outputs: dict[int, _Output] = {}
        self.outputs_of: dict[nn.Module, list[_Output]] = defaultdict(list)
        self.norm_calls: dict[nn.Module, list[tuple[_Output | None, torch.Tensor]]] = defaultdict(list)
        self.called: list[nn.Module] = []  # producers and norms in first-call order
        # activation modules (set by the caller's hooks): reads inside one are attributed to it, and each
        # call's input is recorded, so activations whose input nobody else reads can run in place
        self.active: nn.Module | None = None
        self.activation_inputs: dict[nn.Module, list[torch.Tensor]] = defaultdict(list)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        norm = None
        if func is F.batch_norm:
            stats = args[1] if len(args) > 1 else kwargs.get("running_mean")
            norm = self.by_stats.get(id(stats))
        norm_input = (args[0] if args else kwargs.get("input")) if norm is not None else None
        self._read(func, args, kwargs, out, norm, norm_input)
        producer, channel_dim = None, 1
        if func in _CONV_FUNCS or func is F.linear:
            weight = args[1] if len(args) > 1 else kwargs.get("weight")
            producer = self.by_weight.get(id(weight))
            channel_dim = -1 if func is F.linear else 1
        elif norm is not None:
            producer = norm
        if producer is not None and isinstance(out, torch.Tensor) and _storage(out) is not None:
            rec = _Output(producer, out, out.dim() - 1 if channel_dim == -1 else channel_dim)
            self.outputs[_storage(out)] = rec
            if producer not in self.outputs_of:
                self.called.append(producer)
            self.outputs_of[producer].append(rec)
        return out

    def mark_returned(self, result) -> None:
        """The forward returned ``result``: its tensors are read by the caller (not private to a neuron)."""
        for t in tree_flatten(result)[0]:
            if isinstance(t, torch.Tensor):
                rec = self.outputs.get(_storage(t))
                if rec is not None:
                    rec.readers.append(None)

    def _read(self, func, args, kwargs, out, norm, norm_input) -> None:
        if norm is not None:
            rec = self.outputs.get(_storage(norm_input)) if isinstance(norm_input, torch.Tensor) else None
            self.norm_calls[norm].append((rec, norm_input))
            if rec is not None:
                rec.readers.append(norm)
        leaves = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        if not any(_storage(t) in self.outputs for t in leaves):
            return
        outs = [o for o in tree_flatten(out)[0] if isinstance(o, torch.Tensor)]
        in_place = _in_place(func, kwargs)
        out_storages = {_storage(o) for o in outs}
        for t in leaves:
            if t is norm_input:
                continue
            rec = self.outputs.get(_storage(t))
            if rec is None:
                continue
            if not in_place and (_storage(t) in out_storages or (not outs and _name(func) in _METADATA)):
                continue  # a view (same storage) or a metadata query (size, stride, dim, ...)
            rec.readers.append(self.active)


def _dense(t: torch.Tensor) -> bool:
    """Non-overlapping and dense: the strides of the dims of size > 1, sorted, form a mixed radix."""
    expected = 1
    for stride, size in sorted((st, sz) for st, sz in zip(t.stride(), t.shape) if sz > 1):
        if stride != expected:
            return False
        expected *= size
    return True


def _same_channels(x: torch.Tensor, rec: _Output) -> bool:
    """``x`` (a BatchNorm input, channels in dim 1) holds the same elements as ``rec.tensor`` with the same
    channel of every element: same storage span, both dense, same size and stride of the channel axis."""
    out, c = rec.tensor, rec.channel_dim
    if x.dim() < 2 or x.numel() != out.numel() or x.storage_offset() != out.storage_offset():
        return False
    if x.shape[1] != out.shape[c]:
        return False
    return (x.shape[1] == 1 or x.stride(1) == out.stride(c)) and _dense(x) and _dense(out)


def fold_plan(trace: FoldTrace) -> dict[nn.Module, list[nn.Module]]:
    """``{layer: [BatchNorms folded into it, in order]}`` from a finished trace."""
    target: dict[nn.Module, nn.Module] = {}
    plan: dict[nn.Module, list[nn.Module]] = {}
    for norm in trace.called:
        if type(norm) not in NORM_TYPES or not norm.track_running_stats:
            continue
        calls = trace.norm_calls.get(norm, [])
        if not calls or any(rec is None for rec, _ in calls):
            continue
        sources = {id(rec.module) for rec, _ in calls}
        if len(sources) != 1:
            continue
        source = calls[0][0].module
        if not all(rec.readers == [norm] for rec in trace.outputs_of[source]):
            continue
        if not all(_same_channels(x, rec) for rec, x in calls):
            continue
        root = target.get(source) if type(source) in NORM_TYPES else source
        if root is None:
            continue
        target[norm] = root
        plan.setdefault(root, []).append(norm)
    return plan


def private_inputs(trace: FoldTrace) -> list[nn.Module]:
    """Activation modules whose input is, on every call, the whole output of a producer (a layer or a
    BatchNorm) that nothing but this activation reads: they may overwrite their input."""
    private = []
    for module, inputs in trace.activation_inputs.items():
        ok = bool(inputs)
        for x in inputs:
            rec = trace.outputs.get(_storage(x))
            ok = ok and rec is not None and all(r is module for r in rec.readers) and bool(rec.readers)
            ok = ok and x.numel() == rec.tensor.numel() and x.storage_offset() == rec.tensor.storage_offset()
            ok = ok and _dense(x)
        if ok:
            private.append(module)
    return private


# -- folded modules ---------------------------------------------------------------------------------------


def fold_weights(weight: torch.Tensor, bias: torch.Tensor | None, norms) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``norms[-1](...norms[0](layer(x)))`` as one layer (computed in float64)."""
    wide = torch.float64 if weight.device.type in ("cpu", "cuda") else weight.dtype
    w = weight.detach().to(wide)
    b = bias.detach().to(wide) if bias is not None else torch.zeros(w.shape[0], dtype=wide, device=w.device)
    for bn in norms:
        scale = 1.0 / torch.sqrt(bn.running_var.to(wide) + bn.eps)
        shift = -bn.running_mean.to(wide) * scale
        if bn.weight is not None:
            scale = scale * bn.weight.detach().to(wide)
            shift = shift * bn.weight.detach().to(wide) + bn.bias.detach().to(wide)
        w = w * scale.reshape(-1, *[1] * (w.dim() - 1))
        b = b * scale + shift
    return w.to(weight.dtype), b.to(weight.dtype)


def _key(tensors) -> tuple:
    key = []
    for t in tensors:
        if t is None:
            key.append(None)
            continue
        try:
            version = t._version
        except RuntimeError:  # an inference tensor (made under inference_mode) has no version counter
            version = -1
        key.append((t.data_ptr(), version))
    return tuple(key)


def _fast(module: nn.Module) -> bool:
    return not module.training and not torch.is_grad_enabled()


class _FoldedLayer:
    """The folded parameters of a layer (``_opt_norms`` in its ``__dict__``), cached and kept current."""

    def _opt_parameters(
        self,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """``(weight, bias, weight as [C_out, C_in] for the GEMM path or None, 4-D weight in channels-last
        order or None)``. The channels-last copy serves channels-last inputs: torch's convolution would
        otherwise reorder the weight on every call."""
        norms = self.__dict__.get("_opt_norms", ())
        pointwise = self.__dict__.get("_opt_pointwise", False)
        sources = [self.weight, self.bias]
        for bn in norms:
            sources += [bn.weight, bn.bias, bn.running_mean, bn.running_var]
        key = _key(sources) + tuple(bn.eps for bn in norms)
        cached = self.__dict__.get("_opt_cache")
        if cached is None or cached[0] != key:
            if norms:
                w, b = fold_weights(self.weight, self.bias, norms)
            else:
                w, b = self.weight.detach(), None if self.bias is None else self.bias.detach()
            w2d = w.flatten(1) if pointwise else None
            w_cl = w.contiguous(memory_format=torch.channels_last) if w.dim() == 4 and not pointwise else None
            cached = (key, w, b, w2d, w_cl)
            self.__dict__["_opt_cache"] = cached
        return cached[1:]


def pointwise(x: torch.Tensor, w2d: torch.Tensor, bias: torch.Tensor | None, stride) -> torch.Tensor | None:
    """A 1x1 convolution of batched ``x`` ``[M, C, *spatial]`` as one GEMM, or None when ``x``'s layout has
    no copy-free GEMM form (the caller then runs the convolution).

    The output has the memory layout torch's convolution would give: channels innermost for a
    channels-last ``[M, C, H, W]`` input (``F.linear`` on ``[M, H, W, C]``), contiguous otherwise
    (``W @ x``; ``Conv1d`` outputs are always contiguous), so the ops after it see the layouts they see in
    the plain model.
    """
    if any(s != 1 for s in stride):
        x = x[(slice(None), slice(None), *(slice(None, None, s) for s in stride))]
    if x.dim() == 4 and x.shape[1] > 1 and x.stride(1) == 1:  # channels-last: [M, H, W, C] @ W^T
        return F.linear(x.movedim(1, -1), w2d, bias).movedim(-1, 1)
    if x.dim() == 3 or x.is_contiguous():
        y = torch.matmul(w2d, x.flatten(2))  # [M, C_out, L], contiguous
        if bias is not None:
            y.add_(bias.unsqueeze(-1))
        return y.view(y.shape[0], y.shape[1], *x.shape[2:])
    return None


def is_conv2d(module: nn.Module) -> bool:
    """A plain ``nn.Conv2d`` (it gets a cached channels-last weight on the fast path)."""
    return type(module) is nn.Conv2d


def is_pointwise(conv: nn.Module) -> bool:
    return (
        type(conv) in (nn.Conv1d, nn.Conv2d)
        and all(k == 1 for k in conv.kernel_size)
        and conv.groups == 1
        and not isinstance(conv.padding, str)
        and all(p == 0 for p in conv.padding)
    )


class _FoldedConv(_FoldedLayer):
    _spatial_dims = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _fast(self):
            return super().forward(x)
        w, b, w2d, w_cl = self._opt_parameters()
        if w2d is not None and x.dim() == self._spatial_dims + 2:
            y = pointwise(x, w2d, b, self.stride)
            if y is not None:
                return y
        if w_cl is not None and x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
            w = w_cl
        return self._conv_forward(x, w, b)


class FoldedConv1d(_FoldedConv, nn.Conv1d):
    """``nn.Conv1d`` with its BatchNorms folded in and the GEMM path when pointwise (fast path only)."""

    _spatial_dims = 1


class FoldedConv2d(_FoldedConv, nn.Conv2d):
    """``nn.Conv2d`` with its BatchNorms folded in and the GEMM path when pointwise (fast path only)."""

    _spatial_dims = 2


class FoldedLinear(_FoldedLayer, nn.Linear):
    """``nn.Linear`` with its BatchNorms folded in (fast path only)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _fast(self):
            return super().forward(x)
        w, b, _, _ = self._opt_parameters()
        return F.linear(x, w, b)


class _FoldedNorm:
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _fast(self):
            return x  # folded into the layer before it (``_opt_folded_into``)
        return super().forward(x)


class FoldedBatchNorm1d(_FoldedNorm, nn.BatchNorm1d):
    """A BatchNorm1d folded into the layer before it: the identity on the fast path."""


class FoldedBatchNorm2d(_FoldedNorm, nn.BatchNorm2d):
    """A BatchNorm2d folded into the layer before it: the identity on the fast path."""


SWAPS = {
    nn.Conv1d: FoldedConv1d,
    nn.Conv2d: FoldedConv2d,
    nn.Linear: FoldedLinear,
    nn.BatchNorm1d: FoldedBatchNorm1d,
    nn.BatchNorm2d: FoldedBatchNorm2d,
}
