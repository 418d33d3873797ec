"""What the keep-schedule search minimises on the calibration images (lower is better).

* ``accuracy`` (labelled data): the top-1 error rate; ties (small calibration sets give many) are broken by
  ``0.001 x`` the mean cross-entropy, so that of two schedules with the same errors the one whose logits
  moved less toward wrong classes wins. For segmentation (logits ``[B, K, h, w]``, label maps
  ``[B, H, W]``) the same on pixels: the pixel error rate, ignore index 255 left out.
* ``logits_kl`` (no labels needed): the mean ``KL(p_dense || p_pruned)`` of the class probabilities, in
  nats: how far pruning moved the model's predictions away from the dense model's (segmentation: the mean
  over the pixels of the logit maps).
* ``features`` (no labels; for models with dense heads, e.g. segmentation and detection backbones): the
  relative squared error ``sum ||f - f_dense||^2 / sum ||f_dense||^2`` of ``model.forward_features(x)``
  (the full token grid, also when pruned; a list of stage maps counts all of them), or of ``fn(model, x)``
  when given. The dense features of every
  calibration image stay on the device (``T x C x H x W`` floats per image): mind the calibration size.

An objective is evaluated in two steps: ``target(dense_output, y)`` once per calibration batch on the dense
model (the cache), then ``terms(output, target, y)`` per batch of a candidate; ``value`` and ``report``
turn the summed terms into the scalar the search minimises and the numbers a user reads. Another objective
(a segmentation or detection loss) plugs in as a subclass of :class:`Objective`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UsageError, UsageTypeError
from ..evaluate import logits_of

OBJECTIVES = ("accuracy", "logits_kl", "features")
CE_TIE_BREAK = 1e-3


class Objective:
    """Base class: ``output`` runs the model, ``target`` caches what the dense model gave, ``terms`` sums a
    batch, ``value`` is the scalar to minimise, ``report`` the readable numbers."""

    name = "objective"
    needs_labels = False
    uses_forward = True  # output() is model(x): the operation counter can run in the same pass

    def output(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        out = model(x)
        if isinstance(out, torch.Tensor) and out.dim() == 4:  # dense-prediction logits [B, K, h, w]
            return out.float()
        return logits_of(out).float()

    def target(self, dense_output: torch.Tensor, y: torch.Tensor | None) -> Any:
        return None

    def terms(self, output: torch.Tensor, target: Any, y: torch.Tensor | None) -> dict[str, float]:
        raise NotImplementedError

    def value(self, sums: dict[str, float], n: int) -> float:
        raise NotImplementedError

    def report(self, sums: dict[str, float], n: int) -> dict[str, float]:
        return {self.name: self.value(sums, n)}

    def settings(self) -> dict[str, Any]:
        return {"name": self.name}


class AccuracyObjective(Objective):
    """Top-1 error, ties broken by ``0.001 x`` mean cross-entropy (module docstring).

    Dense prediction (segmentation): logits ``[B, K, h, w]`` with label maps ``[B, H, W]`` give the pixel
    error instead: the logits are resized bilinearly to the label size (as mmseg scores them), pixels
    labelled ``ignore_index`` are left out, and errors and cross-entropy are averaged over the counted
    pixels."""

    name = "accuracy"
    needs_labels = True

    def __init__(self, ignore_index: int = 255):
        self.ignore_index = int(ignore_index)

    def terms(self, output, target, y):
        if output.dim() == 4 and y is not None and y.dim() == 3:
            return self._pixel_terms(output, y)
        return {
            "errors": float((output.argmax(1) != y).sum()),
            "cross_entropy": float(F.cross_entropy(output, y, reduction="sum")),
        }

    def _pixel_terms(self, output, y):
        if tuple(output.shape[-2:]) != tuple(y.shape[-2:]):
            output = F.interpolate(output, size=y.shape[-2:], mode="bilinear", align_corners=False)
        y = y.long()
        valid = y != self.ignore_index
        errors = (output.argmax(1) != y) & valid
        ce = F.cross_entropy(output, y, ignore_index=self.ignore_index, reduction="sum")
        return {"errors": float(errors.sum()), "cross_entropy": float(ce), "count": float(valid.sum())}

    def value(self, sums, n):
        count = sums.get("count", n) or 1.0
        return sums["errors"] / count + CE_TIE_BREAK * sums["cross_entropy"] / count

    def report(self, sums, n):
        count = sums.get("count", n) or 1.0
        key = "pixel_accuracy" if "count" in sums else "top1"
        return {
            key: 100.0 * (1.0 - sums["errors"] / count),
            "cross_entropy": sums["cross_entropy"] / count,
            "value": self.value(sums, n),
        }


class LogitsKLObjective(Objective):
    """Mean KL divergence of the pruned model's class probabilities from the dense model's (nats)."""

    name = "logits_kl"

    def target(self, dense_output, y):
        return F.log_softmax(dense_output, dim=1)

    def terms(self, output, target, y):
        log_p = F.log_softmax(output, dim=1)
        kl = (target.exp() * (target - log_p)).sum()
        out = {"kl": float(kl), "agree": float((output.argmax(1) == target.argmax(1)).sum())}
        if output.dim() == 4:  # per pixel of the logit maps
            out["count"] = float(output.shape[0] * output.shape[2] * output.shape[3])
        elif y is not None:
            out["errors"] = float((output.argmax(1) != y).sum())
        return out

    def value(self, sums, n):
        return sums["kl"] / sums.get("count", n)

    def report(self, sums, n):
        count = sums.get("count", n)
        rep = {
            "kl": sums["kl"] / count,
            "agreement_with_dense": 100.0 * sums["agree"] / count,
            "value": self.value(sums, n),
        }
        if "errors" in sums:
            rep["top1"] = 100.0 * (1.0 - sums["errors"] / n)
        return rep


class FeatureObjective(Objective):
    """Relative squared error of features: ``model.forward_features(x)`` or ``fn(model, x)``."""

    name = "features"
    uses_forward = False

    def __init__(self, fn: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None):
        self.fn = fn

    def output(self, model, x):
        if self.fn is not None:
            out = self.fn(model, x)
        else:
            if not callable(getattr(model, "forward_features", None)):
                raise UsageError(
                    f"objective 'features' needs model.forward_features, which {type(model).__name__} "
                    "lacks; pass FeatureObjective(fn=lambda model, x: ...) or objective='logits_kl'"
                )
            out = model.forward_features(x)
        if isinstance(out, (list, tuple)) and out and all(isinstance(t, torch.Tensor) for t in out):
            # stage outputs of a dense-prediction backbone: every element of every map counts
            return torch.cat([t.float().reshape(-1) for t in out])
        if not isinstance(out, torch.Tensor):
            raise UsageTypeError(
                f"objective 'features': the features are a {type(out).__name__}, expected a tensor or a "
                "list of tensors; pass FeatureObjective(fn=...) that returns one of those"
            )
        return out.float()

    def target(self, dense_output, y):
        return dense_output

    def terms(self, output, target, y):
        return {
            "squared_error": float((output - target).pow(2).sum(dtype=torch.float64)),
            "reference": float(target.pow(2).sum(dtype=torch.float64)),
        }

    def value(self, sums, n):
        return (
            sums["squared_error"] / sums["reference"] if sums["reference"] > 0 else sums["squared_error"] / n
        )

    def report(self, sums, n):
        return {"relative_squared_error": self.value(sums, n), "value": self.value(sums, n)}

    def settings(self):
        return {
            "name": self.name,
            "fn": getattr(self.fn, "__name__", None) if self.fn else "forward_features",
        }


def get_objective(objective: str | Objective) -> Objective:
    """An :class:`Objective` from its name (``accuracy``, ``logits_kl``, ``features``) or as given."""
    if isinstance(objective, Objective):
        return objective
    table = {"accuracy": AccuracyObjective, "logits_kl": LogitsKLObjective, "features": FeatureObjective}
    if not isinstance(objective, str) or objective not in table:
        raise UsageError(
            f"unknown objective {objective!r}; choose one of {OBJECTIVES} (accuracy needs labels; "
            "logits_kl and features compare with the dense model and need none) or pass an Objective"
        )
    return table[objective]()
