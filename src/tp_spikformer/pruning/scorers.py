"""Token-importance scorers: pure functions ``score(x, ctx) -> [B, H*W]`` (higher = keep).

``x`` is a block input ``[T, B, C, H, W]`` (SDT-V3, which has no time axis, passes ``T = 1`` and
``ctx.has_time = False``). Scores are computed per sample, so they never depend on the rest of the batch
(``random`` aside). Register your own with :func:`register_scorer`.

``official`` reproduces the official TP-Spikformer code's numbers (paper.md §1.2-1.4): its "local mean"
is a dense C x C all-ones 1/k^2 convolution, i.e. every channel of it equals the zero-padded box mean ``m``
of the channel-sum map, so ``cos(x, m * 1_C) = sum_c(x) * m / (max(|x|, eps) * max(|m| sqrt(C), eps))``
(the eps handling of ``torch.nn.CosineSimilarity``). We compute that closed form in O(C*H*W) instead of the
O(C^2*k^2*H*W) convolution; ``official_literal`` is the literal convolution, kept as a slow reference.

``paper`` follows the paper's description instead (see :func:`paper_spatial`, :func:`paper_temporal`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import UsageError

COS_EPS = 1e-6  # nn.CosineSimilarity(eps=1e-6) in the official code


@dataclass
class ScoreContext:
    """What a scorer may know besides the block input."""

    window: int = 3  # spatial neighbourhood side (official: 3 for SDT-V1/V3, 7 for QKFormer)
    has_time: bool = True  # False for SDT-V3 (no time axis; T = 1 is a dummy axis)
    generator: torch.Generator | None = None  # for ``random``


Scorer = Callable[[torch.Tensor, ScoreContext], torch.Tensor]
_SCORERS: dict[str, Scorer] = {}


def register_scorer(name: str, fn: Scorer | None = None):
    """Register ``fn`` under ``name`` (usable as a decorator)."""

    def add(f: Scorer) -> Scorer:
        _SCORERS[name] = f
        return f

    return add(fn) if fn is not None else add


def get_scorer(name: str) -> Scorer:
    try:
        return _SCORERS[name]
    except KeyError:
        raise UsageError(f"unknown scorer {name!r}; choose one of {sorted(_SCORERS)}") from None


def scorer_names() -> list[str]:
    return sorted(_SCORERS)


def describe_scorers() -> list[tuple[str, str]]:
    """``(name, first line of its docstring)`` for every registered scorer, sorted by name."""
    return [
        (n, ((_SCORERS[n].__doc__ or "").strip().splitlines() or ["(no description)"])[0])
        for n in scorer_names()
    ]


def _check(x: torch.Tensor) -> None:
    if x.dim() != 5:
        raise ValueError(f"scorers take block inputs [T, B, C, H, W], got shape {list(x.shape)}")


def time_mean(x: torch.Tensor) -> torch.Tensor:
    """``x.mean(dim=0)`` of ``[T, B, C, H, W]`` as a sum of per-step slices, divided by T.

    Same values; fast for any memory layout (a reduction over the outer axis of a channels-last tensor
    takes torch's slow path, about 15x slower on CPU). For T = 1 it returns the view ``x[0]`` without a copy,
    so callers must not modify the result in place.
    """
    if x.shape[0] == 1:
        return x[0]
    acc = x[0].clone()
    for t in range(1, x.shape[0]):
        acc += x[t]
    return acc.div_(x.shape[0])


def _channel_norm(x: torch.Tensor) -> torch.Tensor:
    """L2 norm over the channels of ``[N, C, H, W]``, clamped at ``COS_EPS`` -> ``[N, H, W]``.

    Written out: ``linalg.vector_norm`` over the channel axis of an NCHW tensor is ~6x slower on CPU.
    """
    return x.square().sum(dim=1).sqrt().clamp_min(COS_EPS)


# -- official ---------------------------------------------------------------------------------------


def official_spatial_raw(x: torch.Tensor, window: int) -> torch.Tensor:
    """The official code's cosine similarity (before negation and softmax), closed form, ``[B, H*W]``."""
    xm = time_mean(x)  # [B, C, H, W] (identity for T = 1)
    c = xm.shape[1]
    channel_sum = xm.sum(dim=1, keepdim=True)  # [B, 1, H, W]
    box_mean = F.avg_pool2d(channel_sum, window, stride=1, padding=window // 2, count_include_pad=True)
    x_norm = _channel_norm(xm)  # [B, H, W]
    m_norm = (box_mean.abs() * math.sqrt(c)).clamp_min(COS_EPS)
    sim = (channel_sum / x_norm.unsqueeze(1)) * (box_mean / m_norm)  # [B, 1, H, W]
    return sim.flatten(1)


def official_temporal_raw(x: torch.Tensor) -> torch.Tensor:
    """Mean over steps of |change of the channel mean| ``[B, H*W]``; zeros when T = 1 (official: NaN)."""
    if x.shape[0] < 2:
        return x.new_zeros(x.shape[1], x.shape[3] * x.shape[4])
    channel_mean = x.mean(dim=2)  # [T, B, H, W]
    return (channel_mean[1:] - channel_mean[:-1]).abs().mean(dim=0).flatten(1)


@register_scorer("official_spatial")
def official_spatial(x: torch.Tensor, ctx: ScoreContext) -> torch.Tensor:
    """Official spatial score: ``softmax(-cos(x_mean_over_T, dense_box_mean))`` over tokens."""
    _check(x)
    return torch.softmax(-official_spatial_raw(x, ctx.window), dim=1)


@register_scorer("official_temporal")
def official_temporal(x: torch.Tensor, ctx: ScoreContext) -> torch.Tensor:
    """Official temporal score: ``softmax(mean_t |mean_c x[t+1] - mean_c x[t]|)``.

    Guarded at T = 1, where the official code returns NaN: all tokens then score ``1/N`` (no preference).
    """
    _check(x)
    if not ctx.has_time:
        raise UsageError("the temporal scorer needs a time axis; this model (SDT-V3) has none")
    return torch.softmax(official_temporal_raw(x), dim=1)


@register_scorer("official")
def official(x: torch.Tensor, ctx: ScoreContext) -> torch.Tensor:
    """The official TP-Spikformer score: spatial + temporal softmaxes (spatial only without time axis)."""
    _check(x)
    spatial = official_spatial(x, ctx)
    return spatial + official_temporal(x, ctx) if ctx.has_time else spatial


@register_scorer("official_literal")
def official_literal(x: torch.Tensor, ctx: ScoreContext) -> torch.Tensor:
    """The official score computed literally, with the dense ``ones(C, C, k, k) / k^2`` convolution.

    O(C^2 k^2 HW): a slow reference for tests and benchmarks, numerically equal to ``official``.
    """
    _check(x)
    xm = x.mean(dim=0)  # literally as the official code
    c, k = xm.shape[1], ctx.window
    kernel = torch.ones(c, c, k, k, dtype=xm.dtype, device=xm.device) / float(k * k)
    local_mean = F.conv2d(xm, kernel, padding=k // 2)
    sim = F.cosine_similarity(xm.flatten(2), local_mean.flatten(2), dim=1, eps=COS_EPS)
    spatial = torch.softmax(-sim, dim=1)
    if not ctx.has_time:
        return spatial
    return spatial + torch.softmax(official_temporal_raw(x), dim=1)


# -- paper ------------------------------------------------------------------------------------------


def box_sum(x: torch.Tensor, window: int) -> torch.Tensor:
    """Sum over the ``window x window`` neighbourhood of every position of ``[N, C, H, W]`` (zero padding),
    as two separable passes of shifted adds (faster on CPU than ``avg_pool2d`` or a depthwise conv)."""
    if window % 2 == 0 or window < 1:
        raise ValueError(f"the spatial window must be an odd positive size, got {window}")
    r = window // 2
    if r == 0:
        return x.clone()
    h, w = x.shape[-2:]
    p = F.pad(x, (0, 0, r, r))  # rows
    rows = p[..., 0:h, :].clone()
    for d in range(1, window):
        rows += p[..., d : d + h, :]
    p = F.pad(rows, (r, r, 0, 0))  # columns
    out = p[..., 0:w].clone()
    for d in range(1, window):
        out += p[..., d : d + w]
    return out


def _normalise_per_step(d: torch.Tensor) -> torch.Tensor:
    """Turn non-negative ``[T, B, N]`` maps into per-step distributions over tokens (uniform if all 0)."""
    total = d.sum(dim=-1, keepdim=True)
    uniform = torch.full_like(d, 1.0 / d.shape[-1])
    return torch.where(total > 0, d / total.clamp_min(torch.finfo(d.dtype).tiny), uniform)


@register_scorer("spatial")
def paper_spatial(x: torch.Tensor, ctx: ScoreContext) -> torch.Tensor:
    """The paper's spatial score: cosine DISsimilarity of each token to the mean of its neighbourhood.

    Per time step, ``1 - cos(X_t(h,w), Y_t(h,w))`` with ``Y_t`` the per-channel (depthwise) mean of the
    ``window x window`` tokens around (h, w), counting only tokens inside the grid at the borders. Each
    step's map is normalised to sum to 1 over the tokens (the paper: scores "normalised ... and sum to 1");
    the result is the mean over steps. Range of each step before normalisation: [0, 2].
    """
    _check(x)
    t, b, c, h, w = x.shape
    flat = x.flatten(0, 1)  # [T*B, C, H, W]
    counts = box_sum(flat.new_ones(1, 1, h, w), ctx.window)  # tokens inside the grid per window
    local = box_sum(flat, ctx.window) / counts  # depthwise neighbourhood mean, [T*B, C, H, W]
    # cosine over channels, with the norms clamped as torch.nn.functional.cosine_similarity does
    # (written out: 10-30x faster than F.cosine_similarity on CPU)
    dissim = 1.0 - (flat * local).sum(dim=1) / (_channel_norm(flat) * _channel_norm(local))
    # dissim: [T*B, H, W], in [0, 2]
    # rounding noise of identical directions (e.g. window 1, uniform maps) is no dissimilarity
    dissim = dissim.masked_fill(dissim < 16 * torch.finfo(dissim.dtype).eps, 0.0)
    return _normalise_per_step(dissim.reshape(t, b, h * w)).mean(dim=0)


@register_scorer("temporal")
def paper_temporal(x: torch.Tensor, ctx: ScoreContext) -> torch.Tensor:
    """The paper's temporal score: how much each token changes from one step to the next.

    ``d_1 = |X_1|``, ``d_t = |X_t - X_{t-1}|`` reduced over channels with the mean absolute value (L1 / C:
    on binary spike maps it is the fraction of channels whose spike flipped, i.e. a normalised Hamming
    distance; it does not let opposite changes cancel, unlike the official channel-mean-then-difference).
    Each step is normalised to sum to 1 over tokens, then the steps are averaged. Defined at T = 1
    (``|X_1|`` alone). Needs a time axis.
    """
    _check(x)
    if not ctx.has_time:
        raise UsageError("the temporal scorer needs a time axis; this model (SDT-V3) has none")
    # per step: mean over channels of |X_1| (t = 1) or |X_t - X_{t-1}|  -> [T, B, N]
    d = torch.stack(
        [(x[t] - x[t - 1] if t else x[0]).abs().mean(dim=1).flatten(1) for t in range(x.shape[0])]
    )
    return _normalise_per_step(d).mean(dim=0)


@register_scorer("paper")
def paper(x: torch.Tensor, ctx: ScoreContext) -> torch.Tensor:
    """The paper's IRToP criterion ``S_hat + T_hat`` (spatial only without a time axis)."""
    spatial = paper_spatial(x, ctx)
    return spatial + paper_temporal(x, ctx) if ctx.has_time else spatial


# -- baselines --------------------------------------------------------------------------------------


@register_scorer("random")
def random_scores(x: torch.Tensor, ctx: ScoreContext) -> torch.Tensor:
    """Uniform random scores (the paper's "Random" ablation); seeded by the pruning state."""
    _check(x)
    b, n = x.shape[1], x.shape[3] * x.shape[4]
    device = ctx.generator.device if ctx.generator is not None else x.device
    return torch.rand(b, n, generator=ctx.generator, device=device).to(x.device, x.dtype)


@register_scorer("firing_rate")
def firing_rate(x: torch.Tensor, ctx: ScoreContext) -> torch.Tensor:
    """Activity magnitude: mean |x| over time steps and channels (the firing rate for spike inputs)."""
    _check(x)
    return time_mean(x.abs()).mean(dim=1).flatten(1)
