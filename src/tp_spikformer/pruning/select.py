"""Token selection and the gather / scatter helpers (pure tensor functions).

Tokens are channel-first and flattened: ``[T, B, C, N]`` (or ``[B, C, N]``); indices are ``[B, K]`` and
shared by all time steps and channels.
"""

from __future__ import annotations

import torch


def top_tokens(
    scores: torch.Tensor, k: int, alive: torch.Tensor | None = None, protect: torch.Tensor | None = None,
    demote: torch.Tensor | None = None,
) -> torch.Tensor:
    """Indices ``[B, k]`` of the ``k`` best tokens per sample, best first; ties go to the lower index.

    ``alive`` (bool ``[B, N]``) restricts the choice to tokens still alive (cumulative stopping / drop mode;
    the caller makes sure at least ``k`` are); ``protect`` (bool ``[B, N]``) tokens come first, always kept;
    ``demote`` (bool ``[B, N]``) tokens come after every other alive token (padding). Nothing here reads a
    tensor on the host.
    """
    if demote is not None:
        scores = scores.masked_fill(demote, torch.finfo(scores.dtype).min)
    if alive is not None:
        scores = scores.masked_fill(~alive, float("-inf"))
    if protect is not None:
        scores = scores.masked_fill(protect, float("inf"))
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    return order[:, :k]


def _expand(index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``[B, K]`` -> index broadcast to ``like``'s leading dims: ``[T, B, C, K]`` or ``[B, C, K]``."""
    shape = list(like.shape[:-1]) + [index.shape[1]]
    if like.dim() == 4:
        return index[None, :, None, :].expand(shape)
    if like.dim() == 3:
        return index[:, None, :].expand(shape)
    raise ValueError(f"tokens must be [T, B, C, N] or [B, C, N], got {list(like.shape)}")


def gather_tokens(tokens: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The tokens at ``index`` as a compact tensor ``[..., C, K]`` (in the order of ``index``)."""
    return tokens.gather(-1, _expand(index, tokens))


def scatter_tokens(tokens: torch.Tensor, index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """A copy of ``tokens`` with ``values`` written at ``index``; every other token is unchanged."""
    return tokens.scatter(-1, _expand(index, tokens), values)
