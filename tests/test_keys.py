"""Full-size configurations: state_dict keys, order and shapes identical to the official lists."""

import pytest
import torch
from reference import key_files

from tp_spikformer.models import get_model_config, list_models


def parse_key_file(path):
    rows = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        key, shape, _dtype = line.split("\t")
        dims = shape.strip("[]").replace(" ", "")
        rows.append((key, tuple(int(d) for d in dims.split(",")) if dims else ()))
    return rows


def config_for_key_file(stem: str):
    """The configuration a key list belongs to: named like it, or declaring it as ``extra["official_keys"]``."""
    named = [n for n in list_models() if n == stem or get_model_config(n).extra.get("official_keys") == stem]
    assert len(named) == 1, f"key list {stem}: expected one configuration for it, found {named}"
    return get_model_config(named[0])


@pytest.mark.parametrize("path", key_files())
def test_full_config_keys_match_official(path):
    cfg = config_for_key_file(path.stem)
    with torch.device("meta"):
        model = cfg.builder(**cfg.kwargs)
    ours = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert ours == parse_key_file(path)
    if cfg.official_params is not None:
        assert sum(p.numel() for p in model.parameters()) == cfg.official_params
