import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
# Tiny test models gain nothing from threads, and OpenMP threads on a shared 2-core machine can make small
# ops 20x slower: run the suite single-threaded.
torch.set_num_threads(1)

# Property tests draw the same examples on every run (no flaky CI); widen locally with HYPOTHESIS_PROFILE=dev.
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True, deadline=None)
settings.register_profile("dev", max_examples=500, deadline=None)
settings.load_profile(__import__("os").environ.get("HYPOTHESIS_PROFILE", "ci"))
