#!/usr/bin/env bash
# YOLOv3-416 training throughput on one GPU: installs the GPU build of TensorFlow (unless NO_INSTALL=1), trains
# for a fixed number of steps through the real training code, and prints images/s and the GPU's utilisation and
# memory sampled by nvidia-smi. Budget: well under 8 minutes (install ~2-3 min, warm-up ~1 min, timed steps).
#
#   bench/gpu_train.sh [STEPS=60] [BATCH=16]
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-60}
BATCH=${2:-16}
OUT=${OUT:-/tmp/oidyolo-gpu-bench}
mkdir -p "$OUT"

command -v nvidia-smi >/dev/null || { echo "nvidia-smi not found: this script needs an NVIDIA GPU" >&2; exit 2; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

if [ "${NO_INSTALL:-0}" != 1 ]; then
  start=$(date +%s)
  python -m pip install -q -e ".[gpu]"
  echo "install: $(( $(date +%s) - start )) s"
fi
python -c "import tensorflow as tf; g = tf.config.list_physical_devices('GPU'); print('TensorFlow sees', g); assert g"

# Sample utilisation every 500 ms while training runs.
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -lms 500 > "$OUT/nvsmi.csv" &
SAMPLER=$!
trap 'kill $SAMPLER 2>/dev/null || true' EXIT

timeout 420 python bench/train_step_bench.py --variants full tiny --size 416 --batch "$BATCH" --steps "$STEPS" \
  --json "$OUT/train.json" --cache "$OUT/images"
kill $SAMPLER 2>/dev/null || true

python - "$OUT/nvsmi.csv" <<'PY'
import sys
rows = [line.split(",") for line in open(sys.argv[1]) if line.strip()]
util = [float(r[0]) for r in rows]
mem = [float(r[1]) for r in rows]
busy = [u for u in util if u > 0] or [0.0]
print(f"GPU utilisation: mean {sum(util) / len(util):.0f}% over {len(util)} samples "
      f"({sum(busy) / len(busy):.0f}% while busy), peak memory {max(mem):.0f} MiB")
PY
