"""SDTrack's one-stream layout: the template/search canvas and the square "fake grid" of tokens.

SDTrack (``SDTrack_tiny_model.py``: ``create_graph`` with ``scale=0``, ``split_graph``,
``forward_features_transformer``) puts both crops on one zero canvas of side ``X + Z`` (search ``X`` at the
top-left, template ``Z`` at the bottom-right), runs the convolutional stem on the whole canvas, and keeps
two parts of the stride-16 map: the search ``(X/16)^2`` tokens (top-left) and the template ``(Z/16)^2``
tokens (bottom-right). The transformer blocks then run on a square grid made of the tokens
``[template | search | zero pad]`` in raster order (official 128/256: 64 + 256 + 4 = 18 x 18).

The official code hard-codes 128/256 (token slices ``:64``, ``64:320``, ``320:``, four pad tokens seen as a
2 x 2 map); :class:`CanvasLayout` computes the same for any sizes that are multiples of the stride. Where
the pad count is not a perfect square (the official code would fail in ``math.isqrt``), the pad part is
seen as the most square ``ph x pw`` rectangle with ``ph * pw = pad`` (e.g. 1 x 5); that only matters for
the per-part ``downsample4`` of the SDT-V3 tracker (a 3 x 3 convolution with zero padding at each part's
border), and official sizes give the official shapes.

Tensors may carry any leading dimensions (``[B, C, ...]`` or ``[T, B, C, ...]``); the last two are space.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def _pad_shape(n: int) -> tuple[int, int]:
    """The most square ``(ph, pw)`` with ``ph * pw = n`` and ``ph <= pw`` (``(0, 0)`` for ``n = 0``)."""
    if n == 0:
        return (0, 0)
    ph = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    return (ph, n // ph)


@dataclass(frozen=True)
class CanvasLayout:
    """Where template and search tokens live, for crops of ``template_size`` and ``search_size`` pixels.

    Derived: ``template_side`` / ``search_side`` (tokens per side), ``n_template``, ``n_search``,
    ``side`` (of the square fake grid), ``n_pad``, ``pad_shape``, ``canvas_size`` (``X + Z``).
    """

    template_size: int = 128
    search_size: int = 256
    stride: int = 16

    def __post_init__(self):
        for name in ("template_size", "search_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < self.stride or v % self.stride:
                raise ValueError(
                    f"{name} must be a positive multiple of the stride {self.stride} (official SDTrack: "
                    f"template 128, search 256), got {v!r}"
                )

    @property
    def template_side(self) -> int:
        return self.template_size // self.stride

    @property
    def search_side(self) -> int:
        return self.search_size // self.stride

    @property
    def n_template(self) -> int:
        return self.template_side**2

    @property
    def n_search(self) -> int:
        return self.search_side**2

    @property
    def n_real(self) -> int:
        """Template + search tokens."""
        return self.n_template + self.n_search

    @property
    def side(self) -> int:
        """Side of the square fake grid: the smallest square holding all real tokens."""
        return math.isqrt(self.n_real - 1) + 1

    @property
    def grid(self) -> tuple[int, int]:
        return (self.side, self.side)

    @property
    def n_pad(self) -> int:
        return self.side**2 - self.n_real

    @property
    def pad_shape(self) -> tuple[int, int]:
        return _pad_shape(self.n_pad)

    @property
    def canvas_size(self) -> int:
        return self.search_size + self.template_size

    # -- masks over the fake grid ----------------------------------------------------------------------
    def template_mask(self) -> torch.Tensor:
        """Bool ``[side^2]``: True at the template tokens of the fake grid (the first ``n_template``)."""
        mask = torch.zeros(self.side**2, dtype=torch.bool)
        mask[: self.n_template] = True
        return mask

    def pad_mask(self) -> torch.Tensor:
        """Bool ``[side^2]``: True at the zero pad tokens (the last ``n_pad``)."""
        mask = torch.zeros(self.side**2, dtype=torch.bool)
        mask[self.n_real :] = True
        return mask

    # -- canvas ------------------------------------------------------------------------------------------
    def make_canvas(self, template: torch.Tensor, search: torch.Tensor) -> torch.Tensor:
        """Zero canvas ``[..., C, X + Z, X + Z]``: search at the top-left, template at the bottom-right."""
        self.check_crops(template, search)
        x, z = self.search_size, self.template_size
        canvas = search.new_zeros(*search.shape[:-2], x + z, x + z)
        canvas[..., :x, :x] = search
        canvas[..., x:, x:] = template
        return canvas

    def check_crops(self, template: torch.Tensor, search: torch.Tensor) -> None:
        """Raise unless the crops are ``[..., C, Z, Z]`` and ``[..., C, X, X]`` with equal leading dims."""
        z, x = self.template_size, self.search_size
        if not isinstance(template, torch.Tensor) or not isinstance(search, torch.Tensor):
            raise TypeError("template and search must be tensors")
        if tuple(template.shape[-2:]) != (z, z) or tuple(search.shape[-2:]) != (x, x):
            raise ValueError(
                f"this tracker takes template crops of {z}x{z} and search crops of {x}x{x} pixels; got "
                f"template {list(template.shape)} and search {list(search.shape)} (crop with "
                "tp_spikformer.data.event_repr.crop_around(frame, box, factor, out_size))"
            )
        if template.shape[:-2] != search.shape[:-2]:
            raise ValueError(
                f"template {list(template.shape)} and search {list(search.shape)} must agree in every "
                "dimension but the last two (batch, time, channels)"
            )

    def split_map(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The stride-``s`` canvas map ``[..., C, S, S]`` -> (template ``[..., C, z, z]`` from the
        bottom-right, search ``[..., C, x, x]`` from the top-left) (``split_graph``)."""
        xs, zs = self.search_side, self.template_side
        if tuple(feat.shape[-2:]) != (xs + zs, xs + zs):
            raise ValueError(f"expected a {xs + zs}x{xs + zs} canvas map, got {list(feat.shape)}")
        return feat[..., -zs:, -zs:], feat[..., :xs, :xs]

    # -- fake grid -----------------------------------------------------------------------------------------
    def to_grid(
        self, template: torch.Tensor, search: torch.Tensor, pad: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``[template | search | pad]`` tokens in raster order as the fake grid ``[..., C, side, side]``;
        ``pad`` None: zero pad tokens."""
        z = template.flatten(-2)  # [..., C, n_template]
        x = search.flatten(-2)  # [..., C, n_search]
        parts = [z, x]
        if self.n_pad:
            parts.append(z.new_zeros(*z.shape[:-1], self.n_pad) if pad is None else pad.flatten(-2))
        return torch.cat(parts, dim=-1).unflatten(-1, self.grid)

    def grid_parts(self, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The fake grid ``[..., C, side, side]`` -> template ``[..., C, z, z]``, search ``[..., C, x, x]``,
        pad ``[..., C, ph, pw]`` (None without pad tokens)."""
        if tuple(grid.shape[-2:]) != self.grid:
            raise ValueError(f"expected the {self.side}x{self.side} fake grid, got {list(grid.shape)}")
        flat = grid.flatten(-2)
        nt, nr = self.n_template, self.n_real
        z = flat[..., :nt].unflatten(-1, (self.template_side, self.template_side))
        x = flat[..., nt:nr].unflatten(-1, (self.search_side, self.search_side))
        pad = flat[..., nr:].unflatten(-1, self.pad_shape) if self.n_pad else None
        return z, x, pad

    def search_tokens(self, grid: torch.Tensor) -> torch.Tensor:
        """The search part of the fake grid as a map ``[..., C, x, x]``."""
        return self.grid_parts(grid)[1]

    def real_tokens(self, grid: torch.Tensor) -> torch.Tensor:
        """Template + search tokens ``[..., C, n_template + n_search]`` (SDTrack's ``backbone_feat``)."""
        return grid.flatten(-2)[..., : self.n_real]
