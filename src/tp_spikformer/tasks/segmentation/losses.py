"""The segmentation loss: softmax cross-entropy on logits resized bilinearly to the label size, pixels
labelled ``ignore_index`` (255) excluded. Like mmseg's ``CrossEntropyLoss`` (``avg_non_ignore=False``, its
default) the mean runs over all pixels, ignored ones counting 0; ``avg_non_ignore=True`` averages over the
labelled pixels only (PyTorch's ``cross_entropy``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

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
