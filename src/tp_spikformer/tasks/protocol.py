"""What a task tells the comparison runner (``tp_spikformer.api.evaluate_variants``, ``tp-spikformer eval
--task``): how to score a model on a dataset, which metrics to show, which inputs to count SOPs and time
throughput on, and where the backbone is (for backbone-only throughput).

Each task package registers one :class:`TaskSpec` (``register_task``); the API looks it up by name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import UnknownNameError


def default_backbone(model: nn.Module) -> nn.Module | None:
    """``model.backbone`` when the model has one (detector, segmenter, tracker), else None."""
    return getattr(model, "backbone", None)


@dataclass(frozen=True)
class TaskSpec:
    """A task for the comparison runner.

    * ``evaluate(model, dataset, *, batch_size, device, limit, out_dir) -> dict``: the task's metrics of
      one variant (percentages where the field has them); ``out_dir`` (may be None) receives the per-variant
      files a user can re-score (prediction PNGs, COCO results, tracking result files).
    * ``metrics``: ``(key, header)`` pairs shown in tables; the first is the main metric.
    * ``sample_inputs(model, dataset, batch_size, n_batches) -> list``: preprocessed model inputs (tensors)
      for counting MACs / SOPs / energy and for timing throughput (all of one size).
    * ``backbone(model)``: the module whose throughput is reported as "backbone" (None: none).
    * ``timed_by_evaluate``: the task's own evaluation measures speed (e.g. a tracker's frames per second
      in its online loop), so the runner does not benchmark the model on ``sample_inputs``.
    * ``load_dataset(name, *, root, split, model, limit) -> dataset`` and ``dataset_names``: the datasets
      the command line offers for the task (``--dataset``, ``--data-root``, ``--split``).
    * ``train(model, args) -> metrics``: ``tp-spikformer train --task <name>`` with the parsed options;
      ``train_defaults``: the task's recipe for the options a user did not give (epochs, batch size, ...);
      ``train_options``: the option names (argparse ``dest``) its ``train`` reads beyond those every task
      trainer reads (``tp_spikformer.train.TASK_TRAIN_COMMON``); ``train`` refuses any other option given.
    * ``calibration_inputs(model, dataset, indices) -> (inputs, labels or None)``: the tensors the
      keep-schedule search runs the model on (the items ``indices``, normalised, at the model's input
      size; the caller draws them, e.g. ``calibrate.samples.pick_indices``); ``calibration_objective``:
      the search objective that fits them (None: the task has no schedule search).
    """

    name: str
    evaluate: Callable[..., dict[str, Any]]
    metrics: Sequence[tuple[str, str]]
    sample_inputs: Callable[..., list[torch.Tensor]]
    backbone: Callable[[nn.Module], nn.Module | None] = default_backbone
    timed_by_evaluate: bool = False
    load_dataset: Callable[..., Any] | None = None
    dataset_names: Sequence[str] = ()
    train: Callable[..., dict[str, Any]] | None = None
    train_defaults: dict[str, Any] = field(default_factory=dict)
    train_options: frozenset[str] = frozenset()
    calibration_inputs: Callable[..., tuple[torch.Tensor, torch.Tensor | None]] | None = None
    calibration_objective: str | None = None


_TASKS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    _TASKS[spec.name] = spec
    return spec


def get_task(name: str) -> TaskSpec:
    try:
        return _TASKS[name]
    except KeyError:
        raise UnknownNameError(f"unknown task {name!r}; choose one of {sorted(_TASKS)}") from None


def task_names() -> list[str]:
    return sorted(_TASKS)
