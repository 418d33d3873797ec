"""The one typed state shared by all patched blocks of a model (configuration + what the last forward did)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .schedule import KeepSchedule, parse_keep
from .scorers import Scorer, get_scorer

MODES = ("stop", "drop")
GATHER_ORDERS = ("auto", "score", "raster")


@dataclass
class BlockRecord:
    """What one patched block did in the last forward."""

    name: str
    grid: tuple[int, int]  # the block's full token grid (H, W)
    kept: int  # tokens that ran through attention + MLP
    total: int  # tokens of the grid (drop mode: tokens still alive at the block input)
    indices: torch.Tensor | None = None  # [B, kept] grid positions, best score first; None = all kept
    scores: torch.Tensor | None = None  # [B, H*W] the scores the selection used; None = not scored

    def kept_mask(self, batch_size: int | None = None) -> torch.Tensor:
        """Bool ``[B, H, W]``: True where the token ran through the block."""
        h, w = self.grid
        if self.indices is None:
            if batch_size is None:
                raise ValueError("all tokens were kept in this block; pass batch_size to get a mask")
            return torch.ones(batch_size, h, w, dtype=torch.bool)
        mask = torch.zeros(self.indices.shape[0], h * w, dtype=torch.bool, device=self.indices.device)
        mask.scatter_(1, self.indices, True)
        return mask.view(-1, h, w)


@dataclass
class TPState:
    """Configuration of a TP-patched model and the records of its last forward pass.

    Change ``keep`` or ``scorer`` at any time (the next forward uses them); the per-forward fields are
    reset by the first patched block of every forward.
    """

    block_names: list[str]
    family: str | None
    _keep: KeepSchedule = field(repr=False, default=None)  # type: ignore[assignment]
    _scorer: Any = field(repr=False, default="official")
    window: int = 3
    mode: str = "stop"
    cumulative: bool = False
    gather_order: str = "auto"
    record: bool = True
    seed: int = 0
    # per forward
    records: list[BlockRecord | None] = field(default_factory=list, repr=False)
    alive: torch.Tensor | None = field(default=None, repr=False)  # [B, N] cumulative stopping
    alive_grid: tuple[int, int] | None = field(default=None, repr=False)
    positions: torch.Tensor | None = field(default=None, repr=False)  # [B, K] drop mode
    generator: torch.Generator | None = field(default=None, repr=False)

    # -- configuration -----------------------------------------------------------------------------
    @property
    def keep(self) -> KeepSchedule:
        return self._keep

    @keep.setter
    def keep(self, spec: Any) -> None:
        schedule = parse_keep(spec)
        if schedule == "official":
            from .presets import official_keep

            if self.family is None:
                raise ValueError("keep='official' needs the model family; this model declares none")
            schedule = official_keep(self.family, len(self.block_names))
        schedule.check_length(len(self.block_names), self.block_names)
        self._keep = schedule

    @property
    def scorer(self) -> Scorer:
        return self._scorer if callable(self._scorer) else get_scorer(self._scorer)

    @scorer.setter
    def scorer(self, value: str | Callable) -> None:
        if not callable(value):
            get_scorer(value)  # raises with the valid names
        self._scorer = value

    @property
    def scorer_name(self) -> str:
        return self._scorer if isinstance(self._scorer, str) else getattr(self._scorer, "__name__", "custom")

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose 'stop' (block-level early stopping) or 'drop'")
        if self.gather_order not in GATHER_ORDERS:
            raise ValueError(f"unknown gather_order {self.gather_order!r}; choose one of {GATHER_ORDERS}")
        if not (isinstance(self.window, int) and self.window >= 1 and self.window % 2 == 1):
            raise ValueError(f"window must be an odd positive integer, got {self.window!r}")

    # -- per forward ---------------------------------------------------------------------------------
    def begin_forward(self, device: torch.device) -> None:
        self.records = [None] * len(self.block_names)
        self.alive = None
        self.alive_grid = None
        self.positions = None
        self.generator = None
        if self.scorer_name == "random":
            self.generator = torch.Generator(device=device).manual_seed(self.seed)

    def kept_fraction(self) -> float | None:
        """Token-weighted share of block token slots that ran in the last forward (None before a forward)."""
        recs = [r for r in self.records if r is not None]
        if not recs:
            return None
        return sum(r.kept for r in recs) / sum(r.grid[0] * r.grid[1] for r in recs)

    def summary(self) -> str:
        lines = [f"TP on {len(self.block_names)} blocks: scorer={self.scorer_name} keep={self.keep} "
                 f"window={self.window} mode={self.mode} cumulative={self.cumulative}"]
        for name, rec in zip(self.block_names, self.records or [None] * len(self.block_names)):
            lines.append(f"  {name}: " + ("(not run yet)" if rec is None else f"{rec.kept}/{rec.grid[0] * rec.grid[1]} tokens on {rec.grid[0]}x{rec.grid[1]}"))
        return "\n".join(lines)
