"""Training, prediction and COCO evaluation of a detector (library functions; the CLI wires them).

* :func:`train_detection`: AdamW (``training.make_optimizer``: no weight decay on norms, biases and the
  head's scales, which the official detection configs exempt too), linear warm-up then cosine decay per
  step (``training.cosine_lr``), scale jitter and flips; a resumable ``checkpoint.pt`` per epoch and the
  final weights in ``model.pt`` (``training.export_weights``'s format).
* :func:`predict_detection`: COCO results entries (``image_id``, ``category_id`` = the dataset's own
  category id, ``bbox`` ``[x, y, w, h]`` in original image pixels after undoing the letterbox, ``score``).
* :func:`evaluate_detection`: writes the results file and scores it with pycocotools.

Datasets give untransformed ``(image [3, H, W] in [0, 1], target)`` items (``CocoDetection`` without a
transform, ``SceneDataset(mode="detection")``); preprocessing comes from the model's configuration
(:mod:`.preprocess`). Category ids: ``dataset.label_to_cat_id`` (``CocoDetection``), ``label + 1`` for
generated scenes (the ids their COCO writer uses), or ``label_to_cat_id=`` given explicitly.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ...data.coco import coco_results
from ...data.scenes import SEMANTIC_CLASSES, SceneDataset
from ...errors import UsageError, check_int
from ...jsonio import plain, write_json
from ...training.checkpoints import CHECKPOINT_NAME, METRICS_NAME, WEIGHTS_NAME, atomic_save, export_weights
from ...training.optim import cosine_lr, epoch_seed, make_optimizer, set_lr
from .coco_eval import require_pycocotools, score_results
from .preprocess import DetectionPreprocess, make_batch, original_boxes

RESULTS_NAME = "detections.json"


def _log_to_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- configuration helpers ----------------------------------------------------------------------------


def model_input_size(model: nn.Module, input_size: Sequence[int] | None = None) -> tuple[int, int]:
    """``(h, w)`` the images are letterboxed to: ``input_size`` or the model configuration's."""
    if input_size is not None:
        if len(input_size) != 2 or min(int(v) for v in input_size) < 1:
            raise UsageError(f"input_size must be (height, width) in pixels, got {input_size}")
        return int(input_size[0]), int(input_size[1])
    cfg = getattr(model, "config", None)
    if cfg is None:
        raise UsageError("the model has no .config (build it with create_model): pass input_size=(h, w)")
    return tuple(int(v) for v in cfg.data.input_size[1:])


def preprocess_for(model: nn.Module, input_size=None, **augment: Any) -> DetectionPreprocess:
    """The :class:`DetectionPreprocess` of ``model`` (its configuration's mean/std and input size)."""
    cfg = getattr(model, "config", None)
    mean = cfg.data.mean if cfg is not None else None
    std = cfg.data.std if cfg is not None else None
    return DetectionPreprocess(model_input_size(model, input_size), mean, std, **augment)


def category_ids(dataset: Any, label_to_cat_id: Sequence[int] | None = None) -> list[int]:
    """COCO category id of each contiguous label: explicit, the dataset's ``label_to_cat_id``, or
    ``label + 1`` for generated scenes; anything else raises."""
    if label_to_cat_id is not None:
        return [int(c) for c in label_to_cat_id]
    own = getattr(dataset, "label_to_cat_id", None)
    if own is not None:
        return [int(c) for c in own]
    if isinstance(dataset, SceneDataset):
        return list(range(1, len(SEMANTIC_CLASSES)))
    raise UsageError(
        f"{type(dataset).__name__} has no label_to_cat_id: pass label_to_cat_id=[category id of label 0, "
        "of label 1, ...] so the results file uses the ground truth's category ids"
    )


def check_untransformed(dataset: Any, what: str) -> None:
    """The engine letterboxes and normalises itself: refuse a dataset that transforms its items."""
    if getattr(dataset, "transform", None) is not None:
        raise UsageError(
            f"the {what} has a transform ({dataset.transform!r}); pass it without one (transform=None): "
            "the detection engine letterboxes, normalises and augments the images itself"
        )


def _target(dataset: Any, index: int) -> dict[str, Any]:
    fn = getattr(dataset, "target", None)
    return fn(index) if callable(fn) else dataset[index][1]


def ground_truth(dataset: Any, indices: Sequence[int], label_to_cat_id: Sequence[int] | None = None):
    """What to score against: the annotation file of a ``CocoDetection`` (path), else an in-memory COCO
    dict built from the targets of ``indices`` (areas = box areas, iscrowd from the target or 0)."""
    ann_file = getattr(dataset, "ann_file", None)
    if ann_file is not None:
        return ann_file
    cats = category_ids(dataset, label_to_cat_id)
    names = getattr(dataset, "classes", None)
    if isinstance(dataset, SceneDataset):
        names = list(SEMANTIC_CLASSES[1:])
    images, anns = [], []
    for i in indices:
        t = _target(dataset, i)
        h, w = t["orig_size"]
        images.append({"id": int(t["image_id"]), "height": int(h), "width": int(w), "file_name": f"{i}"})
        crowd = t.get("iscrowd", torch.zeros(len(t["labels"]), dtype=torch.int64))
        for box, label, z in zip(t["boxes"].tolist(), t["labels"].tolist(), crowd.tolist()):
            x1, y1, x2, y2 = box
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": int(t["image_id"]),
                    "category_id": cats[int(label)],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": int(z),
                }
            )
    categories = [
        {"id": c, "name": str(names[k]) if names is not None and k < len(names) else str(c)}
        for k, c in enumerate(cats)
    ]
    return {"images": images, "annotations": anns, "categories": categories}


def _indices(dataset: Any, limit: int | None) -> list[int]:
    n = len(dataset)
    if limit is not None:
        n = min(n, check_int("limit (images)", limit))
    return list(range(n))


# -- prediction and evaluation ------------------------------------------------------------------------


@torch.no_grad()
def predict_detection(
    model: nn.Module,
    dataset: Any,
    *,
    batch_size: int = 8,
    input_size: Sequence[int] | None = None,
    device: str | torch.device | None = None,
    limit: int | None = None,
    label_to_cat_id: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """COCO results entries for the first ``limit`` images of ``dataset`` (all by default): the model
    runs on letterboxed images (``input_size`` or its configuration's) and its boxes are mapped back to
    the original pixels. The model's train/eval mode is restored afterwards."""
    check_untransformed(dataset, "dataset")
    cats = category_ids(dataset, label_to_cat_id)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    pre = preprocess_for(model, input_size)
    was_training = model.training
    model.eval()
    results: list[dict[str, Any]] = []
    try:
        idx = _indices(dataset, limit)
        for start in range(0, len(idx), batch_size):
            items = [pre(*dataset[i]) for i in idx[start : start + batch_size]]
            images, targets, sizes = make_batch(items, model.size_divisor)
            dets = model(images.to(device), image_sizes=sizes)
            for det, t in zip(dets, targets):
                boxes = original_boxes(det["boxes"].float().cpu(), t["letterbox"])
                results += coco_results(t["image_id"], boxes, det["scores"], det["labels"], cats)
    finally:
        model.train(was_training)
    return results


def evaluate_detection(
    model: nn.Module,
    dataset: Any,
    *,
    out_file: str | os.PathLike,
    batch_size: int = 8,
    input_size: Sequence[int] | None = None,
    device: str | torch.device | None = None,
    limit: int | None = None,
    label_to_cat_id: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Predict (:func:`predict_detection`), write the COCO results file ``out_file`` and score it with
    pycocotools against the dataset's ground truth (only the images predicted). Returns mAP, AP50, AP75,
    AP_S/M/L (and the ARs) in percent, counts, ``results_file`` and ``seconds``."""
    require_pycocotools()  # before the forward passes, not after them
    start = time.perf_counter()
    results = predict_detection(
        model,
        dataset,
        batch_size=batch_size,
        input_size=input_size,
        device=device,
        limit=limit,
        label_to_cat_id=label_to_cat_id,
    )
    seconds = time.perf_counter() - start
    out_file = os.fspath(out_file)
    os.makedirs(os.path.dirname(os.path.abspath(out_file)), exist_ok=True)
    write_json(out_file, results, indent=None)
    idx = _indices(dataset, limit)
    image_ids = [int(_target(dataset, i)["image_id"]) for i in idx]
    metrics = score_results(ground_truth(dataset, idx, label_to_cat_id), out_file, image_ids)
    metrics.update(results_file=out_file, seconds=round(seconds, 3))
    return metrics


# -- training -----------------------------------------------------------------------------------------


def _rate(step: int, total: int, warmup: int, lr: float, min_lr: float, cosine: bool) -> float:
    """Warm-up then cosine (``training.cosine_lr``), or warm-up then constant."""
    if cosine:
        return cosine_lr(step, total, warmup, lr, min_lr)
    return lr * min(1.0, (step + 1) / warmup) if warmup else lr


def _epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    g = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    return torch.randperm(n, generator=g).tolist()


def train_detection(
    model: nn.Module,
    train_set: Any,
    val_set: Any = None,
    *,
    epochs: int = 12,
    batch_size: int = 16,
    lr: float = 2e-3,
    weight_decay: float = 0.05,
    warmup: int = 100,
    cosine: bool = True,
    min_lr: float = 0.0,
    flips: float = 0.5,
    scale_jitter: tuple[float, float] | None = (0.75, 1.25),
    input_size: Sequence[int] | None = None,
    clip_grad: float | None = 10.0,
    device: str | torch.device = "cpu",
    threads: int | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = _log_to_stderr,
    log_interval: int = 20,
    out_dir: str | os.PathLike | None = None,
    resume: bool = True,
    max_steps: int | None = None,
    eval_batch_size: int = 16,
    val_limit: int | None = None,
    label_to_cat_id: Sequence[int] | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``model`` (a detector: ``model(images, targets)`` returns its loss dict) on ``train_set``.

    Args:
        epochs / batch_size / lr / weight_decay: AdamW (``training.make_optimizer``: decay on kernels only).
        warmup: linear warm-up length in optimiser steps; cosine / min_lr: cosine decay after it (per
            step) to ``min_lr``, or (``cosine=False``) a constant rate.
        flips: horizontal-flip probability; scale_jitter: ``(low, high)`` resize factors after the
            letterbox (None: off).
        input_size: letterbox size (default the model configuration's).
        clip_grad: gradient-norm clip (None: off).
        device / threads: where to train; ``torch.set_num_threads`` for the run (restored afterwards).
        seed: data order and augmentations (per epoch, so a resumed run continues identically).
        log / log_interval: a ``str -> None`` callable (None: silent) and how many steps between lines.
        out_dir: writes ``checkpoint.pt`` after every epoch, ``model.pt`` (weights + ``meta``) and
            ``metrics.json`` at the end; with ``resume`` an existing checkpoint there is continued.
        max_steps: stop after this many optimiser steps in total (short runs, tests, probes); the
            warm-up + cosine schedule then spans these steps.
        val_set / eval_batch_size / val_limit / label_to_cat_id: scored with pycocotools after the last
            epoch (:func:`evaluate_detection`; the results file goes to ``out_dir``).
        meta: extra entries for the weights file's ``meta``.

    Returns ``history`` (per epoch: mean losses, seconds, images/s), ``steps``, ``train_seconds``,
    ``val`` (metrics or None) and the paths written.
    """
    say = log or (lambda _msg: None)
    if val_set is not None:
        require_pycocotools()  # fail before training, not after it
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("log_interval", log_interval)):
        check_int(name, value)
    check_int("warmup (steps)", warmup, minimum=0)
    if lr <= 0:
        raise UsageError(f"lr must be positive, got {lr}")
    if len(train_set) == 0:
        raise UsageError("the training set is empty")
    check_untransformed(train_set, "training set")
    if val_set is not None:
        check_untransformed(val_set, "validation set")
    device = torch.device(device)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    model.to(device)
    optimizer = make_optimizer(model, lr, weight_decay)
    pre = preprocess_for(model, input_size, flip_p=flips, scale_range=scale_jitter, seed=seed)
    steps_per_epoch = math.ceil(len(train_set) / batch_size)
    total = epochs * steps_per_epoch if max_steps is None else min(epochs * steps_per_epoch, int(max_steps))
    out_dir = os.fspath(out_dir) if out_dir is not None else None
    ckpt_path = os.path.join(out_dir, CHECKPOINT_NAME) if out_dir else None
    history: list[dict[str, Any]] = []
    step, first_epoch, train_seconds = 0, 0, 0.0
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        if resume and os.path.isfile(ckpt_path):
            ck = torch.load(ckpt_path, map_location=device, weights_only=True)
            model.load_state_dict(ck["model"])
            optimizer.load_state_dict(ck["optimizer"])
            step, first_epoch, history = int(ck["step"]), int(ck["epoch"]) + 1, list(ck["history"])
            train_seconds = float(ck["train_seconds"])
            say(f"resumed from {ckpt_path} after epoch {first_epoch} (step {step})")
    say(
        f"training {getattr(getattr(model, 'config', None), 'name', type(model).__name__)}: {len(train_set)} "
        f"images, {epochs} epochs x {steps_per_epoch} steps of {batch_size}, lr {lr}, warm-up {warmup}, "
        f"input {pre.size}, {torch.get_num_threads()} thread(s) on {device}"
    )
    try:
        for epoch in range(first_epoch, epochs):
            if step >= total:
                break
            model.train()
            pre.reseed(epoch_seed(seed, epoch, stream=1))
            order = _epoch_order(len(train_set), seed, epoch)
            sums: dict[str, float] = {}
            seen, t0 = 0, time.perf_counter()
            for b in range(steps_per_epoch):
                if step >= total:
                    break
                items = [pre(*train_set[i]) for i in order[b * batch_size : (b + 1) * batch_size]]
                images, targets, _ = make_batch(items, model.size_divisor)
                set_lr(optimizer, _rate(step, total, warmup, lr, min_lr, cosine))
                losses = model(images.to(device), targets)
                optimizer.zero_grad(set_to_none=True)
                losses["loss"].backward()
                if clip_grad:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
                optimizer.step()
                step += 1
                seen += len(items)
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach()) * len(items)
                if step % log_interval == 0 or step == total:
                    parts = " ".join(f"{k} {float(v.detach()):.4f}" for k, v in losses.items())
                    rate = seen / (time.perf_counter() - t0)
                    say(
                        f"epoch {epoch + 1}/{epochs} step {step}/{total} {parts} lr {optimizer.param_groups[0]['lr']:.2e} "
                        f"{rate:.1f} img/s"
                    )
            seconds = time.perf_counter() - t0
            train_seconds += seconds
            row = {
                "epoch": epoch + 1,
                "steps": step,
                "images": seen,
                "seconds": round(seconds, 2),
                "images_per_second": round(seen / seconds, 2) if seconds > 0 else None,
                **{k: v / max(seen, 1) for k, v in sums.items()},
            }
            history.append(row)
            say(f"epoch {epoch + 1} done: loss {row.get('loss', float('nan')):.4f} in {seconds:.0f} s")
            if ckpt_path:
                atomic_save(
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "epoch": epoch,
                        "step": step,
                        "history": plain(history),
                        "train_seconds": train_seconds,
                    },
                    ckpt_path,
                )
    finally:
        torch.set_num_threads(old_threads)
    result: dict[str, Any] = {
        "history": history,
        "steps": step,
        "train_seconds": round(train_seconds, 2),
        "val": None,
    }
    if val_set is not None:
        with tempfile.TemporaryDirectory() as tmp:
            out_file = os.path.join(out_dir or tmp, RESULTS_NAME)
            result["val"] = evaluate_detection(
                model,
                val_set,
                out_file=out_file,
                batch_size=eval_batch_size,
                input_size=input_size,
                device=device,
                limit=val_limit,
                label_to_cat_id=label_to_cat_id,
            )
        if not out_dir:
            result["val"]["results_file"] = None
        say(
            f"validation: mAP {result['val']['mAP']:.2f} AP50 {result['val']['AP50']:.2f} "
            f"AP75 {result['val']['AP75']:.2f} on {result['val']['images']} images"
        )
    if out_dir:
        cfg = getattr(model, "config", None)
        info = {
            "model": getattr(cfg, "name", None),
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "weight_decay": weight_decay,
            "warmup": warmup,
            "cosine": cosine,
            "min_lr": min_lr,
            "flips": flips,
            "scale_jitter": scale_jitter,
            "input_size": list(pre.size),
            "seed": seed,
            "steps": step,
            "train_seconds": result["train_seconds"],
            "val": result["val"],
            **(meta or {}),
        }
        result["weights"] = export_weights(model, os.path.join(out_dir, WEIGHTS_NAME), info)
        result["checkpoint"] = ckpt_path
        write_json(os.path.join(out_dir, METRICS_NAME), result)
    return result
