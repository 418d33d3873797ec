"""Segmentation under token pruning: mIoU, throughput and SOPs/energy, dense vs TP, training-free.

For a trained segmenter (``*_semfpn``), each TP variant (``--keeps`` x ``--scorers``, every backbone block
keeping that fraction of its tokens) is evaluated on the validation images with mmseg's IoU accumulation,
and timed against the dense model in one interleaved benchmark (``tp_spikformer.measure.benchmark``:
warm-up, ``--repeats`` rounds, medians), once for the whole model (backbone + neck + head) and once for the
backbone alone. SOPs and energy per image come from ``tp_spikformer.measure.measure_many`` on the first
``--energy-batches`` batches. Prints JSON (and writes it to ``--out``).

Data: ``--data DIR``, an ADE20K-layout folder (``images/<split>/*.jpg``, ``annotations/<split>/*.png``;
``--reduce-zero-label`` as the model configuration says unless given), or, without ``--data``, validation
scenes generated on the fly (``--scenes N`` of the model's input size; ``--source shipped`` for the
packaged Fashion-MNIST slice instead of the IDX files).

Usage: python benchmarks/segmentation_retention.py --model sdt_v3_scenes_semfpn --checkpoint model.pt
       [--data DIR] [--keeps 0.78 0.56 0.3] [--scorers official paper spatial random] [--limit N]
       [--batch-size 8] [--bench-batch-sizes 8] [--repeats 5] [--threads 1] [--out file.json]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tp_spikformer import create_model
from tp_spikformer.jsonio import dumps, write_json
from tp_spikformer.measure import benchmark, dense_variant, measure_many, pruned_variant
from tp_spikformer.tasks.segmentation import (
    evaluate_segmentation,
    input_normalization,
    normalize_images,
)

KEEPS = [0.78, 0.56, 0.3]
SCORERS = ["official", "paper", "spatial", "random"]


class BackboneOnly(nn.Module):
    """The backbone of a segmenter, called through the segmenter's ``forward_features`` (so a TP-patched
    segmenter opens its forward-pass scope as in a full forward)."""

    def __init__(self, segmenter: nn.Module):
        super().__init__()
        self.segmenter = segmenter

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.segmenter.forward_features(x)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--model", required=True, help="a registered *_semfpn configuration")
    p.add_argument("--checkpoint", help="weights of the segmenter (e.g. model.pt of train_segmentation)")
    p.add_argument("--pretrained", action="store_true", help="the weights shipped with the configuration")
    p.add_argument("--data", help="ADE20K-layout folder; default: validation scenes generated on the fly")
    p.add_argument("--split", default="validation")
    p.add_argument(
        "--reduce-zero-label",
        type=int,
        choices=[0, 1],
        default=None,
        help="mmseg's reduce_zero_label (default: the model configuration's)",
    )
    p.add_argument("--scenes", type=int, default=500, help="generated validation scenes (without --data)")
    p.add_argument(
        "--source",
        choices=["idx", "shipped"],
        default="idx",
        help="Fashion-MNIST objects of the generated scenes: IDX files or the packaged slice",
    )
    p.add_argument("--keeps", type=float, nargs="+", default=KEEPS)
    p.add_argument("--scorers", nargs="+", default=SCORERS)
    p.add_argument("--limit", type=int, help="evaluate the first N images only")
    p.add_argument("--batch-size", type=int, default=8, help="evaluation batch (images of one size)")
    p.add_argument("--bench-batch-sizes", type=int, nargs="+", default=[8])
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--energy-batches", type=int, default=2, help="batches for SOPs/energy (0: skip)")
    p.add_argument("--no-backbone-bench", action="store_true", help="time the whole model only")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="seed of the random scorer")
    p.add_argument("--out", help="also write the JSON here")
    return p


def load_data(args: argparse.Namespace, model: nn.Module) -> Any:
    """The ADE20K folder of ``--data`` or generated validation scenes of the model's input size."""
    extra = model.config.extra
    if args.data:
        from tp_spikformer.data.segmentation import ADE20KDataset, SegmentationEvalTransform

        reduce = (
            extra.get("reduce_zero_label", False)
            if args.reduce_zero_label is None
            else bool(args.reduce_zero_label)
        )
        scale = extra.get("test_scale")
        return ADE20KDataset(
            args.data,
            args.split,
            reduce_zero_label=reduce,
            transform=SegmentationEvalTransform(scale) if scale else None,
        )
    from tp_spikformer.data.fashion_objects import FashionObjects
    from tp_spikformer.data.scenes import SceneConfig, SceneDataset

    _, h, w = model.config.data.input_size
    return SceneDataset(
        SceneConfig(height=h, width=w, split="test"),
        args.scenes,
        FashionObjects("test", source=None if args.source == "idx" else "shipped"),
    )


def input_batches(data: Any, model: nn.Module, batch_size: int, count: int) -> list[torch.Tensor]:
    """``count`` normalised batches of the first images, resized to the configuration's input size."""
    _, h, w = model.config.data.input_size
    norm = input_normalization(model)
    images = []
    for i in range(min(len(data), batch_size * count)):
        img = data[i][0]
        if tuple(img.shape[-2:]) != (h, w):
            img = F.interpolate(img[None], size=(h, w), mode="bilinear", align_corners=False)[0]
        images.append(img)
    if not images:
        raise ValueError("the dataset is empty")
    x = normalize_images(torch.stack(images), norm)
    return [x[i : i + batch_size] for i in range(0, len(x), batch_size)]


def timing_input(batches: list[torch.Tensor]):
    pool = torch.cat(batches)

    def make(bs: int) -> torch.Tensor:
        reps = -(-bs // len(pool))
        return pool.repeat(reps, 1, 1, 1)[:bs].clone()

    return make


def throughput(variants: dict[str, nn.Module], make, args, wrap=None) -> dict[str, Any]:
    items = {n: (wrap(m) if wrap else m) for n, m in variants.items()}
    res = benchmark(
        items,
        args.bench_batch_sizes,
        make_input=make,
        warmup=args.warmup,
        repeats=args.repeats,
        threads=args.threads,
        memory=False,
    )
    return {
        f"{r['variant']}@b{r['batch_size']}": {
            "images_per_s": r["throughput_per_s"],
            "median_ms": r["latency_ms"]["median"],
            "iqr_ms": r["latency_ms"]["iqr"],
            "speedup": r["speedup"],
            "paired_ratio_median": r["paired_ratio_median"],
        }
        for r in res.results
    } | {"environment": res.environment, "cpu_load": res.cpu_load.get("overall")}


def energy(variants: dict[str, nn.Module], batches: list[torch.Tensor]) -> dict[str, Any]:
    reports = measure_many(variants, batches)
    keys = ("macs", "sops", "energy_mj", "firing_rate", "block_macs")
    out = {n: {k: r.totals.get(k) for k in keys} for n, r in reports.items()}
    base = out["dense"]
    for row in out.values():
        for k in ("macs", "sops", "energy_mj"):
            row[f"{k}_ratio"] = row[k] / base[k] if base.get(k) else None
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    model = create_model(args.model, checkpoint=args.checkpoint, pretrained=args.pretrained).eval()
    if model.config.task != "segmentation":
        raise SystemExit(
            f"--model {args.model} is a {model.config.task} model; choose a *_semfpn configuration"
        )
    data = load_data(args, model)
    variants = {"dense": dense_variant(model)}
    for keep in args.keeps:
        for scorer in args.scorers:
            variants[f"{scorer}@{keep:g}"] = pruned_variant(model, keep=keep, scorer=scorer, seed=args.seed)
    evals: dict[str, Any] = {}
    for name, m in variants.items():
        t0 = time.perf_counter()
        r = evaluate_segmentation(m, data, batch_size=args.batch_size, limit=args.limit)
        evals[name] = {k: r[k] for k in ("mIoU", "aAcc", "mAcc", "per_class_iou", "images")}
        print(
            f"[segmentation_retention] {name}: mIoU {r['mIoU']} ({time.perf_counter() - t0:.1f} s)",
            file=sys.stderr,
            flush=True,
        )
    dense_miou = evals["dense"]["mIoU"]
    for row in evals.values():
        row["mIoU_drop"] = None if row["mIoU"] is None or dense_miou is None else dense_miou - row["mIoU"]
    batches = input_batches(data, model, max(args.bench_batch_sizes), max(1, args.energy_batches))
    make = timing_input(batches)
    result = {
        "model": args.model,
        "checkpoint": args.checkpoint,
        "data": args.data or f"{args.scenes} generated validation scenes ({args.source})",
        "images": evals["dense"]["images"],
        "keeps": args.keeps,
        "scorers": args.scorers,
        "miou": evals,
        "throughput_model": throughput(variants, make, args),
        "throughput_backbone": None
        if args.no_backbone_bench
        else throughput(variants, make, args, BackboneOnly),
        "energy": energy(variants, batches[: args.energy_batches]) if args.energy_batches > 0 else None,
        "threads": args.threads,
        "torch": torch.__version__,
    }
    print(dumps(result))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
