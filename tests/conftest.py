import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
# Tiny test models gain nothing from threads, and OpenMP threads on a shared 2-core machine can make small
# ops 20x slower: run the suite single-threaded.
torch.set_num_threads(1)
