"""Downstream tasks built on the spiking backbones (one sub-package per task: ``tasks/<task>/``)."""
