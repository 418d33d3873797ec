"""AdamW with the usual no-decay groups, learning-rate schedules, per-epoch seeds, and freezing the
parameters that never get a gradient."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn


def make_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    betas=(0.9, 0.999),
    lr_mult: Callable[[str], float] | None = None,
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters: weight decay on weight matrices/kernels (ndim >= 2) only.

    ``lr_mult(name) -> factor`` scales the learning rate of some parameters (e.g. a head at x2, a backbone
    at x0.1); each group keeps its factor in ``group["lr_mult"]`` for the schedules below.
    """
    groups: dict[tuple[bool, float], list[torch.Tensor]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        key = (p.ndim >= 2, float(lr_mult(name)) if lr_mult else 1.0)
        groups.setdefault(key, []).append(p)
    param_groups = [
        {"params": ps, "weight_decay": weight_decay if decay else 0.0, "lr": lr * mult, "lr_mult": mult}
        for (decay, mult), ps in sorted(groups.items(), key=lambda kv: (not kv[0][0], kv[0][1]))
    ]
    return torch.optim.AdamW(param_groups, lr=lr, betas=betas)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the base learning rate of every group (times its ``lr_mult``)."""
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_mult", 1.0)


def cosine_lr(step: int, total_steps: int, warmup_steps: int, lr: float, min_lr: float) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warm-up ``lr * (step + 1) / warmup`` over
    the first ``warmup_steps`` steps, then cosine from ``lr`` to ``min_lr`` at ``total_steps``."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def poly_lr(
    step: int,
    total_steps: int,
    warmup_steps: int,
    lr: float,
    min_lr: float = 0.0,
    power: float = 1.0,
    warmup_start: float = 1e-6,
) -> float:
    """mmseg's schedule: linear warm-up from ``warmup_start * lr``, then ``(lr - min_lr) * (1 - p)^power + min_lr``."""
    if step < warmup_steps:
        return lr * (warmup_start + (1.0 - warmup_start) * (step + 1) / warmup_steps)
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return (lr - min_lr) * (1.0 - progress) ** power + min_lr


_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """A 63-bit seed that is a pure function of ``(seed, epoch, stream)`` (stream 0: data order;
    ``1 + rank``: that rank's augmentation)."""
    h = _splitmix64(seed & _MASK64)
    h = _splitmix64(h ^ (epoch & _MASK64))
    h = _splitmix64(h ^ (stream & _MASK64))
    return h & ((1 << 63) - 1)


def freeze_unused_parameters(
    model: nn.Module, example: torch.Tensor | None = None, loss_of: Callable | None = None
) -> list[str]:
    """Find the parameters that receive no gradient (one train-mode forward/backward on ``example``, by
    default random data of the model's configured input size) and set ``requires_grad=False`` on them.
    Returns their names. Buffers (BatchNorm statistics), gradients, the train/eval mode and the global RNG
    state are restored afterwards, so the probe leaves no trace.

    ``loss_of(output) -> scalar`` reduces the model's output (default: the sum of its first tensor).
    """
    rng = torch.get_rng_state()
    if example is None:
        example = _example_input(model)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    grads = {n: p.grad for n, p in model.named_parameters()}
    was_training = model.training
    try:
        for p in model.parameters():
            p.grad = None
        model.train()
        with torch.enable_grad():
            out = model(example.to(device))
            (loss_of(out) if loss_of else _first_tensor(out).float().sum()).backward()
        names = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    finally:
        with torch.no_grad():
            for k, v in model.named_buffers():
                v.copy_(buffers[k])
        for n, p in model.named_parameters():
            p.grad = grads[n]
        model.train(was_training)
        torch.set_rng_state(rng)
    params = dict(model.named_parameters())
    for n in names:
        params[n].requires_grad_(False)
    return names


def _example_input(model: nn.Module, batch: int = 2) -> torch.Tensor:
    c, h, w = model.config.data.input_size
    if getattr(model, "static_input", True):
        return torch.randn(batch, c, h, w)
    return torch.rand(batch, model.config.T or 4, c, h, w)


def _first_tensor(out) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    values: Iterable = out.values() if isinstance(out, dict) else out
    return next(_first_tensor(v) for v in values)
