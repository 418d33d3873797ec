"""Segmentation under token pruning: mIoU, SOPs/energy and throughput, dense vs TP, training-free, as JSON.

For a segmenter (``create_model(--model, checkpoint=--checkpoint)``, a ``*_semfpn`` configuration) and an
ADE20K-layout folder (``--data``: ``images/<split>/*.jpg`` + ``annotations/<split>/*.png``) or validation
scenes generated on the fly, it evaluates the dense model and TP at every ``--keeps`` x ``--scorers`` (the
same weights, every backbone block keeping that fraction of its tokens; one shared patched copy):

* mIoU, aAcc, mAcc and per-class IoU (mmseg's accumulation over the whole set);
* MACs, SOPs and energy per image (``tp_spikformer.measure.measure_energy`` on ``--energy-images``
  images), split into backbone, neck and decode head by module name;
* throughput (images/s) of the whole segmenter and of the backbone alone, every variant interleaved in
  one ``tp_spikformer.measure.benchmark`` run (medians of ``--repeats`` rounds) on real preprocessed images
  of the configuration's input size.

``--save-predictions DIR`` writes each variant's prediction PNGs to ``DIR/<variant>/`` (annotation stems,
the annotations' class-index convention). ``--reduce-zero-label`` defaults to the configuration's (True for
the ADE20K models, False for the scene models).

Usage: python benchmarks/segmentation_retention.py --model sdt_v3_scenes_semfpn --checkpoint model.pt
       [--data ADE_ROOT --split validation | --scenes 500] [--keeps 0.78 0.56 0.3]
       [--scorers official paper spatial random] [--limit N] [--batch-sizes 1 8] [--repeats 10]
       [--threads 1] [--out file.json]
Without --checkpoint the segmenter has random weights (the JSON says so): only for trying the script.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from torch import nn

from tp_spikformer import create_model
from tp_spikformer.data.scenes import SceneConfig, SceneDataset
from tp_spikformer.data.segmentation import ADE20KDataset, SegmentationEvalTransform
from tp_spikformer.jsonio import print_and_write
from tp_spikformer.measure import benchmark, make_variants, measure_energy
from tp_spikformer.tasks.segmentation import evaluate_segmentation, sample_inputs

KEEPS = [0.78, 0.56, 0.3]
SCORERS = ["official", "paper", "spatial", "random"]
PARTS = ("backbone", "neck", "decode_head")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--model", default="sdt_v3_scenes_semfpn", help="a registered segmenter ('*_semfpn')")
    p.add_argument("--checkpoint", help="segmenter weights (model.pt of train_segmentation); default: random")
    p.add_argument(
        "--data", help="ADE20K-layout root; default: scenes generated on the fly (the model's size)"
    )
    p.add_argument("--split", default="validation", help="split of --data")
    p.add_argument("--reduce-zero-label", type=int, choices=[0, 1], help="default: the configuration's")
    p.add_argument("--scenes", type=int, default=500, help="generated validation scenes (without --data)")
    p.add_argument(
        "--scene-source",
        default=None,
        choices=[None, "idx", "shipped"],
        help="Fashion-MNIST objects of generated scenes: IDX files (default) or the shipped slice",
    )
    p.add_argument("--keeps", type=float, nargs="+", default=KEEPS, help="kept fraction of tokens per block")
    p.add_argument("--scorers", nargs="+", default=SCORERS)
    p.add_argument("--seed", type=int, default=0, help="seed of the random scorer")
    p.add_argument("--limit", type=int, help="evaluate the first N images only")
    p.add_argument("--eval-batch-size", type=int, default=8, help="images of one size per batch")
    p.add_argument("--save-predictions", help="folder for <variant>/<stem>.png predictions")
    p.add_argument(
        "--energy-images", type=int, default=16, help="images for the SOP / energy count (0: skip)"
    )
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8], help="throughput batch sizes")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--no-backbone-bench", action="store_true", help="time the whole segmenter only")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args(argv)
    if any(not 0 < k <= 1 for k in args.keeps):
        p.error(f"--keeps are fractions in (0, 1], got {args.keeps}")
    return args


def load_data(args, model):
    extra = model.config.extra
    if args.data:
        reduce = (
            extra.get("reduce_zero_label", False)
            if args.reduce_zero_label is None
            else bool(args.reduce_zero_label)
        )
        scale = extra.get("test_scale")
        transform = SegmentationEvalTransform(scale) if scale else None
        return ADE20KDataset(args.data, args.split, reduce_zero_label=reduce, transform=transform)
    _, h, w = model.config.data.input_size
    return SceneDataset(
        SceneConfig(height=h, width=w, split="test", seed=0), args.scenes, source=args.scene_source
    )


def energy_by_part(report) -> dict:
    """Totals per image, and MACs / SOPs / energy of the backbone, neck and decode head (layer name prefixes)."""
    parts = {p: {"macs": 0.0, "sops": 0.0, "energy_mj": 0.0} for p in PARTS}
    for row in report.layers:
        part = row.name.split(".", 1)[0]
        if part in parts:
            for k in ("macs", "sops", "energy_mj"):
                parts[part][k] += getattr(row, k)
    keep = ("macs", "sops", "energy_mj", "firing_rate", "kept_fraction", "block_macs")
    return {**{k: report.totals.get(k) for k in keep}, "parts": parts}


class BackboneOf(nn.Module):
    """The backbone alone of a segmenter variant (switches the shared model to the variant first; the
    segmenter's ``forward_features`` opens the TP forward-pass scope as a full forward does)."""

    def __init__(self, variant: nn.Module):
        super().__init__()
        self.variant = variant

    def forward(self, x: torch.Tensor):
        return self.variant.activate().forward_features(x)


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    model = create_model(args.model, checkpoint=args.checkpoint).eval()
    if model.config.task != "segmentation":
        raise SystemExit(
            f"--model {args.model} is a {model.config.task} model; choose a '*_semfpn' configuration"
        )
    data = load_data(args, model)
    configs = [(None, None)] + [(keep, scorer) for keep in args.keeps for scorer in args.scorers]
    labels = ["dense"] + [f"tp_{scorer}_{keep:g}" for keep, scorer in configs[1:]]
    variants = make_variants(model, configs, labels, seed=args.seed)  # one patched copy, switched per variant
    energy_x = sample_inputs(model, data, args.energy_images, 1)[0] if args.energy_images > 0 else None
    rows = []
    for variant in variants:
        t0 = time.perf_counter()
        seg = variant.activate()  # the shared segmenter, switched to this variant
        save = os.path.join(args.save_predictions, variant.label) if args.save_predictions else None
        metrics = evaluate_segmentation(
            seg, data, batch_size=args.eval_batch_size, limit=args.limit, save_predictions=save
        )
        row = {
            "variant": variant.label,
            "keep": variant.keep,
            "scorer": variant.scorer,
            **{k: metrics[k] for k in ("mIoU", "aAcc", "mAcc", "per_class_iou", "images")},
            "energy": None
            if energy_x is None
            else energy_by_part(measure_energy(seg, list(energy_x.split(args.eval_batch_size)))),
            "eval_seconds": round(time.perf_counter() - t0, 2),
        }
        rows.append(row)
        print(f"[segmentation_retention] {variant.label}: mIoU {row['mIoU']}", file=sys.stderr, flush=True)
    dense_miou = rows[0]["mIoU"]
    for row in rows:
        row["mIoU_drop"] = None if row["mIoU"] is None or dense_miou is None else dense_miou - row["mIoU"]

    bench_x = sample_inputs(model, data, max(args.batch_sizes), 1)[0]
    parts = ("segmenter",) if args.no_backbone_bench else ("segmenter", "backbone")
    timed = [(f"segmenter/{v.label}", v) for v in variants]
    if "backbone" in parts:
        timed += [(f"backbone/{v.label}", BackboneOf(v)) for v in variants]
    bench = benchmark(
        timed,
        args.batch_sizes,
        make_input=lambda bs: bench_x[:bs],
        warmup=args.warmup,
        repeats=args.repeats,
        threads=args.threads,
        memory=False,
    )
    for row in rows:
        row["throughput"] = {
            part: bench.throughput_vs(f"{part}/{row['variant']}", f"{part}/dense") for part in parts
        }
    result = {
        "model": args.model,
        "checkpoint": args.checkpoint,
        "weights": "checkpoint" if args.checkpoint else "random (no --checkpoint): numbers mean nothing",
        "data": args.data or f"{len(data)} generated scenes (test split objects, seed 0)",
        "split": args.split if args.data else None,
        "images": rows[0]["images"],
        "input_size": list(model.config.data.input_size[1:]),
        "keeps": args.keeps,
        "scorers": args.scorers,
        "rows": rows,
        "benchmark": bench.to_dict(),
    }
    print_and_write(result, args.out)
    return result


if __name__ == "__main__":
    main()
