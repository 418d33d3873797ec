"""``apply_tp`` / ``remove_tp``: block-level early stopping on any model built from :class:`TokenBlock`\\ s.

The patch swaps each block's class for a subclass (made once per class) whose ``forward``

1. scores the block input's tokens (no grad) and picks the top-k per sample, shared by all time steps;
2. runs the block's dense, layout-dependent part (SDT-V3's SepConv) on all tokens;
3. gathers the kept tokens into a compact ``[T, B, C, K]`` tensor and runs only them through the block's
   token-wise part (attention + MLP): the stopped tokens' compute is really skipped, never masked;
4. scatters the results into a copy of the block input, so stopped tokens pass through unchanged and the
   layout stays intact for the next block, downsampling stages and dense-prediction heads.

Weights, module objects and the state_dict are untouched; ``remove_tp`` restores the original classes.
When a block keeps all its tokens it simply runs its own forward, so keep-all is the dense model bit for bit.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import torch
from torch import nn

from ..models.protocol import TokenBlock, token_blocks
from .presets import family_preset
from .scorers import ScoreContext
from .select import gather_tokens, scatter_tokens, top_tokens
from .state import BlockRecord, TPState

_TP_CLASSES: dict[type, type] = {}
_log = logging.getLogger(__name__)


class _TPBlockMixin:
    """Replaces ``TokenBlock.forward`` with score -> gather -> compute -> scatter."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _pruned_forward(self, self._tp_state, self._tp_index, x)


def _tp_class(cls: type) -> type:
    if cls not in _TP_CLASSES:
        _TP_CLASSES[cls] = type(f"TP{cls.__name__}", (_TPBlockMixin, cls), {"__module__": __name__})
    return _TP_CLASSES[cls]


def is_patched(model: nn.Module) -> bool:
    return isinstance(getattr(model, "_tp_state", None), TPState)


def get_tp_state(model: nn.Module) -> TPState:
    """The :class:`TPState` of a patched model (raises if ``apply_tp`` was not called)."""
    if not is_patched(model):
        raise ValueError("this model is not TP-patched; call apply_tp(model, ...) first")
    return model._tp_state


def apply_tp(
    model: nn.Module,
    keep: Any = "official",
    scorer: str | Callable = "official",
    *,
    window: int | None = None,
    mode: str = "stop",
    cumulative: bool = False,
    gather_order: str = "auto",
    record: bool = True,
    seed: int = 0,
) -> TPState:
    """Patch ``model`` in place for TP-Spikformer token pruning and return its :class:`TPState`.

    Args:
        keep: tokens each block keeps: a fraction (``0.5``), a per-block list of fractions, ``"official"``
            (the family's official k_values), a :class:`KeepSchedule` (``side([12, 12, ...])``,
            ``side_ratio(...)``, ``prune_ratio(...)``, ``count(...)``) or a string ``"side_ratio:0.9,0.8"``.
        scorer: a registered scorer name (``official``, ``paper``, ``spatial``, ``temporal``,
            ``official_spatial``, ``official_temporal``, ``random``, ``firing_rate``, ``official_literal``)
            or a callable ``(x [T,B,C,H,W], ScoreContext) -> [B, H*W]``.
        window: spatial neighbourhood side (default: the family's official one, 3 or 7 for QKFormer).
        mode: ``"stop"`` (block-level early stopping, the paper's IR-Arc) or ``"drop"`` (tokens are removed
            for good; only single-stage models: Spikformer, SDT-V1).
        cumulative: a token stopped in a block stays stopped in the later blocks of the same grid.
        gather_order: order of the gathered tokens: ``"raster"``, ``"score"`` (best first, as the official
            code), or ``"auto"`` (score order only where a block declares ``order_sensitive``, i.e. QKFormer's
            batch-coupled compatibility mode, so the official outputs are reproduced).
        record: keep each block's kept indices and scores of the last forward in ``state.records``.
        seed: seed of the ``random`` scorer (re-seeded every forward, so repeated calls agree).

    Calling it again on a patched model only reconfigures it (idempotent). Raises when the model has no
    patchable block or one that cannot run on a subset of tokens.
    """
    if is_patched(model):
        state = model._tp_state
        state.keep, state.scorer = keep, scorer
        state.window = window if window is not None else state.window
        state.mode, state.cumulative, state.gather_order = mode, cumulative, gather_order
        state.record, state.seed = record, seed
        state.validate()
        _check_mode(model, state)
        return state

    blocks = token_blocks(model)
    if not blocks:
        raise ValueError(
            f"apply_tp found no transformer block in {type(model).__name__}: it patches blocks deriving from "
            "tp_spikformer.models.TokenBlock (every model from create_model(...) has them)"
        )
    refused = [(n, b.unsupported_reason or "declares supports_token_subset=False") for n, b in blocks
               if not b.supports_token_subset]
    if refused:
        raise ValueError(
            "these blocks cannot run on a subset of tokens, so TP cannot be applied:\n"
            + "\n".join(f"  {n}: {why}" for n, why in refused)
        )
    family = getattr(model, "family", None) or getattr(getattr(model, "config", None), "family", None)
    if window is None:
        window = family_preset(family).window if family else 3
    state = TPState(block_names=[n for n, _ in blocks], family=family, window=window, mode=mode,
                    cumulative=cumulative, gather_order=gather_order, record=record, seed=seed)
    state.keep = keep
    state.scorer = scorer
    state.validate()
    _check_mode(model, state)
    for i, (_, block) in enumerate(blocks):
        block._tp_original_class = block.__class__
        block._tp_state = state
        block._tp_index = i
        block.__class__ = _tp_class(block.__class__)
    model._tp_state = state
    _log.info("TP applied to %d blocks (%s): keep=%s scorer=%s", len(blocks), ", ".join(state.block_names),
              state.keep, state.scorer_name)
    return state


def _check_mode(model: nn.Module, state: TPState) -> None:
    if state.mode == "drop" and not getattr(model, "supports_token_drop", False):
        raise ValueError(
            f"mode='drop' removes tokens for good, so the token grid shrinks; {type(model).__name__} needs the "
            "full grid after its blocks (hierarchical stages, downsampling). Use mode='stop' (block-level "
            "early stopping), which keeps the layout."
        )


def remove_tp(model: nn.Module) -> list[str]:
    """Undo :func:`apply_tp`; returns the names of the restored blocks ([] if the model was not patched)."""
    restored = []
    for name, module in model.named_modules():
        original = module.__dict__.get("_tp_original_class")
        if original is not None:
            module.__class__ = original
            for attr in ("_tp_original_class", "_tp_state", "_tp_index"):
                module.__dict__.pop(attr, None)
            restored.append(name)
    model.__dict__.pop("_tp_state", None)
    return restored


def _pruned_forward(block: TokenBlock, st: TPState, i: int, x: torch.Tensor) -> torch.Tensor:
    if i == 0:
        st.begin_forward(x.device)
    compact = st.mode == "drop" and st.positions is not None  # drop mode after the first block
    h, w = st.alive_grid if compact else tuple(x.shape[-2:])
    n_grid = h * w
    n_in = x.shape[-2] * x.shape[-1]  # tokens in the input tensor (drop mode: still alive)
    k = st.keep.count(i, h, w)
    alive = _alive_mask(st, (h, w), x.shape[1] if block.has_time_axis else x.shape[0])
    name = st.block_names[i]

    if k == n_in and (alive is None or compact or bool(alive.all())):
        # every token of the input runs: the block's own forward, bit for bit the dense computation
        if st.record:
            st.records[i] = BlockRecord(name, (h, w), kept=k, total=n_in,
                                        indices=st.positions if compact else None)
        return super(_TPBlockMixin, block).forward(x)

    with torch.no_grad():
        scores = _score(block, st, x, (h, w))
    index = top_tokens(scores, k, alive)  # [B, k] grid positions, best first
    if st.gather_order == "score" or (st.gather_order == "auto" and block.order_sensitive):
        gather_index = index
    else:
        gather_index = index.sort(dim=1).values  # raster order
    if st.record:
        st.records[i] = BlockRecord(name, (h, w), kept=k, total=n_in, indices=index.detach(), scores=scores.detach())

    if st.mode == "drop":
        local = _local_index(st, gather_index, n_grid) if compact else gather_index
        tokens = gather_tokens(x.flatten(-2), local)
        st.positions, st.alive_grid = gather_index, (h, w)
        return block.token_forward(tokens).unsqueeze(-1)  # [..., C, k, 1]: a compact "grid"

    x = block.dense_forward(x)
    flat = x.flatten(-2)  # [T, B, C, N] or [B, C, N]
    out = block.token_forward(gather_tokens(flat, gather_index))
    if st.cumulative:
        mask = torch.zeros(index.shape[0], n_grid, dtype=torch.bool, device=index.device)
        st.alive, st.alive_grid = mask.scatter_(1, index, True), (h, w)
    return scatter_tokens(flat, gather_index, out).unflatten(-1, (h, w))


def _alive_mask(st: TPState, grid: tuple[int, int], batch: int) -> torch.Tensor | None:
    """Which grid tokens may still be kept: cumulative stopping within a grid, or drop mode."""
    if st.mode == "drop" and st.positions is not None:
        mask = torch.zeros(batch, grid[0] * grid[1], dtype=torch.bool, device=st.positions.device)
        return mask.scatter_(1, st.positions, True)
    if st.cumulative and st.alive is not None and st.alive_grid == grid:
        return st.alive
    return None


def _score(block: TokenBlock, st: TPState, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Scores ``[B, H*W]`` of the block input on its full grid (drop mode: dropped tokens read as 0)."""
    if st.mode == "drop" and st.positions is not None:
        full = x.new_zeros(*x.shape[:-2], grid[0] * grid[1])
        x = scatter_tokens(full, st.positions, x.flatten(-2)).unflatten(-1, grid)
    xs = x if block.has_time_axis else x.unsqueeze(0)  # scorers take [T, B, C, H, W]
    ctx = ScoreContext(window=st.window, has_time=block.has_time_axis, generator=st.generator)
    scores = st.scorer(xs, ctx)
    expected = (xs.shape[1], grid[0] * grid[1])
    if tuple(scores.shape) != expected:
        raise ValueError(f"scorer {st.scorer_name} returned shape {list(scores.shape)}, expected {list(expected)}")
    if not bool(torch.isfinite(scores).all()):
        raise ValueError(f"scorer {st.scorer_name} returned NaN/Inf scores")
    return scores


def _local_index(st: TPState, grid_index: torch.Tensor, n_grid: int) -> torch.Tensor:
    """Drop mode: grid positions -> positions in the compact tensor of still-alive tokens."""
    pos = st.positions  # [B, K_alive]
    lookup = torch.full((pos.shape[0], n_grid), -1, dtype=torch.long, device=pos.device)
    lookup.scatter_(1, pos, torch.arange(pos.shape[1], device=pos.device).expand_as(pos))
    return lookup.gather(1, grid_index)
