"""The fast path's one process-wide setting: glibc's malloc keeps freed memory for reuse.

Why: torch takes CPU tensors from ``malloc``. glibc serves a block above its mmap threshold (128 KiB,
rising with use to at most 32 MiB) with a fresh ``mmap`` and gives it back with ``munmap`` when it is freed,
so each large activation of a forward is new memory, and its first touch costs the kernel a page fault
and a zeroed page per 4 KiB. A spiking transformer allocates many such tensors per forward (membrane
potentials, spikes, every layer's output over all time steps). Measured on this project's CPU (one thread,
``sdt_v3_l``, batch 8, ten forwards): 1.5 M page faults and 2.03 s per plain forward; with freed memory kept,
0.18 M faults and 1.57 s (README, "Inference fast path").

What: ``mallopt(M_MMAP_MAX, 0)`` (large blocks come from the heap, like small ones) and
``mallopt(M_TRIM_THRESHOLD, 1 GiB)`` (freed heap memory at the top is returned to the kernel only beyond
1 GiB). The cost: the process keeps the memory it freed, so its resident size stays near its peak.

Process-wide and one-way (setting these also switches off glibc's own threshold adjustment, which cannot be
switched back on). glibc only: elsewhere (musl, macOS, Windows) nothing changes and the returned setting says
why. ``optimize(model)`` applies it for CPU models unless ``cpu_allocator=False``.
"""

from __future__ import annotations

import ctypes
import platform
from dataclasses import dataclass

__all__ = ["AllocatorSetting", "keep_freed_memory"]

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_MAX = -4
TRIM_THRESHOLD_BYTES = 1 << 30


@dataclass(frozen=True)
class AllocatorSetting:
    """Whether :func:`keep_freed_memory` changed this process's allocator, and what it did or why not."""

    applied: bool
    detail: str


_applied: AllocatorSetting | None = None


def keep_freed_memory() -> AllocatorSetting:
    """Make glibc's malloc keep freed memory for reuse in this process (see the module docstring).

    Idempotent; returns the same setting on later calls. Not applied (``applied=False``, ``detail`` says why)
    where the C library is not glibc or refuses an option."""
    global _applied
    if _applied is not None:
        return _applied
    libc_name, version = platform.libc_ver()
    if libc_name != "glibc":
        return AllocatorSetting(False, f"not glibc ({libc_name or platform.system()}): allocator unchanged")
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    if mallopt(M_MMAP_MAX, 0) != 1 or mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) != 1:
        return AllocatorSetting(False, f"glibc {version} refused mallopt: allocator unchanged")
    _applied = AllocatorSetting(
        True, f"glibc {version}: large blocks from the heap, freed memory kept up to 1 GiB (mallopt)"
    )
    return _applied
