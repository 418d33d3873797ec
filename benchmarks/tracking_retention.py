"""Tracking under token pruning: AUC, precision, fps and SOPs/energy of a tracker, dense and TP.

For one tracker (``--model`` with ``--checkpoint``, e.g. a ``model.pt`` written by ``train_tracker``) on an
FE108-layout folder (``--data``; default: a small synthetic test set generated on the fly), every variant
runs the online tracking loop over the sequences (``--limit`` of them): dense, then TP at each keep fraction
(``--keeps``, default 0.56 = the TP paper's tracking setting, and 0.3) with each scorer (``--scorers``;
``temporal`` only on a tracker with a time axis, e.g. ``spikformer_track_synth``). Template tokens are
protected and the pad tokens rank last (``apply_tracker_tp``) unless ``--prune-template``.

Per variant: success AUC, precision at 20 px, normalised precision at 0.2 (pytracking rules), frames per
second of the tracking loop and of the forward passes (batch 1, ``--threads``), the kept token share, and
MACs / SOPs / energy per frame (``tp_spikformer.measure.ops.OpCounter`` on ``--energy-pairs`` template/search
pairs cut around the ground truth; 45 nm conventions). Prints JSON (also written to ``--out``).

Usage: python benchmarks/tracking_retention.py --model sdtrack_synth --checkpoint runs/sdtrack/model.pt \
           --data data/tracking --limit 20 --out benchmarks/results/tracking_retention_sdtrack.json
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time

import torch

import tp_spikformer as tp
from tp_spikformer.data.tracking import TrackingDataset
from tp_spikformer.data.tracking_synth import make_tracking_dataset
from tp_spikformer.jsonio import plain
from tp_spikformer.measure.ops import OpCounter
from tp_spikformer.measure.variants import make_neurons_fire
from tp_spikformer.pruning import get_tp_state
from tp_spikformer.tasks.tracking import apply_tracker_tp, evaluate_tracking
from tp_spikformer.tasks.tracking.task import sample_inputs

KEEPS = [0.56, 0.3]
SCORERS = ["official", "paper", "temporal", "random"]
CURVES = ("success_curve", "precision_curve", "norm_precision_curve", "per_sequence")


def energy(model, pairs: tuple[torch.Tensor, torch.Tensor]) -> dict:
    """MACs / SOPs / energy per frame (one template + search forward) from the operation counter."""
    with OpCounter(model) as counter, torch.inference_mode():
        model(*pairs)
    totals = counter.counts().report(per_sample=True).totals
    return {k: totals[k] for k in ("macs", "sops", "energy_mj", "firing_rate", "block_macs", "kept_fraction")}


def run_variant(model, data, limit, pairs, label: str) -> dict:
    t0 = time.perf_counter()
    scores = evaluate_tracking(model, data, limit=limit)
    row = {k: v for k, v in scores.items() if k not in CURVES}
    state = get_tp_state(model) if hasattr(model, "_tp_state") else None
    row["kept_fraction_tracking"] = state.kept_fraction() if state is not None else 1.0
    row.update(energy(model, pairs))
    row["seconds"] = round(time.perf_counter() - t0, 2)
    print(
        f"[tracking_retention] {label}: AUC {row['auc']:.2f} P@20 {row['precision_20']:.2f} "
        f"fps {row['fps']:.1f} energy {row['energy_mj']:.4f} mJ",
        file=sys.stderr,
        flush=True,
    )
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="sdtrack_synth", help="a tracking configuration (tp-spikformer models)")
    p.add_argument("--checkpoint", default=None, help="weights (model.pt of train_tracker); none: random")
    p.add_argument("--data", default=None, help="FE108-layout folder (<data>/<split>/<seq>/...)")
    p.add_argument("--split", default="test")
    p.add_argument(
        "--frames-dir",
        default=None,
        help="read SDTrack's pre-converted GTP PNG frames (e.g. inter1_stack_3008) instead of events",
    )
    p.add_argument(
        "--synth-sequences",
        type=int,
        default=4,
        help="without --data: test sequences generated on the fly (128x128, 48 frames)",
    )
    p.add_argument("--synth-frames", type=int, default=48)
    p.add_argument("--keeps", nargs="+", type=float, default=KEEPS)
    p.add_argument("--scorers", nargs="+", default=SCORERS)
    p.add_argument("--limit", type=int, default=None, help="first N sequences only")
    p.add_argument("--energy-pairs", type=int, default=16)
    p.add_argument("--prune-template", action="store_true", help="let TP prune template tokens too")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: a 2-thread process slows down many-fold on a shared 2-core machine)",
    )
    p.add_argument("--seed", type=int, default=0, help="weight seed without --checkpoint")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = tp.get_model_config(args.model)
    if cfg.task != "tracking":
        p.error(
            f"--model {args.model} is not a tracker; choose one of "
            f"{[n for n in tp.list_models() if tp.get_model_config(n).task == 'tracking']}"
        )
    torch.manual_seed(args.seed)
    model = tp.create_model(args.model, checkpoint=args.checkpoint).eval()
    if args.checkpoint is None:  # random weights barely fire: give them BN statistics under which they do
        make_neurons_fire(model, seed=args.seed)
    time_axis = (model.T or 1) > 1
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data
        if root is None:
            root = f"{tmp}/synth"
            make_tracking_dataset(
                root, train=0, test=args.synth_sequences, frames=args.synth_frames, source="shipped"
            )
        data = TrackingDataset(root, "fe108", args.split, frames_dir=args.frames_dir)
        seqs = list(data)[: args.limit] if args.limit else list(data)
        pairs = sample_inputs(model, seqs, batch_size=args.energy_pairs, n_batches=1)[0]  # (template, search)
        rows = {"dense": run_variant(model, seqs, None, pairs, "dense")}
        for keep in args.keeps:
            for scorer in args.scorers:
                key = f"{scorer}@{keep}"
                if scorer == "temporal" and not time_axis:
                    rows[key] = None  # SDT-V3 / SDTrack has no time axis
                    continue
                variant = copy.deepcopy(model)
                apply_tracker_tp(variant, keep=keep, scorer=scorer, protect_template=not args.prune_template)
                rows[key] = run_variant(variant, seqs, None, pairs, key)
    dense = rows["dense"]
    for row in rows.values():
        if row is not None:
            row["energy_ratio"] = row["energy_mj"] / dense["energy_mj"] if dense["energy_mj"] else None
            row["fps_ratio"] = row["model_fps"] / dense["model_fps"]
    result = {
        "model": args.model,
        "checkpoint": args.checkpoint or "none: random weights, make_neurons_fire",
        "data": args.data or "synthetic (generated)",
        "split": args.split,
        "sequences": len(seqs),
        "threads": args.threads,
        "protect_template": not args.prune_template,
        "keeps": args.keeps,
        "scorers": args.scorers,
        "energy_pairs": int(pairs[0].shape[0]),
        "torch": torch.__version__,
        "rows": rows,
    }
    text = json.dumps(plain(result), indent=1)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
