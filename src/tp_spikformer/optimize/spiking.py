"""Spiking layers with the fused kernels (``kernels.py``): the classes ``optimize`` swaps in.

Each subclass keeps its base class's state (no parameters or buffers are added, removed or renamed) and
its training path: with autograd recording (``x.requires_grad``, or the parametric LIF's ``w``) they run
the base class's surrogate-gradient forward, unchanged.
"""

from __future__ import annotations

import torch

from ..models.layers import LIF, MultiSpike, ParametricLIF
from . import kernels


def _runtime(module: torch.nn.Module) -> kernels.KernelRuntime | None:
    return module.__dict__.get("_opt_runtime")


def _in_place(module: torch.nn.Module) -> bool:
    """``optimize`` found (in its traced forward) that nothing but this module reads its input."""
    return module.__dict__.get("_opt_in_place", False)


class FusedLIF(LIF):
    """:class:`~tp_spikformer.models.layers.LIF` whose inference loop is one fused kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return self._forward_train(x)
        return kernels.lif(x, self.tau, self.v_threshold, runtime=_runtime(self), in_place=_in_place(self))


class FusedParametricLIF(ParametricLIF):
    """:class:`~tp_spikformer.models.layers.ParametricLIF` with the fused inference loop."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and (x.requires_grad or self.w.requires_grad):
            return self._forward_train(x)
        return kernels.lif(
            x,
            self.tau,
            self.v_threshold,
            leak=self.w.detach().sigmoid(),
            runtime=_runtime(self),
            in_place=_in_place(self),
        )


class FusedMultiSpike(MultiSpike):
    """:class:`~tp_spikformer.models.layers.MultiSpike` as one fused kernel at inference."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return super().forward(x)
        return kernels.multispike(
            x, self.max_value, self.norm, runtime=_runtime(self), in_place=_in_place(self)
        )


SWAPS = {LIF: FusedLIF, ParametricLIF: FusedParametricLIF, MultiSpike: FusedMultiSpike}
