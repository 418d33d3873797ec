"""The Python API behind the command line: dense vs pruned side by side, sweeps, benchmarks, visualisations.

    import tp_spikformer as tp
    model = tp.create_model("sdt_fmnist", pretrained=True)
    print(tp.compare(model, tp.load_dataset("shipped", data_cfg=model), keep=0.5, scorer="official"))

Every function leaves the model it is given unchanged: it patches ONE copy of it and switches that copy's
TP state per variant (``measure.make_variants``). Variants are labelled ``dense`` and ``<scorer>@<keep>``.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .errors import UsageError
from .evaluate import check_labels, evaluate
from .jsonio import dumps, write_json
from .measure import EnergyConventions, benchmark, compare_reports, measure_energy
from .measure.variants import Variant, make_variants, scorer_name
from .pruning import get_tp_state
from .pruning.schedule import parse_keep
from .tasks.protocol import TaskSpec, get_task

MEASURE_FIELDS = [
    "kept_fraction",
    "macs_per_image",
    "sops_per_image",
    "energy_mj_per_image",
    "energy_ratio",
    "backbone_sops_per_image",
    "backbone_energy_mj_per_image",
    "img_per_s",
    "speedup",
    "backbone_img_per_s",
    "backbone_speedup",
    "latency_ms_bs1",
    "peak_memory_mb",
]


def _progress(iterable: Iterable, desc: str, total: int | None, enabled: bool):
    if not enabled:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:  # a plain fallback: one line per item on stderr

        def plain():
            for i, item in enumerate(iterable):
                print(f"{desc}: {i + 1}/{total if total is not None else '?'}", file=sys.stderr, flush=True)
                yield item

        return plain()
    return tqdm(iterable, desc=desc, total=total, file=sys.stderr, leave=False)


def dataset_batches(dataset: Any, batch_size: int, max_batches: int | None = None) -> list[torch.Tensor]:
    """The first ``max_batches`` input batches of ``dataset`` (no labels), for energy counting."""
    if hasattr(dataset, "get_batch"):  # in-memory sets: batched preprocessing
        n = len(dataset)
        starts = range(0, n, batch_size)
        if max_batches is not None:
            starts = list(starts)[:max_batches]
        return [dataset.get_batch(torch.arange(s, min(n, s + batch_size))) for s in starts]
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    out = []
    for x, _ in loader:
        out.append(x)
        if max_batches is not None and len(out) >= max_batches:
            break
    return out


def _classification_evaluate(model, dataset, *, batch_size, device, limit, out_dir=None) -> dict[str, Any]:
    acc = evaluate(model, dataset, batch_size=batch_size, device=device, limit=limit)
    return {"top1": acc["top1"], "top5": acc.get("top5"), "n": acc["n"]}


def _classification_inputs(model, dataset, batch_size: int, n_batches: int | None) -> list[torch.Tensor]:
    return dataset_batches(dataset, batch_size, n_batches)


CLASSIFICATION = TaskSpec(
    "classification",
    _classification_evaluate,
    (("top1", "top-1 %"), ("top5", "top-5 %")),
    _classification_inputs,
    backbone=lambda model: None,
)


def task_spec(task: str | TaskSpec) -> TaskSpec:
    """A :class:`TaskSpec` by name (``classification``, ``segmentation``, ``detection``, ``tracking``)."""
    if isinstance(task, TaskSpec):
        return task
    return CLASSIFICATION if task == "classification" else get_task(task)


@dataclass
class Comparison:
    """Rows (one per variant: dense first) of the task's metrics, SOPs/energy, throughput and memory."""

    rows: list[dict[str, Any]]
    model: str
    dataset: str
    config: dict[str, Any] = field(default_factory=dict)
    energy_blocks: list[dict[str, Any]] = field(default_factory=list)  # per-block dense vs pruned (compare)
    benchmark: dict[str, Any] | None = None
    metrics: list[tuple[str, str]] = field(default_factory=lambda: list(CLASSIFICATION.metrics))
    task: str = "classification"

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "dataset": self.dataset,
            "task": self.task,
            "config": self.config,
            "rows": self.rows,
            "energy_blocks": self.energy_blocks,
            "benchmark": self.benchmark,
        }

    def to_json(self, path: str | None = None) -> str:
        """Strict JSON (NaN -> null); written to ``path`` when given."""
        if path:
            write_json(path, self.to_dict())
        return dumps(self.to_dict())

    @property
    def fields(self) -> list[str]:
        return ["variant", "scorer", "keep", *(k for k, _ in self.metrics), "n", *MEASURE_FIELDS]

    def to_csv(self, path: str | None = None) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.fields, extrasaction="ignore")
        writer.writeheader()
        for r in self.rows:
            writer.writerow(r)
        if path:
            with open(path, "w", newline="") as f:
                f.write(buf.getvalue())
        return buf.getvalue()

    def to_markdown(self) -> str:
        backbone = any(r.get("backbone_img_per_s") is not None for r in self.rows)
        head = [
            "variant",
            "scorer",
            "keep",
            *(h for _, h in self.metrics),
            "kept",
            "MACs/img",
            "SOPs/img",
            "mJ/img",
            "img/s",
            "speedup",
            *(["backbone img/s", "backbone speedup"] if backbone else []),
            "ms @bs1",
            "peak MB",
        ]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            cells = [
                r["variant"],
                r.get("scorer") or "-",
                r.get("keep") or "-",
                *(_f(r.get(k), 2) for k, _ in self.metrics),
                _f(r.get("kept_fraction"), 3),
                _si(r.get("macs_per_image")),
                _si(r.get("sops_per_image")),
                _f(r.get("energy_mj_per_image"), 4, sci=True),
                _f(r.get("img_per_s"), 1),
                _f(r.get("speedup"), 2),
                *([_f(r.get("backbone_img_per_s"), 1), _f(r.get("backbone_speedup"), 2)] if backbone else []),
                _f(r.get("latency_ms_bs1"), 1),
                _f(r.get("peak_memory_mb"), 1),
            ]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        return "\n".join(lines)

    def __str__(self) -> str:
        return f"{self.model} on {self.dataset}\n{self.to_markdown()}"


def _f(v: Any, digits: int, sci: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:.{digits}e}" if sci else f"{v:.{digits}f}"


def _si(v: Any) -> str:
    if v is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{unit}"
    return f"{v:.3g}"


def evaluate_variants(
    model: nn.Module,
    dataset: Any,
    variants: Sequence[tuple[str | None, Any, Any]],
    *,
    task: str | TaskSpec = "classification",
    batch_size: int = 64,
    limit: int | None = None,
    energy_batches: int | None = 2,
    conventions: EnergyConventions | None = None,
    speed: bool = True,
    speed_batch_size: int = 32,
    speed_repeats: int = 5,
    device: str | torch.device | None = None,
    progress: bool = False,
    tp_kwargs: dict[str, Any] | None = None,
    dataset_name: str = "",
    out_dir: str | None = None,
) -> Comparison:
    """Evaluate variants ``(label, keep, scorer)`` of ``model`` (``keep=None``: dense; ``label=None``: the
    default ``<scorer>@<keep>``) on ``dataset`` for ``task`` (a name or a :class:`TaskSpec`).

    Per variant: the task's metrics on the (first ``limit``) samples (per-variant files under
    ``out_dir/<label>/`` where the task writes any); MACs, SOPs and energy per image counted over the first
    ``energy_batches`` input batches (only what ran), of the whole model and of its backbone; throughput at
    ``speed_batch_size`` and latency at batch 1 from ONE interleaved benchmark of all variants (ratios vs
    the first), with peak memory, for the whole model and for the backbone alone. All variants share one
    patched copy of ``model``.
    """
    spec = task_spec(task)
    for name, value in (
        ("batch_size", batch_size),
        ("speed_batch_size", speed_batch_size),
        ("speed_repeats", speed_repeats),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"{name} must be an integer >= 1, got {value!r}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if spec is CLASSIFICATION:
        check_labels(dataset, getattr(model, "num_classes", None))
    built = make_variants(
        model, [(k, s) for _, k, s in variants], labels=[n for n, _, _ in variants], **(tp_kwargs or {})
    )
    shared = built[0].model.to(device)
    inputs = None
    if energy_batches or (speed and not spec.timed_by_evaluate):
        inputs = spec.sample_inputs(shared, dataset, batch_size, energy_batches or 1)
    rows, reports = [], {}
    for v in _progress(built, "variants", len(built), progress):
        m = v.activate()
        where = os.path.join(out_dir, v.label) if out_dir else None
        row = {
            "variant": v.label,
            "scorer": None if v.keep is None else scorer_name(v.scorer),
            "keep": None if v.keep is None else str(get_tp_state(m).keep),
            **spec.evaluate(m, dataset, batch_size=batch_size, device=device, limit=limit, out_dir=where),
        }
        if energy_batches:
            reports[v.label] = _energy_row(row, m, spec.backbone(m), inputs, conventions)
        rows.append(row)
    if reports:
        base = rows[0].get("energy_mj_per_image")
        for r in rows:
            r["energy_ratio"] = r["energy_mj_per_image"] / base if base else None
    bench = None
    if speed and not spec.timed_by_evaluate:
        bench = _benchmark_rows(built, rows, spec, inputs[0], speed_batch_size, speed_repeats, device)
    names = list(reports)
    blocks = (
        compare_reports(reports[names[0]], reports[names[1]], (names[0], names[1])).rows
        if len(names) >= 2
        else []
    )
    cfg = getattr(model, "config", None)
    return Comparison(
        rows=rows,
        model=getattr(cfg, "name", type(model).__name__),
        dataset=dataset_name,
        config={
            "task": spec.name,
            "variants": [
                (v.label, _keep_label(v.keep), None if v.keep is None else scorer_name(v.scorer))
                for v in built
            ],
            "batch_size": batch_size,
            "limit": limit,
            "energy_batches": energy_batches,
            "speed_batch_size": speed_batch_size,
            "speed_repeats": speed_repeats,
            "device": str(device),
            "conventions": (conventions or EnergyConventions()).__dict__,
            "tp": tp_kwargs or {},
        },
        energy_blocks=blocks,
        benchmark=bench,
        metrics=list(spec.metrics),
        task=spec.name,
    )


def _energy_row(row: dict[str, Any], model: nn.Module, backbone: nn.Module | None, inputs, conventions):
    """MACs / SOPs / energy per image of the whole model (and of the backbone) into ``row``."""
    rep = measure_energy(model, inputs, conventions)
    row.update(
        macs_per_image=rep.totals["macs"],
        sops_per_image=rep.totals["sops"],
        energy_mj_per_image=rep.totals["energy_mj"],
        kept_fraction=rep.totals.get("kept_fraction"),
    )
    if backbone is not None:
        part = measure_energy(backbone, inputs, conventions)
        row.update(
            backbone_sops_per_image=part.totals["sops"], backbone_energy_mj_per_image=part.totals["energy_mj"]
        )
    return rep


class _BackboneOf(nn.Module):
    """Times a variant's backbone alone: switch the shared model to the variant, run its backbone."""

    def __init__(self, variant: Variant, backbone: nn.Module):
        super().__init__()
        self.variant, self.part = variant, backbone

    def forward(self, x: torch.Tensor):
        self.variant.activate()
        return self.part(x)


def _benchmark_rows(
    built, rows, spec: TaskSpec, sample: torch.Tensor, speed_batch_size: int, repeats: int, device
) -> dict[str, Any]:
    """Interleaved benchmarks of all variants (and of their backbone); throughput, speedup, latency and
    memory into ``rows``."""
    sizes = sorted({1, int(speed_batch_size)})

    def make_input(bs: int) -> torch.Tensor:
        reps = -(-bs // sample.shape[0])
        return sample.repeat(reps, *([1] * (sample.dim() - 1)))[:bs]

    bench = benchmark(
        {v.label: v for v in built},
        batch_sizes=sizes,
        warmup=2,
        repeats=repeats,
        device=device,
        make_input=make_input,
    )
    for r in rows:
        big = bench.get(r["variant"], sizes[-1])
        mem = big.get("peak_memory_bytes")
        r.update(
            img_per_s=big["throughput_per_s"],
            speedup=big["speedup"],
            latency_ms_bs1=bench.get(r["variant"], 1)["latency_ms"]["median"],
            peak_memory_mb=mem / 2**20 if mem is not None else None,
        )
    out = {"model": bench.to_dict()}
    part = spec.backbone(built[0].model)
    if part is not None:
        bb = benchmark(
            {v.label: _BackboneOf(v, part) for v in built},
            batch_sizes=[sizes[-1]],
            warmup=2,
            repeats=repeats,
            device=device,
            make_input=make_input,
            memory=False,
        )
        for r in rows:
            got = bb.get(r["variant"], sizes[-1])
            r.update(backbone_img_per_s=got["throughput_per_s"], backbone_speedup=got["speedup"])
        out["backbone"] = bb.to_dict()
    return out


def _keep_label(keep: Any) -> str | None:
    """A user's keep spec as text: None (dense), "official", or the parsed schedule ("fraction:0.5")."""
    if keep is None:
        return None
    parsed = parse_keep(keep)
    return parsed if isinstance(parsed, str) else str(parsed)


def compare(
    model: nn.Module,
    dataset: Any,
    keep: Any = "official",
    scorer: str | Callable | None = None,
    **kwargs: Any,
) -> Comparison:
    """Dense vs TP-pruned ``model`` on ``dataset``: accuracy, SOPs/energy, throughput and memory side by side.

    ``scorer=None``: the model's default (``official``; ``official_literal`` for ``official_arithmetic``).

    Keyword arguments as :func:`evaluate_variants` (batch_size, limit, energy_batches, conventions, speed,
    speed_batch_size, speed_repeats, device, progress, tp_kwargs).
    """
    return evaluate_variants(model, dataset, [(None, None, None), (None, keep, scorer)], **kwargs)


def sweep(
    model: nn.Module,
    dataset: Any,
    keeps: Sequence[Any],
    scorers: Sequence[str] = ("official",),
    **kwargs: Any,
) -> Comparison:
    """Every (scorer, keep) pair plus the dense model; rows in that order. See :func:`evaluate_variants`."""
    variants = [(None, None, None)] + [(None, keep, scorer) for scorer in scorers for keep in keeps]
    return evaluate_variants(model, dataset, variants, **kwargs)


def save_sweep_plots(result: Comparison, out_dir: str, prefix: str = "") -> list[str]:
    """``accuracy_vs_energy.png`` and (when throughput was measured) ``accuracy_vs_throughput.png``."""
    from .plots import save_tradeoff_plot

    rows = [
        dict(r, scorer=r["scorer"] or "dense", keep_label=_short_keep(r.get("keep"))) for r in result.rows
    ]
    paths = []
    if any(r.get("energy_mj_per_image") is not None for r in rows):
        paths.append(
            save_tradeoff_plot(
                rows,
                "energy_mj_per_image",
                "top1",
                os.path.join(out_dir, f"{prefix}accuracy_vs_energy.png"),
                label="keep_label",
                xlabel="energy per image (mJ)",
                ylabel="top-1 (%)",
                title=f"{result.model}: accuracy vs energy",
            )
        )
    if any(r.get("img_per_s") is not None for r in rows):
        paths.append(
            save_tradeoff_plot(
                rows,
                "img_per_s",
                "top1",
                os.path.join(out_dir, f"{prefix}accuracy_vs_throughput.png"),
                label="keep_label",
                xlabel="throughput (img/s)",
                ylabel="top-1 (%)",
                title=f"{result.model}: accuracy vs throughput",
            )
        )
    return paths


def _short_keep(keep: str | None) -> str | None:
    if keep is None:
        return None
    rule, _, vals = keep.partition(":")
    vals = vals.split(",")
    return vals[0] if len(set(vals)) == 1 else f"{rule}[{vals[0]}..{vals[-1]}]"


def visualize(
    model: nn.Module,
    images: torch.Tensor,
    out_dir: str,
    keep: Any = "official",
    scorer: str | Callable | None = None,
    names: Sequence[str] | None = None,
    **tp_kwargs: Any,
) -> list[str]:
    """Kept-token masks per block and the token-depth map over each input image; one PNG per image.

    ``scorer=None``: the model's default (``official``; ``official_literal`` for ``official_arithmetic``).

    ``images``: a batch in the model's input layout. Returns the PNG paths (``<out_dir>/tokens_<i>.png``).
    """
    from .plots import save_token_visualization

    (pruned,) = make_variants(model, [(keep, scorer)], record=True, **tp_kwargs)
    with torch.inference_mode():
        pruned(images)
    state = get_tp_state(pruned.model)
    data = getattr(getattr(model, "config", None), "data", None)
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for i in range(images.shape[0]):
        name = names[i] if names is not None else f"tokens_{i}"
        paths.append(
            save_token_visualization(
                images[i],
                state.records,
                os.path.join(out_dir, f"{name}.png"),
                sample=i,
                mean=getattr(data, "mean", None),
                std=getattr(data, "std", None),
                title=f"{getattr(getattr(model, 'config', None), 'name', '')} keep={state.keep} scorer={state.scorer_name}",
            )
        )
    return paths


def bench(
    model: nn.Module,
    keeps: Sequence[Any] = ("official",),
    scorers: Sequence[str | Callable] = ("official",),
    batch_sizes: Sequence[int] = (1, 8),
    repeats: int = 10,
    warmup: int = 2,
    device: str | torch.device | None = None,
    **tp_kwargs: Any,
):
    """Latency / throughput / peak memory of the dense model and each (scorer, keep), interleaved in one run."""
    configs = [(None, None)] + [(keep, scorer) for scorer in scorers for keep in keeps]
    variants = make_variants(model, configs, **tp_kwargs)
    return benchmark(
        {v.label: v for v in variants}, batch_sizes=batch_sizes, repeats=repeats, warmup=warmup, device=device
    )
