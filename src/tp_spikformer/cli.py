"""The ``tp-spikformer`` command."""

from __future__ import annotations

import argparse
import sys
import time

import torch


def _cmd_models(args: argparse.Namespace) -> int:
    from .models import get_model_config, list_models

    names = list_models(args.pattern, include_tiny=not args.official_only)
    if not names:
        print(f"no model matches '{args.pattern}'", file=sys.stderr)
        return 2
    for name in names:
        cfg = get_model_config(name)
        print(f"{name:32s} {cfg.family:10s} {cfg.description}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .models import create_model

    model = create_model(args.model).eval()
    c, h, w = model.config.data.input_size
    x = torch.randn(args.batch_size, c, h, w)
    with torch.inference_mode():
        model(x)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            logits = model(x)
            times.append(time.perf_counter() - t0)
    times.sort()
    print(f"{args.model}: logits {list(logits.shape)}, median {times[2] * 1e3:.1f} ms/batch "
          f"({args.batch_size / times[2]:.0f} img/s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tp-spikformer", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("models", help="list registered model configurations")
    m.add_argument("pattern", nargs="?", default="*", help="shell-style pattern, e.g. 'qkformer*'")
    m.add_argument("--official-only", action="store_true", help="hide the tiny test configurations")
    m.set_defaults(func=_cmd_models)
    d = sub.add_parser("demo", help="run the embedded default job")
    d.add_argument("--model", default="sdt_tiny")
    d.add_argument("--batch-size", type=int, default=8)
    d.set_defaults(func=_cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
