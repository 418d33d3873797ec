"""Peak bytes of the tensors a call allocates, tracked op by op: a deterministic memory figure on CPU.

On CPU torch keeps no allocation statistics, and the resident set (RSS) mixes in allocator caches, the
Python heap and other threads: its growth during one forward is noisy and mostly measures ``malloc``.
:class:`TensorMemoryTracker` instead watches every op through a ``TorchDispatchMode``: the first time a
new tensor storage appears as an op's output it adds the storage's size to the running total, and a
``weakref.finalize`` on the storage takes it off when the storage is freed (torch keeps one Python
object per storage, so the finaliser fires on the real free). The peak of that total is what the call
added at its worst moment, its output included, the same quantity ``torch.cuda.max_memory_allocated``
gives on a GPU.

Not counted: storages that existed before the call (weights, the input, buffers written in place),
scratch memory an op allocates and frees inside its kernel (e.g. a convolution's im2col buffer), and
non-tensor memory. Running under the mode slows the call down (a Python hook per op), so use it for
a separate, untimed call.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class TensorMemoryTracker(TorchDispatchMode):
    """Running total and peak of the bytes held by tensor storages created while the mode is active."""

    def __init__(self) -> None:
        super().__init__()
        self.current = 0
        self.peak = 0
        self._sizes: dict[int, int] = {}  # id of a tracked storage -> bytes counted for it
        self._foreign: weakref.WeakSet = weakref.WeakSet()  # storages that existed before the call

    def _release(self, key: int) -> None:
        self.current -= self._sizes.pop(key, 0)

    def _track(self, storage: torch.UntypedStorage) -> None:
        key = id(storage)
        size = storage.nbytes()
        if key in self._sizes:
            if size > self._sizes[key]:  # resized in place (out= ops)
                self.current += size - self._sizes[key]
                self._sizes[key] = size
        elif storage not in self._foreign:
            self._sizes[key] = size
            self.current += size
            weakref.finalize(storage, self._release, key)
        self.peak = max(self.peak, self.current)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        for t in tree_flatten((args, kwargs))[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                s = t.untyped_storage()
                if id(s) not in self._sizes:
                    self._foreign.add(s)  # an op input we did not see being created: not ours
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                self._track(t.untyped_storage())
        return out


def peak_tensor_bytes(fn: Callable[[], Any]) -> tuple[int, Any]:
    """Run ``fn()`` under a :class:`TensorMemoryTracker`; return (peak bytes it added, its result)."""
    tracker = TensorMemoryTracker()
    with tracker:
        out = fn()
    return tracker.peak, out
