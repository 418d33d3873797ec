"""The detection task for the comparison runner (``tp-spikformer eval --task detection``): COCO mAP by
pycocotools from a results file per variant (``<out>/<variant>/detections.json``), SOPs/energy and
throughput of the whole detector and of its backbone on letterboxed images."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import torch

from ..protocol import TaskSpec, register_task
from .engine import _indices, evaluate_detection, preprocess_for
from .preprocess import make_batch

METRICS = (
    ("mAP", "mAP"),
    ("AP50", "AP50"),
    ("AP75", "AP75"),
    ("AP_S", "AP_S"),
    ("AP_M", "AP_M"),
    ("AP_L", "AP_L"),
)


def evaluate(model, dataset, *, batch_size: int, device, limit, out_dir=None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out_file = os.path.join(out_dir or tmp, "detections.json")
        res = evaluate_detection(
            model, dataset, out_file=out_file, batch_size=batch_size, device=device, limit=limit
        )
    keep = {k: res.get(k) for k, _ in METRICS}
    return {
        **keep,
        "n": len(_indices(dataset, limit)),
        "results_file": res["results_file"] if out_dir else None,
    }


def sample_inputs(model, dataset, batch_size: int, n_batches: int) -> list[torch.Tensor]:
    """Letterboxed, normalised, padded image batches as the detector sees them."""
    pre = preprocess_for(model)
    idx = _indices(dataset, batch_size * n_batches)
    batches = []
    for start in range(0, len(idx), batch_size):
        images, _, _ = make_batch(
            [pre(*dataset[i]) for i in idx[start : start + batch_size]], model.size_divisor
        )
        batches.append(images)
    return batches


def calibration_inputs(model, dataset, indices) -> tuple[torch.Tensor, None]:
    """Letterboxed, normalised, padded images ``[N, 3, H, W]`` (as the detector sees them) of the items
    ``indices`` of ``dataset``; no labels: the search's objective is ``features`` (the backbone's stage
    maps stay close to the dense model's, what the neck and head read)."""
    pre = preprocess_for(model)
    images, _, _ = make_batch([pre(*dataset[i]) for i in indices], model.size_divisor)
    return images, None


DATASETS = ("coco", "scenes[:<n>]")


def load_dataset(name: str, *, root: str | None, split: str, model, limit: int | None = None):
    """``coco``: ``<root>/annotations/instances_<split>.json`` + ``<root>/<split>/`` (any COCO-format set,
    e.g. written by ``tp-spikformer make-scenes``); ``scenes[:<n>]``: n (default 500) validation scenes of the
    model's input size generated on the fly (objects from the Fashion-MNIST test split under ``root``, or
    the shipped slice without it; with split ``train``/``training``: training scenes, objects from the
    Fashion-MNIST train split under ``root`` or Debian's folder)."""
    from ...data import CocoDetection
    from ...errors import UsageError
    from ..training_data import scene_set

    if name == "coco":
        if root is None:
            raise UsageError(
                "dataset coco needs its root folder (--data-root) with annotations/instances_<split>.json"
            )
        return CocoDetection(root, split)
    scenes = scene_set(model, name, split, "detection", root)
    if scenes is not None:
        return scenes
    raise UsageError(f"unknown detection dataset {name!r}; choose one of {DATASETS}")


TRAIN_DEFAULTS = {"epochs": 4, "batch_size": 16, "lr": 2e-3, "weight_decay": 0.05, "warmup_steps": 100}


def train(model, args) -> dict[str, Any]:
    """``tp-spikformer train --task detection``: AdamW, warm-up + cosine (``--min-lr``), flips (``--hflip``),
    scale jitter (``--scale-jitter LO HI``), focal + GIoU + centerness losses; training set ``scenes[:<n>]``
    (default 6,000 generated scenes) or a COCO-layout folder (``--dataset coco --data-root``, split train),
    validation on ``--test-dataset`` (default: 500 scenes / the val split), scored by pycocotools."""
    from ...data import CocoDetection
    from ...errors import UsageError
    from ..training_data import scene_count, training_scenes
    from .engine import train_detection

    n = scene_count(args.dataset, 6000)
    if n is not None:
        train_set = training_scenes(model, n, "detection", root=args.data_root)
    elif args.dataset == "coco":
        train_set = CocoDetection(args.data_root, "train")
    else:
        raise UsageError(f"unknown detection training set {args.dataset!r}; choose one of {DATASETS}")
    val_name = args.test_dataset or ("scenes" if n is not None else "coco")
    val_set = load_dataset(val_name, root=args.data_root, split="val", model=model)
    return train_detection(
        model,
        train_set,
        val_set,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup=args.warmup_steps,
        min_lr=args.min_lr,
        flips=args.hflip,
        scale_jitter=tuple(args.scale_jitter) if args.scale_jitter else None,
        clip_grad=args.clip_grad,
        device=args.device or "cpu",
        threads=args.threads,
        seed=args.seed,
        out_dir=args.out,
        resume=args.resume is not None,
        val_limit=args.test_limit,
        meta={"argv": getattr(args, "argv", None)},
    )


SPEC = register_task(
    TaskSpec(
        "detection",
        evaluate,
        METRICS,
        sample_inputs,
        load_dataset=load_dataset,
        dataset_names=DATASETS,
        train=train,
        train_defaults=TRAIN_DEFAULTS,
        train_options=frozenset(
            {
                "clip_grad",
                "hflip",
                "min_lr",
                "resume",
                "scale_jitter",
                "test_dataset",
                "test_limit",
                "warmup_steps",
            }
        ),
        calibration_inputs=calibration_inputs,
        calibration_objective="features",
    )
)
