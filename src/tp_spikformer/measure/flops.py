"""Cross-check of the hook-based MAC count against ``torch.utils.flop_counter.FlopCounterMode``.

FlopCounterMode counts at the dispatcher level and reports FLOPs = 2 x MACs for convolutions and matrix
products (``aten.convolution``, ``mm``, ``addmm``, ``bmm``, ...). It does NOT count element-wise ops, so
``SpikeProduct("mul")`` (SDT-V1's masks, QKFormer's token mask), biases, BatchNorm, neurons and adds are
outside it; and it counts any matrix product or convolution that is not a hooked module (a functional
conv in a custom TP scorer, for instance). So: ``ours(Conv/Linear/matmul) == FlopCounter / 2`` exactly
on the models of the zoo, dense or TP-pruned with the ``official`` scorer (tested on the tiny configs); the
``paper`` and ``official_literal`` scorers run functional convolutions that FlopCounterMode adds on top.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .ops import _device_of, count_ops, iter_batches

COUNTED_BY_FLOP_COUNTER = ("Conv1d", "Conv2d", "Conv3d", "Linear", "matmul")


def flop_counter_flops(model: nn.Module, inputs: Any, max_batches: int | None = None) -> dict[str, Any]:
    """Total FLOPs and FLOPs per aten op that ``FlopCounterMode`` sees over the batches (eval, inference)."""
    was_training = model.training
    model.eval()
    device = _device_of(model)
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as fc:
            for x in iter_batches(inputs, max_batches):
                model(x.to(device))
    finally:
        model.train(was_training)
    by_op = {str(op): int(v) for op, v in fc.get_flop_counts().get("Global", {}).items()}
    return {"flops": int(fc.get_total_flops()), "by_op": by_op}


def cross_check_flops(model: nn.Module, inputs: Any, max_batches: int | None = None) -> dict[str, Any]:
    """Compare our dense MACs of Conv/Linear/matmul with FlopCounterMode / 2 on the same inputs.

    Returns ``ours_macs``, ``flop_counter_macs`` (FLOPs / 2), ``difference``, ``match`` (exact equality),
    ``ours_mul_macs`` (element-wise products, which FlopCounterMode does not count) and ``by_op``.
    """
    batches = list(iter_batches(inputs, max_batches))  # both counters must see the same batches
    counts = count_ops(model, batches)
    fc = flop_counter_flops(model, batches)
    ours = counts.dense_macs(COUNTED_BY_FLOP_COUNTER)
    theirs = fc["flops"] / 2
    return {
        "ours_macs": ours,
        "flop_counter_macs": theirs,
        "difference": ours - theirs,
        "match": ours == theirs,
        "ours_mul_macs": counts.dense_macs(("mul",)),
        "by_op": fc["by_op"],
        "note": "FlopCounterMode counts 2 FLOPs per MAC of convolutions and matrix products only; "
        "element-wise SpikeProduct('mul'), biases, BatchNorm and neurons are outside it.",
    }
