"""The registry and the model contract, parametrised over every registered configuration."""

import pytest
import torch

from tp_spikformer.models import (
    SpikingTransformer,
    TokenBlock,
    create_model,
    get_model_config,
    list_models,
    token_blocks,
)

# classification configurations (task models such as detectors and trackers are tested with their task)
ALL = [n for n in list_models() if get_model_config(n).task == "classification"]
OFFICIAL = [n for n in list_models(include_tiny=False) if get_model_config(n).task == "classification"]
TINY = [n for n in list_models("*_tiny") if get_model_config(n).task == "classification"]
FAMILIES = {"spikformer", "sdt_v1", "qkformer", "sdt_v3", "sdt_v2", "spikingformer"}


def example_input(model, batch=2):
    c, h, w = model.config.data.input_size
    if model.config.data.event_frames:
        return torch.rand(batch, model.config.T, c, h, w).round()
    return torch.randn(batch, c, h, w)


def test_every_family_has_full_and_tiny_configs():
    assert {get_model_config(n).family for n in OFFICIAL} == FAMILIES
    assert {get_model_config(n).family for n in TINY} == FAMILIES


@pytest.mark.parametrize("name", ALL)
def test_config_builds_and_is_consistent(name):
    cfg = get_model_config(name)
    assert cfg.family in FAMILIES and cfg.description
    with torch.device("meta"):
        model = create_model(name)
    assert isinstance(model, SpikingTransformer) and model.family == cfg.family
    assert model.config.name == name and model.config.num_classes == cfg.num_classes
    blocks = token_blocks(model)
    assert blocks and all(isinstance(b, TokenBlock) for _, b in blocks)
    if cfg.official_params is not None:
        assert sum(p.numel() for p in model.parameters()) == cfg.official_params
    c = cfg.data.input_size[0]
    assert c == model.in_channels
    if cfg.data.mean is not None:
        assert len(cfg.data.mean) == len(cfg.data.std) == c


@pytest.mark.parametrize("name", TINY)
def test_tiny_forward_and_features(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    x = example_input(model)
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model.forward_head(feats)
        assert torch.equal(logits, model(x))
    assert logits.shape == (2, model.config.num_classes)
    layout = token_blocks(model)[-1][1].token_layout
    assert feats.dim() == len(layout)
    if layout == "TBCHW":
        assert feats.shape[:2] == (model.T, 2)


@pytest.mark.parametrize("name", TINY)
def test_bad_inputs_raise_clear_errors(name):
    model = create_model(name).eval()
    x = example_input(model)
    c = model.in_channels
    wrong_c = x.narrow(-3, 0, 1).expand(*x.shape[:-3], c + 1, *x.shape[-2:]).clone()
    with pytest.raises(ValueError, match=f"expects {c} input channels"):
        model(wrong_c)
    bad = x.clone()
    bad.view(-1)[3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model(bad)
    with pytest.raises(ValueError, match="expects input of shape"):
        model(x[0])  # missing batch dimension
    with pytest.raises(TypeError, match="floating-point"):
        model((x * 10).long())
    h, w = x.shape[-2:]
    odd = torch.nn.functional.pad(x, (0, 1))
    with pytest.raises(ValueError, match="multiples of|only accepts"):
        model(odd)
    if model.T is not None:
        frames = (
            x.unsqueeze(1).expand(-1, model.T + 1, *x.shape[1:])
            if x.dim() == 4
            else torch.cat([x, x[:, :1]], 1)
        )
        if model.event_input:
            with pytest.raises(ValueError, match=f"T={model.T}"):
                model(frames)
        else:
            with pytest.raises(ValueError, match="expects input of shape"):
                model(frames)


def test_channels_last_hint():
    model = create_model("sdt_tiny")
    with pytest.raises(ValueError, match="channels-last"):
        model(torch.randn(2, 32, 32, 3))


def test_fixed_size_stem_rejects_other_sizes():
    model = create_model("spikformer_2_256_cifar10dvs")
    with pytest.raises(ValueError, match="only accepts 128x128"):
        model(torch.rand(1, 16, 2, 64, 64))


def test_unknown_model_and_override():
    with pytest.raises(KeyError, match="Did you mean sdt_8_512_imagenet"):
        create_model("sdt_8_512_imagnet")
    with pytest.raises(TypeError, match="unknown override"):
        create_model("sdt_tiny", heads=3)
    assert create_model("sdt_tiny", T=3).T == 3
    assert create_model("sdt_tiny", T=3).config.T == 3


def test_list_models_pattern():
    assert (
        list_models("qkformer_10_*") == [n for n in ALL if n.startswith("qkformer_10_")]
        and len(list_models("qkformer_10_*")) >= 3
    )
    assert not set(TINY) & set(OFFICIAL)


def test_pretrained_without_shipped_weights_says_what_to_do():
    with pytest.raises(ValueError, match="checkpoint=<path to the official file>"):
        create_model("sdt_8_768_imagenet", pretrained=True)
