#!/bin/bash
# Full-scale (all of train, all of dev) runs on one GPU, four streams at a time: the four losses, and
# the temperature, sharpness and lambda sweeps. Usage from the repository root:
#   bash experiments/qasper/gpu/full_scale.sh DEADLINE_SECONDS [overrides for every run...]
source "$(dirname "$0")/common.sh"
# What the Makefile's results-train and sweep-* targets run (SWEEP_SCALE=reader=none, ARGS=$ARGS),
# written out here so that the run does not depend on make being installed on that machine.
RUN="python3 -m uae.run +experiment=qasper_minilm"
SWEEP="$RUN stages=[utility,fit,evaluate] train.validate=false skip_done=true evaluate.zero_shot=false reader=none"
mkdir -p $R
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv -l 15 > "$OUT/gpu_util.csv" 2>/dev/null &
pids=()
( timed $RUN stages=[evaluate] reader=none model.encoder.local_path=/tmp/minilm retrieval.progress=false $EXTRA hydra.run.dir=$R/minilm
  for loss in uae infonce atlas_kl replug_lsr; do
    timed $RUN loss=$loss stages=[utility,fit,evaluate] evaluate.zero_shot=false train.validate=false reader=none $ARGS hydra.run.dir=$R/$loss
  done ) > $R/stream-1.log 2>&1 & pids+=($!)
( timed $SWEEP +sweep=sharpness $ARGS hydra.sweep.dir=$R/sweep-sharpness ) > $R/stream-2.log 2>&1 & pids+=($!)
( timed $SWEEP +sweep=mix $ARGS hydra.sweep.dir=$R/sweep-mix ) > $R/stream-3.log 2>&1 & pids+=($!)
( timed $SWEEP +sweep=temperature $ARGS hydra.sweep.dir=$R/sweep-temperature ) > $R/stream-4.log 2>&1 & pids+=($!)

wait_and_pack
tail -n 3 $R/stream-*.log
