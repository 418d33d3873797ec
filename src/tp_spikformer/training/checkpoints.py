"""Checkpoints of a training run: atomic writes (no half-written file survives a kill; the temporary
files of killed writers are removed on the next start), the resumable training state, and the float32
weight export that ``create_model(name, checkpoint=...)`` loads."""

from __future__ import annotations

import glob
import os
from typing import Any

import torch
from torch import nn

from ..errors import MissingPathError
from ..jsonio import plain

CHECKPOINT_NAME = "checkpoint.pt"
WEIGHTS_NAME = "model.pt"
METRICS_NAME = "metrics.json"
_TMP = ".tmp."


def atomic_save(obj: Any, path: str) -> str:
    """``torch.save`` to ``<path>.tmp.<pid>`` then rename: readers see the old file or the new one."""
    tmp = f"{path}{_TMP}{os.getpid()}"
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def remove_stale_temporaries(folder: str) -> list[str]:
    """Delete ``*.tmp.<pid>`` files left in ``folder`` by writers that were killed (their pid is gone)."""
    removed = []
    for path in glob.glob(os.path.join(glob.escape(folder), f"*{_TMP}*")):
        pid = path.rsplit(_TMP, 1)[1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            os.remove(path)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - another user's live process
        return True
    return True


def resume_path(resume: str | None, output: str) -> str | None:
    """The checkpoint ``--resume`` names: a file, a folder holding ``checkpoint.pt``, or ``auto`` (the
    output folder's checkpoint if there is one, else a fresh start)."""
    if resume is None:
        return None
    if resume == "auto":
        path = os.path.join(output, CHECKPOINT_NAME)
        return path if os.path.isfile(path) else None
    if os.path.isdir(resume):
        resume = os.path.join(resume, CHECKPOINT_NAME)
    if not os.path.isfile(resume):
        raise MissingPathError(f"--resume: no checkpoint at {resume}")
    return resume


def export_weights(model: nn.Module, path: str, meta: dict[str, Any] | None = None) -> str:
    """Write ``{"model": float32 state_dict, "meta": meta}`` (weights-only loadable; TP does not change the
    state_dict). Floating tensors are saved as contiguous float32 clones (no shared storage)."""
    state = {
        k: (v.detach().to("cpu", torch.float32) if v.is_floating_point() else v.detach().cpu()).clone()
        for k, v in model.state_dict().items()
    }
    return atomic_save({"model": state, "meta": plain(meta or {})}, path)
