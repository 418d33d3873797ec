"""Spiking layers shared by all families: the multi-step LIF neuron and SDT-V3's multi-spike quantiser.

Written from the published semantics (spikingjelly 0.0.0.0.12 ``MultiStepLIFNode`` with ``tau=2``,
``decay_input=True``, hard reset to 0, ``detach_reset=True``; SDT-V3 ``MultiSpike``), not from their code.
Neither layer has parameters or buffers, so neither adds a state_dict key.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import UsageError


class _SigmoidSurrogateSpike(torch.autograd.Function):
    """Heaviside step (``v >= 0``) forward, derivative of ``sigmoid(alpha * v)`` backward."""

    @staticmethod
    def forward(ctx, v_minus_th: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(v_minus_th)
        ctx.alpha = alpha
        return (v_minus_th >= 0).to(v_minus_th.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (v_minus_th,) = ctx.saved_tensors
        sg = torch.sigmoid(ctx.alpha * v_minus_th)
        return grad_out * ctx.alpha * sg * (1.0 - sg), None


class LIF(nn.Module):
    """Multi-step leaky integrate-and-fire neuron over the leading (time) axis of ``x``.

    Per element and step: ``v = v + (x - v) / tau``; spike ``s = v >= v_threshold``; hard reset ``v = 0``
    where it spiked. The membrane starts at 0 on every call, so a forward pass is a pure function of its
    input (no ``reset_net`` needed). Without autograd the loop runs in place on one membrane buffer; with
    autograd it uses a sigmoid surrogate gradient (``alpha = 4``) and detaches the reset, as the official
    models train.

    Dimension 0 is time, whatever the tensor is: QKFormer's compatibility mode relies on that.
    """

    def __init__(self, tau: float = 2.0, v_threshold: float = 1.0, surrogate_alpha: float = 4.0):
        super().__init__()
        if tau <= 1.0:
            raise UsageError(f"LIF tau must be > 1 (got {tau}); the official models use tau=2.0")
        self.tau = float(tau)
        self.v_threshold = float(v_threshold)
        self.surrogate_alpha = float(surrogate_alpha)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, v_threshold={self.v_threshold}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return self._forward_train(x)
        return self._forward_inference(x)

    def _scale_step_(self, step: torch.Tensor) -> None:
        step.div_(self.tau)

    def _charge(self, v: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
        return v + (x_t - v) / self.tau

    def _forward_inference(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(x)
        v = torch.zeros_like(x[0])
        step = torch.empty_like(v)
        for t in range(x.shape[0]):
            torch.sub(x[t], v, out=step)
            self._scale_step_(step)
            v.add_(step)  # v + (x - v) / tau, with the same two roundings as the reference formula
            spike = out[t]
            torch.ge(v, self.v_threshold, out=spike)  # 1.0 / 0.0 written straight into the output
            v.addcmul_(v, spike, value=-1.0)  # hard reset: v - v * s is exactly 0 where s = 1, v where s = 0
        return out

    def _forward_train(self, x: torch.Tensor) -> torch.Tensor:
        v = torch.zeros_like(x[0])
        spikes = []
        for t in range(x.shape[0]):
            v = self._charge(v, x[t])
            s = _SigmoidSurrogateSpike.apply(v - self.v_threshold, self.surrogate_alpha)
            v = v * (1.0 - s.detach())
            spikes.append(s)
        return torch.stack(spikes)


class ParametricLIF(LIF):
    """LIF with a learnable leak (SDT-V1 ``spike_mode='plif'``): ``v = v + (x - v) * sigmoid(w)``.

    ``w`` is a scalar parameter initialised to ``-ln(init_tau - 1)`` (0 for ``init_tau = 2``); its key is
    ``<name>.w``, as in the official checkpoints.
    """

    def __init__(self, init_tau: float = 2.0, v_threshold: float = 1.0, surrogate_alpha: float = 4.0):
        super().__init__(tau=init_tau, v_threshold=v_threshold, surrogate_alpha=surrogate_alpha)
        self.w = nn.Parameter(torch.tensor(-math.log(init_tau - 1.0)))

    def extra_repr(self) -> str:
        return f"init_tau={self.tau}, v_threshold={self.v_threshold}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and (x.requires_grad or self.w.requires_grad):
            return self._forward_train(x)
        return self._forward_inference(x)

    def _scale_step_(self, step: torch.Tensor) -> None:
        step.mul_(self.w.detach().sigmoid())

    def _charge(self, v: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
        return v + (x_t - v) * self.w.sigmoid()


def make_lif(spike_mode: str = "lif", v_threshold: float = 1.0) -> LIF:
    """The neuron of an official ``spike_mode``: ``"lif"`` (tau 2) or ``"plif"`` (learnable, init tau 2)."""
    if spike_mode == "lif":
        return LIF(tau=2.0, v_threshold=v_threshold)
    if spike_mode == "plif":
        return ParametricLIF(init_tau=2.0, v_threshold=v_threshold)
    raise UsageError(f"unknown spike_mode {spike_mode!r}; choose 'lif' or 'plif'")


class _RoundClampSTE(torch.autograd.Function):
    """``round(clamp(x, 0, max_value))`` forward; gradient passed through where ``0 <= x <= max_value``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, max_value: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.max_value = max_value
        return torch.round(torch.clamp(x, 0.0, max_value))

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (x,) = ctx.saved_tensors
        inside = (x >= 0) & (x <= ctx.max_value)
        return grad_out * inside.to(grad_out.dtype), None


class MultiSpike(nn.Module):
    """SDT-V3 integer spike: ``round(clamp(x, 0, max_value)) / norm`` (``torch.round`` = half to even).

    ``norm = max_value`` gives levels {0, 1/4, ..., 1} (the blocks); ``norm = 1`` gives integers 0..4
    (the classifier input). Straight-through gradient inside ``[0, max_value]``.
    """

    def __init__(self, max_value: int = 4, norm: float | None = None):
        super().__init__()
        self.max_value = float(max_value)
        self.norm = float(max_value if norm is None else norm)

    def extra_repr(self) -> str:
        return f"max_value={int(self.max_value)}, norm={self.norm:g}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            q = _RoundClampSTE.apply(x, self.max_value)
        else:
            q = torch.round(torch.clamp(x, 0.0, self.max_value))
        return q / self.norm if self.norm != 1.0 else q


class SpikeProduct(nn.Module):
    """Element-wise or matrix product of two activations, as a named module.

    Parameter-free. It exists so that measurement hooks can see (and count) the attention products,
    which would otherwise be bare ``*`` / ``@`` calls inside a forward.
    """

    def __init__(self, kind: str = "mul"):
        super().__init__()
        if kind not in ("mul", "matmul"):
            raise UsageError(f"SpikeProduct kind must be 'mul' or 'matmul', got {kind!r}")
        self.kind = kind

    def extra_repr(self) -> str:
        return self.kind

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a * b if self.kind == "mul" else a @ b


def pointwise_conv_bn(x: torch.Tensor, conv: nn.Module, bn: nn.Module) -> torch.Tensor:
    """Apply a 1x1 ``Conv2d``/``Conv1d``/``Linear`` and its BatchNorm to channel-first tokens ``[M, C, N]``.

    Returns ``[M, C_out, N]``. 2-D modules run on an ``[M, C, N, 1]`` view, so any token count works
    (the official code needs an H x W grid for them).
    """
    if isinstance(conv, nn.Conv2d):
        y = conv(x.unsqueeze(-1))
        return bn(y).squeeze(-1) if isinstance(bn, nn.BatchNorm2d) else bn(y.squeeze(-1))
    if isinstance(conv, nn.Linear):
        y = conv(x.transpose(1, 2)).transpose(1, 2)
    else:
        y = conv(x)
    return bn(y.unsqueeze(-1)).squeeze(-1) if isinstance(bn, nn.BatchNorm2d) else bn(y)
