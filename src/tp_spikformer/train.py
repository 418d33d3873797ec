"""Training and fine-tuning (with or without TP token pruning), single process or ``torchrun`` DDP.

    python -m tp_spikformer.train --model sdt_fmnist --epochs 3 --output runs/sdt_fmnist
    torchrun --nproc_per_node 2 -m tp_spikformer.train --model sdt_fmnist --epochs 3 --output runs/x
    python -m tp_spikformer.train --finetune --model sdt_fmnist --pretrained --tp-keep 0.5 \
        --tp-scorer official --epochs 1 --output runs/sdt_fmnist_tp50

What it does:

* Model: a registered configuration (``--model``; ``--set key=value`` overrides constructor arguments),
  optionally initialised from the shipped weights (``--pretrained``) or a checkpoint (``--checkpoint``).
  With ``--tp-keep``/``--tp-scorer`` the model is TP-patched (``pruning.apply_tp``) BEFORE the DDP wrapper,
  so the pruned network is what is trained (fine-tuning a pruned model). Surrogate gradients are built into
  the LIF neuron (sigmoid, alpha 4); SDT-V3's multi-spike uses a straight-through estimator.
* Parameters that get no gradient (official models build some modules they never call, e.g. SDT-V1's
  ``talking_heads``) are found with one probe forward/backward on a copy of the model and frozen
  (``--unused-params freeze``, default), so plain DDP works and AdamW state is not allocated for them;
  ``--unused-params find`` keeps them trainable and passes ``find_unused_parameters=True`` to DDP.
* Optimisation: AdamW (no weight decay on biases, norms and scalars), per-step linear warm-up then cosine
  decay to ``--min-lr``, label smoothing, optional gradient clipping. TET outputs ``[T, B, classes]`` are
  trained with the mean over T of the per-step cross-entropies and scored on their mean over T.
* Data: in-memory sets (Fashion-MNIST by default, read from Debian's ``dataset-fashion-mnist``),
  preprocessed to the model's ``DataConfig`` (size, channels, mean/std); training augmentation is a
  random crop with zero padding plus horizontal flip, done a batch at a time. ``--batch-size`` is the
  GLOBAL batch: under DDP every rank takes its ``1/world`` share of each global batch.
* Determinism: the data order of epoch ``e`` is a permutation drawn from a generator seeded with
  ``f(seed, e)``; augmentation uses a generator seeded with ``f(seed, e, rank)``. A checkpoint
  (``checkpoint.pt``, written atomically after every epoch) holds the weights, the optimizer, the scheduler
  step, the AMP scaler, the epoch, all RNG states (torch CPU/CUDA, numpy, python, data-order generator) and
  the arguments as a plain dict (loads with ``torch.load(weights_only=True)``). ``--resume`` continues from
  it; on the CPU an interrupted run resumed this way ends with bit-identical weights.
* Precision: ``--amp auto`` uses bf16 autocast on GPUs that support it, else fp16 autocast with a
  ``GradScaler``; full precision on the CPU.
* Output folder: ``log.txt`` (the log lines), ``args.json``, ``checkpoint.pt`` (resumable state),
  ``model.pt`` (float32 weights only: ``{"model": state_dict, "meta": {...}}``, loadable with
  ``create_model(name, checkpoint=...)``) and ``metrics.json`` (final metrics and per-epoch history).
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import random
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .data.catalog import SHIPPED_SLICE as FMNIST_SLICE
from .data.catalog import load_dataset, synthetic_dataset
from .evaluate import autocast_context, evaluate, logits_of
from .models.checkpoint import atomic_save as _atomic_save
from .models.checkpoint import export_weights
from .models.checkpoint import json_plain as _plain

__all__ = [
    "DistInfo",
    "apply_tp_from_args",
    "build_dataset",
    "build_parser",
    "cosine_lr",
    "epoch_seed",
    "export_weights",
    "freeze_unused_parameters",
    "main",
    "make_optimizer",
    "run",
    "setup_distributed",
    "synthetic_dataset",
    "train_step",
]

CHECKPOINT_NAME = "checkpoint.pt"
WEIGHTS_NAME = "model.pt"
METRICS_NAME = "metrics.json"
# arguments whose change between an interrupted run and its resumption changes the result
_RESULT_ARGS = (
    "model", "set", "seed", "epochs", "batch_size", "lr", "min_lr", "warmup_epochs", "warmup_steps",
    "weight_decay", "label_smoothing", "clip_grad", "augment", "pad", "hflip", "amp", "data", "train_limit",
    "tp_keep", "tp_scorer", "tp_window", "tp_mode", "pretrained", "checkpoint", "unused_params",
)


# -- distributed set-up -----------------------------------------------------------------------------


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
        return DistInfo(dist.get_rank(), dist.get_world_size(),
                        int(os.environ.get("LOCAL_RANK", 0)),
                        int(os.environ.get("LOCAL_WORLD_SIZE", dist.get_world_size())))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    use_cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local_rank)
        try:  # binding the device (torch >= 2.3) lets nccl set up its communicators eagerly
            dist.init_process_group(backend, device_id=torch.device("cuda", local_rank))
        except TypeError:
            dist.init_process_group(backend)
    else:
        dist.init_process_group(backend)
    return DistInfo(rank, world, local_rank, local_world, initialised_here=True)


def cleanup_distributed(info: DistInfo) -> None:
    if info.initialised_here and dist.is_initialized():
        dist.destroy_process_group()


def pick_device(device: str | None, info: DistInfo) -> torch.device:
    """``device`` if given (``cuda`` means this process's local GPU under torchrun); else CUDA when
    available, else the CPU."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", info.local_rank if info.distributed else torch.cuda.current_device())
    return dev


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def set_threads(threads: int, info: DistInfo) -> int:
    """``torch.set_num_threads``: ``threads`` if > 0, else the usable cores divided among the processes
    of this node (at least 1), so that torchrun workers do not oversubscribe a shared machine."""
    n = threads if threads > 0 else max(1, available_cpus() // max(1, info.local_world))
    torch.set_num_threads(n)
    return n


# -- data -------------------------------------------------------------------------------------------


def build_dataset(name: str, split: str, root: str | None, data_cfg: Any, limit: int | None = None):
    """The dataset ``name`` preprocessed to ``data_cfg`` (see ``tp_spikformer.data.load_dataset`` for the
    names; in-memory sets train with batched augmentation, other map-style sets item by item)."""
    return load_dataset(name, split, root, data_cfg, limit=limit)




def _fetch(dataset: Any, idx: torch.Tensor, augment) -> tuple[torch.Tensor, torch.Tensor]:
    if hasattr(dataset, "get_batch"):
        return dataset.get_batch(idx, augment=augment), torch.as_tensor(dataset.targets)[idx]
    items = [dataset[int(i)] for i in idx]  # generic map-style dataset (slow path)
    x = torch.stack([torch.as_tensor(it[0]) for it in items])
    y = torch.as_tensor([int(it[1]) for it in items])
    return (augment(x) if augment is not None else x), y


_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """A 63-bit seed that is a pure function of ``(seed, epoch, stream)`` (stream 0: data order;
    ``1 + rank``: that rank's augmentation)."""
    h = _splitmix64(seed & _MASK64)
    h = _splitmix64(h ^ (epoch & _MASK64))
    h = _splitmix64(h ^ (stream & _MASK64))
    return h & ((1 << 63) - 1)


# -- model, optimizer, schedule ----------------------------------------------------------------------


def _parse_overrides(items: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects key=value, got {item!r}")
        try:
            out[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key.strip()] = value
    return out


def apply_tp_from_args(model: nn.Module, keep: str | None, scorer: str | None, window: int | None = None,
                       mode: str = "stop"):
    """Patch ``model`` with TP when ``keep`` or ``scorer`` is given (the other defaults to "official")."""
    if keep is None and scorer is None:
        return None
    from .pruning import apply_tp

    keep_v: Any = keep if keep is not None else "official"
    try:
        keep_v = float(keep_v)
    except (TypeError, ValueError):
        pass
    return apply_tp(model, keep=keep_v, scorer=scorer or "official", window=window, mode=mode)


def _example_input(model: nn.Module, batch: int = 2) -> torch.Tensor:
    c, h, w = model.config.data.input_size
    if getattr(model, "static_input", True):
        return torch.randn(batch, c, h, w)
    t = model.config.T or 4
    return torch.rand(batch, t, c, h, w)


def freeze_unused_parameters(model: nn.Module, example: torch.Tensor | None = None) -> list[str]:
    """Find the parameters that receive no gradient (one train-mode forward/backward on ``example``, by
    default random data of the model's input size) and set ``requires_grad=False`` on them. Returns their
    names. Buffers (BatchNorm statistics), gradients, the train/eval mode and the global RNG state are
    restored afterwards, so the probe leaves no trace in the training run.
    """
    rng = torch.get_rng_state()
    if example is None:
        example = _example_input(model)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    grads = {n: p.grad for n, p in model.named_parameters()}
    was_training = model.training
    try:
        for p in model.parameters():
            p.grad = None
        model.train()
        with torch.enable_grad():
            logits_of(model(example.to(device))).float().sum().backward()
        names = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    finally:
        with torch.no_grad():
            for k, v in model.named_buffers():
                v.copy_(buffers[k])
        for n, p in model.named_parameters():
            p.grad = grads[n]
        model.train(was_training)
        torch.set_rng_state(rng)
    params = dict(model.named_parameters())
    for n in names:
        params[n].requires_grad_(False)
    return names


def make_optimizer(model: nn.Module, lr: float, weight_decay: float, betas=(0.9, 0.999)) -> torch.optim.AdamW:
    """AdamW over the trainable parameters: weight decay on weight matrices/kernels (ndim >= 2) only."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=betas)


def cosine_lr(step: int, total_steps: int, warmup_steps: int, lr: float, min_lr: float) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warm-up ``lr * (step + 1) / warmup`` over
    the first ``warmup_steps`` steps, then cosine from ``lr`` to ``min_lr`` at ``total_steps``."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def _loss_fn(output: torch.Tensor, target: torch.Tensor, smoothing: float) -> torch.Tensor:
    if isinstance(output, (tuple, list)):
        output = output[0]
    if output.dim() == 3:  # TET: mean over T of the per-step losses
        t = output.shape[0]
        return F.cross_entropy(output.flatten(0, 1).float(), target.repeat(t), label_smoothing=smoothing)
    return F.cross_entropy(output.float(), target, label_smoothing=smoothing)


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    amp: str | None = None,
    scaler: Any = None,
    label_smoothing: float = 0.0,
    clip_grad: float | None = None,
    clip_params=None,
) -> tuple[torch.Tensor, Any]:
    """One optimisation step on ``(x, y)`` (already on the model's device): forward under ``amp`` autocast,
    cross-entropy (TET outputs: mean over T), backward (scaled when ``scaler`` is enabled), optional
    gradient-norm clipping, optimizer step. Returns ``(loss, output)``; the learning rate is the caller's."""
    with autocast_context(x.device, amp):
        out = model(x)
    loss = _loss_fn(out, y, label_smoothing)
    optimizer.zero_grad(set_to_none=True)

    def params():
        return list(clip_params) if clip_params is not None else [p for g in optimizer.param_groups for p in g["params"]]

    if scaler is not None and scaler.is_enabled():
        scaler.scale(loss).backward()
        if clip_grad:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params(), clip_grad)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        if clip_grad:
            torch.nn.utils.clip_grad_norm_(params(), clip_grad)
        optimizer.step()
    return loss.detach(), out


# -- RNG and checkpoints ------------------------------------------------------------------------------


def _rng_state(data_generator: torch.Generator | None) -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": str(np_state[0]), "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": _py_state_to_plain(random.getstate()),
        "data": data_generator.get_state() if data_generator is not None else None,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _py_state_to_plain(st) -> list:
    version, internal, gauss = st
    return [int(version), [int(v) for v in internal], gauss]


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np.random.set_state((npst["name"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"],
                         npst["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


# -- argument parser ----------------------------------------------------------------------------------


def build_parser(finetune: bool = False, prog: str | None = None) -> argparse.ArgumentParser:
    """Command-line options; ``finetune=True`` changes defaults for fine-tuning (lower lr, no warm-up,
    fewer epochs, shipped weights unless --checkpoint is given)."""
    p = argparse.ArgumentParser(
        prog=prog or "python -m tp_spikformer.train",
        description="Train or fine-tune a spiking transformer (optionally TP-pruned); torchrun for DDP.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    m = p.add_argument_group("model")
    m.add_argument("--model", required=True, help="registered configuration (`tp-spikformer models`)")
    m.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a constructor argument (repeatable), e.g. --set T=2")
    m.add_argument("--pretrained", action="store_true", default=False,
                   help="start from the weights shipped with the package")
    m.add_argument("--checkpoint", default=None, help="start from these weights (ours or official)")
    m.add_argument("--trust-checkpoint", action="store_true", help="allow full unpickling of --checkpoint")
    m.add_argument("--finetune", action="store_true", default=finetune,
                   help="fine-tuning defaults (lr 1e-4, no warm-up, 1 epoch, --pretrained if no --checkpoint)")
    m.add_argument("--unused-params", default="freeze", choices=["freeze", "find", "error"],
                   help="parameters without gradient: freeze them, or let DDP find them each step, or fail")
    tp = p.add_argument_group("TP token pruning (applied before DDP: the pruned model is trained)")
    tp.add_argument("--tp-keep", default=None, help="keep schedule: 0.5, side_ratio:0.9,0.8, count:32, ...")
    tp.add_argument("--tp-scorer", default=None, help="scorer: official, temporal, spatial, paper, random, ...")
    tp.add_argument("--tp-window", type=int, default=None, help="spatial window (default: family's)")
    tp.add_argument("--tp-mode", default="stop", choices=["stop", "drop"])
    d = p.add_argument_group("data")
    d.add_argument("--data", default="fashion_mnist",
                   help="fashion_mnist | mnist | cifar10 | cifar100 | imagefolder | cifar10dvs | dvs128_gesture | "
                        "npz:<path> | synthetic[:<n>] (see tp_spikformer.data.load_dataset)")
    d.add_argument("--data-root", default=None, help="dataset folder (Fashion-MNIST: Debian's by default)")
    d.add_argument("--test-data", default=None, help="evaluation set if not the --data test split "
                   "(e.g. shipped or npz:<path>)")
    d.add_argument("--train-limit", type=int, default=None, help="first N training images only")
    d.add_argument("--test-limit", type=int, default=None, help="first N test images only")
    d.add_argument("--augment", default="crop-flip", choices=["crop-flip", "crop", "flip", "none"])
    d.add_argument("--pad", type=int, default=None, help="random-crop zero padding (default: input side // 16)")
    d.add_argument("--hflip", type=float, default=0.5)
    o = p.add_argument_group("optimisation")
    o.add_argument("--epochs", type=int, default=1 if finetune else 3)
    o.add_argument("--batch-size", type=int, default=64, help="GLOBAL batch (split across DDP ranks)")
    o.add_argument("--lr", type=float, default=1e-4 if finetune else 2e-3, help="peak learning rate")
    o.add_argument("--min-lr", type=float, default=1e-6 if finetune else 1e-5)
    o.add_argument("--warmup-epochs", type=float, default=0.0 if finetune else 0.25)
    o.add_argument("--warmup-steps", type=int, default=None, help="overrides --warmup-epochs")
    o.add_argument("--weight-decay", type=float, default=0.05)
    o.add_argument("--label-smoothing", type=float, default=0.1)
    o.add_argument("--clip-grad", type=float, default=None, help="max global grad norm (default: off)")
    o.add_argument("--seed", type=int, default=0)
    o.add_argument("--amp", default="auto", choices=["auto", "none", "fp16", "bf16"],
                   help="auto: bf16 (or fp16 + GradScaler) autocast on CUDA, none on the CPU")
    o.add_argument("--compile", action="store_true", help="torch.compile the training forward")
    o.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm under DDP")
    r = p.add_argument_group("run")
    r.add_argument("--output", default=None, help="output folder (default runs/<model>-<time>)")
    r.add_argument("--resume", default=None,
                   help="checkpoint.pt (or its folder) to resume; 'auto': <output>/checkpoint.pt if present")
    r.add_argument("--stop-after", type=int, default=None,
                   help="leave after this many epochs of THIS invocation (time-sliced jobs; resume later)")
    r.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default cuda if available)")
    r.add_argument("--threads", type=int, default=0, help="CPU threads per process (0: cores / local procs)")
    r.add_argument("--eval-batch-size", type=int, default=256)
    r.add_argument("--eval-every", type=int, default=1, help="evaluate every N epochs (and after the last)")
    r.add_argument("--log-interval", type=int, default=100, help="log every N steps (0: epoch lines only)")
    r.add_argument("--deterministic", action="store_true", help="deterministic CUDA kernels")
    return p


def parse_args(argv: list[str] | None = None, finetune: bool = False, prog: str | None = None) -> argparse.Namespace:
    args = build_parser(finetune, prog).parse_args(argv)
    if args.finetune and not finetune:  # --finetune given explicitly: re-parse with fine-tuning defaults
        args = build_parser(True, prog).parse_args(argv)
    if args.finetune and not args.pretrained and not args.checkpoint:
        args.pretrained = True
    if args.pretrained and args.checkpoint:
        raise SystemExit("pass either --pretrained or --checkpoint, not both")
    return args


# -- training ------------------------------------------------------------------------------------------


class _Logger:
    def __init__(self, path: str | None, enabled: bool):
        self.enabled = enabled
        self.f = open(path, "a", buffering=1) if (enabled and path) else None

    def __call__(self, msg: str) -> None:
        if not self.enabled:
            return
        line = f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {msg}"
        print(line, flush=True)
        if self.f:
            self.f.write(line + "\n")

    def close(self) -> None:
        if self.f:
            self.f.close()


def _resolve_amp(amp: str, device: torch.device) -> str:
    if amp != "auto":
        return amp
    if device.type != "cuda":
        return "none"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def _grad_scaler(enabled: bool):
    if hasattr(torch, "amp") and hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)  # torch < 2.3


def _resume_path(resume: str | None, output: str) -> str | None:
    if resume is None:
        return None
    if resume == "auto":
        path = os.path.join(output, CHECKPOINT_NAME)
        return path if os.path.isfile(path) else None
    if os.path.isdir(resume):
        resume = os.path.join(resume, CHECKPOINT_NAME)
    if not os.path.isfile(resume):
        raise FileNotFoundError(f"--resume: no checkpoint at {resume}")
    return resume


def run(
    args: argparse.Namespace | dict[str, Any],
    *,
    model: nn.Module | None = None,
    train_set: Any = None,
    test_set: Any = None,
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """Train as ``args`` say and return the final metrics (also written to ``<output>/metrics.json``).

    ``model``, ``train_set`` and ``test_set`` replace what ``--model`` / ``--data`` would build (tests
    and notebooks); a given model must carry ``.config`` (from ``create_model``) or the datasets must be
    given already preprocessed.
    """
    if isinstance(args, dict):
        # defaults of the command line (fine-tuning defaults when the dict asks to fine-tune)
        base = vars(parse_args(["--model", str(args.get("model", "?"))], finetune=bool(args.get("finetune"))))
        base.update(args)
        args = argparse.Namespace(**base)
    info = setup_distributed(args.device)
    try:
        return _run(args, info, model, train_set, test_set, argv)
    finally:
        cleanup_distributed(info)


def _run(args, info: DistInfo, model, train_set, test_set, argv) -> dict[str, Any]:
    t_start = time.perf_counter()
    threads = set_threads(args.threads, info)
    device = pick_device(args.device, info)
    amp = _resolve_amp(args.amp, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not args.deterministic
        if args.deterministic:
            torch.backends.cudnn.deterministic = True
            torch.use_deterministic_algorithms(True, warn_only=True)
    output = args.output or os.path.join("runs", f"{args.model}-{time.strftime('%Y%m%d-%H%M%S')}")
    if info.main:
        os.makedirs(output, exist_ok=True)
    log = _Logger(os.path.join(output, "log.txt"), info.main)
    args_dict = _plain(vars(args))

    # model ------------------------------------------------------------------------------------------
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed % (2**32))
    if model is None:
        from .models import create_model

        model = create_model(args.model, pretrained=args.pretrained, **_parse_overrides(args.set))
        if args.checkpoint:
            from .models.checkpoint import load_checkpoint

            load_checkpoint(model, args.checkpoint, trusted=args.trust_checkpoint)
    tp_state = apply_tp_from_args(model, args.tp_keep, args.tp_scorer, args.tp_window, args.tp_mode)
    data_cfg = getattr(getattr(model, "config", None), "data", None)

    # data -------------------------------------------------------------------------------------------
    if train_set is None:
        train_set = build_dataset(args.data, "train", args.data_root, data_cfg, args.train_limit)
    elif args.train_limit is not None:
        train_set = train_set.subset(slice(0, args.train_limit))
    if test_set is None:
        spec = args.test_data or args.data
        test_set = build_dataset(spec, "test", args.data_root if not args.test_data else None, data_cfg,
                                 args.test_limit)
    elif args.test_limit is not None:
        test_set = test_set.subset(slice(0, args.test_limit))
    augment = None
    if args.augment != "none":
        from .data import BatchAugment

        side = (data_cfg.input_size[-1] if data_cfg is not None else train_set.get_batch([0]).shape[-1])
        pad = args.pad if args.pad is not None else max(1, side // 16)
        augment = BatchAugment(padding=pad if "crop" in args.augment else 0,
                               hflip=args.hflip if "flip" in args.augment else 0.0)

    unused: list[str] = []
    if args.unused_params in ("freeze", "error"):
        unused = freeze_unused_parameters(model, _fetch(train_set, torch.arange(min(2, len(train_set))), None)[0])
        if unused and args.unused_params == "error":
            raise RuntimeError(f"parameters without gradient: {unused}")
    if args.batch_size % info.world:
        raise ValueError(f"--batch-size {args.batch_size} (global) must be divisible by the world size {info.world}")
    local_bs = args.batch_size // info.world
    n_train = len(train_set)
    steps_per_epoch = n_train // args.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"{n_train} training images are fewer than one global batch of {args.batch_size}")
    total_steps = steps_per_epoch * args.epochs
    warmup = args.warmup_steps if args.warmup_steps is not None else int(round(args.warmup_epochs * steps_per_epoch))

    # optimisation state ------------------------------------------------------------------------------
    model.to(device)
    if args.sync_bn and info.distributed:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = make_optimizer(model, args.lr, args.weight_decay)
    scaler = _grad_scaler(enabled=(amp == "fp16" and device.type == "cuda"))
    start_epoch, step, history = 0, 0, []
    train_seconds = 0.0
    resume = _resume_path(args.resume, output)
    if resume:
        ck = torch.load(resume, map_location="cpu", weights_only=True)
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        if ck.get("scaler"):
            scaler.load_state_dict(ck["scaler"])
        start_epoch, step = int(ck["epoch"]), int(ck["step"])
        history = list(ck.get("history", []))
        train_seconds = float(ck.get("train_seconds", 0.0))
        _set_rng_state(ck["rng"])
        changed = {k: (ck["args"].get(k), args_dict.get(k)) for k in _RESULT_ARGS
                   if ck["args"].get(k) != args_dict.get(k)}
        if ck.get("world_size", 1) != info.world:
            changed["world_size"] = (ck.get("world_size", 1), info.world)
        log(f"resumed from {resume}: epoch {start_epoch}, step {step}"
            + (f"; WARNING: settings differ from the interrupted run (old, new): {changed}" if changed else ""))

    train_model: nn.Module = model
    if info.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        train_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None,
                          find_unused_parameters=(args.unused_params == "find"))
    if args.compile:
        train_model = torch.compile(train_model)

    if info.main and not resume:
        with open(os.path.join(output, "args.json"), "w") as f:
            json.dump({"args": args_dict, "argv": argv}, f, indent=1)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model {args.model}: {n_params:,} parameters ({len(unused)} frozen unused: {unused[:6]}"
        f"{' ...' if len(unused) > 6 else ''}); TP: {tp_state.keep if tp_state else 'off'}"
        f"{' / ' + str(tp_state.scorer_name) if tp_state else ''}")
    log(f"data: {len(train_set)} train / {len(test_set)} test, input {tuple(train_set.output_shape) if hasattr(train_set, 'output_shape') else '?'}, "
        f"augment {augment!r}; device {device}, amp {amp}, world {info.world}, threads/process {threads}, "
        f"global batch {args.batch_size}, {steps_per_epoch} steps/epoch, {total_steps} steps, warm-up {warmup}")

    # loop ----------------------------------------------------------------------------------------------
    last_eval: dict[str, Any] | None = history[-1].get("test") if history else None
    trainable = [p for p in model.parameters() if p.requires_grad]
    epochs_this_run = 0
    data_gen = None
    for epoch in range(start_epoch, args.epochs):
        if args.stop_after is not None and epochs_this_run >= args.stop_after:
            break
        data_gen = torch.Generator().manual_seed(epoch_seed(args.seed, epoch, 0))
        aug_gen = torch.Generator().manual_seed(epoch_seed(args.seed, epoch, 1 + info.rank))
        if augment is not None:
            augment.generator = aug_gen
        order = torch.randperm(n_train, generator=data_gen)
        train_model.train()
        sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss * n, correct, n (this rank)
        t_epoch = time.perf_counter()
        t_log, n_log = t_epoch, 0
        for s in range(steps_per_epoch):
            lr = cosine_lr(step, total_steps, warmup, args.lr, args.min_lr)
            for g in optimizer.param_groups:
                g["lr"] = lr
            base = s * args.batch_size + info.rank * local_bs
            idx = order[base : base + local_bs]
            x, y = _fetch(train_set, idx, augment)
            x = x.to(device, non_blocking=True)
            y = y.to(device, dtype=torch.long, non_blocking=True)
            loss, out = train_step(train_model, optimizer, x, y, amp=amp, scaler=scaler,
                                   label_smoothing=args.label_smoothing, clip_grad=args.clip_grad,
                                   clip_params=trainable)
            step += 1
            with torch.no_grad():  # accumulated on the device: no host sync per step
                nb = y.shape[0]
                sums[0] += loss.double() * nb
                sums[1] += (logits_of(out).argmax(1) == y).sum()
                sums[2] += nb
            n_log += local_bs * info.world
            if args.log_interval and (s + 1) % args.log_interval == 0:
                now = time.perf_counter()
                log(f"epoch {epoch + 1}/{args.epochs} step {s + 1}/{steps_per_epoch} loss {float(loss):.4f} "
                    f"lr {lr:.3e} train_top1 {100 * sums[1] / max(1, sums[2]):.2f} "
                    f"img/s {n_log / (now - t_log):.1f}")
                t_log, n_log = now, 0
        epoch_time = time.perf_counter() - t_epoch
        train_seconds += epoch_time
        if info.distributed:
            dist.all_reduce(sums)
        sums = sums.cpu()
        rec: dict[str, Any] = {
            "epoch": epoch + 1, "step": step, "lr": lr,
            "train_loss": float(sums[0] / sums[2]), "train_top1": float(100 * sums[1] / sums[2]),
            "epoch_seconds": epoch_time, "train_images_per_s": steps_per_epoch * args.batch_size / epoch_time,
        }
        if (epoch + 1) % args.eval_every == 0 or epoch + 1 == args.epochs:
            last_eval = evaluate(model, test_set, args.eval_batch_size, device,
                                 amp=amp if amp != "none" else None)
            rec["test"] = {k: last_eval[k] for k in ("top1", "top5", "loss", "n", "images_per_s")}
        history.append(rec)
        test_txt = (f"test_top1 {rec['test']['top1']:.2f} test_top5 {rec['test']['top5']:.2f} "
                    f"test_loss {rec['test']['loss']:.4f} " if "test" in rec else "")
        log(f"epoch {epoch + 1}/{args.epochs} done: loss {rec['train_loss']:.4f} lr {lr:.3e} "
            f"train_top1 {rec['train_top1']:.2f} {test_txt}img/s {rec['train_images_per_s']:.1f} "
            f"time {epoch_time:.0f}s (total {train_seconds:.0f}s)")
        if info.main:
            ck = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": {"name": "cosine", "step": step, "total_steps": total_steps, "warmup_steps": warmup,
                              "lr": args.lr, "min_lr": args.min_lr},
                "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                "step": step,
                "epoch": epoch + 1,
                "rng": _rng_state(data_gen),
                "args": args_dict,
                "history": _plain(history),
                "train_seconds": train_seconds,
                "world_size": info.world,
            }
            _atomic_save(ck, os.path.join(output, CHECKPOINT_NAME))
        if info.distributed:
            dist.barrier()
        epochs_this_run += 1

    finished = bool(history) and history[-1]["epoch"] == args.epochs
    metrics = {
        "model": args.model,
        "finished": finished,
        "epochs_done": history[-1]["epoch"] if history else 0,
        "epochs": args.epochs,
        "steps": step,
        "train_seconds": train_seconds,
        "eval_seconds": sum(h["test"]["n"] / h["test"]["images_per_s"] for h in history if "test" in h),
        "wall_seconds_this_run": time.perf_counter() - t_start,
        "parameters": n_params,
        "frozen_unused": unused,
        "tp": None if tp_state is None else {"keep": str(tp_state.keep), "scorer": str(tp_state.scorer_name)},
        "test": last_eval,
        "world_size": info.world,
        "threads_per_process": threads,
        "device": str(device),
        "amp": amp,
        "history": history,
        "args": args_dict,
        "argv": argv,
        "torch": torch.__version__,
        "host": socket.gethostname(),
    }
    if info.main:
        if finished:
            meta = {k: metrics[k] for k in ("model", "epochs", "steps", "train_seconds", "parameters", "tp",
                                             "world_size", "torch", "argv")}
            meta["test_top1"] = last_eval["top1"] if last_eval else None
            meta["test_n"] = last_eval["n"] if last_eval else None
            meta["kwargs"] = getattr(getattr(model, "config", None), "kwargs", None)
            meta["args"] = args_dict
            export_weights(model, os.path.join(output, WEIGHTS_NAME), meta)
        with open(os.path.join(output, METRICS_NAME), "w") as f:
            json.dump(_plain(metrics), f, indent=1)
        log(f"{'finished' if finished else 'stopped'} after epoch {metrics['epochs_done']}/{args.epochs}: "
            + (f"test top-1 {last_eval['top1']:.2f}% " if last_eval else "")
            + f"train time {train_seconds:.0f}s; outputs in {output}")
    log.close()
    return _plain(metrics)


def main(argv: list[str] | None = None, *, finetune: bool = False, prog: str | None = None) -> int:
    """Command-line entry point: ``python -m tp_spikformer.train`` (and the CLI's ``tp-spikformer train`` /
    ``tp-spikformer finetune``, which call ``main(argv)`` / ``main(argv, finetune=True)``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv, finetune=finetune, prog=prog)
    run(args, argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
