#!/usr/bin/env bash
# LinCIR training on one GPU, prepared for a machine with a CUDA device (not run in the session that wrote it).
#
# Measures, with ViT-L-14 random init (same FLOPs as the OpenAI weights; nothing is downloaded), batch 512:
#   - samples/s of the upstream-equivalent step (fp16 towers, 77 positions, additive mask, targets recomputed)
#     and of each exact speedup, alone and together (bf16 towers, fp32 phi + loss);
#   - peak GPU memory, model FLOP utilisation (text-tower matmul FLOPs actually executed / PEAK_TFLOPS),
#   - the projected wall time of the paper run (20k steps x 512) on this one GPU;
#   - then a short real `cirbench train lincir` run (mask cache, DDP-free loop, checkpoints, train_meta.json).
# Total budget: under 8 minutes (each part has its own timeout).
#
#   bash perf/lincir_gpu_check.sh            # results in $OUT (default /tmp/lincir_gpu_check)
#   PEAK_TFLOPS=989 bash perf/lincir_gpu_check.sh   # H100/H200 SXM dense bf16 (default)
set -uo pipefail

OUT=${OUT:-/tmp/lincir_gpu_check}
PEAK=${PEAK_TFLOPS:-989}
mkdir -p "$OUT"
export CIRBENCH_CACHE=${CIRBENCH_CACHE:-$OUT/cache}
start=$(date +%s)

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python -c "import torch, open_clip; print('torch', torch.__version__, 'open_clip', open_clip.__version__)" | tee -a "$OUT/gpu.txt"

# 1) Throughput per configuration (about 4 minutes: model builds dominate; compile adds about 1-2 minutes).
timeout 300 python perf/lincir_train_speed.py \
    --device cuda --backbone ViT-L-14:random --batch 512 --precision bf16 --pool 4 \
    --configs upstream-fp16,upstream,+truncate,+buckets4,+sdpa,+target_cache,all-no-cache,all,all+compile \
    --steps 10 --warmup 3 --peak-tflops "$PEAK" --json "$OUT/lincir_gpu_speed.json" 2>&1 | tee "$OUT/speed.log"

# 2) The real loop end to end for 60 steps on a generated caption file (about 1-2 minutes).
python - <<'EOF' > "$OUT/captions.txt"
import random
random.seed(0)
subjects = ["a dog", "the cat", "a young woman", "an old man", "two children", "a red car", "a small bird"]
verbs = ["runs across", "sits on", "looks at", "stands near", "jumps over", "walks along"]
places = ["the park", "a sandy beach", "the kitchen floor", "a busy street", "the snowy mountain"]
styles = ["", ", digital art", ", highly detailed, 8k", ", oil painting, trending on artstation, octane render"]
for _ in range(40000):
    print(f"{random.choice(subjects)} {random.choice(verbs)} {random.choice(places)}{random.choice(styles)}")
EOF
timeout 150 python -m cirbench train lincir --backbone ViT-L-14:random --corpus "$OUT/captions.txt" \
    --out "$OUT/run" --steps 60 --global-batch 512 --checkpoint-every 30 --buckets 4 --spacy-processes 8 \
    --quiet 2>&1 | tail -5 | tee "$OUT/train.log"
[ -f "$OUT/run/train_meta.json" ] && python -c "
import json; m = json.load(open('$OUT/run/train_meta.json'))
keys = ('status', 'steps', 'wall_time_s', 'train_time_s', 'samples_per_s', 'peak_memory_bytes', 'device_name', 'precision')
print(json.dumps({k: m.get(k) for k in keys}))" | tee -a "$OUT/train.log"
rm -rf "$OUT/run/target_cache" "$OUT/cache"
echo "total $(( $(date +%s) - start )) s" | tee -a "$OUT/gpu.txt"
