"""tp-spikformer: training-free token pruning (TP-Spikformer) for pretrained spiking transformers.

import tp_spikformer as tp
model = tp.create_model("sdt_fmnist", pretrained=True)
print(tp.compare(model, tp.load_dataset("shipped", data_cfg=model), keep=0.5, scorer="official"))
"""

from . import calibrate, measure, pruning, tasks  # noqa: F401  (tasks register their models; calibrate is callable)
from .api import bench, compare, evaluate_variants, save_sweep_plots, sweep, visualize
from .data import load_dataset
from .evaluate import evaluate
from .models import create_model, get_model_config, list_models, load_checkpoint
from .optimize import deoptimize, optimize  # the function shadows the subpackage's attribute name
from .pruning import apply_tp, get_tp_state, remove_tp

__version__ = "0.1.0"
__all__ = [
    "__version__",
    "apply_tp",
    "bench",
    "calibrate",
    "compare",
    "create_model",
    "deoptimize",
    "evaluate",
    "evaluate_variants",
    "get_model_config",
    "get_tp_state",
    "list_models",
    "load_checkpoint",
    "load_dataset",
    "measure",
    "optimize",
    "pruning",
    "remove_tp",
    "save_sweep_plots",
    "sweep",
    "visualize",
]
