"""Evaluation: counts, top-k, TET averaging, map-style datasets, 2-process gloo sharding, shipped weights."""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import Dataset

from tp_spikformer.data import InMemoryImages, synthetic_dataset
from tp_spikformer.data.catalog import SHIPPED_SLICE as FMNIST_SLICE
from tp_spikformer.evaluate import evaluate, shard_range
from tp_spikformer.models import create_model, get_model_config, list_models
from tp_spikformer.models._registry import asset_path

FMNIST_MODELS = ["spikformer_fmnist", "sdt_fmnist", "qkformer_fmnist", "sdt_v3_fmnist"]


class _Fixed(nn.Module):
    """Returns pre-set logits for the labels it is fed (inputs carry the sample index in pixel [0,0,0])."""

    def __init__(self, logits: torch.Tensor, tet: bool = False):
        super().__init__()
        self.register_buffer("logits", logits)
        self.tet = tet

    def forward(self, x):
        out = self.logits[x[:, 0, 0, 0].round().long()]
        return torch.stack([out * 0.5, out * 1.5]) if self.tet else out  # mean over T = out


def _index_dataset(n: int) -> InMemoryImages:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    labels = torch.arange(n) % 7
    return InMemoryImages(images, labels)  # no normalisation: get_batch gives index / 255


class _Scaled(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x * 255)


class _MapStyle(Dataset):
    """A plain map-style view of an in-memory set that records which indices were read."""

    def __init__(self, base):
        self.base, self.seen = base, []

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        self.seen.append(int(i))
        return self.base.get_batch([i])[0], int(self.base.targets[i])


def test_shard_range_partitions_exactly():
    for n in (0, 1, 7, 37, 100):
        for world in (1, 2, 3, 8):
            parts = [list(shard_range(n, r, world)) for r in range(world)]
            assert sum(parts, []) == list(range(n))


def test_topk_counts_and_tet_average():
    torch.manual_seed(0)
    n, c = 23, 7
    logits = torch.randn(n, c)
    data = _index_dataset(n)
    labels = data.targets
    expect1 = int((logits.argmax(1) == labels).sum())
    expect5 = int((logits.topk(5, 1).indices == labels[:, None]).any(1).sum())
    for tet in (False, True):
        res = evaluate(_Scaled(_Fixed(logits, tet)), data, batch_size=5, per_class=True)
        assert res["n"] == n and res["correct1"] == expect1 and res["correct5"] == expect5
        assert res["top1"] == pytest.approx(100 * expect1 / n)
        assert res["loss"] == pytest.approx(float(nn.functional.cross_entropy(logits, labels)), rel=1e-5)
        assert sum(res["per_class"]["n"]) == n
    generic = _MapStyle(data)
    res_g = evaluate(_Scaled(_Fixed(logits)), generic, batch_size=4)
    assert res_g["correct1"] == expect1 and sorted(generic.seen) == list(range(n))
    assert evaluate(_Scaled(_Fixed(logits)), data, batch_size=4, limit=10)["n"] == 10


def test_model_mode_restored_and_real_model_runs():
    model = create_model("sdt_tiny").train()
    data = synthetic_dataset(9, size=32, channels=3)
    res = evaluate(model, data, batch_size=4)
    assert model.training and res["n"] == 9 and 0 <= res["top1"] <= 100


# -- two processes, gloo --------------------------------------------------------------------------


def _worker(rank: int, world: int, init_file: str, out_dir: str, n: int):
    import torch.distributed as dist

    torch.set_num_threads(1)
    try:
        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    except Exception as exc:  # reported to the parent, which skips
        with open(os.path.join(out_dir, f"skip{rank}"), "w") as f:
            f.write(repr(exc))
        return
    try:
        torch.manual_seed(0)
        logits = torch.randn(n, 7)
        data = _index_dataset(n)
        res = evaluate(_Scaled(_Fixed(logits)), data, batch_size=4, per_class=True)
        generic = _MapStyle(data)
        res_g = evaluate(_Scaled(_Fixed(logits)), generic, batch_size=4)
        torch.manual_seed(0)
        model = create_model("sdt_tiny")
        res_m = evaluate(model, synthetic_dataset(n, size=32, channels=3), batch_size=8)
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump({"fixed": res, "generic": res_g, "seen": generic.seen, "model": res_m}, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="torch.distributed with gloo is not available",
)
@pytest.mark.slow
def test_two_process_gloo_counts_every_sample_once(tmp_path):
    n = 37  # not divisible by the world size
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_worker, args=(r, 2, str(tmp_path / "init"), str(tmp_path), n)) for r in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        if p.is_alive():
            p.kill()
            pytest.fail("a gloo worker hung")
    if any((tmp_path / f"skip{r}").exists() for r in range(2)):
        pytest.skip(
            "gloo could not initialise: " + (tmp_path / "skip0").read_text()[:200]
            if (tmp_path / "skip0").exists()
            else "gloo could not initialise"
        )
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2))
    # each rank read a disjoint shard and together they cover every index once
    assert sorted(r0["seen"] + r1["seen"]) == list(range(n)) and not set(r0["seen"]) & set(r1["seen"])
    torch.manual_seed(0)
    logits = torch.randn(n, 7)
    data = _index_dataset(n)
    single = evaluate(_Scaled(_Fixed(logits)), data, batch_size=4, per_class=True)
    torch.manual_seed(0)
    single_m = evaluate(create_model("sdt_tiny"), synthetic_dataset(n, size=32, channels=3), batch_size=8)
    for r in (r0, r1):
        for key in ("fixed", "generic"):
            assert r[key]["n"] == n and r[key]["world_size"] == 2
            assert r[key]["correct1"] == single["correct1"] and r[key]["correct5"] == single["correct5"]
            assert r[key]["loss"] == pytest.approx(single["loss"], rel=1e-6)
        assert r["fixed"]["per_class"]["n"] == single["per_class"]["n"]
        assert r["model"]["n"] == n and r["model"]["correct1"] == single_m["correct1"]
        assert r["model"]["loss"] == pytest.approx(single_m["loss"], rel=1e-5)


# -- shipped Fashion-MNIST weights ---------------------------------------------------------------------


def test_fashion_mnist_configs_registered():
    assert set(FMNIST_MODELS) <= set(list_models("*fmnist"))
    for name in FMNIST_MODELS:
        cfg = get_model_config(name)
        assert cfg.data.input_size[0] == 1 and cfg.num_classes == 10
        assert cfg.data.mean == (0.2860,) and cfg.data.std == (0.3530,)
        side = {"sdt_v3": 64, "qkformer": 16}.get(cfg.family, 32)  # QKFormer: 16 px, see its notes
        assert cfg.data.input_size[1:] == (side, side)
        assert (None if cfg.family == "sdt_v3" else 4) == cfg.T
    assert get_model_config("qkformer_fmnist").kwargs["proj_lif_mode"] == "per_sample"


def test_shipped_slice_is_the_first_2000_test_images():
    path = asset_path(FMNIST_SLICE)
    data = InMemoryImages.from_npz(path)
    assert (
        len(data) == 2000 and data.images.dtype == torch.uint8 and tuple(data.images.shape[1:]) == (1, 28, 28)
    )
    assert torch.bincount(data.targets, minlength=10).min() > 150
    root = "/usr/share/datasets/fashion-mnist"
    if os.path.isdir(root):
        from tp_spikformer.data import FashionMNIST

        full = FashionMNIST(split="test", limit=2000)
        assert torch.equal(full.images, data.images) and torch.equal(full.targets, data.targets)


@pytest.mark.slow
@pytest.mark.parametrize("name", FMNIST_MODELS)
def test_shipped_weights_reach_documented_accuracy(name):
    cfg = get_model_config(name)
    assert cfg.weights == f"fashion_mnist/{name}.pt"  # shipped with the package (asset_path raises if absent)
    model = create_model(name, pretrained=True)  # strict loading
    data = InMemoryImages.from_npz(asset_path(FMNIST_SLICE)).with_data_config(cfg.data)
    res = evaluate(model, data, batch_size=250)
    documented = cfg.extra["slice_top1"]
    assert res["n"] == 2000
    assert res["top1"] == pytest.approx(documented, abs=0.5), (res["top1"], documented)
    assert cfg.extra["test_top1"] >= 85.0


def test_package_data_stays_under_the_40_mb_project_limit():
    assets = os.path.dirname(os.path.dirname(asset_path(FMNIST_SLICE)))  # .../tp_spikformer/assets
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(assets) for f in files)
    assert total <= 40 * 2**20, f"assets hold {total / 2**20:.1f} MiB"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--window", "3"], "--window does nothing without --keep or --scorer"),
        (["--mode", "drop", "--cumulative"], "--mode, --cumulative do nothing without --keep"),
        (["--use-ema"], "--use-ema does nothing without --checkpoint"),
        (["--frames", "4"], "--frames does nothing"),
    ],
)
def test_entry_point_refuses_options_it_would_not_read(extra, message, tmp_path, capsys):
    from tp_spikformer.evaluate import main

    argv = ["--model", "sdt_tiny", "--dataset", "synthetic:8", "--limit", "4", "--out", str(tmp_path)]
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
