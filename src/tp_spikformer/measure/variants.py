"""Model variants for side-by-side measurement: a pruned copy, a dense copy."""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch
from torch import nn

from ..pruning import apply_tp, remove_tp


def pruned_variant(
    model: nn.Module, keep: Any = "official", scorer: str | Callable = "official", **tp_kwargs: Any
) -> nn.Module:
    """A deep copy of ``model`` with TP applied (``apply_tp(copy, keep=..., scorer=..., **tp_kwargs)``).

    The original is untouched; if it is already patched, the copy is reconfigured.
    """
    variant = copy.deepcopy(model)
    apply_tp(variant, keep=keep, scorer=scorer, **tp_kwargs)
    return variant


def dense_variant(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` without TP (``remove_tp`` on the copy; a plain copy if it was not patched)."""
    variant = copy.deepcopy(model)
    remove_tp(variant)
    return variant


def make_variants(
    model: nn.Module, keeps: Any = (0.5,), scorer: str | Callable = "official", **tp_kwargs: Any
) -> dict[str, nn.Module]:
    """``{"dense": dense copy, "tp keep=<k>": pruned copy, ...}`` for each keep spec in ``keeps``."""
    if isinstance(keeps, (str, float, int)):
        keeps = (keeps,)
    variants = {"dense": dense_variant(model)}
    for keep in keeps:
        variants[f"tp keep={keep}"] = pruned_variant(model, keep=keep, scorer=scorer, **tp_kwargs)
    return variants


def make_neurons_fire(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give a randomly initialised model BatchNorm statistics under which its neurons fire (in place).

    With the official initialisation (truncated normal, std 0.02) almost no neuron of a random model
    fires, which would make speed and SOP benchmarks of random weights unrepresentative. This draws
    ``running_mean ~ N(0, 0.2)``, ``running_var ~ U(0.5, 2)``, ``weight ~ U(2, 4)``, ``bias ~ N(0.3, 0.3)``.
    """
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 2.0 + 2.0)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.3 + 0.3)
    return model
