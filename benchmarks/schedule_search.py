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
loader, score function, objective); ``MODEL_BEDS`` maps a model to its bed (``--models name:bed``
overrides it): ``fashion_mnist`` for the shipped ``*_fmnist`` models, ``scenes`` for the ``*_scenes``
classifiers, ``segmentation_scenes`` (mIoU pooled over the first 300 validation scenes, bootstrap over
images; objective: pixel error on ``--calibration-size`` training scenes) for ``sdt_v3_scenes_semfpn``,
``detection_scenes`` (COCO mAP by pycocotools on the first 300 validation scenes, paired t interval over
10 image folds; objective: ``features``, the backbone's stage maps, on ``--calibration-size`` training
scenes) for ``sdt_v3_scenes_fcos``.

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
from tp_spikformer.calibrate.samples import pick_indices
from tp_spikformer.data import load_dataset, synthetic_dataset
from tp_spikformer.errors import UsageError
from tp_spikformer.evaluate import logits_of
from tp_spikformer.jsonio import dumps
from tp_spikformer.measure.ops import count_ops
from tp_spikformer.pruning import KeepSchedule, apply_tp, get_tp_state

MODELS = ["spikformer_fmnist", "sdt_fmnist", "qkformer_fmnist", "sdt_v3_fmnist"]


# -- test beds: data and metric per model ----------------------------------------------------------------


class PerImageMean:
    """Per-image scores (classification: 1.0 correct / 0.0 wrong); the score is their mean in percent, and a
    bootstrap draw resamples images."""

    method = "95 % percentile bootstrap over held-out images (2,000 draws), paired"

    def __init__(self, scores: np.ndarray):
        self.scores = np.asarray(scores, dtype=np.float64)

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def value(self) -> float:
        return 100.0 * float(self.scores.mean())

    def draws(self, idx: np.ndarray) -> np.ndarray:
        """Score of every resample ``idx [B, N]`` (image indices), in percent."""
        return 100.0 * self.scores[idx].mean(axis=1)


class PooledIoU:
    """Per-image class histograms (intersection, union) of a segmenter; the score is mmseg's mIoU pooled over
    the images (sums first, then IoU per class, nanmean over the classes present), and a bootstrap draw
    pools the resampled images' histograms."""

    method = "95 % percentile bootstrap over held-out images (2,000 draws; mIoU pooled per draw), paired"

    def __init__(self, inter: np.ndarray, union: np.ndarray):
        self.inter, self.union = inter.astype(np.float64), union.astype(np.float64)  # [N, K] each

    def __len__(self) -> int:
        return len(self.inter)

    @staticmethod
    def _miou(inter: np.ndarray, union: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return 100.0 * np.nanmean(inter / union, axis=-1)  # union 0: class absent, NaN, left out

    @property
    def value(self) -> float:
        return float(self._miou(self.inter.sum(0), self.union.sum(0)))

    def draws(self, idx: np.ndarray) -> np.ndarray:
        n = len(self)
        weights = np.stack([np.bincount(row, minlength=n) for row in idx]).astype(np.float64)  # [B, N]
        return self._miou(weights @ self.inter, weights @ self.union)


class FoldedCOCO:
    """COCO mAP of a detector's results on the held-out images, and on ``folds`` disjoint folds of them
    (images dealt round-robin): COCO AP does not split into per-image scores, so a paired difference's
    interval is the difference on all images +- t x the standard error of the folds' differences, instead of
    a bootstrap over images."""

    folds = 10

    @property
    def method(self) -> str:
        return (
            f"difference on all images +- t(0.975, {self.folds - 1}) x standard error over {self.folds} disjoint "
            "image folds (COCO mAP per fold), paired"
        )

    def __init__(self, ground_truth: dict, results: list, image_ids: list[int]):
        from tp_spikformer.tasks.detection.coco_eval import score_results

        self.n = len(image_ids)
        self._value = score_results(ground_truth, results, image_ids)["mAP"]
        self.per_fold = np.array(
            [
                score_results(ground_truth, results, image_ids[k :: self.folds])["mAP"]
                for k in range(self.folds)
            ]
        )

    def __len__(self) -> int:
        return self.n

    @property
    def value(self) -> float:
        return float(self._value)


def paired_difference(a, b, seed: int, n_boot: int = 2000) -> dict[str, Any]:
    """Score of ``a`` minus score of ``b`` (points) on the same held-out images, with a 95 % interval."""
    if isinstance(a, FoldedCOCO):
        d = a.per_fold - b.per_fold
        k = len(d)
        half = T975[k - 1] * float(d.std(ddof=1)) / np.sqrt(k)  # standard error from the folds
        mean = a.value - b.value  # the difference on all held-out images
        return {"mean": mean, "ci95": [mean - half, mean + half], "method": a.method}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(n_boot, len(a)))
    d = a.draws(idx) - b.draws(idx)
    lo, hi = np.percentile(d, [2.5, 97.5])
    return {"mean": a.value - b.value, "ci95": [float(lo), float(hi)], "method": a.method}


T975 = {9: 2.262157}  # Student t, 97.5 % quantile, by degrees of freedom (10 folds)


def classification_scores(model, data, batch_size: int) -> PerImageMean:
    """Per-image top-1 correctness of ``model`` on a labelled dataset, in dataset order."""
    out = []
    with torch.inference_mode():
        for x, y in _batches(data, batch_size):
            pred = logits_of(model(x.to(_device(model)))).argmax(1).cpu()
            out.append((pred == y).double().numpy())
    return PerImageMean(np.concatenate(out))


def segmentation_scores(model, data, batch_size: int) -> PooledIoU:
    """Per-image intersection and union histograms (mmseg's whole inference: logits resized to the label)."""
    from tp_spikformer.tasks.segmentation.evaluation import whole_inference
    from tp_spikformer.tasks.segmentation.inputs import (
        equal_size_batches,
        input_normalization,
        normalize_images,
    )
    from tp_spikformer.tasks.segmentation.metrics import intersect_and_union

    norm, k = input_normalization(model), model.num_classes
    inter, union = [], []
    with torch.inference_mode():
        for group in equal_size_batches(data, range(len(data)), batch_size):
            x = normalize_images(torch.stack([g[0] for g in group]), norm)
            y = torch.stack([g[1] for g in group])
            pred = whole_inference(model, x, y.shape[-2:]).argmax(1)  # [B, H, W]
            for p, t in zip(pred, y):
                i, a_pred, a_label = intersect_and_union(p, t, k)
                inter.append(i.numpy())
                union.append((a_pred + a_label - i).numpy())
    return PooledIoU(np.stack(inter), np.stack(union))


def detection_scores(model, data, batch_size: int) -> FoldedCOCO:
    """COCO mAP (pycocotools) of the detector's results on the held-out scenes, overall and per fold."""
    from tp_spikformer.tasks.detection.engine import _target, ground_truth, predict_detection

    idx = list(range(len(data)))
    results = predict_detection(model, data, batch_size=batch_size)
    ids = [int(_target(data, i)["image_id"]) for i in idx]  # as evaluate_detection scores them
    return FoldedCOCO(ground_truth(data, idx), results, ids)


@dataclass
class Bed:
    """Calibration data, held-out data, the held-out score (higher is better) and the search objective.
    ``task`` beds hand the calibration images to ``tp.calibrate`` through the task's
    ``calibration_inputs`` (normalised / letterboxed tensors)."""

    calibration: Callable[[Any, argparse.Namespace], Any]
    held_out: Callable[[Any, argparse.Namespace], Any]
    scores: Callable[[Any, Any, int], Any] = classification_scores
    objective: str = "accuracy"
    score_name: str = "top1"
    task: str | None = None


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


def _task_scenes(task: str, split: str, n: int):
    def load(m, a):
        from tp_spikformer.api import task_spec

        return task_spec(task).load_dataset(f"scenes:{n}", root=a.data_root, split=split, model=m)

    return load


# dense tasks: calibration from generated TRAINING scenes (Fashion-MNIST train objects), evaluation on the
# first validation scenes (test objects), as the segmentation / detection retention benchmarks score them
BEDS["segmentation_scenes"] = Bed(
    calibration=_task_scenes("segmentation", "train", 1000),
    held_out=lambda m, a: _task_scenes("segmentation", "validation", a.limit or 300)(m, a),
    scores=segmentation_scores,
    objective="accuracy",
    score_name="mIoU",
    task="segmentation",
)
BEDS["detection_scenes"] = Bed(
    calibration=_task_scenes("detection", "train", 1000),
    held_out=lambda m, a: _task_scenes("detection", "val", a.limit or 300)(m, a),
    scores=detection_scores,
    objective="features",
    score_name="mAP",
    task="detection",
)

MODEL_BEDS = {
    **{f"{f}_scenes": "scenes" for f in ("spikformer", "sdt", "qkformer", "sdt_v3")},
    "spikformer_fmnist": "fashion_mnist",
    "sdt_fmnist": "fashion_mnist",
    "qkformer_fmnist": "fashion_mnist",
    "sdt_v3_fmnist": "fashion_mnist",
    "sdt_v3_scenes_semfpn": "segmentation_scenes",
    "sdt_v3_scenes_fcos": "detection_scenes",
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


# -- one model -------------------------------------------------------------------------------------------


def run_model(spec: str, args: argparse.Namespace) -> dict[str, Any]:
    name, bed_name = bed_of(spec)
    bed = BEDS[bed_name]
    model = _load_model(name, args.fire)
    calib_data, held = bed.calibration(model, args), bed.held_out(model, args)
    calib_size = args.calibration_size
    n_cost_batches = max(1, args.cost_images // args.batch_size)
    if bed.task is not None:  # the task draws and prepares the calibration images (tensors)
        from tp_spikformer.api import task_spec

        spec = task_spec(bed.task)
        calib_data = spec.calibration_inputs(
            model, calib_data, pick_indices(len(calib_data), calib_size, args.seed)
        )
        calib_size = None
        held_inputs = spec.sample_inputs(model, held, args.batch_size, n_cost_batches)
    else:
        held_inputs = [x for x, _ in _batches(held, args.batch_size)][:n_cost_batches]
    shared = copy.deepcopy(model)
    state = apply_tp(shared, keep=1.0, scorer=args.scorer, seed=args.seed)
    cal = calibration_set(calib_data, calib_size, args.batch_size, args.seed)
    cal_inputs = cal.inputs()

    def evaluate(keep) -> dict[str, Any]:
        if keep is None:
            state.enabled = False
        else:
            state.configure(enabled=True, keep=keep, scorer=args.scorer)
        scored = bed.scores(shared, held, args.batch_size)
        state.enabled = True
        entry = {
            "keep": None if keep is None else str(keep),
            bed.score_name: scored.value,
            "_scores": scored,
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
        "score": bed.score_name,
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
                calibration_size=calib_size,
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
            "calibrated_minus_uniform": paired_difference(
                calibrated["_scores"], uniform["_scores"], args.seed
            ),
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
                at["official_minus_uniform"] = paired_difference(
                    result["official"]["_scores"], at["uniform"]["_scores"], args.seed
                )
                at["calibrated_minus_official"] = paired_difference(
                    at["calibrated"]["_scores"], result["official"]["_scores"], args.seed
                )
            entry["at_official_cost"] = at
        else:
            entry["at_official_cost"] = official_source
        result["metrics"][metric] = entry
    result["seconds"] = round(time.time() - t0, 1)
    return _strip(result)


def _strip(obj: Any) -> Any:
    """Drop the per-image scores (``_scores``) before printing."""
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
