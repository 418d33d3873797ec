"""Model zoo: six spiking-transformer families that load official checkpoints key for key."""

from . import (  # noqa: F401  (importing a family registers its configurations)
    fashion_mnist,  # noqa: F401  (small Fashion-MNIST configurations with shipped weights)
    qkformer,
    scenes,  # noqa: F401  (small single-object scene classifiers with 14x14 token grids)
    sdt,
    sdt_v2,
    sdt_v3,
    spikformer,
    spikingformer,
)
from ._registry import (
    DataConfig,
    ModelConfig,
    build_from_official_kwargs,
    create_model,
    get_model_config,
    list_models,
    register_model,
)
from .base import SpikingTransformer
from .checkpoint import (
    CheckpointError,
    extract_state_dict,
    load_checkpoint,
    load_classifier_weights,
    read_checkpoint,
)
from .protocol import BlockPart, TokenBlock, TPDefaults, token_blocks

__all__ = [
    "BlockPart",
    "TPDefaults",
    "CheckpointError",
    "DataConfig",
    "ModelConfig",
    "SpikingTransformer",
    "TokenBlock",
    "build_from_official_kwargs",
    "create_model",
    "extract_state_dict",
    "get_model_config",
    "list_models",
    "load_checkpoint",
    "load_classifier_weights",
    "read_checkpoint",
    "register_model",
    "token_blocks",
]
