"""Exactness report against the official code's golden cases, printed as JSON (and Markdown with --md).

For every ``*.pt`` case in the reference folder (``TP_REFERENCE_DIR``, default ``../shared/reference``):
the max |ours - official| of the dense logits, and for cases with a ``tp`` entry the max |difference| of
the TP logits, whether every block's kept tokens match (sets; in order where the block is
order-sensitive) and the largest relative score difference. Also the parameter count of every full
configuration beside the count of the official class.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from tp_spikformer.models import (
    build_from_official_kwargs,
    create_model,
    get_model_config,
    list_models,
    token_blocks,
)
from tp_spikformer.pruning import KeepSchedule, apply_tp

DEFAULT_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


def case_report(path: Path) -> dict:
    case = torch.load(path, weights_only=True)
    model = build_from_official_kwargs(case["family"], case["variant"], **case["constructor_kwargs"])
    if (
        "T" not in case["constructor_kwargs"]
        and case.get("T") is not None
        and getattr(model, "T", None) is not None
    ):
        model.T = case["T"]  # the official code sets T after construction (SDT-V2: model.T = args.time_steps)
    model = model.double().eval()
    model.load_state_dict(case["state_dict"], strict=True)
    with torch.no_grad():
        if isinstance(case["input"], dict):  # a tracker: keyword inputs, a dict of outputs (SDTrack)
            out = model(**case["input"])
            diff = max(float((out[k] - v).abs().max()) for k, v in case["output"].items())
            shape = {k: list(v.shape) for k, v in case["input"].items()}
        else:
            out = model(case["input"])
            diff = float((out - case["output"]).abs().max())
            shape = list(case["input"].shape)
    row = {
        "case": str(path.relative_to(path.parents[1] if path.parent.name == "extra" else path.parent)),
        "family": case["family"],
        "variant": case["variant"],
        "input": shape,
        "dense_max_abs_diff": diff,
    }
    if "tp" in case:
        tp = case["tp"]
        state = apply_tp(
            model, keep=KeepSchedule(model.tp_defaults(len(tp["k_values"])).keep_rule, tuple(tp["k_values"]))
        )
        with torch.no_grad():
            out = model(case["input"])
        blocks = [b for _, b in token_blocks(model)]
        same = []
        for b, rec, ref in zip(blocks, state.records, tp["kept_indices"]):
            same.append(
                bool(torch.equal(rec.indices, ref))
                if b.order_sensitive
                else bool(torch.equal(rec.indices.sort(1).values, ref.sort(1).values))
            )
        rel = max(
            float((r.scores - s).abs().max() / s.abs().max()) for r, s in zip(state.records, tp["scores"])
        )
        row.update(
            tp_k_values=tp["k_values"],
            tp_kept=[r.kept for r in state.records],
            tp_max_abs_diff=float((out - tp["output"]).abs().max()),
            tp_kept_tokens_match=all(same),
            tp_max_rel_score_diff=rel,
        )
    return row


def parameter_table() -> list[dict]:
    rows = []
    for name in list_models(include_tiny=False):
        cfg = get_model_config(name)
        with torch.device("meta"):
            model = create_model(name)
        rows.append(
            {
                "model": name,
                "params": sum(p.numel() for p in model.parameters()),
                "official_params": cfg.official_params,
            }
        )
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference-dir", default=os.environ.get("TP_REFERENCE_DIR", str(DEFAULT_DIR)))
    p.add_argument("--md", action="store_true", help="print Markdown tables instead of JSON")
    args = p.parse_args(argv)
    ref = Path(args.reference_dir)
    if not ref.is_dir():
        print(f"reference folder {ref} not found (set TP_REFERENCE_DIR)", file=sys.stderr)
        return 2
    cases = [case_report(path) for path in sorted(ref.rglob("*.pt"))]  # extra/ included
    params = parameter_table()
    if not args.md:
        print(json.dumps({"cases": cases, "parameters": params}, indent=2))
        return 0
    print("| case | family | dense max abs diff | TP max abs diff | TP kept tokens | TP max rel score diff |")
    print("|---|---|---|---|---|---|")
    for r in cases:
        tp = (
            (
                f"{r['tp_max_abs_diff']:.1e}",
                "match" if r["tp_kept_tokens_match"] else "DIFFER",
                f"{r['tp_max_rel_score_diff']:.1e}",
            )
            if "tp_max_abs_diff" in r
            else ("-", "-", "-")
        )
        print(
            f"| {r['case']} | {r['family']} | {r['dense_max_abs_diff']:.1e} | {tp[0]} | {tp[1]} | {tp[2]} |"
        )
    print("\n| model | parameters | official |")
    print("|---|---|---|")
    for r in params:
        off = f"{r['official_params']:,}" if r["official_params"] else "-"
        mark = "" if r["official_params"] in (None, r["params"]) else " (DIFFERS)"
        print(f"| {r['model']} | {r['params']:,} | {off}{mark} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
