"""The tracking task for the comparison runner (``tp-spikformer eval --task tracking``): success AUC,
precision at 20 px and normalised precision of the online loop, with its frames per second, raw results
per variant and sequence (``<out>/<variant>/<seq>.txt``), and SOPs/energy per (template, search) forward."""

from __future__ import annotations

from typing import Any

import torch

from ...data.event_repr import crop_around
from ...errors import UsageError
from ...measure.ops import ModelInputs
from ..protocol import TaskSpec, register_task
from .engine import evaluate_tracking
from .sampler import FrameSource

METRICS = (("auc", "AUC"), ("precision_20", "P@20"), ("norm_precision_20", "NP@0.2"), ("fps", "frames/s"))
KEYS = ("auc", "precision_20", "norm_precision_20", "fps", "model_fps", "frames")


def evaluate(model, dataset, *, batch_size: int, device, limit, out_dir=None) -> dict[str, Any]:
    res = evaluate_tracking(model, dataset, out_dir=out_dir, limit=limit)
    return {**{k: res.get(k) for k in KEYS}, "n": len(list(dataset)[:limit] if limit else list(dataset))}


def sample_inputs(model, dataset, batch_size: int, n_batches: int) -> list[ModelInputs]:
    """(template, search) crops: the template from frame 0, searches around the ground truth of later frames."""
    source = FrameSource(model.input_spec())
    zs, xs = [], []
    want = batch_size * n_batches
    for seq in dataset:
        first = source.frame(seq, 0)
        z, _ = crop_around(first, seq.boxes[0], 2.0, model.template_size)
        for k in range(1, len(seq)):
            if len(zs) == want:
                break
            x, _ = crop_around(source.frame(seq, k), seq.boxes[k], 4.0, model.search_size)
            zs.append(z)
            xs.append(x)
        if len(zs) == want:
            break
    if not zs:
        raise UsageError("no (template, search) pairs: the tracking sequences need at least 2 frames")
    z, x = torch.stack(zs), torch.stack(xs)
    return [
        ModelInputs((z[i : i + batch_size], x[i : i + batch_size])) for i in range(0, len(zs), batch_size)
    ]


DATASETS = ("fe108", "visevent", "felt", "synthetic[:<n>]")


def load_dataset(name: str, *, root: str | None, split: str, model, limit: int | None = None):
    """``fe108`` / ``visevent`` / ``felt``: the real layouts under ``root``; ``synthetic[:<n>]``: n (default
    20) test sequences generated into a temporary folder (objects from the shipped Fashion-MNIST slice; no
    ``root``, split ``test`` only)."""
    import tempfile

    from ...data.tracking import TrackingDataset
    from ...data.tracking_synth import make_tracking_dataset

    if name in ("fe108", "visevent", "felt"):
        if root is None:
            raise UsageError(
                f"dataset {name} needs its root folder (--data-root) with <split>/<sequence>/ folders"
            )
        return TrackingDataset(root, name, "test" if split == "val" else split)
    if name == "synthetic" or name.startswith("synthetic:"):
        n = name.partition(":")[2]
        if n and not (n.isdigit() and int(n) >= 1):
            raise UsageError(f"dataset {name!r}: synthetic:<n> needs n >= 1")
        if root is not None or split != "test":
            raise UsageError(
                f"dataset {name!r} generates test sequences from the shipped slice: it reads no folder "
                "(--data-root) and has only the split test (--split); for other sequences write them with "
                "`tp-spikformer make-tracking --out DIR` and use --dataset fe108 --data-root DIR --split ..."
            )
        root = tempfile.mkdtemp(prefix="tp-spikformer-tracking-")
        make_tracking_dataset(root, train=0, test=int(n or 20), source="shipped")
        return TrackingDataset(root, "fe108", "test")
    raise UsageError(f"unknown tracking dataset {name!r}; choose one of {DATASETS}")


TRAIN_DEFAULTS = {"epochs": 10, "batch_size": 16, "lr": 1e-3, "weight_decay": 1e-4}


def train(model, args) -> dict[str, Any]:
    """``tp-spikformer train --task tracking``: AdamW (backbone at ``--backbone-lr-mult`` x lr), gradient
    clipping (``--clip-grad``, default 0.1), lr x0.1 at 80 % of the epochs, GIoU + L1 + focal (2/5/1);
    ``--samples-per-epoch`` (template, search) pairs per epoch from the training sequences of ``--data-root``
    (FE108 layout: ``synthetic`` sequences written by ``tp-spikformer make-tracking``, or ``fe108`` /
    ``visevent`` / ``felt``)."""
    from ...data.tracking import TrackingDataset
    from .engine import train_tracker

    layout = "fe108" if args.dataset in ("synthetic", "fe108") else args.dataset
    if layout not in ("fe108", "visevent", "felt"):
        raise UsageError(
            f"unknown tracking training set {args.dataset!r}; choose synthetic, fe108, visevent or felt"
        )
    if args.data_root is None:
        raise UsageError(
            "tracking training needs --data-root: a folder with train/<sequence>/ folders "
            "(make one with `tp-spikformer make-tracking --out DIR`)"
        )
    return train_tracker(
        model,
        TrackingDataset(args.data_root, layout, "train"),
        epochs=args.epochs,
        samples_per_epoch=args.samples_per_epoch,
        batch_size=args.batch_size,
        lr=args.lr,
        backbone_lr_mult=args.backbone_lr_mult,
        weight_decay=args.weight_decay,
        grad_clip=args.clip_grad if args.clip_grad is not None else 0.1,
        device=args.device,
        threads=args.threads,
        out_dir=args.out,
        seed=args.seed,
    )


SPEC = register_task(
    TaskSpec(
        "tracking",
        evaluate,
        METRICS,
        sample_inputs,
        backbone=lambda model: None,
        timed_by_evaluate=True,
        load_dataset=load_dataset,
        dataset_names=DATASETS,
        train=train,
        train_defaults=TRAIN_DEFAULTS,
        train_options=frozenset({"backbone_lr_mult", "clip_grad", "samples_per_epoch"}),
    )
)
