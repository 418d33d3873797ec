"""Trackers: SDTrack exact against the official code, the canvas layout, protected template tokens under TP,
losses on hand-made cases, the pair sampler, training steps, the online loop and dataset evaluation."""

import json
import math

import numpy as np
import pytest
import torch
from reference import REFERENCE_DIR, SKIP_REASON

from tp_spikformer.data.tracking import TrackingDataset
from tp_spikformer.data.tracking_synth import make_tracking_dataset
from tp_spikformer.measure.variants import make_neurons_fire
from tp_spikformer.models import (
    CheckpointError,
    build_from_official_kwargs,
    create_model,
    get_model_config,
    load_checkpoint,
)
from tp_spikformer.pruning import apply_tp, get_tp_state, remove_tp
from tp_spikformer.tasks.tracking import (
    CanvasLayout,
    PairSampler,
    apply_tracker_tp,
    cal_bbox,
    clip_box,
    evaluate_tracking,
    focal_loss,
    gaussian_heatmap,
    gaussian_radius,
    giou_loss,
    read_results_txt,
    track_sequence,
    tracking_loss,
    train_tracker,
)
from tp_spikformer.tasks.tracking.engine import param_groups

TOLERANCE = 1e-9
TRACKERS = ["sdtrack_tiny_test", "spikformer_track_test"]
SYNTH = {
    "height": 64,
    "width": 64,
    "frames": 6,
    "substeps": 2,
    "min_size": 12,
    "max_size": 20,
    "max_speed": 3.0,
    "pan": 8.0,
}


def tracker(name, seed=0):
    torch.manual_seed(seed)
    return create_model(name).eval()


def crops(model, batch=2, seed=0):
    """Random template / search inputs in the tracker's format (GTP-like 0..255 or event counts)."""
    g = torch.Generator().manual_seed(seed)
    spec = model.input_spec()
    z, x = spec["template_size"], spec["search_size"]
    if spec["representation"] == "gtp":
        return (
            30 * torch.poisson(torch.rand(batch, 3, z, z, generator=g) * 2, generator=g),
            30 * torch.poisson(torch.rand(batch, 3, x, x, generator=g) * 2, generator=g),
        )
    t = spec["T"]
    return (
        torch.poisson(torch.rand(batch, t, 2, z, z, generator=g) * 2, generator=g),
        torch.poisson(torch.rand(batch, t, 2, x, x, generator=g) * 2, generator=g),
    )


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("tracking") / "synth"
    make_tracking_dataset(out, train=2, test=2, source="shipped", **SYNTH)
    return TrackingDataset(out, "fe108", "train"), TrackingDataset(out, "fe108", "test")


# -- SDTrack against the official code --------------------------------------------------------------------


@pytest.mark.slow
def test_sdtrack_golden_case_loads_strictly_and_reproduces_every_output():
    path = REFERENCE_DIR / "extra" / "sdtrack.pt"
    if not path.is_file():
        pytest.skip(SKIP_REASON if not REFERENCE_DIR.is_dir() else f"{path} is absent")
    case = torch.load(path, weights_only=True)
    model = build_from_official_kwargs(case["family"], case["variant"], **case["constructor_kwargs"])
    ours = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert ours == [(k, tuple(v.shape)) for k, v in case["state_dict"].items()]
    model = model.double().eval()
    model.load_state_dict(case["state_dict"], strict=True)
    with torch.no_grad():
        out = model(**case["input"])
    assert set(case["output"]) <= set(out)
    for key, want in case["output"].items():
        assert out[key].shape == want.shape, key
        diff = (out[key] - want).abs().max().item()
        assert diff <= TOLERANCE, f"{key}: max |ours - official| = {diff:.3e}"


def test_official_sizes_keys_and_parameter_counts():
    for name, blocks, params in (("sdtrack_tiny", (6, 2), 19_607_693), ("sdtrack_base", (9, 3), 107_260_781)):
        cfg = get_model_config(name)
        assert cfg.task == "tracking" and cfg.official_params == params
        with torch.device("meta"):
            model = create_model(name)
        assert sum(p.numel() for p in model.parameters()) == params
        assert (len(model.backbone.block3), len(model.backbone.block4)) == blocks
        keys = list(model.state_dict())
        assert not any(".conv." in k for k in keys if k.startswith("backbone.block"))  # no SepConv in blocks
        assert ("backbone.head.weight" in keys) == (name == "sdtrack_base")
        assert keys[-1] == "box_head.conv5_size.bias" and "box_head.conv1_ctr.1.weight" in keys
        assert model.layout.grid == (18, 18) and model.box_head.feat_sz == 16


def test_sdtrack_checkpoint_with_net_container_loads(tmp_path):
    model = tracker("sdtrack_tiny_test")
    path = tmp_path / "sdtrack.pth"
    torch.save({"net": model.state_dict(), "epoch": 3}, path)  # SDTrack's training checkpoints
    other = load_checkpoint(tracker("sdtrack_tiny_test", seed=1), str(path))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))


def test_backbone_from_an_sdt_v3_checkpoint_reports_the_unused_keys():
    v3 = create_model("sdt_v3_tiny", embed_dim=(8, 16, 32, 32)).state_dict()
    with pytest.raises(CheckpointError, match="unexpected"):
        tracker("sdtrack_tiny_test").load_backbone_checkpoint(v3)  # 2 + 1 blocks: SDT-V3's others are extra
    torch.manual_seed(0)
    model = create_model("sdtrack_tiny_test", block_counts=None)  # 6 + 2 blocks, as SDT-V3
    report = model.load_backbone_checkpoint(v3)
    assert report["unused"] and all(".conv." in k or k.startswith("head.") for k in report["unused"])
    assert torch.equal(
        model.backbone.downsample1_1.encode_conv.weight, v3["downsample1_1.encode_conv.weight"]
    )


# -- canvas and fake grid ---------------------------------------------------------------------------------


def test_layout_sizes_official_and_small():
    official = CanvasLayout(128, 256)
    assert (official.n_template, official.n_search, official.side, official.n_pad) == (64, 256, 18, 4)
    assert official.pad_shape == (2, 2) and official.canvas_size == 384
    small = CanvasLayout(64, 128)
    assert (small.side, small.n_pad, small.pad_shape) == (9, 1, (1, 1))
    odd = CanvasLayout(32, 64)  # 4 + 16 = 20 tokens -> 5 x 5 with 5 pad tokens seen as 1 x 5
    assert (odd.side, odd.n_pad, odd.pad_shape) == (5, 5, (1, 5))
    assert CanvasLayout(48, 64).n_pad == 0  # 9 + 16 = 25 = 5 x 5
    with pytest.raises(ValueError, match="multiple of the stride"):
        CanvasLayout(100, 256)


def test_canvas_places_search_top_left_template_bottom_right_and_splits_back():
    lay = CanvasLayout(32, 64)
    z = torch.full((1, 2, 32, 32), 7.0)
    x = torch.full((1, 2, 64, 64), 3.0)
    canvas = lay.make_canvas(z, x)
    assert canvas.shape == (1, 2, 96, 96)
    assert bool((canvas[..., :64, :64] == 3).all() and (canvas[..., 64:, 64:] == 7).all())
    assert bool((canvas[..., :64, 64:] == 0).all() and (canvas[..., 64:, :64] == 0).all())
    feat = torch.arange(36.0).view(1, 1, 6, 6)  # a stride-16 map of the canvas
    tz, tx = lay.split_map(feat)
    assert torch.equal(tz, feat[..., 4:, 4:]) and torch.equal(tx, feat[..., :4, :4])
    grid = lay.to_grid(tz, tx)
    assert grid.shape == (1, 1, 5, 5)
    flat = grid.flatten(-2)[0, 0]
    assert torch.equal(flat[:4], tz.flatten()) and torch.equal(flat[4:20], tx.flatten())
    assert bool((flat[20:] == 0).all())
    back_z, back_x, pad = lay.grid_parts(grid)
    assert torch.equal(back_z, tz) and torch.equal(back_x, tx) and pad.shape == (1, 1, 1, 5)
    assert lay.template_mask().sum() == 4 and lay.pad_mask()[20:].all() and lay.pad_mask().sum() == 5
    with pytest.raises(ValueError, match="template crops of 32x32"):
        lay.make_canvas(x, x)


def test_cal_bbox_reads_the_argmax_cell():
    score = torch.zeros(1, 1, 4, 4)
    score[0, 0, 2, 1] = 0.9  # row 2 (y), column 1 (x)
    size = torch.zeros(1, 2, 4, 4)
    size[0, :, 2, 1] = torch.tensor([0.25, 0.5])
    offset = torch.zeros(1, 2, 4, 4)
    offset[0, :, 2, 1] = torch.tensor([0.5, 0.25])
    box = cal_bbox(score, size, offset)
    assert torch.allclose(box, torch.tensor([[(1 + 0.5) / 4, (2 + 0.25) / 4, 0.25, 0.5]]))


# -- token pruning -----------------------------------------------------------------------------------------


def template_last(x, ctx):
    """A scorer that ranks the template tokens (the first ones of the fake grid) last."""
    n = x.shape[-2] * x.shape[-1]
    return torch.arange(n, dtype=x.dtype).expand(x.shape[1], n).clone()


@pytest.mark.parametrize("name", TRACKERS)
def test_template_tokens_protected_in_every_pruned_block_and_pad_tokens_last(name):
    model = tracker(name)
    z, x = crops(model)
    lay = model.layout
    state = apply_tracker_tp(model, keep=0.56, scorer=template_last)
    with torch.no_grad():
        model(z, x)
    assert len(state.records) == len(state.block_names) and all(r.indices is not None for r in state.records)
    for rec in state.records:
        kept = rec.kept_mask().view(z.shape[0], -1)
        assert rec.grid == lay.grid and rec.kept == state.keep.count(rec.index, *rec.grid) < lay.side**2
        assert bool(kept[:, lay.template_mask()].all()), f"{rec.name}: a template token was pruned"
        assert not bool(kept[:, lay.pad_mask()].any()), f"{rec.name}: a pad token was kept"
    # the option: template tokens may be pruned (this scorer then drops them first)
    apply_tracker_tp(model, keep=0.56, scorer=template_last, protect_template=False)
    with torch.no_grad():
        model(z, x)
    assert not any(
        bool(r.kept_mask().view(z.shape[0], -1)[:, lay.template_mask()].any()) for r in state.records
    )


def test_template_protection_and_pad_demotion_are_the_trackers_tp_defaults():
    model = tracker("sdtrack_tiny_test")
    options = model.tp_options("official")
    assert options["scorer"] == "official"
    assert torch.equal(options["protect"](model.layout.grid), model.layout.template_mask())
    assert options["protect"]((3, 3)) is None
    assert torch.equal(options["demote"](model.layout.grid), model.layout.pad_mask())
    state = apply_tp(model, keep=0.5)  # plain apply_tp: the tracker's defaults protect and demote
    assert state.protect is not None and state.demote is not None
    assert apply_tp(model, protect=None).protect is None  # a user may prune the template too
    with pytest.raises(TypeError, match="tracker"):
        apply_tracker_tp(create_model("sdt_v3_tiny"))


@pytest.mark.parametrize("name", TRACKERS)
def test_pruned_output_has_the_dense_layout_and_keep_all_is_dense(name):
    model = tracker(name)
    z, x = crops(model)
    with torch.no_grad():
        dense = model(z, x)
    state = apply_tp(model, keep=1.0, **model.tp_options("official"))
    with torch.no_grad():
        keep_all = model(z, x)
    assert all(torch.equal(dense[k], keep_all[k]) for k in dense)
    state.keep = "official"  # the tracker's default: 56 % of the fake grid
    with torch.no_grad():
        pruned = model(z, x)
    assert {k: v.shape for k, v in pruned.items()} == {k: v.shape for k, v in dense.items()}
    assert pruned["pred_boxes"].shape == (2, 1, 4) and bool(torch.isfinite(pruned["pred_boxes"]).all())
    assert all(r.kept == state.keep.count(r.index, *r.grid) < model.layout.side**2 for r in state.records)
    remove_tp(model)
    with torch.no_grad():
        assert torch.equal(model(z, x)["score_map"], dense["score_map"])


def test_time_axis_tracker_gives_the_temporal_scorer_real_change():
    model = make_neurons_fire(tracker("spikformer_track_test"), seed=1)
    z, x = crops(model)
    assert z.shape[1] == model.T == 2
    state = apply_tracker_tp(model, keep=0.56, scorer="temporal")
    with torch.no_grad():
        model(z, x)
    real = ~model.layout.pad_mask()
    scores = state.records[0].scores[:, real]  # the pad tokens are demoted, not scored differently
    assert float(scores.std()) > 0  # per-token temporal change differs (a repeated image would give none)
    with pytest.raises(ValueError, match=r"T=2"):
        model(z[:, :1], x[:, :1])


# -- losses --------------------------------------------------------------------------------------------------


def test_giou_l1_on_hand_made_boxes():
    pred = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    gt = torch.tensor([[0.0, 0.0, 1.0, 1.0], [2.0, 0.0, 3.0, 1.0]])
    loss, iou = giou_loss(pred, gt)
    # identical: GIoU 1; disjoint: IoU 0, enclosing 3, union 2 -> GIoU = -1/3
    assert torch.allclose(iou, torch.tensor([1.0, 0.0]))
    assert loss.item() == pytest.approx((0 + 4 / 3) / 2)
    out = {"pred_boxes": torch.tensor([[[0.5, 0.5, 0.2, 0.4]]]), "score_map": torch.full((1, 1, 4, 4), 0.5)}
    gt_xywh = torch.tensor([[0.4, 0.3, 0.2, 0.4]])  # same box as the prediction
    total, stats = tracking_loss(out, gt_xywh)
    assert stats["giou"] == pytest.approx(0.0, abs=1e-6) and stats["l1"] == pytest.approx(0.0, abs=1e-6)
    assert total.item() == pytest.approx(stats["focal"])  # weights 2 / 5 / 1: only the focal part is left


def test_gaussian_radius_and_heatmap_by_hand():
    # w = h = 8 cells: r3 = (-22.4 + sqrt(22.4^2 + 4 * 2.8 * 19.2)) / 2 = 2.187 is the smallest -> radius 2
    r = gaussian_radius(torch.tensor([[8.0, 8.0]]))
    assert r.item() == pytest.approx((-22.4 + math.sqrt(22.4**2 + 4 * 2.8 * 19.2)) / 2, rel=1e-6)
    hm = gaussian_heatmap(torch.tensor([[0.25, 0.25, 0.5, 0.5]]), 16)[0]  # centre (8, 8), 8x8 cells
    assert hm[8, 8] == 1 and hm.max() == 1 and int((hm == 1).sum()) == 1
    sigma = 5 / 6
    assert hm[8, 9].item() == pytest.approx(math.exp(-1 / (2 * sigma**2)), rel=1e-6)
    assert hm[8, 11] == 0 and hm[11, 8] == 0  # radius 2: nothing 3 cells away
    small = gaussian_heatmap(torch.tensor([[0.0, 0.0, 0.125, 0.125]]), 16)[0]  # 2x2 cells: radius 0
    assert int((small > 0).sum()) == 1 and small[1, 1] == 1
    edge = gaussian_heatmap(torch.tensor([[0.8, 0.25, 0.5, 0.5]]), 16)[0]  # centre (17, 8): off the map
    assert edge.max() < 1 and edge[8, 15] > 0 and edge[:, :15].max() == 0  # only the visible part is drawn


def test_focal_loss_by_hand():
    target = torch.tensor([[[[1.0, 0.5]]]])
    pred = torch.tensor([[[[0.8, 0.2]]]])
    pos = math.log(0.8) * 0.2**2
    neg = math.log(0.8) * 0.2**2 * 0.5**4
    assert focal_loss(pred, target).item() == pytest.approx(-(pos + neg))
    assert focal_loss(pred, torch.tensor([[[[0.0, 0.5]]]])).item() == pytest.approx(
        -(math.log(0.2) * 0.8**2 + neg)
    )


def test_clip_box_keeps_a_margin():
    assert clip_box([-5, -5, 20, 20], 100, 100, 10) == [0, 0, 15, 15]
    assert clip_box([95, 50, 20, 5], 100, 100, 10) == [90, 50, 10, 10]


# -- sampler, training, tracking ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", TRACKERS)
def test_pair_sampler_centres_the_target_without_jitter(synth, name):
    model = tracker(name)
    sampler = PairSampler(
        list(synth[0]), model.input_spec(), center_jitter=0.0, scale_jitter=0.0, max_interval=2
    )
    rng = np.random.default_rng(0)
    _, t, u = sampler.indices(rng)
    assert 0 < u - t <= 2
    z, x, box = sampler.batch(3, rng)
    assert z.shape[0] == 3 and z.shape[-1] == model.template_size and x.shape[-1] == model.search_size
    centre = box[:, :2] + box[:, 2:] / 2
    assert torch.allclose(centre, torch.full_like(centre, 0.5), atol=1.0 / model.search_size)
    # the crop side is ceil(sqrt(w h) * 4) frame pixels: the box's geometric mean size is just under 1/4 of it
    side = torch.sqrt(box[:, 2:].prod(1))
    assert bool((side <= 0.25).all() and (side > 0.24).all())
    assert bool(z.sum() > 0) and bool(x.sum() > 0)


@pytest.mark.slow
@pytest.mark.parametrize("name", TRACKERS)
def test_a_few_training_steps_decrease_the_loss(synth, name):
    # one fixed batch: the loss of a spiking tracker jumps from step to step (argmax boxes, quantised
    # activations, batch statistics), so compare the first three steps with the last three
    model = tracker(name).train()
    sampler = PairSampler(list(synth[0]), model.input_spec())
    z, x, box = sampler.batch(4, np.random.default_rng(0))
    opt = torch.optim.AdamW(param_groups(model, 3e-3, 1.0), lr=3e-3)
    losses = []
    for _ in range(16):
        loss, _ = tracking_loss(model(z, x), box)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.9 * np.mean(losses[:3])


@pytest.mark.slow
def test_train_tracker_writes_weights_that_load_by_name(synth, tmp_path):
    model = tracker("sdtrack_tiny_test")
    lines = []
    result = train_tracker(
        model, synth[0], epochs=2, samples_per_epoch=4, batch_size=2, out_dir=tmp_path, log=lines.append
    )
    assert len(result["history"]) == 2 and len(lines) == 2
    assert result["history"][0]["lr"] == pytest.approx(4e-4) and result["history"][1]["lr"] == pytest.approx(
        4e-5
    )
    assert result["history"][0]["backbone_lr"] == pytest.approx(4e-5)
    again = create_model("sdtrack_tiny_test", checkpoint=result["weights"])
    assert all(
        torch.equal(a, b.float()) for a, b in zip(again.state_dict().values(), model.state_dict().values())
    )
    assert (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "history.json").is_file()
    with pytest.raises(ValueError, match="samples_per_epoch"):
        train_tracker(model, synth[0], epochs=1, samples_per_epoch=1, batch_size=2)
    for name in ("sdtrack_synth", "spikformer_track_synth"):  # the shipped recipes are valid arguments
        recipe = get_model_config(name).extra["train_recipe"]
        small = {**recipe, "epochs": 1, "samples_per_epoch": 2, "batch_size": 2, "log": None}
        assert len(train_tracker(model, synth[0], **small)["history"]) == 1


@pytest.mark.parametrize("name", TRACKERS)
def test_online_tracking_returns_a_box_per_frame_starting_at_the_ground_truth(synth, name):
    model = tracker(name)
    seq = synth[1][0]
    res = track_sequence(model, seq)
    boxes = res["boxes"]
    assert boxes.shape == (len(seq), 4) == (6, 4)
    assert np.array_equal(boxes[0], seq.boxes[0])
    h, w = seq.sensor_size
    assert (
        np.all(boxes[1:, 2:] >= 10) and np.all(boxes[1:, 0] >= 0) and np.all(boxes[1:, 0] + boxes[1:, 2] <= w)
    )
    assert np.all(boxes[1:, 1] >= 0) and np.all(boxes[1:, 1] + boxes[1:, 3] <= h)
    assert track_sequence(model, seq, stop=3)["boxes"].shape == (3, 4)


def test_sdtrack_pngs_give_the_same_track_as_events(synth):
    pytest.importorskip("PIL", reason="writing SDTrack's PNG frames needs Pillow")
    model = tracker("sdtrack_tiny_test")
    seq = synth[1][1]
    seq.write_gtp_pngs("inter1_stack_3008", order="hnp")  # SDTrack's pre-converted frame folder
    pngs = TrackingDataset(
        synth[1].root, "fe108", "test", frames_dir="inter1_stack_3008", sequences=[seq.name]
    )
    assert np.array_equal(track_sequence(model, pngs[0])["boxes"], track_sequence(model, seq)["boxes"])
    with pytest.raises(ValueError, match="event counts"):
        track_sequence(tracker("spikformer_track_test"), pngs[0])


def test_evaluate_tracking_writes_results_and_scores(synth, tmp_path):
    model = tracker("sdtrack_tiny_test")
    res = evaluate_tracking(model, synth[1], out_dir=tmp_path)
    assert res["num_sequences"] == 2 and res["frames"] == 2 * 5
    assert 0 <= res["auc"] <= 100 and len(res["success_curve"]) == 21 and res["fps"] > 0
    for seq in synth[1]:
        written = read_results_txt(tmp_path / f"{seq.name}.txt")
        assert written.shape == (6, 4) and np.allclose(written[0], seq.boxes[0], atol=1e-4)
    apply_tracker_tp(model, keep=0.3)
    pruned = evaluate_tracking(model, synth[1], limit=1)
    assert pruned["num_sequences"] == 1 and get_tp_state(model).records


def test_tracking_retention_benchmark_runs_on_a_tiny_tracker(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "tracking_retention.py"
    spec = importlib.util.spec_from_file_location("tracking_retention", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "retention.json"
    threads = torch.get_num_threads()
    assert (
        bench.main(
            [
                "--model",
                "sdtrack_tiny_test",
                "--synth-sequences",
                "1",
                "--synth-frames",
                "4",
                "--keeps",
                "0.5",
                "--scorers",
                "official",
                "temporal",
                "--energy-pairs",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    torch.set_num_threads(threads)
    result = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == result
    dense, pruned = result["rows"]["dense"], result["rows"]["official@0.5"]
    assert result["rows"]["temporal@0.5"] is None  # SDTrack has no time axis
    assert dense["kept_fraction"] == 1.0 and pruned["kept_fraction"] == pytest.approx(13 / 25)
    assert pruned["block_macs"] < dense["block_macs"] and 0 < pruned["energy_ratio"] < 1
    for key in ("auc", "precision_20", "norm_precision_20", "fps", "model_fps", "sops", "energy_mj"):
        assert key in dense and key in pruned
