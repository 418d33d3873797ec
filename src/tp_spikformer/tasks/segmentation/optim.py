"""Loss, learning-rate schedule and optimiser of segmentation training (mmseg's recipe).

* :func:`segmentation_loss`: softmax cross-entropy on logits resized bilinearly to the label size, pixels
  labelled ``ignore_index`` (255) excluded. Like mmseg's ``CrossEntropyLoss`` (``avg_non_ignore=False``,
  its default) the mean runs over all pixels, ignored ones counting 0; ``avg_non_ignore=True`` averages
  over the labelled pixels only (PyTorch's ``cross_entropy``).
* :func:`warmup_poly_lr`: mmengine's ``LinearLR`` warm-up (from ``warmup_start`` x lr) then ``PolyLR``.
* :func:`segmentation_optimizer`: AdamW (betas 0.9/0.999) with weight decay on every parameter, as the
  official ``optim_wrapper`` (which sets no decay multipliers), and ``decode_head`` at ``head_lr_mult`` x
  the learning rate (official ``custom_keys={'head': dict(lr_mult=2.)}``, which on these models matches the
  decode head's parameters only).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .semfpn import resize_logits


def segmentation_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int = 255,
    avg_non_ignore: bool = False,
    align_corners: bool = False,
) -> torch.Tensor:
    """Cross-entropy of logits ``[B, K, h, w]`` (any stride) against labels ``[B, H, W]`` (module docstring)."""
    if logits.dim() != 4 or target.dim() != 3 or logits.shape[0] != target.shape[0]:
        raise ValueError(
            f"expected logits [B, K, h, w] and labels [B, H, W], got {tuple(logits.shape)} and "
            f"{tuple(target.shape)}"
        )
    logits = resize_logits(logits, target.shape[-2:], align_corners)  # [B, K, H, W]
    loss = F.cross_entropy(logits.float(), target.long(), ignore_index=ignore_index, reduction="none")
    if avg_non_ignore:
        return loss.sum() / (target != ignore_index).sum().clamp_min(1)
    return loss.mean()


def warmup_poly_lr(
    step: int,
    total_steps: int,
    warmup_steps: int,
    lr: float,
    power: float = 1.0,
    warmup_start: float = 1e-6,
    min_lr: float = 0.0,
) -> float:
    """Learning rate at iteration ``step`` (0-based), mmengine's ``LinearLR`` then ``PolyLR``:
    ``lr * (warmup_start + (1 - warmup_start) * step / warmup_steps)`` during the warm-up, then
    ``(lr - min_lr) * (1 - (step - warmup) / (total - warmup)) ** power + min_lr``."""
    if step < warmup_steps:
        return lr * (warmup_start + (1.0 - warmup_start) * step / warmup_steps)
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return (lr - min_lr) * (1.0 - progress) ** power + min_lr


def segmentation_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    head_lr_mult: float = 2.0,
    betas: tuple[float, float] = (0.9, 0.999),
) -> torch.optim.AdamW:
    """AdamW with two groups: ``decode_head.*`` at ``head_lr_mult`` x ``lr`` and the rest at ``lr``; weight
    decay on every trainable parameter (official). Each group keeps its factor in ``group["lr_mult"]``."""
    groups: dict[float, list[torch.Tensor]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault(head_lr_mult if name.startswith("decode_head.") else 1.0, []).append(p)
    return torch.optim.AdamW(
        [{"params": ps, "lr": lr * m, "lr_mult": m} for m, ps in sorted(groups.items())],
        lr=lr,
        betas=betas,
        weight_decay=weight_decay,
    )
