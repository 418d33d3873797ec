"""The segmentation task for the comparison runner (``tp-spikformer eval --task segmentation``): mIoU, aAcc
and mAcc with mmseg's accumulation, prediction PNGs per variant (``out_dir``: ``<stem>.png`` in the
annotations' class-index convention), SOPs/energy and throughput of the whole segmenter and of its backbone
on images of the configuration's input size."""

from __future__ import annotations

from typing import Any

from ..protocol import TaskSpec, register_task
from .evaluation import evaluate_segmentation
from .inputs import sample_inputs

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
    resize (``extra``); ``scenes[:<n>]``: n (default 500) validation scenes of the model's input size
    generated on the fly (objects from the shipped Fashion-MNIST slice)."""
    from ...data.scenes import SceneConfig, SceneDataset
    from ...data.segmentation import ADE20KDataset, SegmentationEvalTransform
    from ...errors import UsageError

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
    if name == "scenes" or name.startswith("scenes:"):
        n = name.partition(":")[2]
        if n and not (n.isdigit() and int(n) >= 1):
            raise UsageError(f"dataset {name!r}: scenes:<n> needs n >= 1")
        _, h, w = model.config.data.input_size
        return SceneDataset(
            SceneConfig(height=h, width=w, split="test", seed=0), int(n or 500), source="shipped"
        )
    raise UsageError(f"unknown segmentation dataset {name!r}; choose one of {DATASETS}")


SPEC = register_task(
    TaskSpec(
        "segmentation", evaluate, METRICS, sample_inputs, load_dataset=load_dataset, dataset_names=DATASETS
    )
)
