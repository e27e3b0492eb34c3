#!/usr/bin/env bash
# One GPU check for the evaluation at scale and LinCIR's training levers, under 8 minutes on one H100/H200
# (docs/PERFORMANCE.md, "Still to measure on a GPU"). Every step has its own timeout and writes under $OUT.
#
# 1. Gallery encoding through cirbench (encode_images, as `cirbench eval --decode ...` runs it) with JPEGs decoded on
#    the GPU (--decode device: nvJPEG via torchvision.io.decode_jpeg, batched, preprocessing on the GPU) and by PIL in
#    8 DataLoader workers (--decode workers), against the bare model forward: ViT-L-14 random init, 1,024 640x480
#    photo-like JPEGs, images/s of each and its share of the bare forward (goal: device >= 90 %), and every image's
#    device feature within cosine 0.99 of its workers feature and nearer it than any other image's: random-init
#    models put different images within cosine 0.99 of each other, so 0.99 alone would pass (perf/gallery_encoding.py).
# 2. The same on noise JPEGs (the worst case for JPEG decoding; the kind of the earlier 146.6 images/s H100 row).
# 3. LinCIR training MFU per lever (perf/lincir_train_speed.py, MFU against PEAK_TFLOPS): the official recipe's
#    step, cirbench's default (packing + target cache) through the trainer, each lever alone on top of it (fused
#    AdamW, flash varlen attention, CUDA graphs over bucketed shapes, host sync at log steps only, prefetch), and
#    all levers together, eager and compiled. The compiled configuration runs last (the JSON is written after each).
# 4. With 2 or more GPUs: `torchrun --nproc_per_node 2 -m cirbench eval` (NCCL) against one process, same metrics
#    (perf/distributed_eval.py); skipped on a one-GPU machine (two NCCL ranks cannot share a device).
#
#   bash perf/gpu_check.sh                    # results in $OUT (default /tmp/cirbench_gpu_check)
#   PEAK_TFLOPS=989 PYTHON=python3 bash perf/gpu_check.sh
#   DRY_RUN=1 bash perf/gpu_check.sh          # CPU rehearsal of every step with tiny sizes (a few minutes)
set -uo pipefail

OUT=${OUT:-/tmp/cirbench_gpu_check}
PEAK=${PEAK_TFLOPS:-989}
PY=${PYTHON:-python3}
DRY=${DRY_RUN:-0}
WORK=$(mktemp -d)
mkdir -p "$OUT"
export CIRBENCH_CACHE=$WORK/cache PYTHONUNBUFFERED=1
start=$(date +%s)

if [ "$DRY" = 1 ]; then
    DEVICE=cpu BACKBONE=cirbench-tiny:random TRAIN_BACKBONE=ViT-B-32:random BATCH=8 STEPS=1 WARMUP=1 IMAGES=16
    ENCODE=(--batch-size 8 --workers 0 --threads 1) GPUS=0
else
    DEVICE=cuda BACKBONE=${BACKBONE:-ViT-L-14:random} TRAIN_BACKBONE=$BACKBONE BATCH=512 STEPS=10 WARMUP=3 IMAGES=1024
    ENCODE=(--batch-size 256 --workers 8)
    GPUS=$(nvidia-smi -L 2>/dev/null | grep -c GPU)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/gpu.txt"
fi
$PY -c "import sys, torch, torchvision, open_clip; print('python', sys.version.split()[0], 'torch', torch.__version__,
      'torchvision', torchvision.__version__, 'open_clip', open_clip.__version__)" | tee -a "$OUT/gpu.txt"

# 1) Device decoding vs workers vs the bare forward through cirbench, photo-like JPEGs, feature check (about 1 minute).
timeout 150 $PY perf/gallery_encoding.py --backbone "$BACKBONE" --device "$DEVICE" --images "$IMAGES" "${ENCODE[@]}" \
    --decode workers,device --kind photo --json "$OUT/decode.json" 2>&1 | tee "$OUT/decode.log"

# 2) The same on noise JPEGs, the worst case for decoding (about 1 minute).
timeout 150 $PY perf/gallery_encoding.py --backbone "$BACKBONE" --device "$DEVICE" --images "$IMAGES" "${ENCODE[@]}" \
    --decode workers,device --kind noise --json "$OUT/gallery.json" 2>&1 | tee "$OUT/gallery.log"

# 3) LinCIR training MFU per lever (about 3 minutes, most of it compilation; not yet timed on a GPU). On the CPU
#    rehearsal the CUDA-only levers report "skipped" with the reason.
LEVERS=default,+fused_adamw,+varlen,+no_sync,+prefetch,+cuda_graphs,levers
if [ "$DRY" = 1 ]; then TRAIN_CONFIGS=upstream,$LEVERS,levers-no-graphs; else TRAIN_CONFIGS=hf-upstream,$LEVERS,levers+compile; fi
timeout 200 $PY perf/lincir_train_speed.py --device "$DEVICE" --backbone "$TRAIN_BACKBONE" --batch "$BATCH" \
    --precision "$([ "$DRY" = 1 ] && echo fp32 || echo fp16)" --pool 4 --steps "$STEPS" --warmup "$WARMUP" \
    --configs "${CONFIGS:-$TRAIN_CONFIGS}" --peak-tflops "$PEAK" --json "$OUT/lincir_mfu.json" 2>&1 | tee "$OUT/lincir.log"

# 4) torchrun evaluation over 2 GPUs (NCCL) against one process; gloo on CPU in the rehearsal.
if [ "$GPUS" -ge 2 ] || [ "$DRY" = 1 ]; then
    timeout 150 $PY perf/distributed_eval.py --backbone "$([ "$DRY" = 1 ] && echo cirbench-tiny:random || echo "$BACKBONE")" \
        --renders 1 --queries 40 --nproc 2 --device "$DEVICE" 2>&1 | tee "$OUT/distributed.log"
else
    echo "one GPU: torchrun over 2 GPUs skipped" | tee "$OUT/distributed.log"
fi

rm -rf "$WORK"
echo "total $(( $(date +%s) - start )) s" | tee -a "$OUT/gpu.txt"
