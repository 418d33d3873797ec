"""Training pieces shared by every task: optimiser and schedules, checkpoints (resumable state and weight
exports), and the classification training loop. The command-line entry point is ``tp_spikformer.train``."""

from .checkpoints import (
    CHECKPOINT_NAME,
    METRICS_NAME,
    WEIGHTS_NAME,
    atomic_save,
    export_weights,
    remove_stale_temporaries,
    resume_path,
)
from .classification import run, train_step
from .optim import cosine_lr, epoch_seed, freeze_unused_parameters, make_optimizer, poly_lr

__all__ = [
    "CHECKPOINT_NAME",
    "METRICS_NAME",
    "WEIGHTS_NAME",
    "atomic_save",
    "cosine_lr",
    "epoch_seed",
    "export_weights",
    "freeze_unused_parameters",
    "make_optimizer",
    "poly_lr",
    "remove_stale_temporaries",
    "resume_path",
    "run",
    "train_step",
]
