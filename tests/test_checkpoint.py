"""Checkpoint loading: official containers, prefixes, Namespace pickles, strictness and advice."""

import argparse
import collections
from collections import OrderedDict

import pytest
import torch

from tp_spikformer.models import CheckpointError, create_model, extract_state_dict, load_checkpoint


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(0)
    return create_model("sdt_2_256_cifar10")


def fresh():
    return create_model("sdt_2_256_cifar10")


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.slow
def test_timm_checkpoint_with_namespace_and_ema(source, tmp_path):
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in source.state_dict().items()}
    path = tmp_path / "model_best.pth.tar"
    torch.save(
        {
            "epoch": 299,
            "arch": "sdt",
            "state_dict": source.state_dict(),
            "optimizer": {"state": {}},
            "version": 2,
            "args": argparse.Namespace(lr=3e-4, model="sdt", output=tmp_path),
            "amp_scaler": {},
            "metric": 95.6,
            "state_dict_ema": ema,
        },
        path,
    )
    assert same_weights(create_model("sdt_2_256_cifar10", checkpoint=path), source)
    m = load_checkpoint(fresh(), path, use_ema=True)
    assert torch.equal(m.state_dict()["head.weight"], ema["head.weight"])


@pytest.mark.slow
def test_mae_style_and_prefixes(source, tmp_path):
    for prefix in ("module.", "_orig_mod.", "module._orig_mod."):
        state = OrderedDict((prefix + k, v) for k, v in source.state_dict().items())
        path = tmp_path / "checkpoint-199.pth"
        torch.save(
            {"model": state, "optimizer": {}, "epoch": 199, "scaler": {}, "args": argparse.Namespace(a=1)},
            path,
        )
        assert same_weights(load_checkpoint(fresh(), path), source)


def test_bare_state_dict_and_in_memory(source):
    assert same_weights(load_checkpoint(fresh(), source.state_dict()), source)
    assert same_weights(load_checkpoint(fresh(), {"model": source.state_dict()}), source)


def test_unused_official_keys_may_be_absent(source):
    state = {k: v for k, v in source.state_dict().items() if "talking_heads" not in k}
    m = load_checkpoint(fresh(), state)
    assert torch.equal(m.state_dict()["head.weight"], source.state_dict()["head.weight"])


def test_missing_and_unexpected_keys_are_listed(source):
    state = dict(source.state_dict())
    del state["block.1.mlp.fc2_conv.weight"]
    state["block.1.extra"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(fresh(), state)
    msg = str(err.value)
    assert "missing keys (1): block.1.mlp.fc2_conv.weight" in msg
    assert "unexpected keys (1): block.1.extra" in msg
    m = load_checkpoint(fresh(), state, strict=False)
    assert m.load_report["missing"] == ["block.1.mlp.fc2_conv.weight"]


def test_wrong_config_suggests_the_right_one(source, tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": source.state_dict()}, path)
    with pytest.raises(CheckpointError) as err:
        create_model("sdt_2_512_cifar10", checkpoint=path)
    msg = str(err.value)
    assert (
        "mis-shaped keys" in msg
        and "patch_embed.proj_conv.weight checkpoint [32, 3, 3, 3] vs model [64, 3, 3, 3]" in msg
    )
    assert "these weights look like 'sdt_2_256_cifar10'" in msg


def test_suggestion_across_families(tmp_path):
    with torch.device("meta"):
        qk = create_model("qkformer_4_384_cifar10")
    state = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in qk.state_dict().items()}
    with pytest.raises(CheckpointError, match="look like 'qkformer_4_384_cifar10'"):
        load_checkpoint(fresh(), state)


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_arbitrary_pickles_are_refused(source, tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": source.state_dict(), "payload": Evil(), "c": collections.Counter()}, path)
    with pytest.raises(CheckpointError, match="trusted=True"):
        load_checkpoint(fresh(), path)
    assert same_weights(load_checkpoint(fresh(), path, trusted=True), source)


def test_no_state_dict_found():
    with pytest.raises(CheckpointError, match="no state dict found"):
        extract_state_dict({"epoch": 3, "optimizer": {"lr": 1}})
    with pytest.raises(CheckpointError, match="state_dict_ema"):
        extract_state_dict({"state_dict": {"a": torch.zeros(1)}}, use_ema=True)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(fresh(), "/nonexistent/ckpt.pth")


def test_float32_checkpoint_into_float64_model(source):
    m = fresh().double()
    load_checkpoint(m, source.state_dict())
    assert m.state_dict()["head.weight"].dtype == torch.float64
