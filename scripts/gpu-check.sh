#!/usr/bin/env bash
# gpu-check.sh -- the GPU path, run for real on a GPU machine in <= 5 minutes, recorded in docs/results/gpu/.
#
#   bash scripts/gpu-check.sh --plan    any machine: fetch the carried wheels into .whl/ if missing (needs PyPI),
#                                       list them with sizes (the device tool carries <= 64 MiB) and the steps
#   bash scripts/gpu-check.sh           the GPU machine (no internet): install .whl/ into /tmp/site, run every
#                                       step, write docs/results/gpu/ (and $OUT/gpu when OUT is set)
#   bash scripts/gpu-check.sh --quick   the same, steps 1-4 only (about a minute)
#
# Made for a machine with Python 3.12, torch (CUDA), transformers 5.17, peft, accelerate, pytest, pandas,
# pyarrow, scipy, matplotlib, rich, psutil and nothing else (../shared/notes/gpu-stack.md); the rest
# travels as wheels built here for Python 3.12. On the device tool:
#   echo /.whl/ >> .git/info/exclude; echo /.gpu-cache/ >> .git/info/exclude; bash scripts/gpu-check.sh --plan
#   run(command="bash scripts/gpu-check.sh", carry=[".whl", ".gpu-cache"], timeout_s=420)
# .gpu-cache/ carries the embedded default tiny model (4.4 MB; building it there would take minutes).
# Steps (each writes its figures; a failing step is recorded and the next one runs):
#   1 versions and the GPU            4 one DPO round on the tiny model (bf16, cuda)
#   2 the GPU tests (requires_gpu)    5 3-step bf16 LoRA GRPO on random-weight Qwen2.5-0.5B and -1.5B shapes
#   3 3-step bf16 LoRA GRPO, tiny     6 peak VRAM of the paper preset's micro-batch (1.5B, 3,072 tokens):
#                                       the largest that fits (an out-of-memory error is expected at 32)
# Unsloth (31.5 MiB) with bitsandbytes (41.1 MiB) does not fit in the 64 MiB beside the rest, so its
# import-order check runs with the stand-in module of tests/test_gpu_backends_contract.py only.
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=.whl
CACHE=.gpu-cache
LIMIT_MIB=64
RESULTS=docs/results/gpu
# Python 3.12 wheels of what the GPU machine lacks; versions as constraints/unsloth.txt where it pins them
# (trl 1.15 runs on the machine's transformers 5.17; 1.16 wants newer).
CARRY=(
  trl==1.15.0 datasets==4.8.5 dill==0.4.0 multiprocess==0.70.18
  hydra-core==1.3.8 omegaconf==2.3.1 antlr4-python3-runtime==4.9.3
  math-verify==0.9.0 latex2sympy2_extended==1.11.0
  submitit==1.5.4 hydra-submitit-launcher==1.2.0 gguf==0.19.0 tabulate==0.10.0
)
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
           --platform any)
QUICK=0
case "${1:-}" in
  --plan) PLAN=1 ;;
  --quick) PLAN=0; QUICK=1 ;;
  "") PLAN=0 ;;
  *) echo "usage: bash scripts/gpu-check.sh [--plan|--quick]" >&2; exit 2 ;;
esac

fetch_wheels() {
  mkdir -p "$WHEELS"
  for req in "${CARRY[@]}"; do
    name="${req%%==*}"; stem="$(echo "$name" | tr '-' '_')"
    ls "$WHEELS"/"$stem"-*.whl "$WHEELS"/"$name"-*.whl >/dev/null 2>&1 && continue
    if [ "$name" = antlr4-python3-runtime ]; then  # an sdist only: build the (pure-Python) wheel here
      python3 -m pip wheel -q --no-deps -w "$WHEELS" "$req" || return 1
    else
      python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation py \
        "${PLATFORMS[@]}" -d "$WHEELS" "$req" 2>/dev/null \
      || python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        "${PLATFORMS[@]}" -d "$WHEELS" "$req" || return 1
    fi
  done
}

if [ "$PLAN" = 1 ]; then
  ls "$WHEELS"/*.whl >/dev/null 2>&1 || echo "fetching the wheels into $WHEELS/ (PyPI)"
  fetch_wheels || { echo "gpu-check: could not fetch every wheel (is PyPI reachable?)" >&2; exit 1; }
  if ! ls "$CACHE"/tiny/*/model.safetensors >/dev/null 2>&1; then  # the default tiny model, from the user's cache
    tiny=$(python3 -m mathreason.prebuild 2>/dev/null | tail -n 1) && mkdir -p "$CACHE/tiny" && cp -r "$tiny" "$CACHE/tiny/" \
      || { echo "gpu-check: could not build the tiny model (python -m mathreason.prebuild)" >&2; exit 1; }
  fi
  echo "carried ($WHEELS/ for Python 3.12, $CACHE/):"
  total=0
  for item in "$WHEELS"/*.whl "$CACHE"; do
    size=$(du -sb "$item" | cut -f1); total=$((total + size))
    awk -v s="$size" -v n="$item" 'BEGIN { printf "  %8.2f MiB  %s\n", s / 1048576, n }'
  done
  mib=$(awk -v t="$total" 'BEGIN { printf "%.2f", t / 1048576 }')
  printf "  %8s MiB  in all (limit %d MiB)\n" "$mib" "$LIMIT_MIB"
  echo "runs there, in <= 5 minutes (--quick: steps 1-4):"
  sed -n 's/^#   \([1-6] .*\)/  \1/p' "$0"
  echo "writes $RESULTS/: versions.json, steps.jsonl (one line per step: name, status, seconds, figures), gpu-check.log"
  awk -v m="$mib" -v l="$LIMIT_MIB" 'BEGIN { exit !(m <= l) }' || { echo "gpu-check: over $LIMIT_MIB MiB" >&2; exit 1; }
  exit 0
fi

# ---- on the GPU machine ----
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  "$WHEELS"/*.whl || { echo "gpu-check: installing $WHEELS/ failed" >&2; exit 1; }
export PYTHONPATH="/tmp/site:$PWD" HF_HUB_OFFLINE=1 WANDB_MODE=disabled MATHREASON_CACHE_DIR="$PWD/$CACHE"
mkdir -p "$RESULTS"
STEPS="$RESULTS/steps.jsonl"; LOG="$RESULTS/gpu-check.log"
: > "$STEPS"; : > "$LOG"
BEGIN=$(date +%s)

step() {  # step NAME COMMAND...: run it, record status, seconds and the JSON its last output line holds, if any
  local name="$1"; shift
  local t0; t0=$(date +%s%N)
  echo "== $name: $*" >> "$LOG"
  out=$("$@" 2>>"$LOG"); rc=$?
  echo "$out" >> "$LOG"
  local secs; secs=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
  local figures; figures=$(echo "$out" | tail -n 1 | python3 -c 'import json,sys; print(json.dumps(json.loads(sys.stdin.read())))' 2>/dev/null || echo null)
  printf '{"step": "%s", "status": "%s", "seconds": %.1f, "figures": %s}\n' \
    "$name" "$([ $rc = 0 ] && echo ok || echo "failed (exit $rc)")" "$secs" "$figures" >> "$STEPS"
  echo "gpu-check: $name $([ $rc = 0 ] && echo ok || echo FAILED) ($(printf %.0f "$secs") s)"
}

RUN=(python3 -m mathreason.run logger=none device=cuda model.dtype=bfloat16)
TINY_GRPO=(method=grpo group_size=2 geometry.rollouts_per_step=16 geometry.max_steps=3 data.n_train=16
           eval.max_samples=32 checkpoint.every_n_steps=0)
export MATHREASON_SUMMARY_JSON=1  # a run prints its summary as JSON on its last line

python3 benchmarks/gpu_shapes.py versions > "$RESULTS/versions.json" 2>> "$LOG"
step versions cat "$RESULTS/versions.json"
step gpu-tests python3 -m pytest -q -p no:cacheprovider tests/test_gpu_backends_contract.py tests/test_launch_checks.py
step grpo-tiny-lora "${RUN[@]}" "${TINY_GRPO[@]}" model.lora.enabled=true hydra.run.dir=/tmp/gc/grpo-tiny
step dpo-tiny "${RUN[@]}" method=dpo dpo.rounds=1 dpo.mining.max_questions=16 data.n_train=16 eval.max_samples=32 \
  hydra.run.dir=/tmp/gc/dpo-tiny
if [ "$QUICK" = 0 ]; then
  for shape in 0.5b 1.5b; do
    python3 benchmarks/gpu_shapes.py build "$shape" "/tmp/gc/qwen-$shape" >> "$LOG" 2>&1
    step "grpo-qwen-$shape-shape-lora" "${RUN[@]}" model="qwen2.5-$shape-instruct" model.id="/tmp/gc/qwen-$shape" \
      "${TINY_GRPO[@]}" hydra.run.dir="/tmp/gc/grpo-$shape"
  done
  step paper-microbatch-vram python3 benchmarks/gpu_shapes.py microbatch 1.5b --tokens 3072 --start 32
fi
echo "gpu-check: done in $(( $(date +%s) - BEGIN )) s; $RESULTS/"
if [ -n "${OUT:-}" ]; then mkdir -p "$OUT/gpu" && cp "$RESULTS"/* "$OUT/gpu/"; fi
