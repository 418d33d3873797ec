#!/usr/bin/env bash
# The exact commands that produced the Fashion-MNIST weights shipped in src/tp_spikformer/assets/fashion_mnist/
# (one model at a time, on the 2-core CPU project machine; logs and full checkpoints under runs/fmnist/).
#
#   bash scripts/train_fashion_mnist.sh                # slice + all four models, one after the other
#   bash scripts/train_fashion_mnist.sh sdt_fmnist     # one model (or: slice)
#
# Each run writes runs/fmnist/<name>/{log.txt,metrics.json,checkpoint.pt,model.pt}; model.pt (float32
# weights + meta) is copied to the assets folder. An interrupted run continues with the same command
# (--resume auto) and ends with the same weights.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/fmnist}
ASSETS=src/tp_spikformer/assets/fashion_mnist
mkdir -p "$OUT" "$ASSETS"

# one thread: the machine's 2 cores are shared with other jobs, and a 2-thread OpenMP process slows down
# many-fold whenever another process takes a core (1 thread: ~2/3 of the uncontended 2-thread speed)
COMMON=(--dataset fashion_mnist --batch-size 64 --lr 5e-3 --min-lr 1e-5 --weight-decay 0.01
        --label-smoothing 0.0 --warmup-epochs 0.25 --augment flip --seed 0 --threads 1
        --log-interval 100 --resume auto)

train() {
    local name=$1; shift
    python -m tp_spikformer.train --model "$name" "${COMMON[@]}" "$@" --out "$OUT/$name"
    cp "$OUT/$name/model.pt" "$ASSETS/$name.pt"
}

slice() {  # the first 2,000 images of the Fashion-MNIST test split (not stratified), uint8 + labels
    python - <<'PY'
from tp_spikformer.data import FashionMNIST
from tp_spikformer.data.catalog import SHIPPED_SLICE as FMNIST_SLICE
ds = FashionMNIST(split="test")
ds.save_npz(f"src/tp_spikformer/assets/{FMNIST_SLICE}", n=2000, note="first 2000 images of the test split")
PY
}

case "${1:-all}" in
    slice) slice ;;
    sdt_v3_fmnist) train sdt_v3_fmnist --epochs 4 ;;
    sdt_fmnist) train sdt_fmnist --epochs 3 ;;
    spikformer_fmnist) train spikformer_fmnist --epochs 3 --compile ;;
    qkformer_fmnist) train qkformer_fmnist --epochs 4 ;;
    all)
        slice
        for m in sdt_v3_fmnist sdt_fmnist spikformer_fmnist qkformer_fmnist; do "$0" "$m"; done ;;
    *) echo "unknown target $1" >&2; exit 2 ;;
esac
