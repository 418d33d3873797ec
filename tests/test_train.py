"""Training loop: a step lowers the loss, resume is bit-exact, TP fine-tuning trains a pruned model, DDP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from tp_spikformer.data import synthetic_dataset
from tp_spikformer.models import create_model
from tp_spikformer.pruning import get_tp_state
from tp_spikformer.train import parse_args, run
from tp_spikformer.training import cosine_lr, epoch_seed, freeze_unused_parameters, make_optimizer, train_step
from tp_spikformer.training.classification import build_model

# tiny data: 48 training images (3 steps of 16 per epoch), 20 test images
COMMON = [
    "--data",
    "synthetic:48",
    "--batch-size",
    "16",
    "--test-limit",
    "20",
    "--eval-batch-size",
    "32",
    "--log-interval",
    "0",
    "--threads",
    "1",
]


def _state(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_one_training_step_decreases_the_loss():
    torch.manual_seed(0)
    model = create_model("spikformer_tiny").train()
    data = synthetic_dataset(32, size=32, channels=3)
    x, y = data.get_batch(slice(0, 32)), data.targets[:32]
    opt = make_optimizer(model, lr=3e-3, weight_decay=0.0)
    loss0, _ = train_step(model, opt, x, y)
    with torch.no_grad():
        loss1 = torch.nn.functional.cross_entropy(model(x), y)
    assert torch.isfinite(loss0) and float(loss1) < float(loss0)


def test_cosine_schedule_and_epoch_seeds():
    lrs = [cosine_lr(s, 100, 10, 1e-3, 1e-5) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)  # linear warm-up, per step
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))  # then non-increasing
    assert cosine_lr(100, 100, 10, 1e-3, 1e-5) == pytest.approx(1e-5)
    assert epoch_seed(0, 1) == epoch_seed(0, 1) != epoch_seed(0, 2) != epoch_seed(1, 1)
    assert epoch_seed(0, 1, 1) != epoch_seed(0, 1, 2)


def test_unused_parameters_are_frozen_without_side_effects():
    torch.manual_seed(0)
    model = create_model("sdt_tiny")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    names = freeze_unused_parameters(model)
    assert names == ["block.0.attn.talking_heads.weight", "block.1.attn.talking_heads.weight"]
    assert not any(p.requires_grad for n, p in model.named_parameters() if n in names)
    assert torch.equal(rng, torch.get_rng_state())
    for k, v in model.state_dict().items():  # BN statistics untouched by the probe
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.slow
def test_resume_is_bitwise_identical_to_an_uninterrupted_run(tmp_path):
    args = ["--model", "sdt_tiny", "--epochs", "2", *COMMON]
    full = run(parse_args([*args, "--output", str(tmp_path / "full")]))
    part = run(parse_args([*args, "--output", str(tmp_path / "part"), "--stop-after", "1"]))
    assert full["finished"] and not part["finished"] and part["epochs_done"] == 1
    ck = _state(tmp_path / "part" / "checkpoint.pt")  # weights-only loadable
    assert {"model", "optimizer", "scheduler", "step", "epoch", "rng", "args"} <= set(ck)
    assert isinstance(ck["args"], dict) and ck["epoch"] == 1 and ck["step"] == 3
    resumed = run(parse_args([*args, "--output", str(tmp_path / "part"), "--resume", "auto"]))
    assert resumed["finished"] and resumed["steps"] == full["steps"] == 6
    a, b = _state(tmp_path / "full" / "model.pt")["model"], _state(tmp_path / "part" / "model.pt")["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    oa, ob = _state(tmp_path / "full" / "checkpoint.pt"), _state(tmp_path / "part" / "checkpoint.pt")
    for sa, sb in zip(oa["optimizer"]["state"].values(), ob["optimizer"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in ("exp_avg", "exp_avg_sq"))
    assert full["test"]["top1"] == resumed["test"]["top1"]
    assert [h["train_loss"] for h in full["history"]] == [h["train_loss"] for h in resumed["history"]]
    w = _state(tmp_path / "full" / "model.pt")
    assert all(v.dtype in (torch.float32, torch.int64) for v in w["model"].values())
    assert w["meta"]["model"] == "sdt_tiny" and w["meta"]["epochs"] == 2


@pytest.mark.slow
def test_finetuning_with_tp_runs_and_updates_weights(tmp_path):
    torch.manual_seed(1)
    init = create_model("spikformer_tiny")
    torch.save({"model": init.state_dict()}, tmp_path / "init.pt")
    model = create_model("spikformer_tiny", checkpoint=str(tmp_path / "init.pt"))
    res = run(
        parse_args(
            [
                "--finetune",
                "--model",
                "spikformer_tiny",
                "--checkpoint",
                str(tmp_path / "init.pt"),
                "--tp-keep",
                "0.5",
                "--tp-scorer",
                "temporal",
                "--lr",
                "1e-3",
                *COMMON,
                "--output",
                str(tmp_path / "ft"),
            ]
        ),
        model=model,
    )
    assert res["finished"] and res["tp"] == {"keep": str(get_tp_state(model).keep), "scorer": "temporal"}
    rec = get_tp_state(model).records[0]  # the patched blocks really ran on half of the 8x8 tokens
    assert rec.kept == 32 and rec.total == 64
    after = _state(tmp_path / "ft" / "model.pt")["model"]
    changed = [
        k for k, v in init.state_dict().items() if v.is_floating_point() and not torch.equal(v, after[k])
    ]
    assert any(k.startswith("block.") and k.endswith("weight") for k in changed)


def _gloo_ok() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_gloo_available()


@pytest.mark.slow
@pytest.mark.skipif(not _gloo_ok(), reason="torch.distributed with gloo is not available")
def test_torchrun_ddp_training_smoke(tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "tp_spikformer.train",
        "--model",
        "sdt_tiny",
        "--epochs",
        "1",
        *COMMON,
        "--output",
        str(out),
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # own session, so that a hang kills torchrun AND its workers (no orphans left behind)
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    ) as popen:
        try:
            stdout, stderr = popen.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(popen.pid, signal.SIGKILL)
            popen.communicate()
            pytest.fail("torchrun with 2 gloo workers did not finish in 120 s")
    proc = subprocess.CompletedProcess(cmd, popen.returncode, stdout, stderr)
    if (
        proc.returncode != 0
        and ("gloo" in proc.stderr.lower() or "rendezvous" in proc.stderr.lower())
        and not (out / "log.txt").exists()
    ):
        pytest.skip(f"could not start a 2-process gloo group: {proc.stderr[-300:]}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["finished"] and metrics["test"]["n"] == 20


def test_classification_training_applies_every_tp_option():
    args = parse_args(
        [
            "--model",
            "sdt_tiny",
            "--keep",
            "0.5",
            "--scorer",
            "spatial",
            "--cumulative",
            "--gather-order",
            "raster",
        ]
    )
    model, state = build_model(args, None)
    assert state is get_tp_state(model)
    assert (state.scorer_name, state.cumulative, state.gather_order) == ("spatial", True, "raster")
