"""Detection under token pruning: COCO mAP (pycocotools), SOPs/energy and throughput, dense vs TP, as JSON.

For a detector (``create_model(--model, checkpoint=--checkpoint)``) and a COCO-layout dataset (``--data``,
``<root>/annotations/instances_<split>.json`` + ``<root>/<split>/``) or scenes generated on the fly, it
evaluates the dense model and TP at every ``--keeps`` x ``--scorers`` (training-free: the same weights,
every backbone block keeping that fraction of its tokens):

* mAP, AP50, AP75, AP_S/M/L from pycocotools on each variant's results file
  (``<results-dir>/<variant>/detections.json``);
* MACs, SOPs and energy per image (``tp_spikformer.measure.measure_energy`` on ``--energy-images`` images),
  split into backbone, neck and head by module name;
* throughput (images/s) of the whole detector (forward + post-processing) and of the backbone alone,
  every variant interleaved in one ``tp_spikformer.measure.benchmark`` run on real preprocessed images.

Usage: python benchmarks/detection_retention.py --model sdt_v3_scenes_fcos --checkpoint model.pt
       [--data COCO_ROOT --split val | --scenes 500] [--keeps 0.78 0.56 0.3] [--scorers official paper random]
       [--limit N] [--batch-sizes 1 8] [--repeats 10] [--threads 1] [--out file.json]
Without --checkpoint the detector has random weights (the JSON says so): only for trying the script.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import torch
from torch import nn

from tp_spikformer import create_model
from tp_spikformer.data import CocoDetection
from tp_spikformer.data.scenes import SceneConfig, SceneDataset
from tp_spikformer.measure import benchmark, make_variants, measure_energy
from tp_spikformer.tasks.detection.engine import evaluate_detection, preprocess_for
from tp_spikformer.tasks.detection.preprocess import make_batch

KEEPS = [0.78, 0.56, 0.3]
SCORERS = ["official", "paper", "random"]
PARTS = ("backbone", "neck", "head")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument(
        "--model", default="sdt_v3_scenes_fcos", help="a registered detector (tp-spikformer models '*fcos')"
    )
    p.add_argument(
        "--checkpoint", help="detector weights (model.pt of train_detection); default: random weights"
    )
    p.add_argument(
        "--data", help="COCO-layout root; default: scenes generated on the fly (the model's input size)"
    )
    p.add_argument("--split", default="val", help="split of --data (instances_<split>.json)")
    p.add_argument("--scenes", type=int, default=500, help="generated validation scenes (without --data)")
    p.add_argument(
        "--scene-source",
        default=None,
        choices=[None, "idx", "shipped"],
        help="Fashion-MNIST objects of generated scenes: IDX files (default) or the shipped slice",
    )
    p.add_argument("--keeps", type=float, nargs="+", default=KEEPS, help="kept fraction of tokens per block")
    p.add_argument("--scorers", nargs="+", default=SCORERS)
    p.add_argument("--limit", type=int, help="evaluate the first N images only")
    p.add_argument("--eval-batch-size", type=int, default=16)
    p.add_argument("--energy-images", type=int, default=32, help="images for the SOP / energy count")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8], help="throughput batch sizes")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--results-dir", help="where <variant>/detections.json go (default: a temporary folder)")
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args(argv)
    if any(not 0 < k <= 1 for k in args.keeps):
        p.error(f"--keeps are fractions in (0, 1], got {args.keeps}")
    return args


def load_data(args, model):
    if args.data:
        return CocoDetection(args.data, args.split)
    _, h, w = model.config.data.input_size
    cfg = SceneConfig(height=h, width=w, split="test", seed=0)
    return SceneDataset(cfg, args.scenes, mode="detection", source=args.scene_source)


def preprocessed_images(model, data, n: int) -> torch.Tensor:
    """The first ``n`` images (cycled if the set is smaller), letterboxed and normalised: ``[n, 3, H, W]``."""
    pre = preprocess_for(model)
    items = [pre(*data[i % len(data)]) for i in range(n)]
    return make_batch(items, model.size_divisor)[0]


def energy_by_part(report) -> dict:
    """Totals per image, and MACs / SOPs / energy of the backbone, neck and head (layer name prefixes)."""
    parts = {p: {"macs": 0.0, "sops": 0.0, "energy_mj": 0.0} for p in PARTS}
    for row in report.layers:
        part = row.name.split(".", 1)[0]
        if part in parts:
            for k in ("macs", "sops", "energy_mj"):
                parts[part][k] += getattr(row, k)
    keep = ("macs", "sops", "energy_mj", "firing_rate", "kept_fraction", "block_macs")
    return {**{k: report.totals.get(k) for k in keep}, "parts": parts}


class BackboneOf(nn.Module):
    """The backbone alone of a detector variant (switches the shared model to the variant first)."""

    def __init__(self, variant: nn.Module):
        super().__init__()
        self.variant = variant

    def forward(self, x: torch.Tensor):
        return self.variant.activate().backbone(x)


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    model = create_model(args.model, checkpoint=args.checkpoint).eval()
    data = load_data(args, model)
    n_eval = min(len(data), args.limit) if args.limit else len(data)
    configs = [(None, None)] + [(keep, scorer) for keep in args.keeps for scorer in args.scorers]
    labels = ["dense"] + [f"tp_{scorer}_{keep:g}" for keep, scorer in configs[1:]]
    shared = make_variants(model, configs, labels)  # one patched copy, switched per variant
    variants = [(v.label, v.keep, v.scorer, v) for v in shared]
    tmp = tempfile.TemporaryDirectory() if not args.results_dir else None
    results_dir = args.results_dir or tmp.name
    energy_x = preprocessed_images(model, data, args.energy_images)
    rows = []
    for name, keep, scorer, variant in variants:
        t0 = time.perf_counter()
        det = variant.activate()  # the shared detector, switched to this variant
        metrics = evaluate_detection(
            det,
            data,
            out_file=os.path.join(results_dir, name, "detections.json"),
            batch_size=args.eval_batch_size,
            limit=args.limit,
        )
        energy = measure_energy(det, list(energy_x.split(args.eval_batch_size)))
        row = {
            "variant": name,
            "keep": keep,
            "scorer": scorer,
            **{k: metrics[k] for k in ("mAP", "AP50", "AP75", "AP_S", "AP_M", "AP_L", "detections")},
            "energy": energy_by_part(energy),
            "eval_seconds": round(time.perf_counter() - t0, 2),
        }
        if tmp is None:
            row["results_file"] = metrics["results_file"]
        rows.append(row)
        print(
            f"[detection_retention] {name}: mAP {row['mAP']:.2f} AP50 {row['AP50']:.2f}",
            file=sys.stderr,
            flush=True,
        )

    bench_x = preprocessed_images(model, data, max(args.batch_sizes))
    timed = [(f"detector/{n}", v) for n, _, _, v in variants] + [
        (f"backbone/{n}", BackboneOf(v)) for n, _, _, v in variants
    ]
    bench = benchmark(
        timed,
        args.batch_sizes,
        make_input=lambda bs: bench_x[:bs],
        warmup=args.warmup,
        repeats=args.repeats,
        threads=args.threads,
    )
    for row in rows:
        row["throughput"] = {
            part: bench.throughput_vs(f"{part}/{row['variant']}", f"{part}/dense")
            for part in ("detector", "backbone")
        }
    result = {
        "model": args.model,
        "checkpoint": args.checkpoint,
        "weights": "checkpoint" if args.checkpoint else "random (no --checkpoint): numbers mean nothing",
        "data": args.data or f"{len(data)} generated scenes (test split objects, seed 0)",
        "split": args.split if args.data else None,
        "images": n_eval,
        "input_size": list(model.config.data.input_size[1:]),
        "keeps": args.keeps,
        "scorers": args.scorers,
        "rows": rows,
        "benchmark": bench.to_dict(),
    }
    if tmp is not None:
        tmp.cleanup()
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return result


if __name__ == "__main__":
    main()
