"""Variants for side-by-side measurement: named configurations of ONE shared TP-patched model copy.

``make_variants(model, [(None, None), (0.5, "official"), (0.5, "random")])`` deep-copies ``model`` once,
patches the copy, and returns one :class:`Variant` per configuration; calling a variant (or its
``activate()``) switches the shared copy's :class:`~tp_spikformer.pruning.TPState` to it (``keep=None``:
TP switched off, the dense model exactly). A 3 x 4 sweep holds one copy of the weights, not thirteen.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..pruning import apply_tp, default_scorer, get_tp_state, is_patched
from ..pruning.schedule import parse_keep

DENSE = "dense"


def variant_label(keep: Any, scorer: str | Callable | None, official: Any = None) -> str:
    """``"dense"`` for ``keep=None``, else ``"<scorer>@<keep>"``, e.g. ``"official@fraction:0.5"``
    (``keep="official"`` reads as the schedule ``official`` stands for, when given)."""
    if keep is None:
        return DENSE
    parsed = parse_keep(keep)
    if isinstance(parsed, str):
        parsed = official if official is not None else parsed
    return f"{scorer_name(scorer or 'official')}@{parsed}"


def scorer_name(scorer: str | Callable) -> str:
    return scorer if isinstance(scorer, str) else getattr(scorer, "__name__", "custom")


class Variant(nn.Module):
    """One configuration of a shared patched model: dense (``keep=None``) or ``keep`` + ``scorer``."""

    def __init__(
        self,
        model: nn.Module,
        keep: Any = None,
        scorer: str | Callable | None = None,
        label: str | None = None,
    ):
        super().__init__()
        self.model = model
        self.keep, self.scorer = keep, (None if keep is None else scorer or default_scorer(model))
        self.label = label or variant_label(keep, self.scorer)

    def activate(self) -> nn.Module:
        """Switch the shared model to this configuration and return it."""
        state = get_tp_state(self.model)
        if self.keep is None:
            state.enabled = False
        else:
            state.configure(enabled=True, keep=self.keep, scorer=self.scorer)
        return self.model

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.activate()(*args, **kwargs)

    def extra_repr(self) -> str:
        return self.label


def make_variants(
    model: nn.Module,
    configs: Sequence[tuple[Any, Any]],
    labels: Sequence[str] | None = None,
    copy_model: bool = True,
    **tp_kwargs: Any,
) -> list[Variant]:
    """One :class:`Variant` per ``(keep, scorer)`` (``keep=None``: dense) over one patched copy of ``model``
    (``copy_model=False`` patches ``model`` itself). ``tp_kwargs`` (window, mode, cumulative, gather_order,
    record, ...) configure the patch once. Labels default to :func:`variant_label` and must be unique."""
    shared = copy.deepcopy(model) if copy_model else model
    first = next((k for k, _ in configs if k is not None), 1.0)
    options = {k: v for k, v in tp_kwargs.items() if v is not None}
    if is_patched(shared):
        get_tp_state(shared).configure(**options)
    else:
        apply_tp(shared, keep=first, **options)
    official = _official_schedule(shared)
    variants = [
        Variant(shared, keep, scorer, label or variant_label(keep, scorer, official))
        for (keep, scorer), label in zip(configs, labels or [None] * len(configs))
    ]
    names = [v.label for v in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"variant labels must be unique, got {names}")
    variants[0].activate()
    return variants


def _official_schedule(model: nn.Module) -> str | None:
    try:
        return str(get_tp_state(model).official_keep())
    except ValueError:  # the model declares no official schedule
        return None


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
