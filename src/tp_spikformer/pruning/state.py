"""The one typed state shared by all patched blocks of a model: configuration + what the last forward did.

Configuration fields are validated properties: assigning a bad value raises and leaves the state as it
was. :meth:`TPState.configure` changes several fields at once, atomically (all or nothing).

A forward pass is a *scope*: the patched model's own entry points (``forward``, ``forward_features``,
``forward_intermediates``) open it, so it does not matter which block runs first, whether a block runs
twice (a tracker's template and search passes) or not at all. A block called on its own opens a scope of
its own. Records are kept in call order.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import UsageError, UsageTypeError
from ..models.protocol import TPDefaults
from .schedule import KeepSchedule, fraction, parse_keep
from .scorers import Scorer, get_scorer

MODES = ("stop", "drop")
GATHER_ORDERS = ("auto", "score", "raster")
MAX_WINDOW = 99  # scorer windows beyond this are refused (a window larger than the grid is a global mean)
FALLBACK_WINDOW = 3
_log = logging.getLogger(__name__)


@dataclass
class BlockRecord:
    """What one call of a patched block did in the last forward."""

    name: str
    grid: tuple[int, int]  # the block's full token grid (H, W)
    kept: int  # tokens that ran through the token parts (attention + MLP)
    total: int  # tokens of the grid (drop mode: tokens still alive at the block input)
    indices: torch.Tensor | None = None  # [B, kept] grid positions, best score first; None = all kept
    scores: torch.Tensor | None = None  # [B, H*W] the scores the selection used; None = not scored
    index: int = 0  # position of the block in ``TPState.block_names``
    call: int = 0  # 0 for the block's first call in the forward, 1 for its second, ...

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


ProtectSpec = torch.Tensor | Callable[[tuple[int, int]], "torch.Tensor | None"] | None


class TPState:
    """Configuration of a TP-patched model and the records of its last forward pass.

    Settable at any time (the next forward uses them): ``keep``, ``scorer``, ``window``, ``mode``,
    ``cumulative``, ``gather_order``, ``protect``, ``record``, ``seed``, ``check``.
    """

    _CONFIG = (
        "keep",
        "scorer",
        "window",
        "mode",
        "cumulative",
        "gather_order",
        "protect",
        "demote",
        "record",
        "seed",
        "check",
        "enabled",
    )

    def __init__(
        self,
        block_names: list[str],
        family: str | None,
        defaults: TPDefaults | None,
        supports_drop: bool = False,
    ):
        self.block_names = list(block_names)
        self.family = family
        self.defaults = defaults
        self.supports_drop = supports_drop
        self._keep: KeepSchedule | None = None
        self._scorer: Any = defaults.scorer if defaults is not None else "official"
        self._window = defaults.window if defaults is not None else FALLBACK_WINDOW
        self._mode = "stop"
        self._cumulative = False
        self._gather_order = "auto"
        self._protect: ProtectSpec = defaults.protect if defaults is not None else None
        self._demote: ProtectSpec = defaults.demote if defaults is not None else None
        self._record = True
        self._seed = 0
        self._check = False
        self._enabled = True
        self._version = 0  # bumped on every configuration change: checks run on its first forward
        self._checked_version = -1
        self._depth = 0
        self._reset_pass()

    # -- configuration -----------------------------------------------------------------------------
    @property
    def keep(self) -> KeepSchedule:
        return self._keep

    @keep.setter
    def keep(self, spec: Any) -> None:
        schedule = parse_keep(spec)
        if schedule == "official":
            schedule = self.official_keep()
        schedule.check_length(len(self.block_names), self.block_names)
        self._keep = schedule
        self._changed()

    def official_keep(self) -> KeepSchedule:
        """The model's official schedule for its block count, or its documented fallback fraction."""
        d = self.defaults
        if d is None:
            raise UsageError(
                "keep='official' needs the model's TP defaults, and this model declares none (no tp_defaults "
                "method); pass a schedule, e.g. keep=0.5 or keep=[...] with one fraction per patched block"
            )
        if d.keep_rule is not None and d.keep_values is not None:
            return KeepSchedule(
                d.keep_rule, tuple(d.keep_values) if len(d.keep_values) > 1 else d.keep_values[0]
            )
        if d.fallback_fraction is not None:
            _log.info(
                "no official %s schedule for %d patched blocks (%s): keep='official' is keep=%g in every "
                "block",
                self.family,
                len(self.block_names),
                d.source,
                d.fallback_fraction,
            )
            return fraction(d.fallback_fraction)
        raise UsageError(
            f"the model declares no official keep schedule for {len(self.block_names)} blocks; "
            "pass keep=... (a fraction, a per-block list or a KeepSchedule)"
        )

    @property
    def scorer(self) -> Scorer:
        return self._scorer if callable(self._scorer) else get_scorer(self._scorer)

    @scorer.setter
    def scorer(self, value: str | Callable) -> None:
        if not callable(value):
            if not isinstance(value, str):
                raise UsageTypeError(f"scorer must be a registered name or a callable, got {value!r}")
            get_scorer(value)  # raises with the valid names
        self._scorer = value
        self._changed()

    @property
    def scorer_name(self) -> str:
        return self._scorer if isinstance(self._scorer, str) else getattr(self._scorer, "__name__", "custom")

    @property
    def window(self) -> int:
        return self._window

    @window.setter
    def window(self, value: int) -> None:
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not (1 <= value <= MAX_WINDOW and value % 2)
        ):
            raise UsageError(f"window must be an odd integer from 1 to {MAX_WINDOW}, got {value!r}")
        self._window = value
        self._changed()

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise UsageError(f"unknown mode {value!r}; choose 'stop' (block-level early stopping) or 'drop'")
        if value == "drop" and not self.supports_drop:
            raise UsageError(
                "mode='drop' removes tokens for good, so the token grid shrinks; this model needs the full grid "
                "after its blocks (hierarchical stages, downsampling, dense heads, or blocks with spatial parts). "
                "Use mode='stop' (block-level early stopping), which keeps the layout."
            )
        self._mode = value
        self._changed()

    @property
    def cumulative(self) -> bool:
        return self._cumulative

    @cumulative.setter
    def cumulative(self, value: bool) -> None:
        self._cumulative = _bool("cumulative", value)
        self._changed()

    @property
    def gather_order(self) -> str:
        return self._gather_order

    @gather_order.setter
    def gather_order(self, value: str) -> None:
        if value not in GATHER_ORDERS:
            raise UsageError(f"unknown gather_order {value!r}; choose one of {GATHER_ORDERS}")
        self._gather_order = value
        self._changed()

    @property
    def protect(self) -> ProtectSpec:
        """Tokens always kept (they count toward each block's keep count): a bool ``[N]`` or ``[B, N]``
        tensor for the grids with ``N`` tokens, or a callable ``(H, W) -> mask or None``; None: nothing."""
        return self._protect

    @protect.setter
    def protect(self, value: ProtectSpec) -> None:
        _check_mask_spec("protect", value)
        self._protect = value
        self._changed()

    @property
    def demote(self) -> ProtectSpec:
        """Tokens ranked after every other token (e.g. a tracker's zero padding): same forms as ``protect``."""
        return self._demote

    @demote.setter
    def demote(self, value: ProtectSpec) -> None:
        _check_mask_spec("demote", value)
        self._demote = value
        self._changed()

    @property
    def record(self) -> bool:
        return self._record

    @record.setter
    def record(self, value: bool) -> None:
        self._record = _bool("record", value)

    @property
    def seed(self) -> int:
        return self._seed

    @seed.setter
    def seed(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageTypeError(f"seed must be an int, got {value!r}")
        self._seed = value

    @property
    def check(self) -> bool:
        """False (default): checks that read device tensors on the host (finite scores, protected-token
        counts) run on the first forward of each configuration only; True: on every forward."""
        return self._check

    @check.setter
    def check(self, value: bool) -> None:
        self._check = _bool("check", value)
        self._changed()

    @property
    def enabled(self) -> bool:
        """False: every patched block runs its own forward (the dense model, exactly, without scoring or
        records); the configuration is kept for when it is switched back on."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = _bool("enabled", value)

    def configure(self, **options: Any) -> TPState:
        """Set several options at once, all or nothing: on any error the state is left as it was.

        ``keep`` is resolved last, so ``configure(keep="official", ...)`` sees the other new options.
        """
        unknown = sorted(set(options) - set(self._CONFIG))
        if unknown:
            raise UsageTypeError(f"unknown TP option(s) {unknown}; valid: {list(self._CONFIG)}")
        candidate = copy.copy(self)
        for name in sorted(options, key=lambda n: n == "keep"):
            setattr(candidate, name, options[name])
        before = self._settings()
        for name in self._CONFIG:
            attr = f"_{name}"
            setattr(self, attr, getattr(candidate, attr))
        if self._settings() != before:  # re-applying the same configuration keeps its checked status
            self._changed()
        return self

    def _settings(self) -> tuple:
        return tuple(
            id(v) if isinstance(v, torch.Tensor) else v
            for v in (getattr(self, f"_{n}") for n in self._CONFIG)
        )

    def _changed(self) -> None:
        self._version += 1

    # -- forward passes ------------------------------------------------------------------------------
    @contextmanager
    def forward_pass(self) -> Iterator[None]:
        """The scope of one forward pass; nested scopes (a block inside a model's forward) join the outer one."""
        if self._depth == 0:
            self._reset_pass()
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0 and self.checking:
                self._checked_version = self._version

    @property
    def checking(self) -> bool:
        """Whether this pass runs the host-side checks of device tensors (see :attr:`check`)."""
        return self._check or self._checked_version != self._version

    def _reset_pass(self) -> None:
        self.records: list[BlockRecord] = []
        self.alive: torch.Tensor | None = None  # [B, N] cumulative stopping
        self.alive_grid: tuple[int, int] | None = None
        self.alive_count: int | None = None  # tokens alive per sample (host-side, no sync)
        self.positions: torch.Tensor | None = None  # [B, K] drop mode
        self.generator: torch.Generator | None = None
        self._calls: dict[int, int] = {}

    def next_call(self, block: int) -> int:
        """How many times block ``block`` already ran in this pass (and count this call)."""
        n = self._calls.get(block, 0)
        self._calls[block] = n + 1
        return n

    def random_generator(self, device: torch.device) -> torch.Generator:
        """The ``random`` scorer's generator, seeded once per forward pass on ``device``."""
        if self.generator is None or self.generator.device != device:
            self.generator = torch.Generator(device=device).manual_seed(self._seed)
        return self.generator

    def protect_mask(self, grid: tuple[int, int], batch: int, device: torch.device) -> torch.Tensor | None:
        """The protected tokens of a ``grid`` as bool ``[B, H*W]`` (None: none protected)."""
        return self._mask("protect", self._protect, grid, batch, device)

    def demote_mask(self, grid: tuple[int, int], batch: int, device: torch.device) -> torch.Tensor | None:
        """The demoted tokens of a ``grid`` as bool ``[B, H*W]`` (None: none)."""
        return self._mask("demote", self._demote, grid, batch, device)

    def _mask(
        self, what: str, spec: ProtectSpec, grid: tuple[int, int], batch: int, device: torch.device
    ) -> torch.Tensor | None:
        if spec is None:
            return None
        mask = spec(grid) if callable(spec) else spec
        if mask is None:
            return None
        n = grid[0] * grid[1]
        if (
            not isinstance(mask, torch.Tensor)
            or mask.dtype != torch.bool
            or mask.shape[-1] != n
            or mask.dim() not in (1, 2)
        ):
            got = (
                f"shape {list(mask.shape)}, dtype {mask.dtype}"
                if isinstance(mask, torch.Tensor)
                else type(mask).__name__
            )
            raise UsageError(
                f"state.{what} gave {got} for a {grid[0]}x{grid[1]} grid; expected a bool mask [{n}] or "
                f"[B, {n}] (a model with several grids needs a callable (H, W) -> mask or None)"
            )
        if mask.dim() == 2 and mask.shape[0] not in (1, batch):
            raise UsageError(f"state.{what} has {mask.shape[0]} rows but the batch has {batch} samples")
        return mask.to(device).expand(batch, n)

    # -- what the last forward did -----------------------------------------------------------------------
    def last_record(self, name: str) -> BlockRecord | None:
        """The latest record of block ``name`` in the last (or current) forward pass."""
        for rec in reversed(self.records):
            if rec.name == name:
                return rec
        return None

    def kept_fraction(self) -> float | None:
        """Token-weighted share of block token slots that ran in the last forward (None before a forward)."""
        if not self.records:
            return None
        return sum(r.kept for r in self.records) / sum(r.grid[0] * r.grid[1] for r in self.records)

    def summary(self) -> str:
        lines = [
            f"TP on {len(self.block_names)} blocks: scorer={self.scorer_name} keep={self.keep} "
            f"window={self.window} mode={self.mode} cumulative={self.cumulative}"
        ]
        if not self.records:
            lines += [f"  {name}: (not run yet)" for name in self.block_names]
        for rec in self.records:
            again = f" (call {rec.call + 1})" if rec.call else ""
            lines.append(
                f"  {rec.name}{again}: {rec.kept}/{rec.grid[0] * rec.grid[1]} tokens on "
                f"{rec.grid[0]}x{rec.grid[1]}"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"TPState(blocks={len(self.block_names)}, keep={self.keep}, scorer={self.scorer_name}, "
            f"window={self.window}, mode={self.mode}, cumulative={self.cumulative})"
        )


def _check_mask_spec(name: str, value: Any) -> None:
    if (
        value is not None
        and not callable(value)
        and (not isinstance(value, torch.Tensor) or value.dtype != torch.bool or value.dim() not in (1, 2))
    ):
        raise UsageTypeError(
            f"{name} must be None, a bool tensor [N] or [B, N] or a callable (H, W) -> mask; got "
            f"{type(value).__name__}"
            + (
                f" of dtype {value.dtype} and shape {list(value.shape)}"
                if isinstance(value, torch.Tensor)
                else ""
            )
        )


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise UsageTypeError(f"{name} must be True or False, got {value!r}")
    return value
