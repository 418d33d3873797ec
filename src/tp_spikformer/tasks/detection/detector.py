"""A detector = backbone (stage features, prunable) + neck + head, as three swappable objects.

``SpikingDetector(backbone, neck, head)``: the backbone is a ``features_only`` model of the zoo
(``create_model(name, features_only=True, out_indices=...)``), the neck turns its maps into levels
(:class:`.neck.SpikeFPN`), the head predicts and post-processes (:class:`.head.FCOSHead`, or any object
with the head protocol described there).

Time read-out: families with a time axis (Spikformer, SDT-V1, QKFormer) give ``[T, B, C, H, W]`` stage
maps; the detector averages them over T (the mean firing rate / mean residual state of each position)
before the neck, whose first multi-spike re-quantises them. SDT-V3 maps (no T) pass unchanged. The
official SDT-V3 detector has no T either (its backbone returns ``[1, B, C, H, W]``).

TP: ``apply_tp(detector, ...)`` patches the backbone's transformer blocks (the neck and head have none);
stopped tokens stay in place, so the neck always sees full maps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class SpikingDetector(nn.Module):
    """Backbone + time read-out + neck + head.

    ``forward(images)`` returns one dict per image (``boxes`` ``[N, 4]`` xyxy in input pixels, clipped
    to the image, ``scores``, ``labels`` 0..K-1); ``forward(images, targets)`` returns the loss dict
    (``loss`` the total). ``image_sizes`` (unpadded ``(h, w)`` per image of a padded batch) clip the
    boxes; default the batch's ``H, W``. ``images`` are normalised ``[B, 3, H, W]``; sides that are not
    multiples of :attr:`size_divisor` are zero-padded bottom/right (as mmdet pads to 32).
    """

    task = "detection"

    def __init__(self, backbone: nn.Module, neck: nn.Module, head: nn.Module, size_divisor: int = 32):
        super().__init__()
        info = getattr(backbone, "feature_info", None)
        if not info or not getattr(backbone, "features_only", False):
            raise ValueError(
                "the backbone must be a features_only model: create_model(name, features_only=True, "
                "out_indices=...)"
            )
        self.backbone, self.neck, self.head = backbone, neck, head
        self.size_divisor = max(int(size_divisor), int(getattr(backbone, "input_multiple", 1)))
        self.time_axis = any(d.get("time_axis", False) for d in info)

    # attributes the measurement and pruning layers read from a model
    @property
    def T(self) -> int | None:
        """The backbone's time steps (None: no time axis)."""
        return getattr(self.backbone, "T", None)

    @property
    def family(self) -> str:
        return getattr(self.backbone, "family", "")

    @property
    def in_channels(self) -> int:
        return int(getattr(self.backbone, "in_channels", 3))

    @property
    def num_classes(self) -> int:
        return int(self.head.num_classes)

    def backbone_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The backbone's stage maps read out as ``[B, C, H, W]`` (mean over T where there is a T)."""
        feats = self.backbone(images)
        if self.time_axis:
            feats = [f.mean(0) for f in feats]  # [T, B, C, H, W] -> [B, C, H, W]
        return list(feats)

    def forward_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The backbone's stage maps of a padded batch (what the neck reads; the calibration objective
        ``features`` compares them with the dense model's)."""
        return self.backbone_features(self.pad(images))

    def pad(self, images: torch.Tensor) -> torch.Tensor:
        """Zero-pad ``[B, C, H, W]`` images bottom/right to sides that are multiples of :attr:`size_divisor`
        (zero = the mean colour after normalisation; boxes keep their coordinates)."""
        if images.dim() != 4:
            raise ValueError(f"a detector takes images [B, C, H, W], got shape {list(images.shape)}")
        h, w = images.shape[-2:]
        m = self.size_divisor
        pad_h, pad_w = -h % m, -w % m
        return F.pad(images, (0, pad_w, 0, pad_h)) if pad_h or pad_w else images

    def forward_raw(self, images: torch.Tensor) -> Any:
        """The head's raw outputs for a batch (no loss, no post-processing), after :meth:`pad`."""
        return self.head(self.neck(self.backbone_features(self.pad(images))))

    def forward(
        self,
        images: torch.Tensor,
        targets: Sequence[dict[str, Any]] | None = None,
        image_sizes: Sequence[tuple[int, int]] | None = None,
    ) -> list[dict[str, torch.Tensor]] | dict[str, torch.Tensor]:
        outputs = self.forward_raw(images)
        if targets is not None:
            return self.head.loss(outputs, targets)
        # default: the images as given (before padding)
        sizes = list(image_sizes) if image_sizes is not None else [tuple(images.shape[-2:])] * images.shape[0]
        return self.head.predict(outputs, sizes)
