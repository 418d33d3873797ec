"""Loading official checkpoints: containers, prefixes, safe unpickling, strict key checks with advice.

Official checkpoints are pickles: timm ``CheckpointSaver`` files (``state_dict`` / ``state_dict_ema``),
MAE/DeiT-style files (``model``) and SEW-style DVS files (``model``), all with an ``argparse.Namespace``
under ``args``. They are read with ``torch.load(weights_only=True)`` plus an allow-list of harmless
globals; nothing else is ever unpickled unless the caller says the file is trusted.
"""

from __future__ import annotations

import argparse
import logging
import os
import pathlib
import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..errors import MissingPathError, UsageError

CONTAINER_KEYS = ("state_dict", "model", "module", "net")
SAFE_GLOBALS: list[Any] = [argparse.Namespace, pathlib.PosixPath, pathlib.PurePosixPath, pathlib.WindowsPath]


_log = logging.getLogger(__name__)


class CheckpointError(UsageError):
    """A checkpoint cannot be read or does not fit the model; the message lists the keys and the fix."""


def read_checkpoint(path: str | os.PathLike, trusted: bool = False) -> Any:
    """Read a checkpoint file on the CPU with weights-only unpickling (plus ``argparse.Namespace``).

    ``trusted=True`` allows full unpickling (arbitrary code execution): only for files you made. A file
    that is empty, not a torch checkpoint or corrupt gives a :class:`CheckpointError` saying so; only a
    readable file holding non-allow-listed objects is pointed to ``trusted=True``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MissingPathError(f"checkpoint file not found: {path}")
    kind = _file_kind(path)
    if kind != "torch":
        raise CheckpointError(
            f"cannot read {path}: {kind}; expected a PyTorch checkpoint (torch.save: a zip "
            "archive, or a legacy pickle)"
        )
    try:
        if trusted:
            return torch.load(path, map_location="cpu", weights_only=False)
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError for unknown globals, RuntimeError for corruption
        unsafe = [] if trusted else _unsafe_globals(path)
        if unsafe:
            raise CheckpointError(
                f"cannot read {path} with weights-only unpickling: it contains the non-allow-listed global(s) "
                f"{unsafe}. If you trust the file, pass trusted=True (CLI: --trust-checkpoint) to unpickle it fully."
            ) from err
        raise CheckpointError(
            f"cannot read {path}: the file is corrupt or truncated ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'no details'})"
        ) from err


def _file_kind(path: str) -> str:
    """``"torch"`` for a zip archive or a pickle stream, else what the file looks like."""
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:
        return "the file is empty"
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":  # torch.save zip / legacy pickle protocol 2+
        return "torch"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "it is a text file"
    return f"unknown file format (starts with {head[:4].hex()})"


def _unsafe_globals(path: str) -> list[str]:
    try:
        return [
            g
            for g in torch.serialization.get_unsafe_globals_in_checkpoint(path)
            if g not in {f"{c.__module__}.{c.__qualname__}" for c in SAFE_GLOBALS}
        ]
    except Exception:
        return []


def extract_state_dict(obj: Any, use_ema: bool = False) -> OrderedDict[str, torch.Tensor]:
    """Unwrap an official container and strip ``module.`` / ``_orig_mod.`` prefixes.

    Containers: ``state_dict`` (timm), ``model`` (MAE/DeiT, SEW DVS scripts), or a bare state dict;
    ``use_ema=True`` takes ``state_dict_ema`` (timm's EMA weights) and fails if there is none.
    """
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"expected a state dict or a checkpoint dict, got {type(obj).__name__}")
    if use_ema:
        if not isinstance(obj.get("state_dict_ema"), Mapping):
            raise CheckpointError(
                f"use_ema=True but the checkpoint has no 'state_dict_ema' (keys: {sorted(obj)[:20]})"
            )
        obj = obj["state_dict_ema"]
    for _ in range(3):  # containers can nest, e.g. {"model": {"state_dict": ...}}
        if _is_state_dict(obj):
            break
        inner = next((obj[k] for k in CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            raise CheckpointError(
                f"no state dict found; top-level keys are {sorted(map(str, obj))[:20]}, expected a bare state "
                f"dict or one of the containers {list(CONTAINER_KEYS)}"
            )
        obj = inner
    return OrderedDict((_strip_prefixes(k), v) for k, v in obj.items())


def _is_state_dict(obj: Mapping) -> bool:
    if len(obj) == 0 or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        return False
    others = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if others and not any(k in obj for k in CONTAINER_KEYS):
        raise CheckpointError(
            f"the state dict has entries that are not tensors: {others[:8]}; a state dict holds only tensors. "
            "Remove them, or save the weights under a 'state_dict' / 'model' key beside them"
        )
    return not others


def _strip_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for p in ("module.", "_orig_mod."):
            if key.startswith(p):
                key, changed = key[len(p) :], True
    return key


def load_checkpoint(
    model: nn.Module,
    checkpoint: Any,
    strict: bool = True,
    use_ema: bool = False,
    trusted: bool = False,
) -> nn.Module:
    """Load ``checkpoint`` (path, checkpoint dict or state dict) into ``model``, strictly by default.

    Keys the official code builds but never uses may be absent from the file (``model.unused_keys``,
    regular expressions; they keep their initial values), and so may keys that only a variant adds
    (``model.init_only_keys``, e.g. the segmentation backbone's layer scales: reported as ``initialised``).
    A ``features_only`` backbone drops the classifier's keys (reported as ``dropped_head``); a checkpoint of
    a detector, segmenter or tracker gives its ``backbone.`` keys (the rest is reported as ``ignored``).
    Any other mismatch raises
    :class:`CheckpointError` naming the missing, unexpected and mis-shaped keys and the registered
    configuration the weights fit best.
    ``strict=False`` loads what fits and returns the report in ``model.load_report`` instead.
    """
    obj = (
        read_checkpoint(checkpoint, trusted=trusted)
        if isinstance(checkpoint, (str, os.PathLike))
        else checkpoint
    )
    state = extract_state_dict(obj, use_ema=use_ema)
    _check_finite(state)
    state, ignored = select_backbone(model, state)
    state, dropped = drop_head_keys(model, state)
    report = compare_state_dict(model, state)
    unused = [re.compile(p) for p in getattr(model, "unused_keys", ())]
    init_only = [re.compile(p) for p in getattr(model, "init_only_keys", ())]
    initialised = [k for k in report["missing"] if any(p.fullmatch(k) for p in init_only)]
    missing = [k for k in report["missing"] if not any(p.fullmatch(k) for p in unused + init_only)]
    if strict and (missing or report["unexpected"] or report["mismatched"]):
        raise CheckpointError(_describe_mismatch(model, state, missing, report))
    mismatched = {k for k, _, _ in report["mismatched"]}
    model.load_state_dict(OrderedDict((k, v) for k, v in state.items() if k not in mismatched), strict=False)
    model.load_report = dict(
        report, missing=missing, dropped_head=dropped, ignored=ignored, initialised=initialised
    )
    for what, keys in (
        ("classifier keys dropped (features_only backbone)", dropped),
        ("keys outside the backbone ignored", ignored),
        ("keys absent from the checkpoint, kept at their initial value", initialised),
    ):
        if keys:
            _log.info(
                "%s%s: %d %s: %s", type(model).__name__, _config_name(model), len(keys), what, _show(keys)
            )
    return model


def _check_finite(state: Mapping[str, torch.Tensor]) -> None:
    """Refuse weights with NaN or infinite values (a model would then predict garbage silently)."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(
            f"the checkpoint has NaN or infinite values in {len(bad)} tensor(s): {_show(bad)}; "
            "it is corrupt or came from a diverged training run"
        )


BACKBONE_PREFIX = "backbone."


def select_backbone(
    model: nn.Module, state: Mapping[str, torch.Tensor]
) -> tuple[OrderedDict[str, torch.Tensor], list[str]]:
    """A detector/segmenter/tracker checkpoint (mmdet/mmseg ``state_dict``, SDTrack ``net``) loaded into a
    backbone: keep the keys under ``backbone.`` with that prefix removed (by name, never by length) and
    return the others (neck, heads) as ignored. A model with its own ``backbone.`` keys loads unchanged."""
    if not any(k.startswith(BACKBONE_PREFIX) for k in state):
        return OrderedDict(state), []
    if any(k.startswith(BACKBONE_PREFIX) for k in model.state_dict()):
        return OrderedDict(state), []
    kept = OrderedDict(
        (k[len(BACKBONE_PREFIX) :], v) for k, v in state.items() if k.startswith(BACKBONE_PREFIX)
    )
    return kept, [k for k in state if not k.startswith(BACKBONE_PREFIX)]


def drop_head_keys(
    model: nn.Module, state: Mapping[str, torch.Tensor]
) -> tuple[OrderedDict[str, torch.Tensor], list[str]]:
    """A classification checkpoint loaded into a ``features_only`` backbone: drop the keys of the deleted
    head modules (``model.head_modules``) and return their names."""
    if not getattr(model, "features_only", False):
        return OrderedDict(state), []
    heads = tuple(getattr(model, "head_modules", ()))
    own = model.state_dict()
    is_head = lambda k: k not in own and k.split(".", 1)[0] in heads  # noqa: E731
    return OrderedDict((k, v) for k, v in state.items() if not is_head(k)), [k for k in state if is_head(k)]


def _show(items, n: int = 8) -> str:
    items = list(items)
    return ", ".join(map(str, items[:n])) + (f" ... (+{len(items) - n} more)" if len(items) > n else "")


def compare_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> dict[str, list]:
    """Missing, unexpected and mis-shaped keys of ``state`` relative to ``model.state_dict()``."""
    own = model.state_dict()
    return {
        "missing": [k for k in own if k not in state],
        "unexpected": [k for k in state if k not in own],
        "mismatched": [
            (k, tuple(state[k].shape), tuple(own[k].shape))
            for k in own
            if k in state and tuple(state[k].shape) != tuple(own[k].shape)
        ],
    }


def _describe_mismatch(model, state, missing, report) -> str:
    show = _show

    lines = [f"checkpoint does not fit {type(model).__name__}" + _config_name(model) + ":"]
    if missing:
        lines.append(f"  missing keys ({len(missing)}): {show(missing)}")
    if report["unexpected"]:
        lines.append(f"  unexpected keys ({len(report['unexpected'])}): {show(report['unexpected'])}")
    if report["mismatched"]:
        lines.append(
            f"  mis-shaped keys ({len(report['mismatched'])}): "
            + show(f"{k} checkpoint {list(a)} vs model {list(b)}" for k, a, b in report["mismatched"])
        )
    best = suggest_config(state)
    if best:
        lines.append(
            f"  these weights look like '{best[0]}'"
            + ("" if best[1] == 0 else f" ({best[1]} keys differ)")
            + f": create_model('{best[0]}', checkpoint=...)"
        )
    lines.append("  (strict loading is the default; strict=False loads only the matching keys)")
    return "\n".join(lines)


def _config_name(model) -> str:
    cfg = getattr(model, "config", None)
    return f" ('{cfg.name}')" if cfg is not None else ""


_SIGNATURES: dict[str, dict[str, tuple[int, ...]]] = {}


def config_signature(name: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape map of a registered configuration, built once on the meta device (no memory)."""
    if name not in _SIGNATURES:
        from ._registry import get_model_config

        cfg = get_model_config(name)
        with torch.device("meta"):
            m = cfg.builder(**cfg.kwargs)
        _SIGNATURES[name] = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    return _SIGNATURES[name]


def suggest_config(state: Mapping[str, torch.Tensor]) -> tuple[str, int] | None:
    """The registered configuration whose keys and shapes differ least from ``state``, with the count."""
    from ._registry import list_models

    have = {k: tuple(v.shape) for k, v in state.items()}
    best = None
    for name in list_models(include_tiny=False):
        sig = config_signature(name)
        diff = len(set(sig) ^ set(have)) + sum(1 for k in sig if k in have and sig[k] != have[k])
        if best is None or diff < best[1]:
            best = (name, diff)
    if best is None or best[1] > max(10, len(have) // 4):
        return None
    return best


def load_classifier_weights(
    model: nn.Module, checkpoint: Any, *, grey_to_rgb: bool = True, trusted: bool = False
) -> dict[str, Any]:
    """Start ``model`` from a classifier's weights: a checkpoint file, a state dict, or the name of a
    configuration whose weights ship with the package (e.g. ``"sdt_fmnist"``).

    Strict as :func:`load_checkpoint` (a ``features_only`` backbone drops the classifier), except that a grey
    stem initialises an RGB one when ``grey_to_rgb``: a convolution kernel with 1 input channel where
    ``model`` has 3 is repeated over the channels and divided by 3, so the RGB stem computes what the grey
    stem computed on the channel mean (with the same normalisation on every channel). Returns the load
    report plus ``expanded`` (the converted keys).
    """
    if isinstance(checkpoint, str) and not os.path.exists(checkpoint):
        from ._registry import asset_path, get_model_config

        cfg = get_model_config(checkpoint)  # raises with the closest names
        if cfg.weights is None:
            raise UsageError(f"no weights ship with '{checkpoint}': pass a checkpoint file instead")
        checkpoint = asset_path(cfg.weights)
    obj = (
        read_checkpoint(checkpoint, trusted=trusted)
        if isinstance(checkpoint, (str, os.PathLike))
        else checkpoint
    )
    state = dict(extract_state_dict(obj))
    own = model.state_dict()
    expanded = []
    for key, value in state.items():
        mine = own.get(key)
        if (
            grey_to_rgb
            and mine is not None
            and value.dim() == 4 == mine.dim()
            and value.shape[1] == 1
            and mine.shape[1] == 3
            and value.shape[0] == mine.shape[0]
            and value.shape[2:] == mine.shape[2:]
        ):
            state[key] = value.repeat(1, 3, 1, 1) / 3  # [O, 1, k, k] -> [O, 3, k, k]
            expanded.append(key)
    load_checkpoint(model, state)
    return dict(model.load_report, expanded=expanded)
