"""The block protocol: what token pruning needs from a transformer block, and nothing more.

Every transformer block of every family derives from :class:`TokenBlock`. Its input and output share
one declared layout (``"TBCHW"`` for the multi-step families, ``"BCHW"`` for SDT-V3, which has no time
axis) and its forward is split into

* ``dense_forward(x)``: the layout-dependent part that must see the whole ``H x W`` grid (SDT-V3's 3x3
  SepConv token mixer); the identity elsewhere;
* ``token_forward(tokens)``: the token-wise rest (attention + MLP with their residuals) on channel-first
  tokens ``[T, B, C, N]`` (or ``[B, C, N]``) for ANY number and order of tokens ``N``. Every op in it is
  per token (1x1 conv, linear, eval-mode BN, LIF over time, multi-spike) except the attention's sums over
  tokens, which then run over the tokens it is given.

``forward(x) = unflatten(token_forward(flatten(dense_forward(x))))``: the dense model runs exactly the code
path a pruned block runs, only on all tokens in raster order. The pruning patch (``tp_spikformer.pruning``)
swaps a block's class for a subclass that gathers a subset of tokens between the two parts and scatters
the result back; it never needs to know which family the block belongs to.
"""

from __future__ import annotations

import torch
from torch import nn

LAYOUTS = ("TBCHW", "BCHW")


class TokenBlock(nn.Module):
    """Base class of all transformer blocks (see the module docstring).

    Class attributes a block may override:

    * ``token_layout``: ``"TBCHW"`` or ``"BCHW"``.
    * ``supports_token_subset``: ``False`` when ``token_forward`` needs the full grid in raster order
      (e.g. SDT-V1's DVS-mode "Erode" max-pools); the pruning patch then refuses the block.
    * ``order_sensitive``: ``True`` when the result depends on the ORDER of the tokens given to
      ``token_forward`` (QKFormer's batch-coupled ``proj_lif`` compatibility mode). Pruning then gathers
      tokens in descending-score order, as the official TP code does.
    """

    token_layout: str = "TBCHW"
    supports_token_subset: bool = True
    order_sensitive: bool = False
    unsupported_reason: str = ""

    @property
    def has_time_axis(self) -> bool:
        return self.token_layout == "TBCHW"

    def dense_forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def token_forward(self, tokens: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dense_forward(x)
        h, w = x.shape[-2:]
        return self.token_forward(x.flatten(-2)).unflatten(-1, (h, w))


def token_blocks(model: nn.Module) -> list[tuple[str, TokenBlock]]:
    """All :class:`TokenBlock` submodules of ``model`` in forward (registration) order, with their names."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, TokenBlock)]
