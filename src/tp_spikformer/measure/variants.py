"""Model variants for side-by-side measurement: a pruned copy, a dense copy."""

from __future__ import annotations

import copy
from typing import Any, Callable

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
