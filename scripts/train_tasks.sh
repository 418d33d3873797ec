#!/usr/bin/env bash
# The exact commands that produced the segmentation, detection and tracking models shipped in
# src/tp_spikformer/assets/tasks/ (on the 2-core CPU project machine; segmentation and the detector on both
# cores, the trackers on one thread each while benchmarks ran on the other core; logs and checkpoints under
# runs/tasks/; the shipped detector's run wrote to runs/tasks/sdt_v3_scenes_fcos_e10). The segmentation and detection backbones start from the shipped scene
# classifier sdt_v3_scenes (scripts/train_scenes.sh), the trackers from scratch. Scenes and event sequences are generated: training objects from the
# Fashion-MNIST train split (Debian's dataset-fashion-mnist), evaluation objects from the shipped test slice.
#
#   bash scripts/train_tasks.sh segmentation | detection | tracking-data | sdtrack | spikformer-track | all
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/tasks}
ASSETS=src/tp_spikformer/assets/tasks
mkdir -p "$OUT" "$ASSETS"
RUN=(python -m tp_spikformer.train --seed 0)

ship() {  # model.pt (float32 weights + meta) -> package asset (float32: the weights and the meta only)
    python -m tp_spikformer.models.export_asset "$OUT/$1/model.pt" "$ASSETS/$1.pt"
}

case "${1:-all}" in
    segmentation)
        "${RUN[@]}" --threads 2 --task segmentation --model sdt_v3_scenes_semfpn --init-from sdt_v3_scenes \
            --dataset scenes:5000 --epochs 9 --batch-size 8 --lr 4e-3 --weight-decay 0.005 --warmup-steps 200 \
            --test-limit 200 --out "$OUT/sdt_v3_scenes_semfpn"
        ship sdt_v3_scenes_semfpn ;;
    detection)
        "${RUN[@]}" --threads 2 --task detection --model sdt_v3_scenes_fcos --init-from sdt_v3_scenes \
            --dataset scenes:6000 --epochs "${EPOCHS:-10}" --batch-size 16 --lr 2e-3 --weight-decay 0.05 --warmup-steps 100 \
            --scale-jitter 0.75 1.0 --test-limit 200 --out "$OUT/sdt_v3_scenes_fcos"
        ship sdt_v3_scenes_fcos ;;
    tracking-data)
        python -m tp_spikformer.cli make-tracking --train 300 --test 40 --frames 48 --seed 0 --out "$OUT/synthetic" ;;
    sdtrack)
        "${RUN[@]}" --threads 1 --task tracking --model sdtrack_synth --dataset synthetic --data-root "$OUT/synthetic" \
            --epochs "${EPOCHS:-12}" --samples-per-epoch 1600 --batch-size 16 --lr 1e-3 --backbone-lr-mult 1.0 \
            --weight-decay 1e-4 --clip-grad 0.1 --out "$OUT/sdtrack_synth"
        ship sdtrack_synth ;;
    spikformer-track)
        "${RUN[@]}" --threads 1 --task tracking --model spikformer_track_synth --dataset synthetic --data-root "$OUT/synthetic" \
            --epochs "${EPOCHS:-8}" --samples-per-epoch 1120 --batch-size 16 --lr 1e-3 --backbone-lr-mult 1.0 \
            --weight-decay 1e-4 --clip-grad 0.1 --out "$OUT/spikformer_track_synth"
        ship spikformer_track_synth ;;
    all) for t in segmentation detection tracking-data sdtrack spikformer-track; do "$0" "$t"; done ;;
    *) echo "unknown target $1" >&2; exit 2 ;;
esac
