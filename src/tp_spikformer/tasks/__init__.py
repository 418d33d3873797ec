"""Dense-prediction tasks on (pruned) spiking backbones: segmentation, detection, tracking.

Each task lives in its own sub-package and may import ``models``, ``pruning``, ``measure``, ``data`` and
the shared ``training`` pieces; nothing outside ``tasks`` (except the CLI and the API) imports a task. Task models register their
configurations in the model registry (``ModelConfig.task``), so ``create_model`` builds them by name once
``tp_spikformer`` is imported.
"""

from . import detection  # noqa: F401  (registers the detector configurations)
from . import tracking  # noqa: F401  (registers the trackers)
