#!/bin/bash
# Shared by full_scale.sh, tuning.sh and label_free_full.sh (sourced): set up the lent GPU machine from the carried
# $DEV folder (.dev/ unless set; see README.md), then `wait_and_pack` polls the runs started in the background and keeps
# $OUT/results.tar.gz current (results, rankings, logs and summaries; no weights), until all runs end
# or DEADLINE seconds have passed, so that a run cut short still sends back what finished.
set -u
DEV=${DEV:-.dev}
DEADLINE=${1:-520}; shift || true
EXTRA="$*"
T0=$SECONDS
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
R=logs/results-gpu
export PYTHONPATH=/tmp/site:$PWD UAE_DATA_DIR=/tmp/qasper HF_HUB_OFFLINE=1 WANDB_MODE=offline
export TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=3 PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false JAX_PLATFORMS=cpu  # bm25s needs no GPU JAX
if ! python3 -c "import hydra, omegaconf, bm25s" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$DEV"/whl/*.whl || exit 1
fi
mkdir -p /tmp/qasper /tmp/minilm
for s in train dev; do [ -s /tmp/qasper/qasper-$s-v0.3.json ] || xz -dc "$DEV"/data/qasper-$s-v0.3.json.xz > /tmp/qasper/qasper-$s-v0.3.json; done
# The bundled MiniLM travels as fp16 (the transfer limit); training starts from it cast back to fp32.
cp -r "$DEV"/minilm/. /tmp/minilm/ && rm -f /tmp/minilm/model.fp16.safetensors
DEV="$DEV" python3 - <<'EOF' || exit 1
from safetensors.torch import load_file, save_file
import os
w = load_file(os.environ["DEV"] + "/minilm/model.fp16.safetensors")
save_file({k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in w.items()}, "/tmp/minilm/model.safetensors")
EOF
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; python3 -c "import torch, transformers, lightning; print(torch.__version__, transformers.__version__, lightning.__version__)"; } > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
echo "setup: $((SECONDS - T0)) s"

TABLE=$PWD/experiments/qasper/utilities/train.parquet
ARGS="trainer=gpu trainer.precision=32-true logger=csv stages=[fit,evaluate] utility.table=$TABLE model.encoder.local_path=/tmp/minilm retrieval.progress=false $EXTRA"
timed() { local t=$SECONDS; "$@"; local rc=$?; echo "| ${*: -1} | rc=$rc | $((SECONDS - t)) s |" >> $R/walltimes-gpu.md; return $rc; }
pack() {
  tar czf "$OUT/.results.tmp" --exclude='*.ckpt' --exclude='*.safetensors' --exclude=wandb --exclude=encoder \
    --exclude=checkpoints $R 2>/dev/null && mv "$OUT/.results.tmp" "$OUT/results.tar.gz"
}
wait_and_pack() {
  while [ $((SECONDS - T0)) -lt "$DEADLINE" ]; do
    alive=0; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 10
    n=$(find $R -name results.json | wc -l); echo "t=$((SECONDS - T0)) s: $n results.json"; pack
  done
  pack
  echo "done at $((SECONDS - T0)) s"; find $R -name results.json | sort
}
