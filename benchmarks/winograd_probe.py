"""Would Winograd convolutions make the optimized models faster on this CPU? (prints JSON; ``--out`` writes it)

``profile_ops.py`` bounds the fast path by the float32 rate of this CPU: counted MACs at the rate of a large
SGEMM. Winograd's F(2x2, 3x3) algorithm is the usual way past that bound for 3x3 convolutions: it computes
each 2x2 output tile from a 4x4 input tile with 16 multiplications per channel pair instead of 36 (2.25x
fewer), as 16 batched GEMMs between transformed input tiles and transformed weights, plus an input and an
output transform. This probe measures, on the model's own 3x3 stride-1 convolutions (shapes captured from
one forward of the optimized model; each distinct shape timed once and weighted by its calls):

* ``direct_ms``: torch's convolution (oneDNN, channels-last, what the fast path runs);
* ``winograd_ms``: F(2x2, 3x3) in torch operations (the transforms as strided adds, the 16 GEMMs as one
  ``bmm``);
* ``winograd_gemm_ms``: its ``bmm`` alone, i.e. Winograd with free transforms, a bound no implementation
  of it can beat here;

and the whole-model speed-ups they imply over the optimized forward (``forward_ms``, median thread time):
``forward / (forward - direct + winograd)``, the same with Winograd only on the shapes where it beat the
direct convolution (``..._where_faster``), and with free transforms. Errors: max |difference| to a float64
convolution, Winograd and direct, float32, on spike inputs of the layer's own firing.

Usage: python benchmarks/winograd_probe.py [--models sdt_v3_l ...] [--batch-size 1] [--threads 1]
       [--repeats 7] [--out file.json]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from tp_spikformer import create_model
from tp_spikformer.jsonio import print_and_write
from tp_spikformer.measure.benchmark import default_input
from tp_spikformer.measure.variants import make_neurons_fire
from tp_spikformer.optimize import optimize

_BT = torch.tensor([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=torch.float64)
_G = torch.tensor([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=torch.float64)


def winograd_weight(weight: torch.Tensor) -> torch.Tensor:
    """``G g G^T`` of a ``[K, C, 3, 3]`` weight, computed in float64 and rounded once: ``[16, C, K]``."""
    u = _G @ weight.double() @ _G.T  # [K, C, 4, 4]
    k, c = weight.shape[:2]
    return u.permute(2, 3, 1, 0).reshape(16, c, k).to(weight.dtype).contiguous()


def input_tiles(x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """``B^T d B`` of every 4x4 tile (stride 2) of ``x`` padded by 1: ``[16, N * th * tw, C]``."""
    n, c, h, w = x.shape
    th, tw = (h + 1) // 2, (w + 1) // 2
    xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1 + 2 * tw - w, 1, 1 + 2 * th - h))  # [N, 2th+2, 2tw+2, C]
    rows = [xp[:, i : i + 2 * th : 2] for i in range(4)]  # each [N, th, 2tw+2, C]
    mixed = (rows[0] - rows[2], rows[1] + rows[2], rows[2] - rows[1], rows[1] - rows[3])
    v = torch.empty(4, 4, n, th, tw, c, dtype=x.dtype)
    for i, t in enumerate(mixed):
        cols = [t[:, :, j : j + 2 * tw : 2] for j in range(4)]  # each [N, th, tw, C]
        torch.sub(cols[0], cols[2], out=v[i, 0])
        torch.add(cols[1], cols[2], out=v[i, 1])
        torch.sub(cols[2], cols[1], out=v[i, 2])
        torch.sub(cols[1], cols[3], out=v[i, 3])
    return v.view(16, n * th * tw, c), th, tw


def output_tiles(m: torch.Tensor, n: int, th: int, tw: int, h: int, w: int) -> torch.Tensor:
    """``A^T m A`` of the GEMM results ``[16, N * th * tw, K]``: the output ``[N, K, H, W]`` (channels-last)."""
    k = m.shape[-1]
    m = m.view(4, 4, n, th, tw, k)
    s, d = m[0] + m[1] + m[2], m[1] - m[2] - m[3]  # row sums: [4 (column), N, th, tw, K] each
    y = torch.empty(n, th, 2, tw, 2, k, dtype=m.dtype)
    torch.add(s[0] + s[1], s[2], out=y[:, :, 0, :, 0])
    torch.sub(s[1] - s[2], s[3], out=y[:, :, 0, :, 1])
    torch.add(d[0] + d[1], d[2], out=y[:, :, 1, :, 0])
    torch.sub(d[1] - d[2], d[3], out=y[:, :, 1, :, 1])
    return y.view(n, 2 * th, 2 * tw, k)[:, :h, :w].permute(0, 3, 1, 2)  # [N, K, H, W]


def winograd_conv3x3(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """3x3 convolution, stride 1, padding 1, no bias, of ``x [N, C, H, W]`` with ``u = winograd_weight(w)``."""
    n, _, h, w = x.shape
    v, th, tw = input_tiles(x)
    return output_tiles(torch.bmm(v, u), n, th, tw, h, w)


def is_winograd_shape(module: nn.Module) -> bool:
    return (
        isinstance(module, nn.Conv2d)
        and module.kernel_size == (3, 3)
        and module.stride == (1, 1)
        and module.padding == (1, 1)
        and module.dilation == (1, 1)
        and module.groups == 1
    )


def capture_layers(model: nn.Module, x: torch.Tensor) -> list[dict]:
    """One forward: every 3x3 stride-1 convolution's input and weight, grouped by shape with call counts."""
    found: dict[tuple, dict] = {}

    def hook(module, args, _out):
        key = (tuple(args[0].shape), tuple(module.weight.shape))
        if key not in found:
            found[key] = {"x": args[0].detach().clone(), "weight": module.weight.detach().clone(), "calls": 0}
        found[key]["calls"] += 1

    handles = [m.register_forward_hook(hook) for m in model.modules() if is_winograd_shape(m)]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return list(found.values())


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.thread_time()
        fn()
        times.append(time.thread_time() - t0)
    return statistics.median(times) * 1000.0


def probe_layer(layer: dict, repeats: int) -> dict:
    x = layer["x"].float().contiguous(memory_format=torch.channels_last)
    w = layer["weight"].float()
    w_cl, u = w.contiguous(memory_format=torch.channels_last), winograd_weight(w)
    with torch.inference_mode():
        exact = F.conv2d(x.double(), w.double(), padding=1)
        v, _, _ = input_tiles(x)
        row = {
            "input": list(x.shape),
            "weight": list(w.shape),
            "calls": layer["calls"],
            "direct_ms": median_ms(lambda: F.conv2d(x, w_cl, padding=1), repeats),
            "winograd_ms": median_ms(lambda: winograd_conv3x3(x, u), repeats),
            "winograd_gemm_ms": median_ms(lambda: torch.bmm(v, u), repeats),
            "direct_max_err": (F.conv2d(x, w_cl, padding=1).double() - exact).abs().max().item(),
            "winograd_max_err": (winograd_conv3x3(x, u).double() - exact).abs().max().item(),
        }
    return row


def matmul_rates(repeats: int, n: int = 2048) -> dict:
    """GFLOP/s of an n x n x n matmul in float32 and bfloat16 on this thread: what bf16 arithmetic could
    buy at best (it rounds the operands to 8 mantissa bits, so it moves threshold crossings; see the README)."""
    rates = {}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.rand(n, n).to(dtype), torch.rand(n, n).to(dtype)
        with torch.inference_mode():
            ms = median_ms(lambda a=a, b=b: torch.mm(a, b), repeats)
        rates[f"matmul_{n}_{str(dtype).removeprefix('torch.')}_gflops"] = round(2 * n**3 / ms / 1e6, 1)
    return rates


def probe_model(name: str, batch_size: int, repeats: int) -> dict:
    model = create_model(name).eval()
    make_neurons_fire(model, seed=1)
    fast = optimize(copy.deepcopy(model), compile=False)
    x = default_input(model, batch_size)
    with torch.inference_mode():
        forward = median_ms(lambda: fast(x), repeats)
    rows = [probe_layer(layer, repeats) for layer in capture_layers(fast, x)]

    def total(key: str) -> float:
        return sum(r[key] * r["calls"] for r in rows)

    direct, wino, gemm = total("direct_ms"), total("winograd_ms"), total("winograd_gemm_ms")
    best = sum(min(r["direct_ms"], r["winograd_ms"]) * r["calls"] for r in rows)
    return {
        "forward_ms": round(forward, 2),
        "conv3x3_calls": sum(r["calls"] for r in rows),
        "direct_ms": round(direct, 2),
        "winograd_ms": round(wino, 2),
        "winograd_gemm_ms": round(gemm, 2),
        "model_speedup_winograd": round(forward / (forward - direct + wino), 3),
        "model_speedup_winograd_where_faster": round(forward / (forward - direct + best), 3),
        "model_speedup_free_transforms": round(forward / (forward - direct + gemm), 3),
        "max_err_direct": max((r["direct_max_err"] for r in rows), default=0.0),
        "max_err_winograd": max((r["winograd_max_err"] for r in rows), default=0.0),
        "layers": [
            {k: round(v, 3) if isinstance(v, float) and k.endswith("ms") else v for k, v in r.items()}
            for r in rows
        ],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--models", nargs="+", default=["sdt_v3_l", "qkformer_10_512_imagenet", "sdt_8_512_imagenet"]
    )
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = {
        "benchmark": "winograd_probe",
        "torch": torch.__version__,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "command": " ".join(
            ["python benchmarks/winograd_probe.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "reference_rates": matmul_rates(args.repeats),
        "models": {},
    }
    for name in args.models:
        result["models"][name] = probe_model(name, args.batch_size, args.repeats)
        print(f"[winograd_probe] {name} done", file=sys.stderr, flush=True)
    print_and_write(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
