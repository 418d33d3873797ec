"""Peak RSS of a 3 keeps x 4 scorers sweep of sdt_8_512_imagenet (random weights) on 4 images, no timing.

Usage: python benchmarks/sweep_memory.py LABEL  (prints one JSON line; run it with PYTHONPATH pointing at an
older checkout's src/ to compare: the sweeps deep-copied the model per variant before commit c420240).
"""

import json
import resource
import sys
import time

import torch

import tp_spikformer as tp

torch.set_num_threads(1)
model = tp.create_model("sdt_8_512_imagenet").eval()
g = torch.Generator().manual_seed(0)
data = [(torch.randn(3, 224, 224, generator=g), i % 10) for i in range(4)]
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.time()
res = tp.sweep(
    model,
    data,
    keeps=[0.9, 0.75, 0.5],
    scorers=["official", "paper", "random", "spatial"],
    batch_size=2,
    energy_batches=1,
    speed=False,
)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(
    json.dumps(
        {
            "rev": sys.argv[1],
            "rows": len(res.rows),
            "params_mib": sum(p.numel() for p in model.parameters()) * 4 / 2**20,
            "peak_rss_mib_before_sweep": base / 1024,
            "peak_rss_mib": peak / 1024,
            "seconds": round(time.time() - t0, 1),
        }
    )
)
