"""The block protocol: what token pruning needs from a transformer block, and nothing more.

Every transformer block of every family derives from :class:`TokenBlock`. Its input and output share
one declared layout (``"TBCHW"`` for the multi-step families, ``"BCHW"`` for SDT-V3, which has no time
axis) and its forward is an ORDERED sequence of parts (:meth:`TokenBlock.block_parts`), each either

* ``"dense"``: layout-dependent, must see the whole ``H x W`` grid (SDT-V3's 3x3 SepConv token mixer,
  SDT-V2's 3x3 RepConv projections); its function receives grid tensors ``[T, B, C, H, W]`` (``[B, C, H, W]``);
* ``"token"``: token-wise (attention + MLP with their residuals, 1x1 projections, LIF over time,
  multi-spike); its function receives channel-first tokens ``[T, B, C, N]`` (``[B, C, N]``) for ANY number
  and order of tokens ``N``. Every op in it is per token except the attention's sums over tokens, which then
  run over the tokens it is given.

The parts pass a *carry* along: a tuple of tensors whose first element is the residual stream (the block
input, finally the block output) and whose further elements are intermediates (e.g. q, k, v). Each part's
function takes the carry tensors as positional arguments and returns a tensor or a tuple (the new carry).

The dense model runs exactly the code path a pruned block runs, only on all tokens in raster order. The
pruning patch (``tp_spikformer.pruning``) swaps a block's class for a subclass that gathers the kept tokens
before each token part and scatters them back before each dense part (the residual into its latest full
grid, intermediates into zeros: a stopped token does not fire in this block), and finally scatters the
residual into its latest full grid, so stopped tokens leave the block as they entered it unless a dense part
changed the residual itself (SDT-V3's SepConv runs on every token, as in the official TP code). It never
needs to know which family the block belongs to.

Blocks with one dense part followed by one token part implement ``dense_forward`` / ``token_forward``
(the default :meth:`~TokenBlock.block_parts`); blocks with more parts override ``block_parts``.

Models also declare their TP defaults (:class:`TPDefaults`): the scorer window and the official keep
schedule of the family, so that ``pruning`` never needs a table of families.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

LAYOUTS = ("TBCHW", "BCHW")
PART_KINDS = ("dense", "token")


@dataclass(frozen=True)
class BlockPart:
    """One step of a block's forward: ``kind`` is ``"dense"`` (full grid) or ``"token"`` (any tokens)."""

    kind: str
    fn: Callable[..., torch.Tensor | tuple[torch.Tensor, ...]]

    def __post_init__(self):
        if self.kind not in PART_KINDS:
            raise ValueError(f"block part kind must be one of {PART_KINDS}, got {self.kind!r}")


def as_carry(out: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """A part's return value as a carry tuple."""
    return (out,) if isinstance(out, torch.Tensor) else tuple(out)


@dataclass(frozen=True)
class TPDefaults:
    """What a model family declares for token pruning.

    * ``window``: side of the spatial neighbourhood of the scorers (official: 3, QKFormer 7).
    * ``keep_rule``: the rule of the family's official keep schedule (``side``, ``side_ratio``, ... of
      ``tp_spikformer.pruning.schedule``); ``keep_values``: one value per patched block, or None when the
      family has no official schedule for this depth.
    * ``fallback_fraction``: the keep fraction ``keep="official"`` means on a model whose depth does not
      match the official schedule (documented per family; None: no default, the user must choose).
    * ``source``: where the values come from.
    * ``protect`` / ``demote``: callables ``(H, W) -> bool mask [N] or None`` of tokens always kept (a
      tracker's template) and tokens ranked last (padding); the pruning state's defaults for them.
    * ``scorer``: the scorer ``apply_tp`` uses when none is given (``"official"``; ``apply_tp`` makes it
      ``"official_literal"`` for a model built with ``official_arithmetic=True``).
    """

    window: int = 3
    keep_rule: str | None = None
    keep_values: tuple[float, ...] | None = None
    fallback_fraction: float | None = None
    source: str = ""
    protect: Callable[[tuple[int, int]], torch.Tensor | None] | None = None
    demote: Callable[[tuple[int, int]], torch.Tensor | None] | None = None
    scorer: str = "official"


class TokenBlock(nn.Module):
    """Base class of all transformer blocks (see the module docstring).

    Class attributes a block may override:

    * ``token_layout``: ``"TBCHW"`` or ``"BCHW"``.
    * ``supports_token_subset``: ``False`` when the token parts need the full grid in raster order
      (e.g. SDT-V1's DVS-mode "Erode" max-pools); the pruning patch then refuses the block.
    * ``order_sensitive``: ``True`` when the result depends on the ORDER of the tokens given to the token
      parts (QKFormer's batch-coupled ``proj_lif`` compatibility mode). Pruning then gathers tokens in
      descending-score order, as the official TP code does.
    """

    token_layout: str = "TBCHW"
    supports_token_subset: bool = True
    order_sensitive: bool = False
    unsupported_reason: str = ""

    @property
    def has_time_axis(self) -> bool:
        return self.token_layout == "TBCHW"

    @property
    def grid_dims(self) -> int:
        """Number of dimensions of a grid tensor of this block (5 for ``[T, B, C, H, W]``, else 4)."""
        return 5 if self.has_time_axis else 4

    def dense_forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def token_forward(self, tokens: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def block_parts(self) -> tuple[BlockPart, ...]:
        """The ordered parts of the forward; default: ``dense_forward`` (if overridden), ``token_forward``."""
        if type(self).dense_forward is TokenBlock.dense_forward:
            return (BlockPart("token", self.token_forward),)
        return (BlockPart("dense", self.dense_forward), BlockPart("token", self.token_forward))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = tuple(x.shape[-2:])
        carry: tuple[torch.Tensor, ...] = (x,)
        for part in self.block_parts():
            if part.kind == "dense":
                carry = tuple(t.unflatten(-1, grid) if t.dim() < self.grid_dims else t for t in carry)
            else:
                carry = tuple(t.flatten(-2) if t.dim() == self.grid_dims else t for t in carry)
            carry = as_carry(part.fn(*carry))
        out = carry[0]
        return out.unflatten(-1, grid) if out.dim() < self.grid_dims else out


def token_blocks(model: nn.Module) -> list[tuple[str, TokenBlock]]:
    """All :class:`TokenBlock` submodules of ``model`` in registration order, with their names."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, TokenBlock)]
