"""Where and how a job runs: the distributed process group, the device, CPU threads, mixed precision,
seeds and the random-number state a resumable run saves.

Used by training, evaluation and the command line; imports nothing from the package but its errors.
"""

from __future__ import annotations

import os
import random
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from .errors import UsageError, check_int

AMP_MODES = ("auto", "none", "fp16", "bf16")


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    initialised_here: bool = False

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str | None = None) -> DistInfo:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1): nccl on CUDA, gloo on the CPU.

    Reuses a group that is already initialised; returns a single-process ``DistInfo`` otherwise.
    """
    if dist.is_available() and dist.is_initialized():
        return DistInfo(
            dist.get_rank(),
            dist.get_world_size(),
            int(os.environ.get("LOCAL_RANK", 0)),
            int(os.environ.get("LOCAL_WORLD_SIZE", dist.get_world_size())),
        )
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    use_cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        try:  # binding the device (torch >= 2.3) lets nccl set up its communicators eagerly
            dist.init_process_group("nccl", device_id=torch.device("cuda", local_rank))
        except TypeError:
            dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    return DistInfo(rank, world, local_rank, local_world, initialised_here=True)


def cleanup_distributed(info: DistInfo) -> None:
    if info.initialised_here and dist.is_initialized():
        dist.destroy_process_group()


def resolve_device(device: str | torch.device | None, info: DistInfo | None = None) -> torch.device:
    """``device`` if given (``cuda`` means this process's local GPU under torchrun); else CUDA when
    available, else the CPU. A malformed or unavailable device is a :class:`UsageError`."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(f"--device {device!r} is not a device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
        if dev.index is None:
            dev = torch.device(
                "cuda", info.local_rank if info and info.distributed else torch.cuda.current_device()
            )
        elif dev.index >= torch.cuda.device_count():
            raise UsageError(
                f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    elif dev.type not in ("cpu", "mps", "xpu"):
        raise UsageError(f"--device {device}: unsupported device type {dev.type!r}; use cpu or cuda[:N]")
    return dev


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def thread_count(threads: int | None, info: DistInfo | None = None) -> int:
    """The CPU threads ``--threads`` asks for: ``threads`` if > 0; 0 or None: the usable cores divided among
    the processes of this node (at least 1), so that torchrun workers do not oversubscribe a shared machine."""
    threads = 0 if threads is None else check_int("--threads", threads, minimum=0, hint=" (0: automatic)")
    local_world = info.local_world if info is not None else 1
    return threads if threads > 0 else max(1, available_cpus() // max(1, local_world))


def set_threads(threads: int | None, info: DistInfo | None = None) -> int:
    """``torch.set_num_threads(thread_count(threads, info))``; returns the count."""
    n = thread_count(threads, info)
    torch.set_num_threads(n)
    return n


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and Python's ``random``."""
    check_int("--seed", seed, minimum=0)
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % (2**32))


def set_deterministic(device: torch.device, deterministic: bool) -> None:
    """cuDNN benchmark mode off and deterministic kernels on (CUDA), when asked."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic
        if deterministic:
            torch.backends.cudnn.deterministic = True
            torch.use_deterministic_algorithms(True, warn_only=True)


# -- mixed precision --------------------------------------------------------------------------------------


def resolve_amp(amp: str, device: torch.device) -> str:
    """``auto``: bf16 on GPUs that support it, else fp16 on CUDA, none on the CPU."""
    if amp not in AMP_MODES:
        raise UsageError(f"unknown --amp {amp!r}; choose one of {AMP_MODES}")
    if amp != "auto":
        return amp
    if device.type != "cuda":
        return "none"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def autocast_context(device: torch.device, amp: str | None):
    """``torch.autocast`` for ``amp`` in {"fp16", "bf16"} (None/"none"/"off": no autocast)."""
    if amp in (None, "none", "off", "fp32"):
        return nullcontext()
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(amp)
    if dtype is None:
        raise UsageError(f"unknown amp mode {amp!r}; choose 'fp16', 'bf16' or 'none'")
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(enabled: bool):
    if hasattr(torch, "amp") and hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)  # pragma: no cover - torch < 2.3


# -- random-number state of a resumable run ----------------------------------------------------------------


def rng_state(data_generator: torch.Generator | None = None) -> dict[str, Any]:
    """All RNG states (torch CPU/CUDA, numpy, Python, a data-order generator) as weights-only-loadable data."""
    np_state = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(np_state[0]),
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": [int(version), [int(v) for v in internal], gauss],
        "data": data_generator.get_state() if data_generator is not None else None,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np.random.set_state(
        (
            npst["name"],
            npst["keys"].numpy().astype(np.uint32),
            npst["pos"],
            npst["has_gauss"],
            npst["cached_gaussian"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    cuda_states = state.get("cuda")
    if (
        cuda_states is not None
        and torch.cuda.is_available()
        and len(cuda_states) == torch.cuda.device_count()
    ):
        torch.cuda.set_rng_state_all(cuda_states)
