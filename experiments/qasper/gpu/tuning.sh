#!/bin/bash
# Seeds, learning rate, the best sharpness and lambda together, and the zero-shot check of the carried
# weights: all at once on one GPU. Usage from the repository root:
#   bash experiments/qasper/gpu/tuning.sh DEADLINE_SECONDS [overrides for every run...]
source "$(dirname "$0")/common.sh"
# Seeds, learning rate and the best two settings combined; the zero-shot check of the fp16-carried weights.
# bm25s imports JAX when present, and JAX takes 75% of the GPU at start unless told not to.
export XLA_PYTHON_CLIENT_PREALLOCATE=false JAX_PLATFORMS=cpu OMP_NUM_THREADS=2
RUN="python3 -m uae.run +experiment=qasper_minilm"
FIT="$RUN stages=[utility,fit,evaluate] evaluate.zero_shot=false train.validate=false reader=none $ARGS"
X=$R/extra
mkdir -p $X
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv -l 15 > "$OUT/gpu_util.csv" 2>/dev/null &
pids=()
( timed $RUN stages=[evaluate] reader=none model.encoder.local_path=/tmp/minilm retrieval.progress=false $EXTRA hydra.run.dir=$X/minilm ) > $X/minilm.log 2>&1 & pids+=($!)
for seed in 1 2; do for loss in uae infonce; do
  ( timed $FIT loss=$loss seed=$seed hydra.run.dir=$X/$loss-seed$seed ) > $X/$loss-seed$seed.log 2>&1 & pids+=($!)
done; done
for lr in 1.0e-5 5.0e-5; do
  ( timed $FIT loss=uae train.lr=$lr hydra.run.dir=$X/uae-lr$lr ) > $X/uae-lr$lr.log 2>&1 & pids+=($!)
done
( timed $FIT loss=uae loss.sharpness=0.1 loss.mix=0.5 hydra.run.dir=$X/uae-beta0.1-mix0.5 ) > $X/uae-beta0.1-mix0.5.log 2>&1 & pids+=($!)

wait_and_pack
tail -n 2 $X/*.log
