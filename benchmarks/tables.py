"""Markdown tables for the README's Results, read from the benchmark JSON files (nothing typed by hand).

Usage: python benchmarks/tables.py accuracy benchmarks/results/accuracy_retention.json
       python benchmarks/tables.py task benchmarks/results/segmentation_retention.json
       python benchmarks/tables.py speed benchmarks/results/tp_speed_cpu_t1_families.json
       python benchmarks/tables.py fastpath benchmarks/results/optimize_speed_cpu_t1_compiled.json
       python benchmarks/tables.py schedule benchmarks/results/schedule_search.json
"""

from __future__ import annotations

import argparse
import json
import sys

MARK = {"beats": "+", "loses": "-", "tie": ""}


def _fmt(x, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def accuracy(d: dict) -> str:
    """Per model and keep: dense, then each scorer's top-1 with its 95 % interval; ``+`` / ``-``: beats /
    loses to ``random`` beyond the paired interval; object focus of the kept tokens in brackets."""
    scorers = d["scorers"]
    lines = [
        "| model | test bed | keep | dense | " + " | ".join(f"`{s}`" for s in scorers) + " |",
        "|---|---|---|---|" + "---|" * len(scorers),
    ]
    for name, m in d["models"].items():
        rows = m["variants"]
        dense = next(r for r in rows.values() if r["keep"] is None)
        for keep in d["keeps"]:
            cells = []
            for s in scorers:
                r = next((r for r in rows.values() if r["keep"] == keep and r["scorer"] == s), None)
                if r is None:
                    cells.append("n/a")
                    continue
                lo, hi = r["ci95"]
                cell = f"{r['top1']:.1f} ({lo:.1f}-{hi:.1f}){MARK.get(r.get('vs_random'), '')}"
                if r.get("object_focus_mean") is not None:
                    cell += f" [{r['object_focus_mean']:.2f}]"
                cells.append(cell)
            bed = f"{m['test_bed'].split(' (')[0]} ({m['n']:,})"  # the images actually evaluated
            lines.append(f"| `{name}` | {bed} | {keep} | {dense['top1']:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def task(d: dict) -> str:
    """Dense and TP rows of a segmentation / detection / tracking retention JSON."""
    bench = d.get("benchmark", "")
    if isinstance(d["rows"], dict):  # tracking_retention: rows keyed by label, None where not applicable
        d = dict(d, rows=[dict(r, variant=k) for k, r in d["rows"].items() if r is not None])
    if not isinstance(bench, str):
        bench = ""
    if "segmentation" in bench or "mIoU" in d["rows"][0]:
        keys = [("mIoU", "mIoU"), ("aAcc", "aAcc")]
    elif "mAP" in d["rows"][0]:
        keys = [("mAP", "mAP"), ("AP50", "AP50")]
    else:
        keys = [("auc", "AUC"), ("precision_20", "P@20")]
    dense = d["rows"][0]
    lines = [
        "| variant | "
        + " | ".join(k[1] for k in keys)
        + " | energy / dense | backbone img/s vs dense | model img/s vs dense |",
        "|---|" + "---|" * (len(keys) + 3),
    ]
    for r in d["rows"]:
        vals = " | ".join(_fmt(r.get(k)) for k, _ in keys)
        energy = r.get("energy_ratio")
        if energy is None and "energy" in r and "energy" in dense:
            e0 = dense["energy"].get("energy_mj")
            energy = r["energy"]["energy_mj"] / e0 if e0 else None
        tp = r.get("throughput") or {}
        ratios = []
        for part in ("backbone", next((p for p in tp if p != "backbone"), None)):
            per_bs = tp.get(part) or {}
            if per_bs:
                bs = max(per_bs, key=lambda b: int(b))
                ratios.append(f"{per_bs[bs]['speedup_vs_dense']:.2f}x (b{bs})")
            elif part != "backbone" and r.get("fps_ratio") is not None:
                ratios.append(f"{r['fps_ratio']:.2f}x")
            else:
                ratios.append("n/a")
        label = r.get("variant") or r.get("label")
        lines.append(f"| {label} | {vals} | {_fmt(energy)} | " + " | ".join(ratios) + " |")
    return "\n".join(lines)


def speed(d: dict) -> str:
    lines = [
        "| model | batch | dense img/s | TP img/s | measured speedup | ideal (counted MACs) | measured / ideal | scorer share |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in d["runs"]:
        for c in run["cases"]:
            ips = c["img_per_s"]
            lines.append(
                f"| `{run['model']}` | {c['batch_size']} | {ips['dense']:.3f} | {ips['tp']:.3f} | "
                f"{c['measured_speedup']:.2f}x | {c['ideal_speedup_from_macs']:.2f}x | {c['realised_over_ideal']:.2f} | "
                f"{100 * c['scorer']['median_share']:.2f} % |"
            )
    return "\n".join(lines)


def fastpath(d: dict) -> str:
    """benchmarks/optimize_speed.py: plain vs optimized, dense and TP, per model and batch size."""
    lines = [
        "| model | batch | plain img/s | optimized img/s | optimized / plain (dense) | optimized / plain (TP) | "
        "TP / dense, optimized | ideal | realised / ideal | compile s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in d["runs"]:
        opt = run.get("optimize", {})
        compile_s = f"{opt['compile_seconds']:.2f}" if opt.get("compiled") else "not compiled"
        for c in run["cases"]:
            ips = c["img_per_s"]
            lines.append(
                f"| `{run['model']}` | {c['batch_size']} | {ips['plain']:.3f} | {ips['optimized']:.3f} | "
                f"{c['optimized_over_plain_dense']:.2f}x | {c['optimized_over_plain_tp']:.2f}x | "
                f"{c['pruned_over_dense_optimized']:.2f}x | {c['ideal_from_macs']:.2f}x | "
                f"{c['optimized_pruned_realised_over_ideal']:.2f} | {compile_s} |"
            )
    return "\n".join(lines)


def schedule(d: dict) -> str:
    """Calibrated vs uniform (vs official where it exists) at equal counted cost, on held-out images."""
    lines = [
        "| model | metric | budget | dense | calibrated (keeps) | uniform | official | calibrated - uniform (95 % CI) | search s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def row(name, metric, label, dense, b, key):
        if "unreachable" in b:
            low = b["unreachable"].split("minimum reachable cost is ")[-1].split(" ")[0]
            return f"| {name} | {metric} | {label} | {dense:.1f} | unreachable (minimum cost {low}) | | | | |"
        cal, uni, diff = b["calibrated"], b["uniform"], b["calibrated_minus_uniform"]
        off = b.get("official")
        off_cell = "n/a" if off is None else f"{off[key]:.1f} (cost {off[metric + '_held_out']:.2f})"
        return (
            f"| {name} | {metric} | {label} | {dense:.1f} | {cal[key]:.1f} "
            f"(`{cal['keep']}`, cost {cal[metric + '_held_out']:.2f}) | {uni[key]:.1f} "
            f"(keep {uni.get('fraction', uni['keep'])}, cost {uni[metric + '_held_out']:.2f}) | {off_cell} | "
            f"{diff['mean']:+.1f} ({diff['ci95'][0]:+.1f} to {diff['ci95'][1]:+.1f}) | {cal['search_seconds']:.0f} |"
        )

    for name, m in d["models"].items():
        key = m.get("score", "top1")  # top1, mIoU or mAP
        shown = f"`{name}`" if key == "top1" else f"`{name}` ({key})"
        for metric, per in m["metrics"].items():
            for budget, b in per["budgets"].items():
                lines.append(row(shown, metric, budget, m["dense"][key], b, key))
            official = per.get("at_official_cost")
            if isinstance(official, dict):
                lines.append(
                    row(
                        shown,
                        metric,
                        f"official's ({official['budget']:.3f})",
                        m["dense"][key],
                        official,
                        key,
                    )
                )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=["accuracy", "task", "speed", "fastpath", "schedule"])
    p.add_argument("json")
    args = p.parse_args(argv)
    with open(args.json) as f:
        d = json.load(f)
    print(
        {"accuracy": accuracy, "task": task, "speed": speed, "fastpath": fastpath, "schedule": schedule}[
            args.kind
        ](d)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
