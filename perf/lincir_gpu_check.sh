#!/usr/bin/env bash
# LinCIR training and gallery encoding on one GPU, in one run of under 8 minutes (docs/PERFORMANCE.md, GPU sections).
#
# 1. Training throughput, ViT-L-14 random init (same FLOPs as the OpenAI weights; nothing is downloaded), batch 512:
#    - `hf-upstream`: the official recipe's step on its own model class (transformers CLIPTextModelWithProjection,
#      eager attention, fp16 towers, 77 positions, targets recomputed, fp16 autocast + GradScaler); skipped with an
#      error line when transformers is not installed;
#    - `upstream`: the same work on cirbench's open_clip tower (fp16), then each exact speedup alone, then packing
#      with and without the target cache, each with and without torch.compile;
#    - samples/s, peak GPU memory, model FLOP utilisation (text-tower matmul FLOPs executed / PEAK_TFLOPS) and the
#      projected wall time of the paper run (20k steps x 512).
# 2. The real `cirbench train lincir` loop for 60 steps (checkpoints, train_meta.json) and for 600 steps with
#    --compile, then the 60-step run's first 20 steps under torchrun (1 process, NCCL), weights compared.
# 3. Gallery encoding of ViT-L-14 through cirbench against the bare forward.
#
#   bash perf/lincir_gpu_check.sh                   # results in $OUT (default /tmp/lincir_gpu_check)
#   MASKS=DIR bash perf/lincir_gpu_check.sh         # a mask cache prepared elsewhere: no spaCy/datasets needed here
#   PEAK_TFLOPS=989 PYTHON=python3 bash perf/lincir_gpu_check.sh   # H100/H200 SXM dense fp16/bf16 (default)
#
# The masks for MASKS come from:  python perf/synthetic_captions.py 40000 > captions.txt &&
#                                 cirbench lincir prepare --corpus captions.txt
set -uo pipefail

OUT=${OUT:-/tmp/lincir_gpu_check}
PEAK=${PEAK_TFLOPS:-989}
PY=${PYTHON:-python3}
# Rehearsal on a CPU: DEVICE=cpu BACKBONE=ViT-B-32:random BATCH=8 STEPS=1 WARMUP=1 bash perf/lincir_gpu_check.sh
DEVICE=${DEVICE:-cuda} BACKBONE=${BACKBONE:-ViT-L-14:random} BATCH=${BATCH:-512} STEPS=${STEPS:-10} WARMUP=${WARMUP:-3}
WORK=$(mktemp -d)
mkdir -p "$OUT"
export CIRBENCH_CACHE=$WORK/cache PYTHONUNBUFFERED=1
start=$(date +%s)

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/gpu.txt"
$PY -c "import sys, torch, open_clip; print('python', sys.version.split()[0], 'torch', torch.__version__,
      'open_clip', open_clip.__version__)" | tee -a "$OUT/gpu.txt"
$PY -c "import transformers; print('transformers', transformers.__version__)" 2>&1 | tail -1 | tee -a "$OUT/gpu.txt"

# 1) Throughput per configuration: about 2-3 minutes, most of it model builds and compilation.
timeout 270 $PY perf/lincir_train_speed.py \
    --device "$DEVICE" --backbone "$BACKBONE" --batch "$BATCH" --precision "${PRECISION:-fp16}" --pool 4 --steps "$STEPS" \
    --warmup "$WARMUP" \
    --configs "${CONFIGS:-hf-upstream,upstream,+truncate,+buckets4,+sdpa,+target_cache,+pack,all-pack-no-cache,all-pack,all-pack-no-cache+compile,all-pack+compile}" \
    --peak-tflops "$PEAK" --json "$OUT/lincir_gpu_speed.json" 2>&1 | tee "$OUT/speed.log"

# 2) The real loop: 60 steps on prepared masks (or masks built here when spaCy is installed).
if [ -z "${MASKS:-}" ]; then
    $PY perf/synthetic_captions.py 40000 > "$WORK/captions.txt"
    MASKS=$($PY -m cirbench lincir prepare --corpus "$WORK/captions.txt" --processes 8 | sed -n 's/.*--masks //p')
fi
common=(train lincir --backbone "$BACKBONE" --masks "$MASKS" --global-batch "$BATCH" --buckets 4 --device "$DEVICE" --quiet)
timeout 120 $PY -m cirbench "${common[@]}" --out "$WORK/run" --steps 60 --checkpoint-every 20 2>&1 \
    | tail -5 | tee "$OUT/train.log"
cp "$WORK/run/train_meta.json" "$OUT/train_meta.json" 2>/dev/null
timeout 100 $PY -m cirbench "${common[@]}" --out "$WORK/compiled" --steps 600 --checkpoint-every 1000 --compile 2>&1 \
    | tail -2 | tee -a "$OUT/train.log"   # compilation (~30 s on an H100) is inside its train time
timeout 90 $PY -m torch.distributed.run --standalone --nproc_per_node 1 -m cirbench "${common[@]}" \
    --out "$WORK/ddp" --steps 20 --checkpoint-every 20 2>&1 | tail -5 | tee "$OUT/ddp.log"
$PY - "$WORK" <<'EOF' 2>&1 | tee -a "$OUT/ddp.log"
import json, sys
from pathlib import Path
from safetensors.torch import load_file
work = Path(sys.argv[1])
meta = json.loads((work / "run" / "train_meta.json").read_text())
keys = ("status", "steps", "wall_time_s", "train_time_s", "samples_per_s", "peak_memory_bytes", "device_name",
        "precision")
print("plain run:", json.dumps({k: meta.get(k) for k in keys}))
a = load_file(str(work / "run" / "checkpoints" / "phi_000000020.safetensors"))
b = load_file(str(work / "ddp" / "phi_last.safetensors"))
diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
print(f"torchrun (1 process) vs plain, phi after 20 steps: max |diff| = {diff:.3g} ({'equal' if diff == 0 else 'differs'})")
EOF

# 3) Gallery encoding (fp32 towers, as upstream evaluates).
timeout 75 $PY perf/gallery_encoding.py --backbone "$BACKBONE" --device "$DEVICE" --batch-size 256 \
    --images "$(( BATCH >= 256 ? 1024 : 16 ))" --workers 8 2>&1 | tail -3 | tee "$OUT/gallery.log"
rm -rf "$WORK"
echo "total $(( $(date +%s) - start )) s" | tee -a "$OUT/gpu.txt"
