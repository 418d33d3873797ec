"""``tp-spikformer demo``: the main job on what ships with the package, offline.

For one trained model of each family (Fashion-MNIST, weights in ``assets/``) and the packaged test slice
of 2,000 images: the dense model against TP with the ``official``, ``paper`` and ``random`` scorers at two
retention levels. One table (top-1, kept tokens, MACs, SOPs, energy, measured speedup) per family and
a summary, ``demo.json`` / ``demo.csv``, accuracy-vs-energy and accuracy-vs-throughput plots per family,
and one kept-token visualisation. Then the segmentation, detection and tracking models trained here, dense
vs TP on generated scenes / event sequences (:mod:`.demo_tasks`), each with a picture. All in the output
folder.
"""

from __future__ import annotations

import csv
import os
import time

import torch

from .api import save_sweep_plots, sweep, visualize
from .data import load_dataset
from .demo_tasks import run_tasks
from .jsonio import write_json
from .models import create_model

DEMO_MODELS = ("spikformer_fmnist", "sdt_fmnist", "qkformer_fmnist", "sdt_v3_fmnist")
KEEPS = (0.75, 0.5)
SCORERS = ("official", "paper", "random")


def run_demo(
    out: str | None = None,
    quick: bool = False,
    progress: bool = True,
    models: tuple[str, ...] = DEMO_MODELS,
    dataset: str = "shipped",
    pretrained: bool = True,
    task_models: dict[str, str] | None = None,
) -> int:
    """Run the demo; ``models``/``dataset``/``pretrained``/``task_models`` exist for tests (random tiny
    models)."""
    out = out or "tp-spikformer-demo"
    os.makedirs(out, exist_ok=True)
    limit = 500 if quick else None
    started = time.time()
    all_rows, summary = [], []
    print(
        f"tp-spikformer demo: {len(models)} trained models, Fashion-MNIST test slice"
        f"{f' (first {limit} images)' if limit else ' (2,000 images)'}, keep {list(KEEPS)} x scorers "
        f"{list(SCORERS)}; threads={torch.get_num_threads()}\n"
    )
    for name in models:
        t0 = time.time()
        model = create_model(name, pretrained=pretrained).eval()
        data = load_dataset(dataset, data_cfg=model, limit=limit)
        result = sweep(
            model,
            data,
            keeps=KEEPS,
            scorers=SCORERS,
            batch_size=250,
            energy_batches=2,
            speed=True,
            speed_batch_size=64,
            speed_repeats=3 if quick else 15,
            progress=progress,
            dataset_name="fashion_mnist_test_slice",
        )
        print(f"== {name} ({model.config.description}) [{time.time() - t0:.0f} s]")
        print(result.to_markdown(), "\n", flush=True)
        save_sweep_plots(result, out, prefix=f"{name}_")
        for r in result.rows:
            all_rows.append(dict(r, model=name, family=model.config.family))
        summary.append(_summary_row(name, model.config.family, result.rows))
        if name == models[min(1, len(models) - 1)]:
            images = torch.stack([data[i][0] for i in range(2)])
            visualize(
                model,
                images,
                out,
                keep=0.5,
                scorer="official",
                names=[f"{name}_tokens_{i}" for i in range(2)],
            )
    print("== summary: top-1 % (dense -> TP at keep 0.5) and speedup measured at batch 64")
    print(_markdown_summary(summary))
    print("\n== dense prediction and tracking, trained here on generated scenes / event sequences\n")
    tasks = run_tasks(
        out, quick, progress, **({"models": task_models} if task_models else {}), pretrained=pretrained
    )
    print("== summary of the tasks (TP: official scorer at the paper's keep for the task)")
    print(_markdown_tasks(tasks))
    write_json(
        os.path.join(out, "demo.json"),
        {
            "rows": all_rows,
            "summary": summary,
            "tasks": tasks,
            "seconds": time.time() - started,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
    )
    fields = [
        "model",
        "family",
        "variant",
        "scorer",
        "keep",
        "top1",
        "kept_fraction",
        "macs_per_image",
        "sops_per_image",
        "energy_mj_per_image",
        "energy_ratio",
        "img_per_s",
        "speedup",
    ]
    with open(os.path.join(out, "demo.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(all_rows)
    print(
        f"\nwrote {os.path.abspath(out)}: demo.json, demo.csv, <model>_accuracy_vs_energy.png, "
        f"<model>_accuracy_vs_throughput.png, {models[min(1, len(models) - 1)]}_tokens_0.png, "
        f"{', '.join(os.path.basename(t['picture']) for t in tasks)} "
        f"({time.time() - started:.0f} s)"
    )
    return 0


def _summary_row(name: str, family: str, rows: list[dict]) -> dict:
    dense = rows[0]
    at_half = {r["scorer"]: r for r in rows[1:] if r["keep"] == "fraction:0.5"}
    return {
        "model": name,
        "family": family,
        "dense_top1": dense["top1"],
        **{f"{s}_top1": at_half[s]["top1"] for s in SCORERS if s in at_half},
        "energy_ratio": at_half.get("official", {}).get("energy_ratio"),
        "speedup": at_half.get("official", {}).get("speedup"),
    }


def _markdown_summary(rows: list[dict]) -> str:
    head = ["model", "dense", *SCORERS, "energy x", "speedup"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            r["model"],
            f"{r['dense_top1']:.2f}",
            *(f"{r.get(f'{s}_top1', float('nan')):.2f}" for s in SCORERS),
            f"{r['energy_ratio']:.3f}" if r.get("energy_ratio") else "-",
            f"{r['speedup']:.2f}" if r.get("speedup") else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _markdown_tasks(rows: list[dict]) -> str:
    head = ["task", "model", "metric", "dense", "TP", "keep", "energy x", "speedup"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            r["task"],
            r["model"],
            r["metric"],
            f"{r['dense']:.2f}",
            f"{r['tp']:.2f}",
            r["keep"],
            f"{r['energy_ratio']:.3f}" if r.get("energy_ratio") else "-",
            f"{r['speedup']:.2f}" if r.get("speedup") else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
