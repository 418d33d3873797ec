"""Full-size configurations: state_dict keys, order and shapes identical to the official lists."""

import pytest
import torch
from reference import key_files

from tp_spikformer.models import get_model_config


def parse_key_file(path):
    rows = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        key, shape, _dtype = line.split("\t")
        dims = shape.strip("[]").replace(" ", "")
        rows.append((key, tuple(int(d) for d in dims.split(",")) if dims else ()))
    return rows


@pytest.mark.parametrize("path", key_files())
def test_full_config_keys_match_official(path):
    cfg = get_model_config(path.stem)  # the key files are named like our configurations
    with torch.device("meta"):
        model = cfg.builder(**cfg.kwargs)
    ours = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert ours == parse_key_file(path)
    if cfg.official_params is not None:
        assert sum(p.numel() for p in model.parameters()) == cfg.official_params
