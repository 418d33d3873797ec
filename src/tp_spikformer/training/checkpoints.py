"""Checkpoints of a training run: atomic writes (no half-written file survives a kill; the temporary
files of killed writers are removed on the next start), the resumable training state, and the float32
weight export that ``create_model(name, checkpoint=...)`` loads."""

from __future__ import annotations

import glob
import os

from ..errors import MissingPathError
from ..models.checkpoint import TMP_INFIX, atomic_save, export_weights  # noqa: F401  (re-exported)

CHECKPOINT_NAME = "checkpoint.pt"
WEIGHTS_NAME = "model.pt"
METRICS_NAME = "metrics.json"
_TMP = TMP_INFIX


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
