"""``apply_tp`` / ``remove_tp``: block-level early stopping on any model built from :class:`TokenBlock`\\ s.

The patch swaps each block's class for a subclass (made once per class) whose ``forward``

1. scores the block input's tokens (no grad) and picks the top-k per sample, shared by all time steps
   (protected tokens first: ``state.protect``);
2. runs the block's ordered parts (:meth:`TokenBlock.block_parts`): dense, layout-dependent parts on the
   full grid, token-wise parts on a compact ``[T, B, C, K]`` tensor of the kept tokens only (the stopped
   tokens' compute is really skipped, never masked), gathering before each token part and scattering before
   each dense part;
3. scatters the result into the block input (or what a dense part made of it), so stopped tokens pass
   through unchanged and the layout stays intact for the next block, downsampling stages and dense heads.

The patched model's class is swapped too (and that of every sub-model with its own ``forward_features``,
such as a detector's backbone), for one whose entry points (``forward``, ``forward_features``,
``forward_intermediates``) open a forward-pass scope (:meth:`TPState.forward_pass`): records and
cumulative stopping belong to that pass, whichever blocks run, in whatever order, however often.

Nothing here reads a device tensor on the host by default: checks that must (finite scores, protected
counts) run on the first forward of each configuration, or always with ``check=True``. Weights, module
objects and the state_dict are untouched; ``remove_tp`` restores the original classes. When a block keeps
all its tokens it runs its own forward, so keep-all is the dense model bit for bit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from ..errors import UsageError, UsageTypeError
from ..models.protocol import TokenBlock, TPDefaults, as_carry, token_blocks
from .scorers import ScoreContext
from .select import gather_tokens, scatter_tokens, top_tokens, zeros_tokens_like
from .state import FALLBACK_WINDOW, BlockRecord, TPState

_TP_CLASSES: dict[type, type] = {}
_ROOT_CLASSES: dict[type, type] = {}
ENTRY_POINTS = ("forward", "forward_features", "forward_intermediates")
_UNSET: Any = object()
_log = logging.getLogger(__name__)


class _TPBlockMixin:
    """Replaces ``TokenBlock.forward`` with score -> gather -> compute -> scatter."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        st = self._tp_state
        if not st.enabled:
            return super().forward(x)
        with st.forward_pass():
            return _pruned_forward(self, st, self._tp_index, x)


def _tp_class(cls: type) -> type:
    if cls not in _TP_CLASSES:
        _TP_CLASSES[cls] = type(f"TP{cls.__name__}", (_TPBlockMixin, cls), {"__module__": __name__})
    return _TP_CLASSES[cls]


def _root_class(cls: type) -> type:
    """A subclass of the patched model's class whose entry points open a forward-pass scope."""
    if cls not in _ROOT_CLASSES:
        sub = type(f"TP{cls.__name__}", (cls,), {"__module__": __name__, "_tp_root": True})
        for name in ENTRY_POINTS:
            if hasattr(cls, name):
                setattr(sub, name, _scoped(sub, name))
        _ROOT_CLASSES[cls] = sub
    return _ROOT_CLASSES[cls]


def _scoped(sub: type, name: str) -> Callable:
    def entry(self, *args, **kwargs):
        with self._tp_state.forward_pass():
            return getattr(super(sub, self), name)(*args, **kwargs)

    entry.__name__ = name
    entry.__doc__ = getattr(getattr(sub.__mro__[1], name), "__doc__", None)
    return entry


def is_patched(model: nn.Module) -> bool:
    return isinstance(model.__dict__.get("_tp_state"), TPState)


def get_tp_state(model: nn.Module) -> TPState:
    """The :class:`TPState` of a patched model (raises if ``apply_tp`` was not called)."""
    if not is_patched(model):
        raise UsageError("this model is not TP-patched; call apply_tp(model, ...) first")
    return model._tp_state


def apply_tp(
    model: nn.Module,
    keep: Any = _UNSET,
    scorer: str | Callable = _UNSET,
    *,
    window: int | None = _UNSET,
    mode: str = _UNSET,
    cumulative: bool = _UNSET,
    gather_order: str = _UNSET,
    protect: Any = _UNSET,
    demote: Any = _UNSET,
    record: bool = _UNSET,
    seed: int = _UNSET,
    check: bool = _UNSET,
    enabled: bool = _UNSET,
) -> TPState:
    """Patch ``model`` in place for TP-Spikformer token pruning and return its :class:`TPState`.

    Args:
        keep: tokens each block keeps: a fraction (``0.5``), a per-block list of fractions, ``"official"``
            (default: the family's official k_values, or its documented fraction for another depth), a
            :class:`KeepSchedule` (``side([12, 12, ...])``, ``side_ratio(...)``, ``prune_ratio(...)``,
            ``count(...)``) or a string ``"side_ratio:0.9,0.8"``.
        scorer: a registered scorer name (see ``scorer_names()``) or a callable
            ``(x [T,B,C,H,W], ScoreContext) -> [B, H*W]``. Default: the model's (``TPDefaults.scorer``):
            ``official``, or ``official_literal`` (the official C x C convolution, for float32 agreement)
            on a model built with ``create_model(..., official_arithmetic=True)``.
        window: spatial neighbourhood side (default: the model's declared one, 3 or 7 for QKFormer; 3 with a
            logged notice for a model that declares none).
        mode: ``"stop"`` (default; block-level early stopping, the paper's IR-Arc) or ``"drop"`` (tokens are
            removed for good; only single-stage models with token-wise blocks: Spikformer, SDT-V1).
        cumulative: a token stopped in a block stays stopped in the later blocks of the same grid.
        gather_order: order of the gathered tokens: ``"raster"``, ``"score"`` (best first, as the official
            code), or ``"auto"`` (default: score order only where a block declares ``order_sensitive``, i.e.
            QKFormer's batch-coupled compatibility mode, so the official outputs are reproduced).
        protect: tokens always kept, counting toward each block's keep count (a tracker's template): a bool
            mask ``[N]`` / ``[B, N]`` or a callable ``(H, W) -> mask or None`` (default: what the model
            declares in its ``tp_defaults``, else none).
        demote: tokens ranked after all others (a tracker's zero padding); same forms and default rule.
        record: keep each block call's kept indices and scores in ``state.records`` (default True).
        seed: seed of the ``random`` scorer (re-seeded every forward, so repeated calls agree).
        check: run the host-side checks (finite scores, protected counts) on every forward, not only on the
            first forward of a configuration (they synchronise with an accelerator).
        enabled: False switches pruning off (the dense model exactly) without forgetting the configuration.

    On a patched model it reconfigures atomically: the options passed are validated together against the
    model and swapped in only if all are valid (a failed call leaves the previous configuration intact);
    options not passed keep their current values. Raises when the model has no patchable block or one that
    cannot run on a subset of tokens.
    """
    options = {
        k: v
        for k, v in dict(
            keep=keep,
            scorer=scorer,
            window=window,
            mode=mode,
            cumulative=cumulative,
            gather_order=gather_order,
            protect=protect,
            demote=demote,
            record=record,
            seed=seed,
            check=check,
            enabled=enabled,
        ).items()
        if v is not _UNSET
    }
    if options.get("window", _UNSET) is None:
        del options["window"]  # None = keep the current / default window
    if is_patched(model):
        return model._tp_state.configure(**options)

    blocks = token_blocks(model)
    if not blocks:
        raise UsageError(
            f"apply_tp found no transformer block in {type(model).__name__}: it patches blocks deriving from "
            "tp_spikformer.models.TokenBlock (every model from create_model(...) has them)"
        )
    refused = [
        (n, b.unsupported_reason or "declares supports_token_subset=False")
        for n, b in blocks
        if not b.supports_token_subset
    ]
    if refused:
        raise UsageError(
            "these blocks cannot run on a subset of tokens, so TP cannot be applied:\n"
            + "\n".join(f"  {n}: {why}" for n, why in refused)
        )
    taken = [n for n, b in blocks if "_tp_state" in b.__dict__]
    if taken:
        raise UsageError(
            f"blocks {taken} are already patched through another module (apply_tp on a sub-model); call "
            "remove_tp on that module first, or patch each sub-model separately"
        )
    defaults = _find_defaults(model, len(blocks))
    family = getattr(model, "family", None) or getattr(getattr(model, "config", None), "family", None)
    state = TPState([n for n, _ in blocks], family, defaults, supports_drop=_supports_drop(model, blocks))
    state.configure(**{"keep": "official", **options})
    for i, (_, block) in enumerate(blocks):
        block._tp_original_class = block.__class__
        block._tp_state = state
        block._tp_index = i
        block.__class__ = _tp_class(block.__class__)
    for module in _entry_modules(model):
        module._tp_state = state
        module._tp_original_class = module.__class__
        module.__class__ = _root_class(module.__class__)
    model._tp_state = state
    _log.info(
        "TP applied to %d blocks (%s): keep=%s scorer=%s",
        len(blocks),
        ", ".join(state.block_names),
        state.keep,
        state.scorer_name,
    )
    return state


def _entry_modules(model: nn.Module) -> list[nn.Module]:
    """The modules whose entry points open a forward-pass scope: the patched model itself and every sub-model
    with its own entry points (a detector's or tracker's backbone), so a backbone called on its own also
    runs as one pass."""
    found = [] if isinstance(model, TokenBlock) else [model]
    for m in model.modules():
        if m is not model and not isinstance(m, TokenBlock) and hasattr(type(m), "forward_features"):
            found.append(m)
    return found


def _find_defaults(model: nn.Module, num_blocks: int) -> TPDefaults | None:
    """The TP defaults the model (or, for a wrapper such as a detector, its first sub-model) declares; on a
    model built with ``official_arithmetic=True`` the default scorer is ``official_literal``."""
    for _name, m in model.named_modules():
        fn = getattr(m, "tp_defaults", None)
        if callable(fn):
            defaults = fn(num_blocks)
            if getattr(m, "official_arithmetic", False) and defaults.scorer == "official":
                defaults = replace(defaults, scorer="official_literal")
            return defaults
    _log.info(
        "%s declares no TP defaults (tp_defaults): scorer window %d; keep must be given",
        type(model).__name__,
        FALLBACK_WINDOW,
    )
    return None


def _supports_drop(model: nn.Module, blocks: list[tuple[str, TokenBlock]]) -> bool:
    """Drop mode needs a single-stage model (``supports_token_drop``) whose blocks are token-wise only."""
    if not getattr(model, "supports_token_drop", False):
        return False
    return all(p.kind == "token" for _, b in blocks for p in b.block_parts())


def default_scorer(model: nn.Module) -> str:
    """The scorer :func:`apply_tp` uses on ``model`` when none is given (see its ``scorer`` argument)."""
    if is_patched(model) and model._tp_state.defaults is not None:
        return model._tp_state.defaults.scorer
    defaults = _find_defaults(model, len(token_blocks(model)))
    return defaults.scorer if defaults is not None else "official"


def remove_tp(model: nn.Module) -> list[str]:
    """Undo :func:`apply_tp` on ``model`` and every patched sub-model; returns the names of the restored
    blocks ([] if nothing was patched)."""
    restored = []
    for name, module in model.named_modules():
        original = module.__dict__.pop("_tp_original_class", None)
        if original is not None:
            module.__class__ = original
            if module.__dict__.pop("_tp_index", None) is not None:
                restored.append(name)
        module.__dict__.pop("_tp_state", None)
    return restored


# -- the patched block forward ---------------------------------------------------------------------------


def _pruned_forward(block: TokenBlock, st: TPState, i: int, x: torch.Tensor) -> torch.Tensor:
    compact = st.mode == "drop" and st.positions is not None  # drop mode after the first pruned block
    h, w = st.alive_grid if compact else tuple(x.shape[-2:])
    n_grid = h * w
    n_in = x.shape[-2] * x.shape[-1]  # tokens in the input tensor (drop mode: still alive)
    batch = x.shape[1] if block.has_time_axis else x.shape[0]
    k = st.keep.count(i, h, w)
    call = st.next_call(i)
    name = st.block_names[i]
    alive, n_alive = _alive(st, (h, w), batch)
    if n_alive is not None and n_alive < k:
        raise UsageError(
            f"block {name}: asked to keep {k} tokens but only {n_alive} are still running; with cumulative "
            "stopping or drop mode the keep count must not grow from block to block"
        )

    if k == n_in:
        # every token of the input runs (n_alive >= k = n_in: none was stopped before): the block's own
        # forward, bit for bit the dense computation
        if st.record:
            st.records.append(
                BlockRecord(
                    name,
                    (h, w),
                    kept=k,
                    total=n_in,
                    indices=st.positions if compact else None,
                    index=i,
                    call=call,
                )
            )
        return super(_TPBlockMixin, block).forward(x)

    with torch.no_grad():
        scores = _score(block, st, x, (h, w))
    protect = st.protect_mask((h, w), batch, x.device)
    if protect is not None and st.checking:
        _check_protected(st, name, protect, k, alive)
    index = top_tokens(
        scores, k, alive, protect, st.demote_mask((h, w), batch, x.device)
    )  # [B, k], best first
    if st.gather_order == "score" or (st.gather_order == "auto" and block.order_sensitive):
        gather_index = index
    else:
        gather_index = index.sort(dim=1).values  # raster order
    if st.record:
        st.records.append(
            BlockRecord(
                name,
                (h, w),
                kept=k,
                total=n_in,
                indices=index.detach(),
                scores=scores.detach(),
                index=i,
                call=call,
            )
        )
    if st.cumulative:
        mask = torch.zeros(batch, n_grid, dtype=torch.bool, device=index.device)
        st.alive, st.alive_grid, st.alive_count = mask.scatter_(1, index, True), (h, w), k

    if st.mode == "drop":
        local = _local_index(st, gather_index, n_grid) if compact else gather_index
        st.positions, st.alive_grid, st.alive_count = gather_index, (h, w), k
        return block.token_forward(gather_tokens(x.flatten(-2), local)).unsqueeze(-1)  # [..., C, k, 1]
    return run_parts(block, x, gather_index)


def run_parts(block: TokenBlock, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Run ``block``'s ordered parts with only the tokens ``index`` ``[B, K]`` in its token parts.

    Before a token part the carry's grid tensors are gathered; before a dense part the compact ones are
    scattered back: the residual (carry[0]) into its latest full grid, intermediates into zeros (a stopped
    token does not fire). The output is the residual scattered into its latest full grid.
    """
    grid = tuple(x.shape[-2:])
    full = x.flatten(-2)  # latest full residual [..., C, N]
    carry: tuple[torch.Tensor, ...] = (x,)
    is_compact = False
    for part in block.block_parts():
        if part.kind == "token":
            if not is_compact:
                carry = tuple(gather_tokens(t.flatten(-2), index) for t in carry)
                is_compact = True
        elif is_compact:
            carry = tuple(_expand_compact(t, j, full, index, grid) for j, t in enumerate(carry))
            is_compact = False
        carry = as_carry(part.fn(*carry))
        if part.kind == "dense":
            full = carry[0].flatten(-2)
    if not is_compact:
        return carry[0]
    return scatter_tokens(full, index, carry[0]).unflatten(-1, grid)


def _expand_compact(
    t: torch.Tensor, slot: int, full: torch.Tensor, index: torch.Tensor, grid: tuple[int, int]
) -> torch.Tensor:
    base = full if slot == 0 else zeros_tokens_like(t, grid[0] * grid[1])
    return scatter_tokens(base, index, t).unflatten(-1, grid)


def _alive(st: TPState, grid: tuple[int, int], batch: int) -> tuple[torch.Tensor | None, int | None]:
    """Which grid tokens may still be kept ``[B, N]`` (cumulative stopping within a grid, or drop mode),
    and how many per sample (known on the host: every sample kept the same count)."""
    if st.mode == "drop" and st.positions is not None:
        mask = torch.zeros(batch, grid[0] * grid[1], dtype=torch.bool, device=st.positions.device)
        return mask.scatter_(1, st.positions, True), st.alive_count
    if st.cumulative and st.alive is not None and st.alive_grid == grid:
        return st.alive, st.alive_count
    return None, None


def _check_protected(
    st: TPState, name: str, protect: torch.Tensor, k: int, alive: torch.Tensor | None
) -> None:
    """Protected tokens must fit in the keep count (and still be alive): reads the mask on the host."""
    most = int(protect.sum(dim=1).max())
    if most > k:
        raise UsageError(
            f"block {name}: {most} protected tokens but the keep schedule keeps only {k}; keep more tokens "
            "(protected tokens count toward the keep count) or protect fewer"
        )
    if alive is not None and bool((protect & ~alive).any()):
        raise UsageError(
            f"block {name}: a protected token was already stopped by an earlier block "
            "(cumulative / drop mode); protect it from the first pruned block on"
        )


def _score(block: TokenBlock, st: TPState, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Scores ``[B, H*W]`` of the block input on its full grid (drop mode: dropped tokens read as 0)."""
    if st.mode == "drop" and st.positions is not None:
        full = x.new_zeros(*x.shape[:-2], grid[0] * grid[1])
        x = scatter_tokens(full, st.positions, x.flatten(-2)).unflatten(-1, grid)
    xs = x if block.has_time_axis else x.unsqueeze(0)  # scorers take [T, B, C, H, W]
    generator = st.random_generator(x.device) if st.scorer_name == "random" else None
    ctx = ScoreContext(window=st.window, has_time=block.has_time_axis, generator=generator)
    try:
        scores = st.scorer(xs, ctx)
    except (ValueError, TypeError) as err:
        raise type(err)(
            f"scorer {st.scorer_name!r} failed on block {st.block_names[block._tp_index]}: {err}"
        ) from err
    if not isinstance(scores, torch.Tensor):
        raise UsageTypeError(
            f"scorer {st.scorer_name!r} returned {type(scores).__name__}; it must return a tensor [B, H*W]"
        )
    expected = (xs.shape[1], grid[0] * grid[1])
    if tuple(scores.shape) != expected:
        raise UsageError(
            f"scorer {st.scorer_name!r} returned shape {list(scores.shape)}, expected {list(expected)}"
        )
    if st.checking and not bool(torch.isfinite(scores).all()):
        raise UsageError(f"scorer {st.scorer_name!r} returned NaN/Inf scores")
    return scores


def _local_index(st: TPState, grid_index: torch.Tensor, n_grid: int) -> torch.Tensor:
    """Drop mode: grid positions -> positions in the compact tensor of still-alive tokens."""
    pos = st.positions  # [B, K_alive]
    lookup = torch.full((pos.shape[0], n_grid), -1, dtype=torch.long, device=pos.device)
    lookup.scatter_(1, pos, torch.arange(pos.shape[1], device=pos.device).expand_as(pos))
    return lookup.gather(1, grid_index)
