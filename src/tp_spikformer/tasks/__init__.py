"""Dense-prediction tasks on (pruned) spiking backbones: segmentation, detection, tracking.

Each task lives in its own sub-package and may import ``models``, ``pruning``, ``measure`` and ``data``;
nothing outside ``tasks`` (except the CLI and the API) imports a task.
"""
