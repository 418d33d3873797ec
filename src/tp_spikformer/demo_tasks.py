"""The dense-task part of ``tp-spikformer demo``: segmentation, detection and tracking models trained here,
each evaluated dense vs TP on a small generated set, with one picture each (offline: scenes and event
sequences are generated from the shipped Fashion-MNIST slice)."""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

import numpy as np
import torch

from .api import evaluate_variants
from .models import create_model
from .pruning import get_tp_state
from .task_plots import save_detection_figure, save_segmentation_figure, save_tracking_strip

TASK_MODELS = {
    "segmentation": "sdt_v3_scenes_semfpn",
    "detection": "sdt_v3_scenes_fcos",
    "tracking": "sdtrack_synth",
}
TASK_KEEPS = {"segmentation": 0.56, "detection": 0.78, "tracking": 0.56}  # the paper's ratios per task


def run_tasks(
    out: str, quick: bool, progress: bool, models: dict[str, str] = TASK_MODELS, pretrained: bool = True
) -> list[dict[str, Any]]:
    """Evaluate each task model dense vs TP (official scorer at the paper's keep) and draw its picture."""
    os.makedirs(out, exist_ok=True)
    rows = []
    for task, name in models.items():
        t0 = time.time()
        model = create_model(name, pretrained=pretrained).eval()
        keep = TASK_KEEPS[task]
        with tempfile.TemporaryDirectory() as tmp:
            data = model_data(task, model, quick, tmp)
            result = evaluate_variants(
                model,
                data,
                [(None, None, None), (None, keep, "official")],
                task=task,
                batch_size=8,
                energy_batches=1,
                speed=True,
                speed_batch_size=8,
                speed_repeats=2 if quick else 5,
                progress=progress,
                dataset_name="generated",
            )
            picture = PICTURES[task](model, data, keep, out, name)
        print(f"== {name} ({task}) [{time.time() - t0:.0f} s]")
        print(result.to_markdown(), "\n", flush=True)
        dense, pruned = result.rows
        main = result.metrics[0][0]
        rows.append(
            {
                "task": task,
                "model": name,
                "metric": main,
                "dense": dense[main],
                "tp": pruned[main],
                "keep": pruned["keep"],
                "energy_ratio": pruned.get("energy_ratio"),
                "speedup": pruned.get("speedup") or _fps_ratio(dense, pruned),
                "picture": picture,
                "rows": result.rows,
            }
        )
    return rows


def model_data(task: str, model, quick: bool, tmp: str):
    from .api import task_spec

    spec = task_spec(task)
    if task == "tracking":
        from .data.tracking import TrackingDataset
        from .data.tracking_synth import make_tracking_dataset

        make_tracking_dataset(
            tmp, train=0, test=2 if quick else 4, frames=24 if quick else 48, source="shipped"
        )
        return TrackingDataset(tmp, "fe108", "test")
    return spec.load_dataset(f"scenes:{16 if quick else 100}", root=None, split="test", model=model)


def _fps_ratio(dense: dict, pruned: dict) -> float | None:
    return pruned["fps"] / dense["fps"] if dense.get("fps") and pruned.get("fps") else None


def _pruned(model, keep: float):
    from .measure import make_variants

    dense, pruned = make_variants(model, [(None, None), (keep, "official")], record=True)
    return dense, pruned


def segmentation_picture(model, data, keep: float, out: str, name: str) -> str:
    from .tasks.segmentation.inputs import input_normalization, normalize_images

    image, label = data[0][:2]
    x = normalize_images(image[None], input_normalization(model))
    dense, pruned = _pruned(model, keep)
    with torch.inference_mode():
        d = dense.activate().predict(x)[0].numpy()
        p = pruned.activate().predict(x)[0].numpy()
    records = get_tp_state(pruned.model).records
    path = os.path.join(out, f"{name}_segmentation.png")
    return save_segmentation_figure(
        path,
        image.permute(1, 2, 0).numpy(),
        label.numpy(),
        d,
        p,
        records,
        title=f"{name}: dense vs TP keep {keep} (official scorer)",
    )


def detection_picture(model, data, keep: float, out: str, name: str) -> str:
    from .data.scenes import SEMANTIC_CLASSES
    from .tasks.detection.engine import preprocess_for
    from .tasks.detection.preprocess import make_batch, original_boxes

    image, target = data[0]
    images, targets, sizes = make_batch([preprocess_for(model)(image, target)], model.size_divisor)
    dense, pruned = _pruned(model, keep)
    dets = {}
    with torch.inference_mode():
        for label, v in (("dense", dense), ("pruned", pruned)):
            det = v.activate()(images, image_sizes=sizes)[0]
            boxes = original_boxes(det["boxes"].float(), targets[0]["letterbox"]).numpy()
            dets[label] = {"boxes": boxes, "labels": det["labels"].numpy(), "scores": det["scores"].numpy()}
    records = get_tp_state(pruned.model).records
    path = os.path.join(out, f"{name}_detection.png")
    return save_detection_figure(
        path,
        image.permute(1, 2, 0).numpy(),
        target["boxes"].numpy(),
        dets["dense"],
        dets["pruned"],
        records,
        names=list(SEMANTIC_CLASSES[1:]),
        title=f"{name}: dense vs TP keep {keep} (official scorer); truth in green",
    )


def tracking_picture(model, data, keep: float, out: str, name: str, frames: int = 8) -> str:
    from .plots import token_depth
    from .tasks.tracking.engine import track_sequence

    seq = data[0]
    dense, pruned = _pruned(model, keep)
    maps: list[np.ndarray] = []
    state = get_tp_state(pruned.model)

    def keep_map(module, args, output) -> None:
        if state.enabled and state.records:  # the pruned run only
            maps.append(token_depth(state.records, 0))

    hook = pruned.model.register_forward_hook(keep_map)
    try:
        dense.activate()
        d = track_sequence(dense.model, seq, stop=frames)["boxes"]
        pruned.activate()
        p = track_sequence(pruned.model, seq, stop=frames)["boxes"]
    finally:
        hook.remove()
    shown = seq.gtp_frames(0, frames)[:, 0]  # [N, 3, H, W] raw 0..255
    images = [np.clip(f.permute(1, 2, 0).numpy() / 255.0, 0, 1) for f in shown]
    kept = [np.zeros_like(maps[0])] + maps  # frame 0 initialises the template
    path = os.path.join(out, f"{name}_tracking.png")
    return save_tracking_strip(
        path,
        images,
        np.asarray(seq.boxes[:frames]),
        d,
        p,
        kept[:frames],
        title=f"{name}: truth green, dense blue, TP keep {keep} red; token depth below",
    )


PICTURES = {
    "segmentation": segmentation_picture,
    "detection": detection_picture,
    "tracking": tracking_picture,
}
