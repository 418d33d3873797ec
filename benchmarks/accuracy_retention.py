"""Accuracy under token pruning on the full Fashion-MNIST test set, for the shipped model of each family.

Training-free top-1 of the dense model and of TP with each scorer (``official``, ``paper``, the paper's
``spatial`` and ``temporal`` parts, the official code's ``official_spatial`` and ``official_temporal``
parts, ``random``) at keep fractions 0.75 and 0.5 in every block; then top-1 after one epoch of TP
fine-tuning at keep 0.5 (train.py, AdamW, cosine schedule, the pruned model is trained and evaluated).
SDT-V3 has no time axis: its temporal rows are "n/a". Prints JSON.

Needs the Fashion-MNIST IDX files (``apt-get install dataset-fashion-mnist`` on Debian, or --data-root).
Usage: python benchmarks/accuracy_retention.py [--models ...] [--finetune-scorers official paper]
       [--no-finetune] [--limit N] [--train-limit N] [--threads 1] [--out file.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

import torch

from tp_spikformer import create_model
from tp_spikformer.measure import make_variants
from tp_spikformer.data import load_dataset
from tp_spikformer.evaluate import evaluate

MODELS = ["spikformer_fmnist", "sdt_fmnist", "qkformer_fmnist", "sdt_v3_fmnist"]
SCORERS = ["official", "paper", "spatial", "temporal", "official_spatial", "official_temporal", "random"]
KEEPS = [0.75, 0.5]


def training_free(name: str, data, batch_size: int) -> dict:
    model = create_model(name, pretrained=True).eval()
    rows = {"dense": evaluate(model, data, batch_size=batch_size)["top1"]}
    for keep in KEEPS:
        for scorer in SCORERS:
            key = f"{scorer}@{keep}"
            if model.T is None and "temporal" in scorer:
                rows[key] = None  # no time axis (SDT-V3)
                continue
            (variant,) = make_variants(model, [(keep, scorer)])
            rows[key] = evaluate(variant.activate(), data, batch_size=batch_size)["top1"]
            print(f"[accuracy_retention] {name} {key}: {rows[key]:.2f}", file=sys.stderr, flush=True)
    return rows


def finetune(name: str, scorer: str, keep: float, data_root: str | None, limit: int | None,
             train_limit: int | None) -> dict:
    """One epoch of fine-tuning of the pruned model with train.py's fine-tuning defaults (AdamW, lr 1e-4
    cosine to 1e-6, no warm-up), the augmentation and label smoothing of the shipped models' recipe."""
    from tp_spikformer import train

    with tempfile.TemporaryDirectory() as out:
        args = {"model": name, "pretrained": True, "finetune": True, "keep": str(keep), "scorer": scorer,
                "epochs": 1, "out": out, "dataset": "fashion_mnist", "data_root": data_root,
                "test_limit": limit, "train_limit": train_limit, "resume": None, "augment": "flip",
                "label_smoothing": 0.0, "threads": torch.get_num_threads(), "log_interval": 0}
        t0 = time.time()
        metrics = train.run(args)
    return {"top1": metrics["test"]["top1"], "seconds": round(time.time() - t0, 1), "keep": keep,
            "scorer": scorer, "epochs": 1, "lr": (metrics.get("args") or {}).get("lr"),
            "train_seconds": round(metrics["train_seconds"], 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=MODELS)
    p.add_argument("--data-root", default=None)
    p.add_argument("--limit", type=int, default=None, help="first N test images only (default: all 10,000)")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--finetune-scorers", nargs="+", default=["official"])
    p.add_argument("--no-finetune", action="store_true")
    p.add_argument("--train-limit", type=int, default=None, help="fine-tune on the first N training images")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: a 2-thread process slows down many-fold on a shared 2-core machine)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = {"benchmark": "accuracy_retention", "dataset": "Fashion-MNIST test", "keeps": KEEPS,
               "torch": torch.__version__, "threads": torch.get_num_threads(), "models": {}}
    for name in args.models:
        t0 = time.time()
        model = create_model(name, pretrained=True)
        data = load_dataset("fashion_mnist", split="test", root=args.data_root, data_cfg=model, limit=args.limit)
        entry = {"family": model.config.family, "n": len(data), "training_free": training_free(name, data, args.batch_size)}
        if not args.no_finetune:
            entry["finetuned_1_epoch"] = [finetune(name, s, 0.5, args.data_root, args.limit, args.train_limit)
                                          for s in args.finetune_scorers]
        entry["seconds"] = round(time.time() - t0, 1)
        results["models"][name] = entry
        print(json.dumps({name: entry}), file=sys.stderr, flush=True)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
