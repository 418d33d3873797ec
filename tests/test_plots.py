"""Plots: token masks and depth maps are right; PNGs exist, are non-empty and have the expected size."""

import numpy as np
import pytest
import torch
from PIL import Image

from tp_spikformer.plots import kept_masks, save_token_visualization, save_tradeoff_plot, token_depth
from tp_spikformer.pruning import BlockRecord


def rec(name, grid, kept_positions):
    idx = None if kept_positions is None else torch.tensor([kept_positions])
    return BlockRecord(
        name,
        grid,
        kept=grid[0] * grid[1] if idx is None else len(kept_positions),
        total=grid[0] * grid[1],
        indices=idx,
    )


def test_masks_and_depth_on_one_grid():
    records = [rec("b0", (2, 2), [0, 1, 3]), rec("b1", (2, 2), [3]), rec("b2", (2, 2), None)]
    masks = kept_masks(records)
    assert [m.sum() for m in masks] == [3, 1, 4]
    assert token_depth(records).tolist() == [[2, 2], [1, 3]]


def test_depth_across_stages_upsamples_to_the_finest_grid():
    records = [rec("stage1", (4, 4), list(range(8))), rec("stage2", (2, 2), [3])]  # top half; bottom-right
    depth = token_depth(records)
    assert depth.shape == (4, 4)
    expected = np.zeros((4, 4), dtype=int)
    expected[:2] += 1
    expected[2:, 2:] += 1
    assert depth.tolist() == expected.tolist()


def test_missing_records_raise():
    with pytest.raises(ValueError, match="record=True"):
        kept_masks([None])


def test_token_visualization_png(tmp_path):
    records = [rec("block.0", (4, 4), [0, 5, 10, 15]), rec("block.1", (4, 4), [5])]
    path = save_token_visualization(torch.rand(3, 32, 32), records, str(tmp_path / "v.png"), title="t")
    img = Image.open(path)
    assert img.size == (4 * 220, 260) and (tmp_path / "v.png").stat().st_size > 3000
    # event frames and grey images are drawn too
    save_token_visualization(torch.rand(4, 2, 16, 16).round(), records, str(tmp_path / "e.png"))
    save_token_visualization(torch.rand(1, 16, 16), records, str(tmp_path / "g.png"), mean=(0.5,), std=(0.5,))
    assert Image.open(tmp_path / "e.png").size == Image.open(tmp_path / "g.png").size == (880, 260)


def test_tradeoff_plot(tmp_path):
    rows = [
        {"scorer": "dense", "energy": 1.0, "top1": 90.0},
        {"scorer": "official", "energy": 0.7, "top1": 88.0, "keep": 0.75},
        {"scorer": "official", "energy": 0.5, "top1": 80.0, "keep": 0.5},
    ]
    path = save_tradeoff_plot(rows, "energy", "top1", str(tmp_path / "p.png"))
    assert Image.open(path).size == (640, 480) and (tmp_path / "p.png").stat().st_size > 5000
    with pytest.raises(ValueError, match="nothing to plot"):
        save_tradeoff_plot(rows, "missing", "top1", str(tmp_path / "q.png"))
