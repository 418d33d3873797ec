"""The segmentation task for the comparison runner (``tp-spikformer eval --task segmentation``): mIoU, aAcc
and mAcc with mmseg's accumulation, prediction PNGs per variant (``out_dir``: ``<stem>.png`` in the
annotations' class-index convention), SOPs/energy and throughput of the whole segmenter and of its backbone
on images of the configuration's input size."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ...errors import UsageError
from ..protocol import TaskSpec, register_task
from .evaluation import evaluate_segmentation
from .inputs import input_normalization, normalize_images, sample_inputs, split_item

METRICS = (("mIoU", "mIoU"), ("aAcc", "aAcc"), ("mAcc", "mAcc"))
DATASETS = ("ade20k", "scenes[:<n>]")


def evaluate(model, dataset, *, batch_size: int, device, limit, out_dir=None) -> dict[str, Any]:
    res = evaluate_segmentation(
        model, dataset, batch_size=batch_size, device=device, limit=limit, save_predictions=out_dir
    )
    return {
        **{k: res[k] for k, _ in METRICS},
        "per_class_iou": res["per_class_iou"],
        "n": res["images"],
        "predictions": res.get("predictions"),
    }


def load_dataset(name: str, *, root: str | None, split: str, model, limit: int | None = None):
    """``ade20k``: an ADE20K-layout folder ``<root>/images/<split>/*.jpg`` + ``<root>/annotations/<split>/*.png``
    (e.g. written by ``tp-spikformer make-scenes``), with the configuration's ``reduce_zero_label`` and test
    resize (``extra``); ``scenes[:<n>]``: n (default 500) scenes of the model's input size generated on the
    fly (:func:`~tp_spikformer.tasks.training_data.scene_set`: validation scenes, objects from the
    Fashion-MNIST test split under ``root`` or the shipped slice; training scenes for a train split)."""
    from ...data.segmentation import ADE20KDataset, SegmentationEvalTransform
    from ...errors import UsageError
    from ..training_data import scene_set

    extra = model.config.extra
    if name == "ade20k":
        if root is None:
            raise UsageError(
                "dataset ade20k needs its root folder (--data-root) with images/<split>/ and annotations/<split>/"
            )
        scale = extra.get("test_scale")
        return ADE20KDataset(
            root,
            split,
            reduce_zero_label=extra.get("reduce_zero_label", False),
            transform=SegmentationEvalTransform(scale) if scale else None,
        )
    scenes = scene_set(model, name, split, "segmentation", root)
    if scenes is not None:
        return scenes
    raise UsageError(f"unknown segmentation dataset {name!r}; choose one of {DATASETS}")


def calibration_inputs(model, dataset, indices) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised images ``[N, 3, H, W]`` at the configuration's input size and their label maps
    ``[N, H, W]`` (nearest-resized; ignore index kept) of the items ``indices`` of ``dataset``; the
    search's objective is the pixel error (``accuracy``)."""
    _, h, w = model.config.data.input_size
    images, labels = [], []
    for i in indices:
        image, label, _ = split_item(dataset[i], i, dataset)
        if tuple(image.shape[-2:]) != (h, w):
            image = F.interpolate(image[None].float(), size=(h, w), mode="bilinear", align_corners=False)[0]
            label = F.interpolate(label[None, None].float(), size=(h, w), mode="nearest")[0, 0].long()
        images.append(image.float())
        labels.append(label.long())
    x = normalize_images(torch.stack(images), input_normalization(model))  # [N, 3, H, W]
    return x, torch.stack(labels)  # labels [N, H, W]


TRAIN_DEFAULTS = {"epochs": 5, "batch_size": 8, "lr": 2e-3, "weight_decay": 0.005, "warmup_steps": 200}


def train(model, args) -> dict[str, Any]:
    """``tp-spikformer train --task segmentation``: AdamW, warm-up + poly, the decode head at 2x lr
    (``--head-lr-mult``), flips (``--hflip``) and random crops (``--crop-size``), cross-entropy with ignore
    index 255; training set ``scenes[:<n>]`` (default 4,000 generated scenes) or an ADE20K-layout folder
    (``--dataset ade20k --data-root``), validation on ``--test-dataset`` (default: 500 scenes / the validation
    split)."""
    from ...data.segmentation import ADE20KDataset
    from ..training_data import scene_count, training_scenes
    from .engine import train_segmentation

    n = scene_count(args.dataset, 4000)
    if n is not None:
        train_set = training_scenes(model, n, "segmentation", root=args.data_root)
    elif args.dataset == "ade20k":
        train_set = ADE20KDataset(
            args.data_root, "training", reduce_zero_label=model.config.extra.get("reduce_zero_label", False)
        )
    else:
        raise UsageError(f"unknown segmentation training set {args.dataset!r}; choose one of {DATASETS}")
    val_name = args.test_dataset or ("scenes" if n is not None else "ade20k")
    val_set = load_dataset(val_name, root=args.data_root, split="validation", model=model)
    return train_segmentation(
        model,
        train_set,
        val_set,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_iters=args.warmup_steps,
        head_lr_mult=args.head_lr_mult,
        crop_size=args.crop_size,
        flip=args.hflip > 0,
        val_limit=args.test_limit,
        device=args.device or "cpu",
        threads=args.threads,
        seed=args.seed,
        out_dir=args.out,
        resume=args.resume is not None,
        meta={"argv": getattr(args, "argv", None)},
    )


SPEC = register_task(
    TaskSpec(
        "segmentation",
        evaluate,
        METRICS,
        sample_inputs,
        load_dataset=load_dataset,
        dataset_names=DATASETS,
        train=train,
        train_defaults=TRAIN_DEFAULTS,
        train_options=frozenset(
            {"crop_size", "head_lr_mult", "hflip", "resume", "test_dataset", "test_limit", "warmup_steps"}
        ),
        calibration_inputs=calibration_inputs,
        calibration_objective="accuracy",
    )
)
