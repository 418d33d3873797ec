"""SOP / energy reports: per-layer and per-block rows, totals, CSV / JSON / Markdown, dense-vs-pruned.

Quantities (all per image by default, ``per_sample=False`` gives totals over the run):

* ``macs``: dense multiply-accumulates of what ran (all T steps; Conv/Linear/products, see ``ops.py``).
  FLOPs = 2 x MACs. (When SNN papers write ``SOP = fr x T x FLOPs`` their "FLOPs" are these MACs per
  time step: ``macs / T``.)
* ``firing_rate``: spikes per input element per time step (each unit level of a multi-level spike is one
  spike, so it can exceed 1 for SDT-V3), i.e. averaged over the T steps, NOT summed over them;
  ``firing_rate_per_step`` lists the steps (time-major leading axis). ``nonzero_rate``: share of non-zero
  input elements. ``T`` is reported beside them, so ``sops = macs / T x T x firing_rate``.
* ``sops``: synaptic operations charged as accumulates (AC): ``MACs x firing rate`` summed over calls
  (binary input: non-zero inputs x fan-out). ``mac_ops``: operations charged as MAC (real-valued input,
  the encoding layer). ``energy_mj = (mac_ops x E_MAC + sops x E_AC) x 1e-9`` (pJ to mJ).
* ``charged_as``: ``"AC"``, ``"MAC"``, ``"excluded"`` (products with ``count_products=False``), or a mix.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import UnknownNameError, UsageError
from ..jsonio import dumps, write_json
from .conventions import EnergyConventions
from .ops import CallBucket, LayerCounts, OpCounts, OperandCounts

PJ_TO_MJ = 1e-9
_SPIKE_KINDS = ("binary", "multi-level")


@dataclass
class LayerRow:
    """One synaptic layer or attention product (see the module docstring for the quantities)."""

    name: str
    op: str
    detail: str
    group: str
    category: str
    part: str
    calls: int
    input_kind: str
    charged_as: str
    first_layer: bool
    T: int
    macs: float
    mac_ops: float
    sops: float
    energy_mj: float
    input_elements: float
    input_nonzero: float
    input_spikes: float | None
    nonzero_rate: float | None
    firing_rate: float | None
    firing_rate_per_step: list[float] | None = None
    # second operand of a product
    input2_kind: str | None = None
    firing_rate2: float | None = None
    nonzero_rate2: float | None = None


@dataclass
class GroupRow:
    """One block (or stem / downsample / head): sums of its layers' rows.

    ``firing_rate``: spikes / elements over the spike-valued (binary or multi-level) inputs of the
    group's Conv/Linear layers, per time step. ``macs_token`` / ``macs_dense``: MACs of the token-wise
    part (attention + MLP, kept tokens only) and of the dense part (e.g. SDT-V3 SepConv) of a block.
    ``tokens_kept`` / ``tokens_total``: token slots per image that ran the token-wise part / that the
    block's grid had (``kept_fraction`` = their ratio); None outside blocks.
    """

    group: str
    category: str
    layers: int
    macs: float
    macs_token: float
    macs_dense: float
    mac_ops: float
    sops: float
    energy_mj: float
    firing_rate: float | None
    neuron_updates: float
    tokens_total: float | None = None
    tokens_kept: float | None = None
    kept_fraction: float | None = None


@dataclass
class EnergyReport:
    """Per-layer rows, per-group rows and totals of one model on one set of inputs."""

    model: str
    layers: list[LayerRow]
    groups: list[GroupRow]
    totals: dict[str, Any]
    conventions: EnergyConventions
    samples: int
    forwards: int
    T: int
    per_sample: bool = True
    tp: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def group(self, name: str) -> GroupRow:
        for g in self.groups:
            if g.group == name:
                return g
        raise UnknownNameError(f"no group {name!r}; groups: {[g.group for g in self.groups]}")

    def layer(self, name: str) -> LayerRow:
        for r in self.layers:
            if r.name == name:
                return r
        raise UnknownNameError(f"no layer {name!r} ran")

    # -- serialisation -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "samples": self.samples,
            "forwards": self.forwards,
            "T": self.T,
            "per_sample": self.per_sample,
            "tp": self.tp,
            "conventions": self.conventions.to_dict(),
            "totals": self.totals,
            "groups": [asdict(g) for g in self.groups],
            "layers": [asdict(r) for r in self.layers],
            "notes": self.notes,
        }

    def to_json(self, path: str | None = None, indent: int = 2) -> str:
        """Strict JSON (NaN -> null); written to ``path`` when given."""
        if path is not None:
            write_json(path, self.to_dict(), indent)
        return dumps(self.to_dict(), indent)

    def to_csv(self, path: str | None = None, level: str = "layer") -> str:
        """CSV of the ``"layer"`` rows or the ``"block"`` (group) rows, plus a ``total`` row for blocks."""
        if level == "layer":
            rows = [asdict(r) for r in self.layers]
            for r in rows:
                if r["firing_rate_per_step"] is not None:
                    r["firing_rate_per_step"] = ";".join(f"{v:.6g}" for v in r["firing_rate_per_step"])
        elif level in ("block", "group"):
            rows = [asdict(g) for g in self.groups]
            total = dict.fromkeys(rows[0]) if rows else {}
            total.update(
                group="total",
                category="total",
                **{
                    k: self.totals[k]
                    for k in ("macs", "mac_ops", "sops", "energy_mj", "firing_rate", "neuron_updates")
                },
            )
            rows.append(total)
        else:
            raise UsageError(f"level must be 'layer' or 'block', got {level!r}")
        text = _csv(rows)
        if path is not None:
            with open(path, "w", newline="") as f:
                f.write(text)
        return text

    def to_markdown(self, level: str = "block") -> str:
        """A Markdown table of the ``"block"`` rows (with totals), the ``"layer"`` rows, or ``"both"``."""
        unit = "per image" if self.per_sample else f"over {self.samples} images"
        head = (
            f"**{self.model}**: {self.samples} images, T={self.T}, {unit}; "
            f"E_MAC={self.conventions.e_mac_pj} pJ, E_AC={self.conventions.e_ac_pj} pJ ({self.conventions.name})"
        )
        if self.tp:
            head += f"; TP {self.tp}"
        parts = [head, ""]
        if level in ("block", "both"):
            rows = [
                [
                    g.group,
                    _si(g.macs),
                    _si(g.sops),
                    _si(g.mac_ops),
                    _rate(g.firing_rate),
                    _mj(g.energy_mj),
                    _rate(g.kept_fraction),
                ]
                for g in self.groups
            ]
            t = self.totals
            rows.append(
                [
                    "**total**",
                    _si(t["macs"]),
                    _si(t["sops"]),
                    _si(t["mac_ops"]),
                    _rate(t["firing_rate"]),
                    _mj(t["energy_mj"]),
                    "",
                ]
            )
            parts.append(_md(["group", "MACs", "SOPs (AC)", "MAC ops", "fr/step", "energy mJ", "kept"], rows))
        if level in ("layer", "both"):
            if level == "both":
                parts.append("")
            rows = [
                [
                    r.name,
                    r.op,
                    r.input_kind,
                    r.charged_as,
                    _si(r.macs),
                    _rate(r.firing_rate),
                    _si(r.sops),
                    _si(r.mac_ops),
                    _mj(r.energy_mj),
                ]
                for r in self.layers
            ]
            parts.append(
                _md(
                    ["layer", "op", "input", "charged", "MACs", "fr/step", "SOPs", "MAC ops", "energy mJ"],
                    rows,
                )
            )
        if level not in ("block", "layer", "both"):
            raise UsageError(f"level must be 'block', 'layer' or 'both', got {level!r}")
        return "\n".join(parts)

    def __str__(self) -> str:
        return self.to_markdown("block")


# -- charging ----------------------------------------------------------------------------------------


def _mode(kind: str, conv: EnergyConventions) -> str:
    if kind == "binary":
        return "per_event"
    if kind == "multi-level":
        return conv.multi_level
    if kind == "integer":
        return conv.integer_inputs
    return "mac"


def _events(kind: str, oc: OperandCounts, conv: EnergyConventions) -> float | None:
    """ACs triggered by an operand under the conventions; None when it is charged as MAC."""
    mode = _mode(kind, conv)
    if mode == "mac":
        return None
    return oc.ops_levels if mode == "per_level" else oc.ops_nonzero


def charge(layer: LayerCounts, bucket: CallBucket, conv: EnergyConventions) -> tuple[float, float, str]:
    """``(mac_ops, ac_ops, label)`` of one call bucket under ``conv`` (rules: ``conventions.py``)."""
    if layer.is_product:
        if not conv.count_products:
            return 0.0, 0.0, "excluded"
        (ka, kb), (oa, ob) = bucket.kinds, bucket.operands
        ea, eb = _events(ka, oa, conv), _events(kb, ob, conv)
        if ea is not None and eb is not None:
            if conv.product_rule == "first":
                return 0.0, ea, "AC"
            per_event = "per_event" in (_mode(k, conv) for k in (ka, kb) if k != "binary")
            return 0.0, bucket.joint_nonzero if per_event else bucket.joint_levels, "AC"
        if (ea is not None or eb is not None) and conv.mixed_products == "ac":
            return 0.0, ea if ea is not None else eb, "AC"
        return float(bucket.macs), 0.0, "MAC"
    kind, oc = bucket.kinds[0], bucket.operands[0]
    if bucket.first:
        if conv.first_layer == "mac" or (conv.first_layer == "auto" and kind == "real"):
            macs = float(bucket.macs)
            if bucket.repeated and conv.first_layer_repeats == "once":
                macs /= bucket.steps
            return macs, 0.0, "MAC"
        return 0.0, (oc.ops_nonzero if kind in ("binary", "real") else oc.ops_levels), "AC"
    ev = _events(kind, oc, conv)
    if ev is None:
        return float(bucket.macs), 0.0, "MAC"
    return 0.0, ev, "AC"


def _operand_summary(buckets: list[CallBucket], i: int) -> dict[str, Any]:
    kinds = sorted(
        {b.kinds[i] for b in buckets}, key=lambda k: ("binary", "multi-level", "integer", "real").index(k)
    )
    n = sum(b.operands[i].elements for b in buckets)
    nnz = sum(b.operands[i].nonzero for b in buckets)
    spiking = [b for b in buckets if b.kinds[i] in (*_SPIKE_KINDS, "integer")]
    sn = sum(b.operands[i].elements for b in spiking)
    lv = sum(b.operands[i].levels for b in spiking)
    per_step = None
    steps = [b.operands[i] for b in spiking]
    if (
        steps
        and all(o.step_elements is not None for o in steps)
        and len({len(o.step_elements) for o in steps}) == 1
    ):
        T = len(steps[0].step_elements)
        el = [sum(o.step_elements[t] for o in steps) for t in range(T)]
        sl = [sum(o.step_levels[t] for o in steps) for t in range(T)]
        per_step = [s / e if e else 0.0 for s, e in zip(sl, el)]
    return dict(
        kind="/".join(kinds),
        elements=n,
        nonzero=nnz,
        spikes=lv if spiking else None,
        nonzero_rate=nnz / n if n else None,
        firing_rate=lv / sn if sn else None,
        per_step=per_step,
    )


def build_report(
    counts: OpCounts, conventions: EnergyConventions | None = None, per_sample: bool = True
) -> EnergyReport:
    """Charge raw :class:`OpCounts` under ``conventions`` (see :class:`EnergyConventions`)."""
    conv = conventions or EnergyConventions()
    div = counts.samples if per_sample and counts.samples else 1
    e_mac, e_ac = conv.e_mac_pj * PJ_TO_MJ, conv.e_ac_pj * PJ_TO_MJ
    rows: list[LayerRow] = []
    for layer in sorted(counts.layers.values(), key=lambda layer: layer.order):
        buckets = list(layer.buckets.values())
        mac_ops = ac_ops = 0.0
        labels = []
        for b in buckets:
            m, a, label = charge(layer, b, conv)
            mac_ops, ac_ops = mac_ops + m, ac_ops + a
            if label not in labels:
                labels.append(label)
        s0 = _operand_summary(buckets, 0)
        s1 = _operand_summary(buckets, 1) if layer.is_product else None
        rows.append(
            LayerRow(
                name=layer.name,
                op=layer.op,
                detail=layer.detail,
                group=layer.group,
                category=layer.category or "other",
                part=layer.part,
                calls=layer.calls,
                input_kind=s0["kind"],
                charged_as="+".join(labels),
                first_layer=any(b.first for b in buckets),
                T=counts.T,
                macs=layer.macs / div,
                mac_ops=mac_ops / div,
                sops=ac_ops / div,
                energy_mj=(mac_ops * e_mac + ac_ops * e_ac) / div,
                input_elements=s0["elements"] / div,
                input_nonzero=s0["nonzero"] / div,
                input_spikes=None if s0["spikes"] is None else s0["spikes"] / div,
                nonzero_rate=s0["nonzero_rate"],
                firing_rate=s0["firing_rate"],
                firing_rate_per_step=s0["per_step"],
                input2_kind=s1["kind"] if s1 else None,
                firing_rate2=s1["firing_rate"] if s1 else None,
                nonzero_rate2=s1["nonzero_rate"] if s1 else None,
            )
        )

    groups: list[GroupRow] = []
    layer_by_name = {layer.name: layer for layer in counts.layers.values()}
    names = [g.name for g in sorted(counts.groups.values(), key=lambda g: g.order)]
    names += [r.group for r in rows if r.group not in names and r.group not in counts.groups]
    for name in dict.fromkeys(names):
        members = [r for r in rows if r.group == name]
        gc = counts.groups.get(name)
        if not members and (gc is None or not gc.neuron_updates):
            continue
        spikes = elements = 0.0
        for r in members:
            for b in layer_by_name[r.name].buckets.values():
                if not layer_by_name[r.name].is_product and b.kinds[0] in _SPIKE_KINDS:
                    spikes += b.operands[0].levels
                    elements += b.operands[0].elements
        is_block = gc is not None and gc.category == "block"
        tokens_total = gc.tokens_total / div if is_block else None
        tokens_kept = gc.tokens_kept / div if is_block else None
        groups.append(
            GroupRow(
                group=name,
                category=gc.category if gc else (members[0].category if members else "other"),
                layers=len(members),
                macs=sum(r.macs for r in members),
                macs_token=sum(r.macs for r in members if r.part == "token") + 0.0,
                macs_dense=sum(r.macs for r in members if r.part == "dense") + 0.0,
                mac_ops=sum(r.mac_ops for r in members),
                sops=sum(r.sops for r in members),
                energy_mj=sum(r.energy_mj for r in members),
                firing_rate=spikes / elements if elements else None,
                neuron_updates=(gc.neuron_updates if gc else 0) / div,
                tokens_total=tokens_total,
                tokens_kept=tokens_kept,
                kept_fraction=(tokens_kept / tokens_total) if is_block and tokens_total else None,
            )
        )

    spikes = elements = 0.0
    for layer in counts.layers.values():
        if layer.is_product:
            continue
        for b in layer.buckets.values():
            if b.kinds[0] in _SPIKE_KINDS:
                spikes += b.operands[0].levels
                elements += b.operands[0].elements
    macs = sum(r.macs for r in rows)
    mac_ops = sum(r.mac_ops for r in rows)
    sops = sum(r.sops for r in rows)
    totals = {
        "macs": macs,
        "flops": 2 * macs,
        "macs_layers": sum(r.macs for r in rows if r.op not in ("mul", "matmul")),
        "macs_products": sum(r.macs for r in rows if r.op in ("mul", "matmul")),
        "mac_ops": mac_ops,
        "sops": sops,
        "energy_mj": sum(r.energy_mj for r in rows),
        "energy_mac_mj": mac_ops * e_mac,
        "energy_ac_mj": sops * e_ac,
        "firing_rate": spikes / elements if elements else None,
        "neuron_updates": sum(g.neuron_updates for g in groups),
        "block_macs": sum(g.macs for g in groups if g.category == "block"),
        "block_sops": sum(g.sops for g in groups if g.category == "block"),
        "kept_fraction": _kept_fraction(groups),
    }
    notes = [
        "BatchNorm is folded into the preceding layer; neuron updates, residual adds, pooling, scales and "
        "the TP scorer are not charged.",
        "firing_rate is per time step (spikes / elements, multi-level spikes counted per unit level); "
        "sops = macs / T x T x firing_rate.",
    ]
    return EnergyReport(
        model=counts.model_name,
        layers=rows,
        groups=groups,
        totals=totals,
        conventions=conv,
        samples=counts.samples,
        forwards=counts.forwards,
        T=counts.T,
        per_sample=per_sample,
        tp=counts.tp,
        notes=notes,
    )


def _kept_fraction(groups: list[GroupRow]) -> float | None:
    blocks = [g for g in groups if g.category == "block" and g.tokens_total]
    if not blocks:
        return None
    return sum(g.tokens_kept for g in blocks) / sum(g.tokens_total for g in blocks)


# -- comparison --------------------------------------------------------------------------------------

_COMPARE_METRICS = ("macs", "sops", "mac_ops", "energy_mj", "firing_rate", "kept_fraction")


@dataclass
class ReportComparison:
    """Two reports of the same inputs side by side: per group and total, each metric for both and the
    ratio ``second / first`` (None where the first is 0 or missing)."""

    names: tuple[str, str]
    rows: list[dict[str, Any]]
    first: EnergyReport
    second: EnergyReport

    def row(self, group: str) -> dict[str, Any]:
        for r in self.rows:
            if r["group"] == group:
                return r
        raise UnknownNameError(f"no group {group!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "rows": self.rows,
            "reports": {self.names[0]: self.first.to_dict(), self.names[1]: self.second.to_dict()},
        }

    def to_json(self, path: str | None = None, indent: int = 2) -> str:
        """Strict JSON (NaN -> null); written to ``path`` when given."""
        if path is not None:
            write_json(path, self.to_dict(), indent)
        return dumps(self.to_dict(), indent)

    def to_csv(self, path: str | None = None) -> str:
        text = _csv(self.rows)
        if path is not None:
            with open(path, "w", newline="") as f:
                f.write(text)
        return text

    def to_markdown(self) -> str:
        a, b = self.names
        header = [
            "group",
            f"MACs {a}",
            f"MACs {b}",
            "ratio",
            f"SOPs {a}",
            f"SOPs {b}",
            "ratio",
            f"mJ {a}",
            f"mJ {b}",
            "ratio",
            f"kept {b}",
        ]
        rows = []
        for r in self.rows:
            name = f"**{r['group']}**" if r["group"] == "total" else r["group"]
            rows.append(
                [
                    name,
                    _si(r[f"macs_{a}"]),
                    _si(r[f"macs_{b}"]),
                    _ratio(r["macs_ratio"]),
                    _si(r[f"sops_{a}"]),
                    _si(r[f"sops_{b}"]),
                    _ratio(r["sops_ratio"]),
                    _mj(r[f"energy_mj_{a}"]),
                    _mj(r[f"energy_mj_{b}"]),
                    _ratio(r["energy_mj_ratio"]),
                    _rate(r[f"kept_fraction_{b}"]),
                ]
            )
        unit = "per image" if self.first.per_sample else "total"
        title = f"{self.first.model}: {a} vs {b}, {self.first.samples} images, T={self.first.T}, {unit}"
        return title + "\n\n" + _md(header, rows)

    def __str__(self) -> str:
        return self.to_markdown()


def compare_reports(
    first: EnergyReport, second: EnergyReport, names: tuple[str, str] = ("dense", "pruned")
) -> ReportComparison:
    """Side-by-side rows (per group + total) of two reports, with ratios ``second / first``."""
    if first.samples != second.samples:
        raise UsageError(f"the reports cover different inputs ({first.samples} vs {second.samples} images)")
    a, b = names
    order = [g.group for g in first.groups] + [
        g.group for g in second.groups if g.group not in {x.group for x in first.groups}
    ]
    ga = {g.group: asdict(g) for g in first.groups}
    gb = {g.group: asdict(g) for g in second.groups}
    rows = []
    for name in [*order, "total"]:
        ra = first.totals if name == "total" else ga.get(name, {})
        rb = second.totals if name == "total" else gb.get(name, {})
        row: dict[str, Any] = {
            "group": name,
            "category": "total" if name == "total" else (ra or rb).get("category"),
        }
        for m in _COMPARE_METRICS:
            va, vb = ra.get(m), rb.get(m)
            row[f"{m}_{a}"], row[f"{m}_{b}"] = va, vb
            row[f"{m}_ratio"] = (vb / va) if (va and vb is not None) else None
        rows.append(row)
    return ReportComparison(names=(a, b), rows=rows, first=first, second=second)


# -- formatting helpers ------------------------------------------------------------------------------


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: "" if v is None else v for k, v in r.items()})
    return buf.getvalue()


def _md(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _si(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.4g}{suffix}"
    return f"{v:.4g}"


def _mj(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def _rate(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def _ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"
