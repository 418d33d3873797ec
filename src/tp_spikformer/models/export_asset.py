"""``python -m tp_spikformer.models.export_asset SRC DST [--fp16]``: a trained ``model.pt`` (``{"model":
state_dict, "meta": ...}``) as a package asset: the weights and the meta only; ``--fp16`` stores floating
tensors as float16 (loads back as float32 with ``create_model(..., pretrained=True)``; check the accuracy)."""

from __future__ import annotations

import argparse
import os
import sys

import torch


def export_asset(src: str, dst: str, fp16: bool = False) -> str:
    obj = torch.load(src, map_location="cpu", weights_only=True)
    state = obj["model"] if isinstance(obj, dict) and "model" in obj else obj
    if fp16:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    torch.save({"model": state, "meta": obj.get("meta", {}) if isinstance(obj, dict) else {}}, dst)
    return dst


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tp_spikformer.models.export_asset", description=__doc__.split("\n")[0]
    )
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--fp16", action="store_true")
    args = p.parse_args(argv)
    print(export_asset(args.src, args.dst, args.fp16))
    return 0


if __name__ == "__main__":
    sys.exit(main())
