"""Train a tracker on tracking sequences, run it online over a sequence, and score it on a dataset.

* :func:`train_tracker`: SDTrack's recipe (AdamW, backbone lr x 0.1, weight decay 1e-4, gradient clipping
  0.1, step decay x 0.1 at 80 % of the epochs; loss 2 GIoU + 5 L1 + 1 focal, :mod:`.losses`) on pairs
  from :class:`.sampler.PairSampler`; writes ``checkpoint.pt`` (every epoch) and ``model.pt`` (weights +
  meta, ``training.export_weights``; ``create_model(name, checkpoint="model.pt")`` reads it) to ``out_dir``.
* :func:`track_sequence`: SDTrack's online loop (``lib/test/tracker/SDTrack.py``): the template crop from
  the first frame around its ground-truth box, then per frame a search crop around the last box, the box at
  the score map's argmax mapped back to frame pixels and clipped (``clip_box``, margin 10). Frame 0's box is
  the initial box.
* :func:`evaluate_tracking`: every sequence of a dataset, results as ``<out_dir>/<seq>.txt`` (one
  ``x,y,w,h`` line per frame) and the pytracking scores (:mod:`.metrics`) plus frames per second.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ...data.event_repr import crop_around
from ...data.tracking import TrackingSequence
from ...jsonio import plain
from ...training.checkpoints import CHECKPOINT_NAME, WEIGHTS_NAME, atomic_save, export_weights
from .losses import tracking_loss
from .metrics import dataset_scores, sequence_scores, write_results_txt
from .sampler import PairSampler, uses_png_frames
from .tracker_base import OneStreamTracker


def _check_tracker(model: nn.Module) -> OneStreamTracker:
    if not isinstance(model, OneStreamTracker):
        raise TypeError(
            f"expected a tracker (create_model('sdtrack_synth') or another tracking configuration), got "
            f"{type(model).__name__}"
        )
    return model


def _device_of(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def param_groups(model: nn.Module, lr: float, backbone_lr_mult: float) -> list[dict[str, Any]]:
    """SDTrack's two groups: parameters outside the backbone at ``lr``, ``backbone.*`` at
    ``lr * backbone_lr_mult`` (official rule: ``"backbone" in name``)."""
    head = [p for n, p in model.named_parameters() if "backbone" not in n and p.requires_grad]
    body = [p for n, p in model.named_parameters() if "backbone" in n and p.requires_grad]
    return [{"params": head, "lr": lr}, {"params": body, "lr": lr * backbone_lr_mult}]


def train_tracker(
    model: nn.Module,
    dataset: Iterable[TrackingSequence],
    *,
    epochs: int = 10,
    samples_per_epoch: int = 2000,
    batch_size: int = 16,
    lr: float = 4e-4,
    backbone_lr_mult: float = 0.1,
    weight_decay: float = 1e-4,
    grad_clip: float | None = 0.1,
    lr_drop_epoch: int | None = None,
    lr_drop: float = 0.1,
    device: str | torch.device | None = None,
    threads: int | None = None,
    log: Callable[[str], Any] | None = print,
    out_dir: str | os.PathLike | None = None,
    seed: int = 0,
    sampler_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``model`` (a tracker, in place) on pairs sampled from ``dataset`` (its sequences).

    Per epoch ``samples_per_epoch // batch_size`` steps of ``batch_size`` pairs; AdamW with the head at
    ``lr`` and the backbone at ``lr * backbone_lr_mult``, ``weight_decay``, gradient-norm clipping at
    ``grad_clip`` (None: off), the learning rates times ``lr_drop`` from epoch ``lr_drop_epoch`` on
    (default: 80 % of ``epochs``, SDTrack's 80/100). ``sampler_kwargs`` go to :class:`.sampler.PairSampler`
    (factors, jitter, ``max_interval``). ``threads`` sets torch's intra-op threads for the run (restored
    afterwards). ``seed`` drives the pair sampling (the weights are the caller's). Returns the per-epoch
    history, the time and the paths written.
    """
    tracker = _check_tracker(model)
    if epochs < 1 or batch_size < 1 or samples_per_epoch < batch_size:
        raise ValueError(
            f"need epochs >= 1 and samples_per_epoch >= batch_size >= 1, got epochs={epochs}, "
            f"samples_per_epoch={samples_per_epoch}, batch_size={batch_size}"
        )
    steps = samples_per_epoch // batch_size
    drop_at = max(1, int(0.8 * epochs)) if lr_drop_epoch is None else int(lr_drop_epoch)
    device = torch.device(device) if device is not None else _device_of(model)
    sampler = PairSampler(list(dataset), tracker.input_spec(), **(sampler_kwargs or {}))
    recipe = {
        "epochs": epochs,
        "samples_per_epoch": samples_per_epoch,
        "batch_size": batch_size,
        "lr": lr,
        "backbone_lr_mult": backbone_lr_mult,
        "weight_decay": weight_decay,
        "grad_clip": grad_clip,
        "lr_drop_epoch": drop_at,
        "lr_drop": lr_drop,
        "seed": seed,
        "sampler": sampler_kwargs or {},
        "sequences": len(sampler.sequences),
    }
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
    say = log or (lambda _msg: None)
    model.to(device).train()
    optimizer = torch.optim.AdamW(param_groups(model, lr, backbone_lr_mult), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=drop_at, gamma=lr_drop)
    rng = np.random.default_rng(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    history: list[dict[str, Any]] = []
    start = time.perf_counter()
    try:
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            sums: dict[str, float] = {}
            for _ in range(steps):
                template, search, target = sampler.batch(batch_size, rng)
                out = model(template.to(device), search.to(device))
                loss, stats = tracking_loss(out, target.to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, grad_clip)
                optimizer.step()
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + v
            lrs = [g["lr"] for g in optimizer.param_groups]
            scheduler.step()
            seconds = time.perf_counter() - t0
            row = {
                "epoch": epoch,
                **{k: v / steps for k, v in sums.items()},
                "lr": lrs[0],
                "backbone_lr": lrs[1],
                "seconds": seconds,
                "samples_per_s": steps * batch_size / seconds,
            }
            history.append(row)
            say(
                f"epoch {epoch}/{epochs}: loss {row['loss']:.4f} (giou {row['giou']:.4f} l1 {row['l1']:.4f} "
                f"focal {row['focal']:.4f}) iou {row['iou']:.3f} lr {lrs[0]:.2e} {seconds:.0f}s "
                f"({row['samples_per_s']:.1f} pairs/s)"
            )
            if out_dir is not None:
                atomic_save(
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "epoch": epoch,
                        "history": plain(history),
                        "recipe": plain(recipe),
                    },
                    os.path.join(out_dir, CHECKPOINT_NAME),
                )
    finally:
        torch.set_num_threads(old_threads)
        sampler.source.clear()
    model.eval()
    result: dict[str, Any] = {"history": history, "seconds": time.perf_counter() - start, "recipe": recipe}
    if out_dir is not None:
        cfg = getattr(model, "config", None)
        meta = {
            "model": getattr(cfg, "name", None),
            "kwargs": getattr(cfg, "kwargs", None),
            "recipe": recipe,
            "history": history,
        }
        result["weights"] = export_weights(model, os.path.join(out_dir, WEIGHTS_NAME), meta)
        result["checkpoint"] = os.path.join(out_dir, CHECKPOINT_NAME)
        with open(os.path.join(out_dir, "history.json"), "w", encoding="utf-8") as f:
            json.dump(plain(result), f, indent=1)
    return result


# -- online tracking ------------------------------------------------------------------------------------


def clip_box(box: Sequence[float], height: int, width: int, margin: float = 10.0) -> list[float]:
    """SDTrack's ``clip_box``: keep ``x, y, w, h`` in the frame with at least ``margin`` pixels of it
    visible and a size of at least ``margin``."""
    x1, y1, w, h = (float(v) for v in box)
    x2, y2 = x1 + w, y1 + h
    x1 = min(max(0.0, x1), width - margin)
    x2 = min(max(margin, x2), width)
    y1 = min(max(0.0, y1), height - margin)
    y2 = min(max(margin, y2), height)
    return [x1, y1, max(margin, x2 - x1), max(margin, y2 - y1)]


def _frames(tracker: OneStreamTracker, sequence: TrackingSequence, stop: int | None):
    spec = tracker.input_spec()
    if spec["representation"] == "gtp" and uses_png_frames(sequence):  # SDTrack's pre-converted frames
        return (
            f[:1]
            for f in sequence.iter_frames("png", stop=stop, order=spec["gtp_kwargs"].get("order", "pnh"))
        )
    if spec["representation"] == "gtp":
        return sequence.iter_frames("gtp", 1, stop=stop, as_png=True, **spec["gtp_kwargs"])
    if uses_png_frames(sequence):
        raise ValueError(
            f"sequence '{sequence.name}' has only SDTrack PNG frames; {type(tracker).__name__} reads event "
            "counts and needs the events (events.aedat4 or events.npz + meta.json)"
        )
    return sequence.iter_frames("counts", spec["T"], stop=stop)


@torch.no_grad()
def track_sequence(
    model: nn.Module,
    sequence: TrackingSequence,
    *,
    template_factor: float = 2.0,
    search_factor: float = 4.0,
    clip_margin: float = 10.0,
    stop: int | None = None,
) -> dict[str, Any]:
    """Track ``sequence`` online (module docstring). Returns ``boxes`` ``[N, 4]`` (x, y, w, h per frame,
    frame 0 = the ground-truth initial box), ``seconds`` (the loop over frames 1.., event binning excluded),
    ``model_seconds`` (forward passes only), ``read_seconds`` (event binning) and ``frames``. ``stop``: track
    only the first ``stop`` frames."""
    tracker = _check_tracker(model)
    was_training = model.training
    model.eval()
    device = _device_of(model)
    n = len(sequence) if stop is None else min(stop, len(sequence))
    init = np.asarray(sequence.boxes[0], dtype=np.float64)
    if not (np.isfinite(init).all() and init[2] > 0 and init[3] > 0):
        raise ValueError(
            f"sequence '{sequence.name}': the initial box {init.tolist()} must have w > 0 and h > 0"
        )
    boxes = np.zeros((n, 4), dtype=np.float64)
    boxes[0] = init
    state = init.tolist()
    template = None
    loop = model_time = read_time = 0.0
    it = iter(_frames(tracker, sequence, n))
    try:
        for i in range(n):
            t0 = time.perf_counter()
            frame = tracker.frame_shape(next(it))  # [3, H, W] or [T, 2, H, W]
            t1 = time.perf_counter()
            read_time += t1 - t0
            height, width = frame.shape[-2:]
            if i == 0:
                template, _ = crop_around(frame, init, template_factor, tracker.template_size)
                template = template.unsqueeze(0).to(device)  # [1, ...]
                continue
            search, tf = crop_around(frame, state, search_factor, tracker.search_size)
            t2 = time.perf_counter()
            out = model(template, search.unsqueeze(0).to(device))
            cx, cy, w, h = (out["pred_boxes"][0, 0].double().cpu() * tracker.search_size).tolist()
            t3 = time.perf_counter()
            in_frame = tf.to_frame(np.array([cx - 0.5 * w, cy - 0.5 * h, w, h]))
            state = clip_box(in_frame, height, width, clip_margin)
            boxes[i] = state
            model_time += t3 - t2
            loop += time.perf_counter() - t1
    finally:
        model.train(was_training)
    return {
        "boxes": boxes,
        "seconds": loop,
        "model_seconds": model_time,
        "read_seconds": read_time,
        "frames": n,
    }


def evaluate_tracking(
    model: nn.Module,
    dataset: Iterable[TrackingSequence],
    *,
    out_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    log: Callable[[str], Any] | None = None,
    **track_kwargs: Any,
) -> dict[str, Any]:
    """Track every sequence of ``dataset`` (the first ``limit``) and score the results.

    Writes ``<out_dir>/<seq>.txt`` (one ``x,y,w,h`` line per frame) when ``out_dir`` is given. Returns the
    dataset scores of :func:`.metrics.dataset_scores` (``auc``, ``precision_20``, ``norm_precision_20``,
    ``op50``, ``op75``, ``mean_iou``; curves as lists), ``fps`` (tracked frames per second of the loop,
    event binning excluded), ``model_fps`` (forward passes only), ``frames`` and ``per_sequence`` scores.
    ``track_kwargs`` go to :func:`track_sequence`.
    """
    seqs = list(dataset)
    if limit is not None:
        seqs = seqs[: int(limit)]
    if not seqs:
        raise ValueError("no sequences to evaluate")
    per_seq, scores = {}, []
    frames = seconds = model_seconds = 0.0
    for k, seq in enumerate(seqs):
        res = track_sequence(model, seq, **track_kwargs)
        gt = np.asarray(seq.boxes, dtype=np.float64)[: res["frames"]]
        s = sequence_scores(res["boxes"], gt)
        scores.append(s)
        if out_dir is not None:
            write_results_txt(os.path.join(os.fspath(out_dir), f"{seq.name}.txt"), res["boxes"])
        tracked = res["frames"] - 1
        frames += tracked
        seconds += res["seconds"]
        model_seconds += res["model_seconds"]
        per_seq[seq.name] = {
            "auc": s["auc"],
            "precision_20": s["precision_20"],
            "norm_precision_20": s["norm_precision_20"],
            "frames": res["frames"],
            "fps": tracked / res["seconds"] if res["seconds"] > 0 else math.nan,
        }
        if log is not None:
            log(f"[{k + 1}/{len(seqs)}] {seq.name}: AUC {s['auc']:.1f} P@20 {s['precision_20']:.1f}")
    out = dataset_scores(scores)
    for key in ("success_curve", "precision_curve", "norm_precision_curve"):
        out[key] = np.asarray(out[key]).tolist()
    out.update(
        frames=int(frames),
        fps=frames / seconds if seconds > 0 else math.nan,
        model_fps=frames / model_seconds if model_seconds > 0 else math.nan,
        per_sequence=per_seq,
    )
    return out
