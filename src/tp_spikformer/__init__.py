"""tp-spikformer: training-free token pruning (TP-Spikformer) for pretrained spiking transformers."""

from .models import create_model, list_models, load_checkpoint

__version__ = "0.1.0"
__all__ = ["create_model", "list_models", "load_checkpoint", "__version__"]
