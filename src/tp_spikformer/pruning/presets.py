"""Per-family defaults of the official TP-Spikformer code (paper.md §1.5), by family name.

The official k_values were written for the ImageNet models at 224 px: SDT-V1-8 (8 blocks, 14x14),
QKFormer-10 (1 + 2 + 7 blocks on 56x56, 28x28, 14x14) and SDT-V3 (8 blocks on 14x14). ``keep="official"``
uses them; on a model with another block count it raises and says what to pass instead.

Spikformer is not covered by the official TP code. Our default for it (``keep="official"`` on a
Spikformer) is a side-ratio schedule falling linearly from 0.9 in the first block to 0.7 in the last
(k = int(H * ratio), k*k tokens kept), the same shape of schedule as the official SDT-V3 one, with the
official SDT-V1/SDT-V3 window of 3.
"""

from __future__ import annotations

from dataclasses import dataclass

from .schedule import KeepSchedule


@dataclass(frozen=True)
class FamilyPreset:
    keep: KeepSchedule | None  # None: computed from the block count (Spikformer)
    window: int  # spatial window of the official scorer
    source: str


PRESETS: dict[str, FamilyPreset] = {
    "sdt_v1": FamilyPreset(
        KeepSchedule("side", (12, 12, 10, 10, 10, 10, 8, 8)), 3, "sdt_drop/model/sdt_drop.py k_values (8-768 @224)"
    ),
    "qkformer": FamilyPreset(
        KeepSchedule("side_ratio", (0.9, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8, 0.75, 0.75, 0.75)),
        7,
        "qk_drop/qkformer.py k_values (QKFormer-10)",
    ),
    "sdt_v3": FamilyPreset(
        KeepSchedule("side_ratio", (0.9, 0.8, 0.8, 0.8, 0.75, 0.65, 0.65, 0.65)),
        3,
        "sdtv3_drop/models_drop.py k_values (Efficient_Spiking_Transformer_l)",
    ),
    "spikformer": FamilyPreset(None, 3, "ours: side ratio falling linearly from 0.9 to 0.7 (no official TP code)"),
}


def family_preset(family: str) -> FamilyPreset:
    try:
        return PRESETS[family]
    except KeyError:
        raise ValueError(
            f"no official TP defaults for family {family!r} (known: {sorted(PRESETS)}); pass keep=... and window=..."
        ) from None


def official_keep(family: str, num_blocks: int) -> KeepSchedule:
    """The official keep schedule of ``family`` for a model with ``num_blocks`` patched blocks."""
    preset = family_preset(family)
    if preset.keep is None:
        if num_blocks == 1:
            return KeepSchedule("side_ratio", 0.9)
        step = 0.2 / (num_blocks - 1)
        return KeepSchedule("side_ratio", tuple(round(0.9 - i * step, 6) for i in range(num_blocks)))
    if len(preset.keep.values) != num_blocks:
        raise ValueError(
            f"the official {family} k_values {list(preset.keep.values)} ({preset.source}) are for "
            f"{len(preset.keep.values)} blocks; this model has {num_blocks}. Pass a schedule instead, e.g. "
            f"keep=0.6 (fraction of tokens in every block) or keep=side_ratio([...]) with {num_blocks} values"
        )
    return preset.keep
