"""Does the keep-schedule search pay? Calibrated vs uniform vs official schedules at equal counted cost.

For each model (``--models``), metric (``--metrics``: counted MACs and SOPs per image) and budget
(``--budgets``, fractions of the dense model's cost):

* ``calibrated``: ``tp.calibrate(model, calibration split, budget, metric)``, with the search's own run time;
* ``uniform``: the largest uniform keep fraction within the same budget (counted on the same calibration
  images: calibrate's own baseline);
* ``official``: the family's official k_values when it has them for the model's depth (``n/a`` otherwise:
  the fallback fraction of ``keep="official"`` is a uniform schedule, and Spikformer's default is ours, not
  official). An official schedule has its own cost, so it is compared with ``uniform`` AND ``calibrated``
  searched at exactly that cost (``at_official_cost``).

Every schedule is then evaluated on HELD-OUT images, never the calibration split (Fashion-MNIST: calibration
from the training split, evaluation on the test split): top-1, the paired difference to uniform with a 95 %
bootstrap interval over images, and the counted cost on held-out images (SOPs depend on the images, MACs
do not). Prints JSON (and writes it to ``--out``).

Data and metric per model are pluggable: ``BEDS`` maps a test-bed name to (calibration loader, held-out
loader, evaluate function, objective); ``MODEL_BEDS`` maps a model to its bed (``--models name:bed``
overrides it): ``fashion_mnist`` for the shipped ``*_fmnist`` models, ``scenes`` for the ``*_scenes``
classifiers. Segmentation and detection models plug in by adding a bed whose evaluate function returns
per-image scores (e.g. per-image mIoU) and whose objective fits (``features`` for dense heads).

Usage: python benchmarks/schedule_search.py [--models spikformer_fmnist sdt_fmnist ...] [--metrics macs sops]
       [--budgets 0.5 0.7] [--calibration-size 256] [--limit N] [--threads 1] [--out file.json]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import tp_spikformer as tp
from tp_spikformer.calibrate import calibration_set
from tp_spikformer.data import load_dataset, synthetic_dataset
from tp_spikformer.errors import UsageError
from tp_spikformer.evaluate import logits_of
from tp_spikformer.jsonio import dumps
from tp_spikformer.measure.ops import count_ops
from tp_spikformer.pruning import KeepSchedule, apply_tp, get_tp_state

MODELS = ["spikformer_fmnist", "sdt_fmnist", "qkformer_fmnist", "sdt_v3_fmnist"]


# -- test beds: data and metric per model ----------------------------------------------------------------


def classification_scores(model, data, batch_size: int) -> np.ndarray:
    """Per-image top-1 correctness (1.0 / 0.0) of ``model`` on a labelled dataset, in dataset order."""
    out = []
    with torch.inference_mode():
        for x, y in _batches(data, batch_size):
            pred = logits_of(model(x.to(_device(model)))).argmax(1).cpu()
            out.append((pred == y).double().numpy())
    return np.concatenate(out)


@dataclass
class Bed:
    """Calibration data, held-out data, a per-image score (higher is better) and the search objective."""

    calibration: Callable[[Any, argparse.Namespace], Any]
    held_out: Callable[[Any, argparse.Namespace], Any]
    scores: Callable[[Any, Any, int], np.ndarray] = classification_scores
    objective: str = "accuracy"
    score_name: str = "top1"


BEDS: dict[str, Bed] = {
    # calibration from the training split, evaluation on the test split: disjoint by construction
    "fashion_mnist": Bed(
        calibration=lambda m, a: load_dataset("fashion_mnist", split="train", root=a.data_root, data_cfg=m),
        held_out=lambda m, a: load_dataset(
            "fashion_mnist", split="test", root=a.data_root, data_cfg=m, limit=a.limit
        ),
    ),
    # the shipped 2,000-image test slice, offline: calibrate on its first half, evaluate on its second half
    "shipped": Bed(
        calibration=lambda m, a: load_dataset("shipped", data_cfg=m).subset(slice(0, 1000)),
        held_out=lambda m, a: load_dataset("shipped", data_cfg=m).subset(
            slice(1000, 1000 + (a.limit or 1000))
        ),
    ),
    # single-object scenes with ImageNet-like 14x14 token grids: calibration from 1,000 generated training
    # scenes (Fashion-MNIST train objects), evaluation on the fixed test scenes (test objects)
    "scenes": Bed(
        calibration=lambda m, a: load_dataset("scenes:1000", split="train", root=a.data_root, data_cfg=m),
        held_out=lambda m, a: load_dataset(
            "scenes", split="test", root=a.data_root, data_cfg=m, limit=a.limit
        ),
    ),
    # smoke tests: two synthetic sets drawn with different seeds
    "synthetic": Bed(
        calibration=lambda m, a: synthetic_dataset(
            256, m.config.data.input_size[1], m.config.data.input_size[0], seed=0
        ),
        held_out=lambda m, a: synthetic_dataset(
            a.limit or 128, m.config.data.input_size[1], m.config.data.input_size[0], seed=1
        ),
    ),
}
MODEL_BEDS = {
    **{f"{f}_scenes": "scenes" for f in ("spikformer", "sdt", "qkformer", "sdt_v3")},
    "spikformer_fmnist": "fashion_mnist",
    "sdt_fmnist": "fashion_mnist",
    "qkformer_fmnist": "fashion_mnist",
    "sdt_v3_fmnist": "fashion_mnist",
}


def bed_of(spec: str) -> tuple[str, str]:
    name, _, bed = spec.partition(":")
    bed = bed or MODEL_BEDS.get(name) or ("synthetic" if name.endswith("_tiny") else "")
    if bed not in BEDS:
        raise UsageError(
            f"model {name}: no test bed {bed!r}; give one as {name}:<bed> with <bed> in {sorted(BEDS)}"
        )
    return name, bed


# -- helpers ------------------------------------------------------------------------------------------


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _batches(data, batch_size: int):
    n = len(data)
    if hasattr(data, "get_batch") and hasattr(data, "targets"):
        for s in range(0, n, batch_size):
            yield (
                data.get_batch(slice(s, min(n, s + batch_size))),
                torch.as_tensor(data.targets[s : s + batch_size]),
            )
        return
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    for x, y, *_ in loader:
        yield x, torch.as_tensor(y)


def _load_model(name: str, fire: bool):
    cfg = tp.get_model_config(name)
    if not cfg.weights and not fire:
        raise UsageError(
            f"model {name} has no trained weights in the package; train it first (scenes classifiers: "
            "scripts/train_scenes.sh), or pass --fire for a random-weight smoke run"
        )
    model = tp.create_model(name, pretrained=bool(cfg.weights)).eval()
    if fire:  # smoke tests with random weights: BatchNorm statistics under which neurons fire
        from tp_spikformer.measure.variants import make_neurons_fire

        make_neurons_fire(model, seed=1)
    return model


def _official(state) -> tuple[KeepSchedule | None, str]:
    """The family's official schedule for this depth, or None and why not."""
    d = state.defaults
    if d is None or d.keep_rule is None or d.keep_values is None:
        return (
            None,
            f"n/a: no official schedule for {len(state.block_names)} blocks ({getattr(d, 'source', '')})",
        )
    if d.source.startswith("ours"):
        return None, f"n/a: {d.source}"
    vals = tuple(d.keep_values)
    return KeepSchedule(d.keep_rule, vals if len(vals) > 1 else vals[0]), d.source


def _counted(model, inputs, metric: str, keep) -> float:
    """Counted ``metric`` per image of the shared patched ``model`` with ``keep`` (None: dense)."""
    st = get_tp_state(model)
    if keep is None:
        st.enabled = False
    else:
        st.configure(enabled=True, keep=keep, scorer=st.scorer_name)
    try:
        return count_ops(model, inputs[:1] if metric == "macs" else inputs).report().totals[metric]
    finally:
        st.enabled = True


def _bootstrap_diff(a: np.ndarray, b: np.ndarray, seed: int, n_boot: int = 2000) -> dict[str, float]:
    """Mean of ``a - b`` (per image, in points) and its 95 % percentile bootstrap interval over images."""
    d = 100.0 * (a - b)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"mean": float(d.mean()), "ci95": [float(lo), float(hi)]}


# -- one model -------------------------------------------------------------------------------------------


def run_model(spec: str, args: argparse.Namespace) -> dict[str, Any]:
    name, bed_name = bed_of(spec)
    bed = BEDS[bed_name]
    model = _load_model(name, args.fire)
    calib_data, held = bed.calibration(model, args), bed.held_out(model, args)
    shared = copy.deepcopy(model)
    state = apply_tp(shared, keep=1.0, scorer=args.scorer, seed=args.seed)
    cal = calibration_set(calib_data, args.calibration_size, args.batch_size, args.seed)
    cal_inputs = cal.inputs()
    held_inputs = [x for x, _ in _batches(held, args.batch_size)][
        : max(1, args.cost_images // args.batch_size)
    ]

    def evaluate(keep) -> dict[str, Any]:
        if keep is None:
            state.enabled = False
        else:
            state.configure(enabled=True, keep=keep, scorer=args.scorer)
        scores = bed.scores(shared, held, args.batch_size)
        state.enabled = True
        entry = {
            "keep": None if keep is None else str(keep),
            bed.score_name: 100.0 * float(scores.mean()),
            "_scores": scores,
        }
        for metric in args.metrics:
            dense_cal, dense_held = dense_cost[metric]
            entry[f"{metric}_calibration"] = _counted(shared, cal_inputs, metric, keep) / dense_cal
            # MACs depend on the kept counts, not on the pixels: the same on any image of this size
            entry[f"{metric}_held_out"] = (
                entry[f"{metric}_calibration"]
                if metric == "macs"
                else _counted(shared, held_inputs, metric, keep) / dense_held
            )
        return entry

    dense_cost = {
        m: (
            _counted(shared, cal_inputs, m, None),
            None if m == "macs" else _counted(shared, held_inputs, m, None),
        )
        for m in args.metrics
    }
    t0 = time.time()
    dense = evaluate(None)
    official, official_source = _official(state)
    result: dict[str, Any] = {
        "bed": bed_name,
        "family": model.config.family,
        "blocks": list(state.block_names),
        "n_calibration": cal.size,
        "n_held_out": len(held),
        "objective": bed.objective,
        "scorer": args.scorer,
        "dense": dense,
        "official_source": official_source,
        "official": evaluate(official) if official is not None else official_source,
        "metrics": {},
    }

    def search(metric: str, budget: float) -> dict[str, Any]:
        """Calibrated and uniform at ``budget``, evaluated on held-out images."""
        try:
            cal_result = tp.calibrate(
                model,
                calib_data,
                budget,
                metric=metric,
                objective=bed.objective,
                scorers=args.scorer,
                calibration_size=args.calibration_size,
                batch_size=args.batch_size,
                seed=args.seed,
                levels=args.levels,
                refine_rounds=args.refine_rounds,
                verbose=False,
            )
        except UsageError as err:  # e.g. a budget below the minimum reachable cost
            return {"budget": budget, "unreachable": str(err)}
        calibrated = evaluate(cal_result.schedule)
        uniform = evaluate(cal_result.uniform["fraction"])
        calibrated.update(
            search_seconds=round(cal_result.seconds, 2),
            calibration_passes=cal_result.settings["passes"],
            calibration_report=cal_result.objective_report,
            chosen=cal_result.chosen,
        )
        uniform.update(
            fraction=cal_result.uniform["fraction"], calibration_report=cal_result.uniform["report"]
        )
        out = {
            "budget": budget,
            "calibrated": calibrated,
            "uniform": uniform,
            "calibrated_minus_uniform": _bootstrap_diff(calibrated["_scores"], uniform["_scores"], args.seed),
        }
        print(
            f"[schedule_search] {name} {metric}@{budget:.4g}: calibrated {calibrated[bed.score_name]:.2f} "
            f"({calibrated['keep']}, {cal_result.seconds:.1f} s) vs uniform {uniform[bed.score_name]:.2f} "
            f"({uniform['keep']})",
            file=sys.stderr,
            flush=True,
        )
        return out

    for metric in args.metrics:
        entry: dict[str, Any] = {"budgets": {f"{b:g}": search(metric, b) for b in args.budgets}}
        if official is not None:
            cost = result["official"][f"{metric}_calibration"]
            at = search(metric, cost)
            if "calibrated" in at:
                at["official"] = dict(result["official"].items())
                at["official_minus_uniform"] = _bootstrap_diff(
                    result["official"]["_scores"], at["uniform"]["_scores"], args.seed
                )
                at["calibrated_minus_official"] = _bootstrap_diff(
                    at["calibrated"]["_scores"], result["official"]["_scores"], args.seed
                )
            entry["at_official_cost"] = at
        else:
            entry["at_official_cost"] = official_source
        result["metrics"][metric] = entry
    result["seconds"] = round(time.time() - t0, 1)
    return _strip(result)


def _strip(obj: Any) -> Any:
    """Drop the per-image score arrays (``_scores``) before printing."""
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k != "_scores"}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=MODELS, help="model names, optionally name:bed")
    p.add_argument("--metrics", nargs="+", default=["macs", "sops"], choices=["macs", "sops"])
    p.add_argument("--budgets", nargs="+", type=float, default=[0.5, 0.7])
    p.add_argument("--scorer", default="official")
    p.add_argument("--calibration-size", type=int, default=256)
    p.add_argument("--levels", nargs="+", type=float, default=list(tp.calibrate.DEFAULT_LEVELS))
    p.add_argument("--refine-rounds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--cost-images", type=int, default=512, help="held-out images the costs are counted on")
    p.add_argument("--limit", type=int, default=None, help="first N held-out images only")
    p.add_argument("--data-root", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fire", action="store_true", help="random-weight smoke runs: make the neurons fire")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    bad = [b for b in args.budgets if not 0 < b <= 1]
    if bad:
        raise UsageError(f"--budgets {bad}: budgets are fractions of the dense model's cost, 0 < budget <= 1")
    for spec in args.models:  # every model and bed checked before any work
        name, _ = bed_of(spec)
        if not tp.get_model_config(name).weights and not args.fire:
            _load_model(name, args.fire)  # raises with the reason
    torch.set_num_threads(args.threads)
    results = {
        "benchmark": "schedule_search",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("models", "out")},
        "models": {},
    }
    for spec in args.models:
        results["models"][spec] = run_model(spec, args)
    text = dumps(results)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    from tp_spikformer.options import run_main

    raise SystemExit(run_main(main, "schedule_search.py"))
