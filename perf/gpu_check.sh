#!/usr/bin/env bash
# One GPU check for the evaluation at scale and LinCIR's training levers, under 8 minutes on one H100/H200
# (docs/PERFORMANCE.md, "Still to measure on a GPU"). Every step has its own timeout and writes under $OUT.
#
# 1. JPEG decoding on the GPU (nvJPEG via torchvision.io.decode_jpeg, batched) against cirbench's CPU path (PIL in
#    8 DataLoader workers), ViT-L-14 random init, 1,024 640x480 JPEGs of two kinds: images/s, and every image's
#    features within cosine 0.99 of the CPU path's (perf/gpu_decode_check.py).
# 2. Gallery encoding through cirbench against the bare model forward (perf/gallery_encoding.py).
# 3. LinCIR training MFU per lever: the official recipe's step, cirbench's default (packing + target cache) with
#    and without torch.compile (perf/lincir_train_speed.py, MFU against PEAK_TFLOPS).
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
    DECODE=(--dry-run) GPUS=0
else
    DEVICE=cuda BACKBONE=${BACKBONE:-ViT-L-14:random} TRAIN_BACKBONE=$BACKBONE BATCH=512 STEPS=10 WARMUP=3 IMAGES=1024
    DECODE=(--backbone "$BACKBONE" --images "$IMAGES" --batch-size 256 --workers 8)
    GPUS=$(nvidia-smi -L 2>/dev/null | grep -c GPU)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/gpu.txt"
fi
$PY -c "import sys, torch, torchvision, open_clip; print('python', sys.version.split()[0], 'torch', torch.__version__,
      'torchvision', torchvision.__version__, 'open_clip', open_clip.__version__)" | tee -a "$OUT/gpu.txt"

# 1) GPU JPEG decoding against the CPU path, with the feature check (about 2 minutes).
timeout 180 $PY perf/gpu_decode_check.py "${DECODE[@]}" --json "$OUT/decode.json" 2>&1 | tee "$OUT/decode.log"

# 2) Gallery encoding against the bare forward (about 1 minute).
timeout 90 $PY perf/gallery_encoding.py --backbone "$BACKBONE" --device "$DEVICE" \
    --batch-size "$(( BATCH >= 256 ? 256 : BATCH ))" --images "$IMAGES" --workers "$(( DRY == 1 ? 0 : 8 ))" 2>&1 \
    | tail -3 | tee "$OUT/gallery.log"

# 3) LinCIR training MFU per lever (about 3 minutes, most of it compilation).
timeout 200 $PY perf/lincir_train_speed.py --device "$DEVICE" --backbone "$TRAIN_BACKBONE" --batch "$BATCH" \
    --precision "$([ "$DRY" = 1 ] && echo fp32 || echo fp16)" --pool 4 --steps "$STEPS" --warmup "$WARMUP" \
    --configs "${CONFIGS:-$([ "$DRY" = 1 ] && echo upstream,all-pack || echo hf-upstream,upstream,all-pack,all-pack+compile)}" \
    --peak-tflops "$PEAK" --json "$OUT/lincir_mfu.json" 2>&1 | tee "$OUT/lincir.log"

# 4) torchrun evaluation over 2 GPUs (NCCL) against one process; gloo on CPU in the rehearsal.
if [ "$GPUS" -ge 2 ] || [ "$DRY" = 1 ]; then
    timeout 150 $PY perf/distributed_eval.py --backbone "$([ "$DRY" = 1 ] && echo cirbench-tiny:random || echo "$BACKBONE")" \
        --renders 1 --queries 40 --nproc 2 --device "$DEVICE" 2>&1 | tee "$OUT/distributed.log"
else
    echo "one GPU: torchrun over 2 GPUs skipped" | tee "$OUT/distributed.log"
fi

rm -rf "$WORK"
echo "total $(( $(date +%s) - start )) s" | tee -a "$OUT/gpu.txt"
