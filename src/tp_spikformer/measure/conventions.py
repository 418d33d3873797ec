"""Energy conventions: the costs per operation and the rules that decide what is charged as MAC or AC.

Every choice that spiking-transformer papers make implicitly is a field of :class:`EnergyConventions`, so
a report states exactly how its numbers were computed (the conventions are written into every report).

Defaults (Spikformer / Spike-driven Transformer / QKFormer, Horowitz 2014 at 45 nm):

* ``E_MAC = 4.6 pJ`` (32-bit float multiply 3.7 pJ + add 0.9 pJ), ``E_AC = 0.9 pJ`` (32-bit float add).
* A synaptic layer (Conv1d/2d/3d, Linear) whose input is binary spikes is charged ``E_AC`` per synaptic
  operation, ``SOPs = MACs x (non-zero inputs / inputs)`` (see ``ops.py``). A layer whose input is
  real-valued (not spikes) is charged ``E_MAC`` per dense MAC.
* The first synaptic layer of a forward (the encoder reading the image) is charged MAC when its input is
  real-valued, AC per event count when the input is binary or integer counts (event frames)
  (``first_layer="auto"``); a static image repeated over T is charged once (``first_layer_repeats``).
* SDT-V3 multi-level spikes (``MultiSpike`` outputs ``k / 4``, or integers ``0..4`` at the head): each
  unit level is one spike (``multi_level="per_level"``), so a value ``k / 4`` triggers ``k`` ACs.
* Integer-valued inputs that no ``MultiSpike`` produced (e.g. QKFormer's SEW residual sums of spikes)
  are non-binary and charged MAC (``integer_inputs="mac"``), as QKFormer issue #5 argues.
* Attention products (``SpikeProduct``) are counted (``count_products``); a product of two spike
  tensors is charged AC per non-zero element of its first operand times its fan-out
  (``product_rule="first"``), a product with a real-valued operand MAC (``mixed_products="mac"``).

BatchNorm is folded into the preceding layer (costs nothing), as in the papers; neuron updates (LIF,
MultiSpike), residual additions, pooling, the attention scale, and the TP scorer's own arithmetic are not
charged (neuron updates are reported as counts).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from ..errors import UnknownNameError, UsageError

_CHOICES = {
    "first_layer": ("auto", "mac", "ac"),
    "first_layer_repeats": ("once", "per_step"),
    "multi_level": ("per_level", "per_event", "mac"),
    "integer_inputs": ("mac", "per_level", "per_event"),
    "product_rule": ("first", "both"),
    "mixed_products": ("mac", "ac"),
}


@dataclass(frozen=True)
class EnergyConventions:
    """How operations are charged. All fields have the papers' defaults (module docstring).

    Attributes:
        e_mac_pj: energy of one multiply-accumulate, pJ.
        e_ac_pj: energy of one accumulate (one synaptic operation), pJ.
        first_layer: the first synaptic layer called in a forward: ``"auto"`` (MAC if its input is
            real-valued, AC per event count if binary or non-negative integers), ``"mac"`` (always MAC),
            ``"ac"`` (always AC: one event per unit of a non-negative integer input, else per non-zero).
        first_layer_repeats: when the first layer is charged MAC and its input is the same at every time
            step (a static image repeated T times): ``"once"`` charges one step (``E_MAC x FLOPs`` per image,
            as the papers write it); ``"per_step"`` charges all T steps that ran.
        multi_level: ``MultiSpike`` (multi-level integer spike) inputs: ``"per_level"`` (each unit level is
            one spike: a value ``k / norm`` is ``k`` ACs), ``"per_event"`` (one AC per non-zero input),
            ``"mac"`` (charged as real-valued input).
        integer_inputs: non-negative integer inputs that are not binary and not ``MultiSpike`` outputs
            (sums of spikes from SEW-style residuals): ``"mac"`` (non-binary input charged MAC),
            ``"per_level"`` or ``"per_event"`` (as for ``multi_level``).
        count_products: charge the attention products (``SpikeProduct``); ``False`` excludes them (their
            MACs are still listed, charged as ``"excluded"``).
        product_rule: a product of two spike tensors: ``"first"`` charges one AC for every operation whose
            FIRST operand element is non-zero (``MACs x firing rate of the first operand``; the second
            operand plays the weights' role), ``"both"`` only operations where BOTH operands are non-zero
            (the exact count of non-trivial accumulations; with multi-level spikes, levels multiply).
        mixed_products: a product of a spike tensor and a real-valued tensor: ``"mac"`` (non-binary operand
            charged MAC), ``"ac"`` (one AC per operation on a non-zero spike of the spike operand).
        name: label of the cost preset.
    """

    e_mac_pj: float = 4.6
    e_ac_pj: float = 0.9
    first_layer: str = "auto"
    first_layer_repeats: str = "once"
    multi_level: str = "per_level"
    integer_inputs: str = "mac"
    count_products: bool = True
    product_rule: str = "first"
    mixed_products: str = "mac"
    name: str = "45nm_fp32"

    def __post_init__(self):
        for field_name, choices in _CHOICES.items():
            value = getattr(self, field_name)
            if value not in choices:
                raise UsageError(f"EnergyConventions.{field_name} must be one of {choices}, got {value!r}")
        if not (self.e_mac_pj >= 0 and self.e_ac_pj >= 0):
            raise UsageError(
                f"energies must be non-negative, got e_mac_pj={self.e_mac_pj}, e_ac_pj={self.e_ac_pj}"
            )

    def with_(self, **changes: Any) -> EnergyConventions:
        """A copy with some fields changed (``conv.with_(count_products=False)``)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014, 45 nm, 0.9 V:
# add / multiply: fp32 0.9 / 3.7 pJ, fp16 0.4 / 1.1 pJ, int32 0.1 / 3.1 pJ, int8 0.03 / 0.2 pJ.
# MAC = multiply + add, AC = add. The fp32 pair is the spiking-transformer papers' 4.6 / 0.9 pJ; the fp16
# and int8 pairs equal spikingjelly 2.0's ``op_counter`` presets ``fp16()`` and ``int8()``.
ENERGY_PRESETS: dict[str, tuple[float, float, str]] = {
    "45nm_fp32": (4.6, 0.9, "Horowitz ISSCC 2014, 45 nm: fp32 mult 3.7 + add 0.9 pJ (papers' default)"),
    "45nm_fp16": (1.5, 0.4, "Horowitz ISSCC 2014, 45 nm: fp16 mult 1.1 + add 0.4 pJ"),
    "45nm_int32": (3.2, 0.1, "Horowitz ISSCC 2014, 45 nm: int32 mult 3.1 + add 0.1 pJ"),
    "45nm_int8": (0.23, 0.03, "Horowitz ISSCC 2014, 45 nm: int8 mult 0.2 + add 0.03 pJ"),
}


def energy_preset(name: str = "45nm_fp32", **changes: Any) -> EnergyConventions:
    """Conventions with the costs of a named preset (``ENERGY_PRESETS``) and optional field changes."""
    try:
        e_mac, e_ac, _ = ENERGY_PRESETS[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown energy preset {name!r}; choose one of {sorted(ENERGY_PRESETS)}"
        ) from None
    return EnergyConventions(e_mac_pj=e_mac, e_ac_pj=e_ac, name=name).with_(**changes)
