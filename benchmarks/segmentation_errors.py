"""Where a segmenter's errors come from (prints JSON; ``--out`` writes it): the pixel confusion matrix on
validation scenes, the share of object pixels labelled background (mask errors) vs another object class
(recognition errors), and mIoU on validation vs training scenes (how much is generalisation).

Usage: python benchmarks/segmentation_errors.py [--model sdt_v3_scenes_semfpn] [--n 200] [--keep K]
       [--threads 1] [--out file.json]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from tp_spikformer import apply_tp, create_model
from tp_spikformer.jsonio import print_and_write
from tp_spikformer.tasks.segmentation.evaluation import evaluate_segmentation, whole_inference
from tp_spikformer.tasks.segmentation.inputs import input_normalization, normalize_images, split_item
from tp_spikformer.tasks.training_data import training_scenes, validation_scenes


def confusion(model, data, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """Pixel counts ``[true class, predicted class]`` over ``data`` (int64)."""
    norm, counts = input_normalization(model), np.zeros((num_classes, num_classes), np.int64)
    with torch.inference_mode():
        for i in range(len(data)):
            x, y, _ = split_item(data[i], i, data)
            pred = whole_inference(model, normalize_images(x[None].float(), norm), y.shape[-2:]).argmax(1)[0]
            t, p = y.numpy().astype(np.int64), pred.numpy().astype(np.int64)
            valid = t != ignore_index
            counts += np.bincount(t[valid] * num_classes + p[valid], minlength=num_classes**2).reshape(
                num_classes, num_classes
            )
    return counts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="sdt_v3_scenes_semfpn")
    p.add_argument("--n", type=int, default=200, help="validation scenes and training scenes each")
    p.add_argument("--keep", type=float, default=None, help="also prune every block to this fraction")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = create_model(args.model, pretrained=True).eval()
    if args.keep is not None:
        apply_tp(model, keep=args.keep)
    k = model.num_classes
    val = validation_scenes(model, args.n, "segmentation")
    train = training_scenes(model, args.n, "segmentation")
    c = confusion(model, val, k)
    obj = c[1:].sum()
    val_metrics = evaluate_segmentation(model, val, batch_size=16)
    names = val_metrics.get("classes")
    result = {
        "benchmark": "segmentation_errors",
        "model": args.model,
        "keep": args.keep,
        "n": args.n,
        "torch": torch.__version__,
        "classes": list(names) if names is not None else None,
        "object_pixels": int(obj),
        "object_pixels_to_background": float(c[1:, 0].sum() / obj),
        "object_pixels_right_class": float(np.trace(c[1:, 1:]) / obj),
        "object_pixels_wrong_object_class": float((c[1:, 1:].sum() - np.trace(c[1:, 1:])) / obj),
        "background_pixels_to_object": float(c[0, 1:].sum() / c[0].sum()),
        "confusion_row_percent": np.round(100.0 * c / np.maximum(1, c.sum(1, keepdims=True)), 1).tolist(),
        "mIoU_validation": val_metrics["mIoU"],
        "mIoU_training": evaluate_segmentation(model, train, batch_size=16)["mIoU"],
        "command": " ".join(
            ["python benchmarks/segmentation_errors.py", *(argv if argv is not None else sys.argv[1:])]
        ),
    }
    print_and_write(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
