"""Accuracy retention per scorer with 95 % confidence intervals, on two test beds, and where the kept tokens
fall relative to the objects (prints JSON; ``--out`` writes it).

Test beds: the shipped Fashion-MNIST models on the full Fashion-MNIST test split (10,000 images; 4x4-16x16
grids that are nearly all object) and the scene classifiers on the 2,000 test scenes (``load_dataset(
"scenes")``: one object on a large textured background; 14x14 or larger grids). For every model: dense and
every scorer (official, paper, spatial, temporal, official_spatial, official_temporal, random, firing_rate)
at keep 0.75, 0.5 and 0.3 (every block keeping that fraction, training-free), each with

* top-1 and its 95 % bootstrap interval over images (``--bootstrap`` resamples, percentile method);
* the paired difference to ``random`` at the same keep (the same resampled images for both), its interval,
  and whether it excludes 0 ("beats random" / "loses to random" beyond the interval);
* object focus: over the test images, the share of kept tokens that lie on the object divided by the share
  of all tokens on the object (1 = no preference, > 1 = kept tokens concentrate on the object), per block and
  averaged over blocks. A token lies on the object when at least half of its pixels do (object pixels:
  the scene's object mask; Fashion-MNIST: the item's pixels above 10 % intensity), measured on the grid of
  the block's input.

Usage: python benchmarks/accuracy_retention.py [--models ...] [--limit N] [--out results.json [--merge]]

``--merge`` keeps the other models already in ``--out`` (runs of one model at a time, on separate cores) and
adds this command to its ``commands``. Each model's bootstrap draws come from a fresh generator seeded with
``--seed``, so a model's intervals do not depend on which models ran before it in the same command.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from tp_spikformer import create_model
from tp_spikformer.data import load_dataset
from tp_spikformer.jsonio import dumps, write_json
from tp_spikformer.measure import make_variants
from tp_spikformer.pruning import get_tp_state

FMNIST = ["spikformer_fmnist", "sdt_fmnist", "qkformer_fmnist", "sdt_v3_fmnist"]
SCENES = ["spikformer_scenes", "sdt_scenes", "qkformer_scenes", "sdt_v3_scenes"]
SCORERS = [
    "official",
    "paper",
    "spatial",
    "temporal",
    "official_spatial",
    "official_temporal",
    "random",
    "firing_rate",
]
KEEPS = [0.75, 0.5, 0.3]


def test_set(name: str, model, limit: int | None, data_root: str | None):
    if name.endswith("_scenes"):
        return load_dataset("scenes", split="test", data_cfg=model, limit=limit), "scenes test (2,000)"
    return load_dataset(
        "fashion_mnist", split="test", root=data_root, data_cfg=model, limit=limit
    ), "Fashion-MNIST test"


def object_masks(name: str, data, n: int) -> torch.Tensor:
    """Bool ``[N, H, W]`` object pixels of the raw test images (before the model's resize)."""
    if name.endswith("_scenes"):
        from tp_spikformer.data.fashion_objects import FashionObjects
        from tp_spikformer.data.scene_classification import SEEDS, SIZE
        from tp_spikformer.data.scenes import SceneConfig, generate_scene

        objects = FashionObjects("test", source="shipped")
        cfg = SceneConfig(
            height=SIZE, width=SIZE, min_objects=1, max_objects=1, split="test", seed=SEEDS["test"]
        )
        return torch.stack(
            [
                torch.from_numpy(generate_scene(cfg, i, objects, category=i % 10).semantic > 0)
                for i in range(n)
            ]
        )
    raw = data.images[:n].float()  # [N, 1, 28, 28] uint8 Fashion-MNIST items
    return raw[:, 0] > 25.5


def token_object_share(masks: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Bool ``[N, h*w]``: token on the object (at least half of its pixels are object pixels)."""
    cover = F.adaptive_avg_pool2d(masks[:, None].float(), grid)[:, 0]  # [N, h, w]
    return (cover >= 0.5).flatten(1)


@torch.inference_mode()
def predictions(model, data, batch_size: int, masks: torch.Tensor | None) -> tuple[np.ndarray, dict]:
    """Per-image correctness and, when pruned, object focus per block name."""
    state = get_tp_state(model) if "_tp_state" in model.__dict__ else None
    correct, on_kept, on_all, kept_n = [], {}, {}, {}
    for start in range(0, len(data), batch_size):
        idx = torch.arange(start, min(len(data), start + batch_size))
        x, y = data.get_batch(idx), torch.as_tensor(data.targets)[idx]
        out = model(x)
        correct.append((out.argmax(1) == y).numpy())
        if state is None or not state.enabled or masks is None:
            continue
        for rec in state.records:
            if rec.indices is None:
                continue
            obj = token_object_share(masks[idx], rec.grid)  # [B, N]
            kept = torch.zeros_like(obj).scatter_(1, rec.indices, True)
            key = f"{rec.name}#{rec.call}" if rec.call else rec.name
            on_kept[key] = on_kept.get(key, 0) + int((obj & kept).sum())
            kept_n[key] = kept_n.get(key, 0) + int(kept.sum())
            on_all[key] = on_all.get(key, 0) + float(
                obj.float().mean(1).sum()
            )  # sum over images of the object share
    focus = {}
    n = len(data)
    for key in on_kept:
        kept_share = on_kept[key] / max(1, kept_n[key])
        all_share = on_all[key] / n
        focus[key] = {
            "kept_on_object": kept_share,
            "tokens_on_object": all_share,
            "focus": kept_share / all_share if all_share > 0 else None,
        }
    return np.concatenate(correct), focus


def bootstrap(correct: np.ndarray, reference: np.ndarray | None, draws: np.ndarray) -> dict:
    """Top-1 with a 95 % percentile interval; with ``reference``, the paired difference and its interval."""
    top1 = 100.0 * correct.mean()
    res = {"top1": top1}
    boot = 100.0 * correct[draws].mean(1)  # [B]
    res["ci95"] = [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))]
    if reference is not None:
        diff = 100.0 * (correct.astype(np.float64) - reference)
        d_boot = diff[draws].mean(1)
        lo, hi = float(np.percentile(d_boot, 2.5)), float(np.percentile(d_boot, 97.5))
        res["diff_to_random"] = float(diff.mean())
        res["diff_ci95"] = [lo, hi]
        res["vs_random"] = "beats" if lo > 0 else ("loses" if hi < 0 else "tie")
    return res


def run_model(name: str, args) -> dict:
    t0 = time.time()
    rng = np.random.default_rng(args.seed)
    model = create_model(name, pretrained=True).eval()
    data, bed = test_set(name, model, args.limit, args.data_root)
    n = len(data)
    masks = object_masks(name, data, n)
    draws = rng.integers(0, n, size=(args.bootstrap, n))
    configs = [(None, None)] + [(k, s) for k in KEEPS for s in SCORERS]
    has_time = model.T is not None or getattr(model, "event_input", False)
    variants = {
        v.label: v
        for v in make_variants(
            model, [c for c in configs if has_time or c[1] is None or "temporal" not in c[1]], record=True
        )
    }
    entry = {"family": model.config.family, "test_bed": bed, "n": n, "limit": args.limit, "variants": {}}
    dense = None
    raw = {}
    for label, v in variants.items():
        correct, focus = predictions(v.activate(), data, args.batch_size, masks)
        raw[label] = (correct, focus, v)
        if v.keep is None:
            dense = correct
        print(f"[accuracy_retention] {name} {label}: {100 * correct.mean():.2f}", file=sys.stderr, flush=True)
    for label, (correct, focus, v) in raw.items():
        ref = None
        if v.keep is not None:
            rand = next(
                (c for lab, (c, _, vv) in raw.items() if vv.keep == v.keep and vv.scorer == "random"), None
            )
            ref = rand if v.scorer != "random" else None
        row = bootstrap(correct, ref, draws)
        row.update(scorer=v.scorer, keep=v.keep)
        if dense is not None and v.keep is not None:
            row["drop_vs_dense"] = row["top1"] - 100.0 * dense.mean()
        if focus:
            vals = [f["focus"] for f in focus.values() if f["focus"] is not None]
            row["object_focus_mean"] = float(np.mean(vals)) if vals else None
            row["object_focus"] = focus
        entry["variants"][label] = row
    entry["seconds"] = round(time.time() - t0, 1)
    return entry


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=FMNIST + SCENES)
    p.add_argument("--data-root", default=None, help="Fashion-MNIST IDX folder (default: Debian's)")
    p.add_argument("--limit", type=int, default=None, help="first N test images only")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    p.add_argument(
        "--merge", action="store_true", help="keep the other models already in --out; add this command"
    )
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    if args.merge and not args.out:
        p.error("--merge needs --out (the JSON file to merge into)")
    torch.set_num_threads(args.threads)
    command = " ".join(["python benchmarks/accuracy_retention.py", *argv])
    previous = {"models": {}, "commands": []}
    if args.merge and os.path.isfile(args.out):
        with open(args.out) as f:
            previous = json.load(f)
    results = {
        "benchmark": "accuracy_retention",
        "keeps": KEEPS,
        "scorers": SCORERS,
        "bootstrap": args.bootstrap,
        "ci": "95 % percentile bootstrap over test images; paired with random at the same keep",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "models": {k: v for k, v in previous.get("models", {}).items() if k not in args.models},
        "commands": [*previous.get("commands", []), command],
    }
    for name in args.models:
        results["models"][name] = run_model(name, args)
        if args.out:
            write_json(args.out, results)
    print(dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
