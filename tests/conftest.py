"""Shared test set-up: single-threaded torch, a deterministic hypothesis profile, and the fixtures every
test module uses to build tiny models and their inputs."""

import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
# Tiny test models gain nothing from threads, and OpenMP threads on a shared 2-core machine can make small
# ops 20x slower: run the suite single-threaded.
torch.set_num_threads(1)

# Property tests draw the same examples on every run (no flaky CI); widen locally with HYPOTHESIS_PROFILE=dev.
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True, deadline=None)
settings.register_profile("dev", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def build_tiny(name: str, seed: int = 0, **overrides):
    """A registered model in eval mode whose random BatchNorm statistics make its neurons fire."""
    from tp_spikformer.measure.variants import make_neurons_fire
    from tp_spikformer.models import create_model

    torch.manual_seed(seed)
    model = create_model(name, **overrides).eval()
    make_neurons_fire(model, seed=1)
    return model


def sample_inputs(model, batch: int = 3, seed: int = 0, size=None):
    """Random inputs in the model's layout: images ``[B, C, H, W]`` or Poisson event frames ``[B, T, C, H, W]``;
    ``size=(H, W)`` replaces the configured image size."""
    c, h, w = model.config.data.input_size
    h, w = size or (h, w)
    g = torch.Generator().manual_seed(seed)
    if model.config.data.event_frames:
        return torch.poisson(torch.rand(batch, model.T, c, h, w, generator=g) * 1.5, generator=g)
    return torch.randn(batch, c, h, w, generator=g)


def per_sample(model):
    """QKFormer's default batch-coupled mode makes outputs depend on the batch: use per-sample mode."""
    for m in model.modules():
        if hasattr(m, "proj_lif_mode"):
            m.proj_lif_mode = "per_sample"
    return model


@pytest.fixture
def tiny():
    """``tiny(name, seed=0, **overrides)`` -> a firing tiny model (see :func:`build_tiny`)."""
    return build_tiny


@pytest.fixture
def inputs():
    """``inputs(model, batch=3, seed=0, size=None)`` -> random inputs (see :func:`sample_inputs`)."""
    return sample_inputs
