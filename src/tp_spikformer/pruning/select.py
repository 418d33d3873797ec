"""Token selection and the gather / scatter helpers (pure tensor functions).

Tokens are channel-first and flattened: ``[T, B, C, N]`` (or ``[B, C, N]``); indices are ``[B, K]`` and
shared by all time steps and channels.
"""

from __future__ import annotations

import torch


def top_tokens(
    scores: torch.Tensor,
    k: int,
    alive: torch.Tensor | None = None,
    protect: torch.Tensor | None = None,
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


def _channels_innermost(tokens: torch.Tensor) -> bool:
    """``[..., C, N]`` tokens stored as ``[..., N, C]`` (the token view of a channels-last grid)."""
    return tokens.shape[-2] > 1 and tokens.transpose(-1, -2).is_contiguous()


def _row_index(index: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``[B, K]`` token indices -> row indices of ``tokens`` seen as ``[L*B*N, C]`` (``L`` = T or 1)."""
    b, n = index.shape[0], tokens.shape[-1]
    groups = tokens[..., 0, 0].numel()  # T*B or B
    base = torch.arange(groups, device=index.device).mul_(n)  # [L*B]
    return (base.view(-1, b, 1) + index.unsqueeze(0)).flatten()  # [L*B*K], t-major like tokens


def gather_tokens(tokens: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The tokens at ``index`` as a compact tensor ``[..., C, K]`` (in the order of ``index``).

    Channels-innermost tokens (a channels-last grid's) give a channels-innermost compact tensor: whole
    ``C``-vectors are copied, and the block's layers see the layout they see in the dense model.
    """
    if _channels_innermost(tokens):
        c, k = tokens.shape[-2], index.shape[1]
        rows = tokens.transpose(-1, -2).reshape(-1, c).index_select(0, _row_index(index, tokens))
        return rows.view(*tokens.shape[:-2], k, c).transpose(-1, -2)  # [..., C, K], C innermost
    return tokens.gather(-1, _expand(index, tokens))


def scatter_tokens(tokens: torch.Tensor, index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """A copy of ``tokens`` with ``values`` written at ``index``; every other token is unchanged. The copy
    has ``tokens``' layout (channels-innermost stays channels-innermost)."""
    if _channels_innermost(tokens):
        c = tokens.shape[-2]
        out = tokens.transpose(-1, -2).clone()  # [..., N, C], contiguous
        rows = values.transpose(-1, -2).reshape(-1, c)
        out.view(-1, c).index_copy_(0, _row_index(index, tokens), rows)
        return out.transpose(-1, -2)
    return tokens.scatter(-1, _expand(index, tokens), values)


def zeros_tokens_like(values: torch.Tensor, n: int) -> torch.Tensor:
    """Zeros ``[..., C, n]`` in the layout of ``values`` ``[..., C, K]`` (channels-innermost or not)."""
    if _channels_innermost(values):
        return values.new_zeros(*values.shape[:-2], n, values.shape[-2]).transpose(-1, -2)
    return values.new_zeros(*values.shape[:-1], n)
