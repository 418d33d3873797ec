"""The classification training loop (with or without TP token pruning), single process or ``torchrun`` DDP.

:func:`run` trains as its arguments say (the options of ``tp-spikformer train`` / ``finetune``, see
``tp_spikformer.train``) and returns the final metrics. What it does:

* Model: a registered configuration, optionally initialised from shipped weights or a checkpoint. With a
  keep schedule the model is TP-patched BEFORE the DDP wrapper, so the pruned network is what is trained.
* Parameters that get no gradient (modules the official code builds but never calls) are found with one
  probe forward/backward and frozen, so plain DDP works.
* AdamW (no weight decay on biases, norms and scalars), linear warm-up then cosine decay, label
  smoothing, optional gradient clipping; TET outputs ``[T, B, classes]`` are trained on the mean over T
  of the per-step cross-entropies.
* Determinism: the data order of epoch ``e`` comes from a generator seeded with ``f(seed, e)``, the
  augmentation from ``f(seed, e, rank)``; the checkpoint written after every epoch holds every RNG state,
  so an interrupted run resumed with ``--resume`` ends with bit-identical weights on the CPU.
* Output folder: ``log.txt``, ``args.json``, ``checkpoint.pt`` (resumable), ``model.pt`` (float32 weights,
  ``create_model(name, checkpoint=...)`` loads it) and ``metrics.json``.
"""

from __future__ import annotations

import argparse
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .. import runtime
from ..errors import UsageError, check_int
from ..evaluate import check_labels, evaluate, logits_of
from ..jsonio import plain, write_json
from .checkpoints import (
    CHECKPOINT_NAME,
    METRICS_NAME,
    WEIGHTS_NAME,
    atomic_save,
    export_weights,
    remove_stale_temporaries,
    resume_path,
)
from .optim import cosine_lr, epoch_seed, freeze_unused_parameters, make_optimizer, set_lr

# arguments whose change between an interrupted run and its resumption changes the result
RESULT_ARGS = (
    "model",
    "set",
    "seed",
    "epochs",
    "batch_size",
    "lr",
    "min_lr",
    "warmup_epochs",
    "warmup_steps",
    "weight_decay",
    "label_smoothing",
    "clip_grad",
    "augment",
    "pad",
    "hflip",
    "amp",
    "dataset",
    "train_limit",
    "keep",
    "scorer",
    "window",
    "mode",
    "pretrained",
    "checkpoint",
    "init_from",
    "unused_params",
)


@dataclass
class Job:
    """Everything one training run holds (built by :func:`prepare`, advanced epoch by epoch)."""

    args: argparse.Namespace
    info: runtime.DistInfo
    device: torch.device
    amp: str
    threads: int
    output: str
    log: Any
    model: nn.Module
    train_set: Any
    test_set: Any
    augment: Any
    tp_state: Any
    unused: list[str]
    steps_per_epoch: int = 0
    total_steps: int = 0
    warmup: int = 0
    optimizer: Any = None
    scaler: Any = None
    train_model: nn.Module | None = None
    start_epoch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    resumed_from: str | None = None


class Logger:
    """Timestamped lines to stdout and ``log.txt`` (rank 0 only)."""

    def __init__(self, path: str | None, enabled: bool):
        self.enabled = enabled
        self.f = open(path, "a", buffering=1) if (enabled and path) else None  # noqa: SIM115 - closed by close()

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


# -- one step -----------------------------------------------------------------------------------------------


def loss_fn(output: torch.Tensor, target: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Cross-entropy; TET outputs ``[T, B, classes]``: the mean over T of the per-step losses."""
    if isinstance(output, (tuple, list)):
        output = output[0]
    if output.dim() == 3:
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
    """One optimisation step on ``(x, y)`` (on the model's device): forward under ``amp`` autocast, loss,
    backward (scaled when ``scaler`` is enabled), optional gradient-norm clipping, optimizer step.
    Returns ``(loss, output)``; the learning rate is the caller's."""
    with runtime.autocast_context(x.device, amp):
        out = model(x)
    loss = loss_fn(out, y, label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    params = (
        list(clip_params)
        if clip_params is not None
        else [p for g in optimizer.param_groups for p in g["params"]]
    )
    if scaler is not None and scaler.is_enabled():
        scaler.scale(loss).backward()
        if clip_grad:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, clip_grad)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        if clip_grad:
            torch.nn.utils.clip_grad_norm_(params, clip_grad)
        optimizer.step()
    return loss.detach(), out


def fetch(dataset: Any, idx: torch.Tensor, augment) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch ``(x, y)`` of ``dataset`` at ``idx`` (in-memory sets batch their preprocessing)."""
    if hasattr(dataset, "get_batch"):
        return dataset.get_batch(idx, augment=augment), torch.as_tensor(dataset.targets)[idx]
    items = [dataset[int(i)] for i in idx]  # generic map-style dataset (slow path)
    x = torch.stack([torch.as_tensor(it[0]) for it in items])
    y = torch.as_tensor([int(it[1]) for it in items])
    return (augment(x) if augment is not None else x), y


# -- preparation --------------------------------------------------------------------------------------------


def validate(args: argparse.Namespace) -> None:
    """Refuse impossible settings before any work is done (the command line checks types already)."""
    for name in ("epochs", "batch_size", "eval_batch_size", "eval_every"):
        check_int(f"--{name.replace('_', '-')}", getattr(args, name))
    if args.stop_after is not None:
        check_int("--stop-after", args.stop_after)
    for name in ("train_limit", "test_limit"):
        if getattr(args, name) is not None:
            check_int(f"--{name.replace('_', '-')}", getattr(args, name))
    if not args.lr > 0 or args.min_lr < 0 or args.weight_decay < 0 or not 0 <= args.label_smoothing < 1:
        raise UsageError(
            f"need --lr > 0, --min-lr >= 0, --weight-decay >= 0 and 0 <= --label-smoothing < 1 "
            f"(got {args.lr}, {args.min_lr}, {args.weight_decay}, {args.label_smoothing})"
        )
    if args.pretrained and args.checkpoint:
        raise UsageError("pass either --pretrained or --checkpoint, not both")


def build_model(args: argparse.Namespace, model: nn.Module | None):
    """The model (from ``--model``, weights from ``--pretrained`` / ``--checkpoint``) and its TP state."""
    from ..models import create_model, load_checkpoint, load_classifier_weights
    from ..options import parse_overrides, tp_options
    from ..pruning import apply_tp

    if model is None:
        model = create_model(
            args.model,
            pretrained=args.pretrained,
            official_arithmetic=getattr(args, "official_arithmetic", False),
            **parse_overrides(args.set),
        )
        if args.checkpoint:
            load_checkpoint(
                model, args.checkpoint, use_ema=getattr(args, "use_ema", False), trusted=args.trust_checkpoint
            )
        if getattr(args, "init_from", None):
            load_classifier_weights(model, args.init_from, trusted=args.trust_checkpoint)
    tp_state = None
    if args.keep is not None or args.scorer is not None:
        scorer = {"scorer": args.scorer} if args.scorer is not None else {}  # default: the model's
        tp_state = apply_tp(
            model,
            keep=args.keep if args.keep is not None else "official",
            **scorer,
            **tp_options(args),
        )
    return model, tp_state


def build_data(args: argparse.Namespace, model: nn.Module, train_set, test_set):
    """Training and test sets (preprocessed to the model) and the batch augmentation."""
    from ..data import BatchAugment, load_dataset

    data_cfg = getattr(getattr(model, "config", None), "data", None)
    if train_set is None:
        train_set = load_dataset(
            args.dataset, "train", args.data_root, data_cfg, limit=args.train_limit, T=args.frames
        )
    elif args.train_limit is not None:
        train_set = train_set.subset(slice(0, args.train_limit))
    if test_set is None:
        spec = args.test_dataset or args.dataset
        root = args.data_root if not args.test_dataset else None
        test_set = load_dataset(spec, "test", root, data_cfg, limit=args.test_limit, T=args.frames)
    elif args.test_limit is not None:
        test_set = test_set.subset(slice(0, args.test_limit))
    num_classes = getattr(model, "num_classes", None)
    for name, ds in (("training", train_set), ("test", test_set)):
        check_labels(ds, num_classes, name)
    augment = None
    if args.augment != "none":
        side = data_cfg.input_size[-1] if data_cfg is not None else train_set.get_batch([0]).shape[-1]
        pad = args.pad if args.pad is not None else max(1, side // 16)
        augment = BatchAugment(
            padding=pad if "crop" in args.augment else 0, hflip=args.hflip if "flip" in args.augment else 0.0
        )
    return train_set, test_set, augment


def prepare(args, info: runtime.DistInfo, model, train_set, test_set) -> Job:
    """Device, output folder, model, data, frozen parameters and the step counts of a run."""
    validate(args)
    threads = runtime.set_threads(args.threads, info)
    device = runtime.resolve_device(args.device, info)
    amp = runtime.resolve_amp(args.amp, device)
    runtime.set_deterministic(device, args.deterministic)
    output = args.out
    if info.main:
        os.makedirs(output, exist_ok=True)
        remove_stale_temporaries(output)
    log = Logger(os.path.join(output, "log.txt"), info.main)
    runtime.seed_everything(args.seed)
    model, tp_state = build_model(args, model)
    train_set, test_set, augment = build_data(args, model, train_set, test_set)
    job = Job(
        args, info, device, amp, threads, output, log, model, train_set, test_set, augment, tp_state, []
    )
    if args.unused_params in ("freeze", "error"):
        job.unused = freeze_unused_parameters(
            model, fetch(train_set, torch.arange(min(2, len(train_set))), None)[0]
        )
        if job.unused and args.unused_params == "error":
            raise UsageError(
                f"parameters without gradient: {job.unused} (use --unused-params freeze or find)"
            )
    if args.batch_size % info.world:
        raise UsageError(
            f"--batch-size {args.batch_size} (global) must be divisible by the world size {info.world}"
        )
    job.steps_per_epoch = len(train_set) // args.batch_size
    if job.steps_per_epoch < 1:
        raise UsageError(
            f"{len(train_set)} training images are fewer than one global batch of {args.batch_size}; "
            "lower --batch-size"
        )
    job.total_steps = job.steps_per_epoch * args.epochs
    job.warmup = (
        args.warmup_steps
        if args.warmup_steps is not None
        else int(round(args.warmup_epochs * job.steps_per_epoch))
    )
    return job


def build_optimisation(job: Job) -> None:
    """Optimizer, AMP scaler, the resumed state if any, and the (DDP / compiled) training model."""
    args, model = job.args, job.model
    model.to(job.device)
    if args.sync_bn and job.info.distributed:
        model = job.model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    job.optimizer = make_optimizer(model, args.lr, args.weight_decay)
    job.scaler = runtime.grad_scaler(enabled=(job.amp == "fp16" and job.device.type == "cuda"))
    job.resumed_from = resume_path(args.resume, job.output)
    if job.resumed_from:
        load_training_state(job, job.resumed_from)
    job.train_model = model
    if job.info.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        job.train_model = DDP(
            model,
            device_ids=[job.device.index] if job.device.type == "cuda" else None,
            find_unused_parameters=(args.unused_params == "find"),
        )
    if args.compile:
        job.train_model = torch.compile(job.train_model)


def load_training_state(job: Job, path: str) -> None:
    ck = torch.load(path, map_location="cpu", weights_only=True)
    job.model.load_state_dict(ck["model"])
    job.optimizer.load_state_dict(ck["optimizer"])
    if ck.get("scaler"):
        job.scaler.load_state_dict(ck["scaler"])
    job.start_epoch, job.step = int(ck["epoch"]), int(ck["step"])
    job.history = list(ck.get("history", []))
    job.train_seconds = float(ck.get("train_seconds", 0.0))
    runtime.set_rng_state(ck["rng"])
    now = plain(vars(job.args))
    changed = {k: (ck["args"].get(k), now.get(k)) for k in RESULT_ARGS if ck["args"].get(k) != now.get(k)}
    if ck.get("world_size", 1) != job.info.world:
        changed["world_size"] = (ck.get("world_size", 1), job.info.world)
    job.log(
        f"resumed from {path}: epoch {job.start_epoch}, step {job.step}"
        + (f"; WARNING: settings differ from the interrupted run (old, new): {changed}" if changed else "")
    )


# -- epochs ---------------------------------------------------------------------------------------------------


def train_epoch(job: Job, epoch: int) -> tuple[dict[str, Any], torch.Generator]:
    """One epoch over the training set; returns its record and the data-order generator."""
    args, info = job.args, job.info
    data_gen = torch.Generator().manual_seed(epoch_seed(args.seed, epoch, 0))
    if job.augment is not None:
        job.augment.generator = torch.Generator().manual_seed(epoch_seed(args.seed, epoch, 1 + info.rank))
    order = torch.randperm(len(job.train_set), generator=data_gen)
    local_bs = args.batch_size // info.world
    trainable = [p for p in job.model.parameters() if p.requires_grad]
    job.train_model.train()
    sums = torch.zeros(3, dtype=torch.float64, device=job.device)  # loss * n, correct, n (this rank)
    t_epoch = t_log = time.perf_counter()
    n_log, lr = 0, args.lr
    for s in range(job.steps_per_epoch):
        lr = cosine_lr(job.step, job.total_steps, job.warmup, args.lr, args.min_lr)
        set_lr(job.optimizer, lr)
        base = s * args.batch_size + info.rank * local_bs
        x, y = fetch(job.train_set, order[base : base + local_bs], job.augment)
        x = x.to(job.device, non_blocking=True)
        y = y.to(job.device, dtype=torch.long, non_blocking=True)
        loss, out = train_step(
            job.train_model,
            job.optimizer,
            x,
            y,
            amp=job.amp,
            scaler=job.scaler,
            label_smoothing=args.label_smoothing,
            clip_grad=args.clip_grad,
            clip_params=trainable,
        )
        job.step += 1
        with torch.no_grad():  # accumulated on the device: no host sync per step
            sums += torch.stack(
                [
                    loss.double() * y.shape[0],
                    (logits_of(out).argmax(1) == y).sum().double(),
                    torch.tensor(float(y.shape[0]), dtype=torch.float64, device=job.device),
                ]
            )
        n_log += args.batch_size
        if args.log_interval and (s + 1) % args.log_interval == 0:
            now = time.perf_counter()
            job.log(
                f"epoch {epoch + 1}/{args.epochs} step {s + 1}/{job.steps_per_epoch} loss {float(loss):.4f} "
                f"lr {lr:.3e} train_top1 {100 * sums[1] / max(1, sums[2]):.2f} img/s {n_log / (now - t_log):.1f}"
            )
            t_log, n_log = now, 0
    epoch_time = time.perf_counter() - t_epoch
    job.train_seconds += epoch_time
    if info.distributed:
        dist.all_reduce(sums)
    sums = sums.cpu()
    return {
        "epoch": epoch + 1,
        "step": job.step,
        "lr": lr,
        "train_loss": float(sums[0] / sums[2]),
        "train_top1": float(100 * sums[1] / sums[2]),
        "epoch_seconds": epoch_time,
        "train_images_per_s": job.steps_per_epoch * args.batch_size / epoch_time,
    }, data_gen


def evaluate_epoch(job: Job, rec: dict[str, Any]) -> None:
    """Evaluate after every ``--eval-every`` epochs and after the last; log the epoch line."""
    args = job.args
    if rec["epoch"] % args.eval_every == 0 or rec["epoch"] == args.epochs:
        result = evaluate(
            job.model,
            job.test_set,
            args.eval_batch_size,
            job.device,
            amp=job.amp if job.amp != "none" else None,
        )
        rec["test"] = {k: result[k] for k in ("top1", "top5", "loss", "n", "images_per_s")}
    test_txt = (
        f"test_top1 {rec['test']['top1']:.2f} test_top5 {rec['test']['top5']:.2f} "
        f"test_loss {rec['test']['loss']:.4f} "
        if "test" in rec
        else ""
    )
    job.log(
        f"epoch {rec['epoch']}/{args.epochs} done: loss {rec['train_loss']:.4f} lr {rec['lr']:.3e} "
        f"train_top1 {rec['train_top1']:.2f} {test_txt}img/s {rec['train_images_per_s']:.1f} "
        f"time {rec['epoch_seconds']:.0f}s (total {job.train_seconds:.0f}s)"
    )


def save_epoch(job: Job, data_gen: torch.Generator) -> None:
    """The resumable state after an epoch (rank 0), written atomically."""
    if not job.info.main:
        return
    args = job.args
    ck = {
        "model": job.model.state_dict(),
        "optimizer": job.optimizer.state_dict(),
        "scheduler": {
            "name": "cosine",
            "step": job.step,
            "total_steps": job.total_steps,
            "warmup_steps": job.warmup,
            "lr": args.lr,
            "min_lr": args.min_lr,
        },
        "scaler": job.scaler.state_dict() if job.scaler.is_enabled() else None,
        "step": job.step,
        "epoch": job.history[-1]["epoch"],
        "rng": runtime.rng_state(data_gen),
        "args": plain(vars(args)),
        "history": plain(job.history),
        "train_seconds": job.train_seconds,
        "world_size": job.info.world,
    }
    atomic_save(ck, os.path.join(job.output, CHECKPOINT_NAME))


# -- the run --------------------------------------------------------------------------------------------------


def run(
    args: argparse.Namespace | dict[str, Any],
    *,
    model: nn.Module | None = None,
    train_set: Any = None,
    test_set: Any = None,
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """Train as ``args`` say and return the final metrics (also written to ``<out>/metrics.json``).

    ``args`` is a parsed namespace or a dict of option names (missing ones take the command line's
    defaults; ``{"finetune": True}`` its fine-tuning defaults). ``model``, ``train_set`` and ``test_set``
    replace what ``--model`` / ``--dataset`` would build (tests and notebooks).
    """
    if isinstance(args, dict):
        from ..train import parse_args

        base = vars(parse_args(["--model", str(args.get("model", "?"))], finetune=bool(args.get("finetune"))))
        base.update(args)
        args = argparse.Namespace(**base)
    if args.out is None:
        from ..options import output_dir

        args.out = output_dir(None, f"train-{args.model}")
    info = runtime.setup_distributed(args.device)
    try:
        job = prepare(args, info, model, train_set, test_set)
        try:
            return train(job, argv)
        finally:
            job.log.close()
    finally:
        runtime.cleanup_distributed(info)


def train(job: Job, argv: list[str] | None) -> dict[str, Any]:
    """Optimisation set-up, the epochs, and the final files."""
    build_optimisation(job)
    args, t_start = job.args, time.perf_counter()
    if job.info.main and not job.resumed_from:
        write_json(os.path.join(job.output, "args.json"), {"args": vars(args), "argv": argv})
    n_params = sum(p.numel() for p in job.model.parameters())
    tp = job.tp_state
    job.log(
        f"model {args.model}: {n_params:,} parameters ({len(job.unused)} frozen unused: {job.unused[:6]}"
        f"{' ...' if len(job.unused) > 6 else ''}); TP: {tp.keep if tp else 'off'}"
        f"{' / ' + str(tp.scorer_name) if tp else ''}"
    )
    job.log(
        f"data: {len(job.train_set)} train / {len(job.test_set)} test, augment {job.augment!r}; device "
        f"{job.device}, amp {job.amp}, world {job.info.world}, threads/process {job.threads}, global batch "
        f"{args.batch_size}, {job.steps_per_epoch} steps/epoch, {job.total_steps} steps, warm-up {job.warmup}"
    )
    for n_run, epoch in enumerate(range(job.start_epoch, args.epochs)):
        if args.stop_after is not None and n_run >= args.stop_after:
            break
        rec, data_gen = train_epoch(job, epoch)
        evaluate_epoch(job, rec)
        job.history.append(rec)
        save_epoch(job, data_gen)
        if job.info.distributed:
            dist.barrier()
    return finish(job, n_params, time.perf_counter() - t_start, argv)


def finish(job: Job, n_params: int, wall: float, argv: list[str] | None) -> dict[str, Any]:
    """``metrics.json`` always; ``model.pt`` once the last epoch is done."""
    args, history = job.args, job.history
    last_eval = next((h["test"] for h in reversed(history) if "test" in h), None)
    finished = bool(history) and history[-1]["epoch"] == args.epochs
    tp = (
        None if job.tp_state is None else {"keep": str(job.tp_state.keep), "scorer": job.tp_state.scorer_name}
    )
    metrics = {
        "model": args.model,
        "finished": finished,
        "epochs_done": history[-1]["epoch"] if history else 0,
        "epochs": args.epochs,
        "steps": job.step,
        "train_seconds": job.train_seconds,
        "eval_seconds": sum(h["test"]["n"] / h["test"]["images_per_s"] for h in history if "test" in h),
        "wall_seconds_this_run": wall,
        "parameters": n_params,
        "frozen_unused": job.unused,
        "tp": tp,
        "test": last_eval,
        "world_size": job.info.world,
        "threads_per_process": job.threads,
        "device": str(job.device),
        "amp": job.amp,
        "history": history,
        "args": vars(args),
        "argv": argv,
        "torch": torch.__version__,
        "host": socket.gethostname(),
    }
    if job.info.main:
        if finished:
            meta = {
                k: metrics[k]
                for k in (
                    "model",
                    "epochs",
                    "steps",
                    "train_seconds",
                    "parameters",
                    "tp",
                    "world_size",
                    "torch",
                    "argv",
                )
            }
            meta.update(
                test_top1=last_eval["top1"] if last_eval else None,
                test_n=last_eval["n"] if last_eval else None,
                kwargs=getattr(getattr(job.model, "config", None), "kwargs", None),
                args=vars(args),
            )
            export_weights(job.model, os.path.join(job.output, WEIGHTS_NAME), meta)
        write_json(os.path.join(job.output, METRICS_NAME), metrics)
        job.log(
            f"{'finished' if finished else 'stopped'} after epoch {metrics['epochs_done']}/{args.epochs}: "
            + (f"test top-1 {last_eval['top1']:.2f}% " if last_eval else "")
            + f"train time {job.train_seconds:.0f}s; outputs in {job.output}"
        )
    return plain(metrics)
