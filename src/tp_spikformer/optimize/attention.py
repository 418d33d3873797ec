"""SDT-V3's linear attention in the cheaper product order, where that order is exact.

The official ``MS_Attention_linear`` computes ``((q k^T) v) * scale`` per head: an ``N x N`` product
(``2 N^2 d_v`` MACs with ``d_v = 4 d``). ``q (k^T v)`` costs ``2 N d d_v``: 4x fewer at 224 px (``N = 196``,
``d = 32``). Both orders give the same value when every partial sum is exact, and here they are: q, k and v
are multi-spikes (multiples of 1/4 in [0, 1]), so every product is a multiple of 1/64 and every sum of them
is at most ``d N`` in magnitude. Floating point holds such sums exactly while ``64 d N <= 2^p`` (``p`` = 24
significand bits in float32, 53 in float64); then both orders are exact and bit-identical to each other.
Otherwise (bigger grids, half precision, ``torch.set_float32_matmul_precision`` below "highest", which
lets float32 products round through bf16/tf32, or quantisers other than 4 levels) the official order runs.

Measurement hooks on the ``SpikeProduct`` modules see the order that ran: ``qk_product`` computes ``k^T v``
and ``qkv_product`` computes ``q (k^T v)``, so counted MACs/SOPs are those of the cheaper order.
"""

from __future__ import annotations

import torch

from ..models.layers import MultiSpike, pointwise_conv_bn
from ..models.sdt_v3 import LinearSpikeAttention

_SIGNIFICAND_BITS = {torch.float32: 24, torch.float64: 53}


def _quarter_levels(spike: torch.nn.Module) -> bool:
    return isinstance(spike, MultiSpike) and spike.max_value == 4.0 and spike.norm == 4.0


def reorder_applies(attn: LinearSpikeAttention) -> bool:
    """Whether q, k and v come from 4-level quantisers (the exactness argument needs it)."""
    return all(_quarter_levels(s) for s in (attn.q_spike, attn.k_spike, attn.v_spike))


def exact_in_either_order(dtype: torch.dtype, head_dim: int, tokens: int) -> bool:
    bits = _SIGNIFICAND_BITS.get(dtype)
    if bits is None or (dtype == torch.float32 and torch.get_float32_matmul_precision() != "highest"):
        return False
    return 64 * head_dim * tokens <= 2**bits


class ReorderedLinearSpikeAttention(LinearSpikeAttention):
    """``LinearSpikeAttention`` computing ``q (k^T v)`` at inference when that is exact (module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or torch.is_grad_enabled():
            return super().forward(x)
        b, _, n = x.shape
        s = self.head_spike(x)
        q = self.q_spike(pointwise_conv_bn(s, self.q_conv[0], self.q_conv[1]))  # [B, C, N]
        k = self.k_spike(pointwise_conv_bn(s, self.k_conv[0], self.k_conv[1]))  # [B, C, N]
        v = self.v_spike(pointwise_conv_bn(s, self.v_conv[0], self.v_conv[1]))  # [B, 4C, N]
        q, k, v = self._heads(q), self._heads(k), self._heads(v)  # [B, h, N, d], [B, h, N, 4d]
        if exact_in_either_order(q.dtype, q.shape[-1], n) and q.dtype == k.dtype == v.dtype:
            kv = self.qk_product(k.transpose(-2, -1), v)  # [B, h, d, 4d]
            out = self.qkv_product(q, kv) * (self.scale * 2)  # [B, h, N, 4d]
        else:
            out = self.qkv_product(self.qk_product(q, k.transpose(-2, -1)), v) * (self.scale * 2)
        out = self.attn_spike(out.transpose(-1, -2).reshape(b, -1, n))  # [B, 4C, N]
        return pointwise_conv_bn(out, self.proj_conv[0], self.proj_conv[1])  # [B, C, N]


SWAPS = {LinearSpikeAttention: ReorderedLinearSpikeAttention}
