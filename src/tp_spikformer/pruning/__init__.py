"""TP-Spikformer token pruning: scorers, keep schedules and the block-level early-stopping patch."""

from .patch import apply_tp, default_scorer, get_tp_state, is_patched, remove_tp, run_parts
from .schedule import KeepSchedule, count, fraction, parse_keep, prune_ratio, side, side_ratio
from .schedule_file import load_schedule, read_schedule_file, save_schedule
from .scorers import ScoreContext, describe_scorers, get_scorer, register_scorer, scorer_names
from .select import gather_tokens, scatter_tokens, top_tokens
from .state import BlockRecord, TPState

__all__ = [
    "BlockRecord",
    "KeepSchedule",
    "ScoreContext",
    "TPState",
    "apply_tp",
    "count",
    "default_scorer",
    "describe_scorers",
    "fraction",
    "gather_tokens",
    "get_scorer",
    "get_tp_state",
    "is_patched",
    "load_schedule",
    "parse_keep",
    "prune_ratio",
    "read_schedule_file",
    "register_scorer",
    "remove_tp",
    "run_parts",
    "save_schedule",
    "scatter_tokens",
    "scorer_names",
    "side",
    "side_ratio",
    "top_tokens",
]
