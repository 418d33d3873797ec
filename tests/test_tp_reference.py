"""TP exactness against the official TP-Spikformer code, for every reference case that has a ``tp`` entry."""

import pytest
import torch
from reference import load_case, reference_cases
from test_reference_models import TOLERANCE, build_case_model

from tp_spikformer.pruning import KeepSchedule, apply_tp


def tp_cases():
    return [p for p in reference_cases() if p.values[0] is None or "tp" in load_case(p.values[0])]


def patched_case(path, scorer="official"):
    case = load_case(path)
    tp = case["tp"]
    model = build_case_model(case)
    rule = model.tp_defaults(len(tp["k_values"])).keep_rule  # side (SDT-V1) or side_ratio (QKFormer, SDT-V3)
    state = apply_tp(model, keep=KeepSchedule(rule, tuple(tp["k_values"])), scorer=scorer)
    with torch.no_grad():
        out = model(case["input"])
    return case, tp, model, state, out


@pytest.mark.slow
@pytest.mark.parametrize("path", tp_cases())
@pytest.mark.parametrize("scorer", ["official", "official_literal"])
def test_tp_matches_official(path, scorer):
    case, tp, model, state, out = patched_case(path, scorer)
    diff = (out - tp["output"]).abs().max().item()
    assert diff <= TOLERANCE, f"{path.stem}: TP logits differ from the official TP code by {diff:.3e}"
    blocks = [m for _, m in model.named_modules() if hasattr(m, "_tp_index")]
    assert len(state.records) == len(tp["kept_indices"])
    for i, (rec, ref_idx, ref_scores) in enumerate(zip(state.records, tp["kept_indices"], tp["scores"])):
        assert rec.kept == ref_idx.shape[1]
        if blocks[i].order_sensitive:  # QKFormer stage 3 in the batch-coupled mode: order matters
            assert torch.equal(rec.indices, ref_idx), f"block {i}: kept tokens differ in order"
        else:
            assert torch.equal(rec.indices.sort(1).values, ref_idx.sort(1).values), (
                f"block {i}: kept sets differ"
            )
        rel = ((rec.scores - ref_scores).abs().max() / ref_scores.abs().max()).item()
        assert rel < 1e-12, f"block {i}: scores differ by {rel:.2e} (relative)"
