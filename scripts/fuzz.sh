#!/usr/bin/env bash
# The sanitizer build and the fuzz targets (docs/reliability.md):
#
#   scripts/fuzz.sh [RUNS]
#
# configures build-san/ (clang-22; ASan + UBSan, any report fatal;
# libFuzzer's coverage; the runtime, veomni-run, its tests and the fuzz
# targets of test/fuzz), builds it, runs the runtime's unit tests and six
# training jobs under the sanitizers, then each fuzz target for RUNS
# executions (default 20000,
# the CI smoke run; docs/reliability.md records the 1M-run counts) over a
# corpus seeded from the shipped examples, and from programs, datasets and
# job manifests the veomni tool of build/ makes when it is there. Ends, as
# scripts/test.sh does, with "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-20000}
SAN_DIR=${VEOMNI_SAN_DIR:-build-san}
TOOL=${VEOMNI_BUILD_DIR:-build}/bin/veomni


if ! command -v clang++-22 > /dev/null; then
  echo "fuzz: clang++-22 is missing (scripts/setup.sh installs it)"
  echo "0 passed, 1 failed, 0 skipped"
  exit 1
fi
if [ ! -f "$SAN_DIR/build.ninja" ]; then
  cmake -S . -B "$SAN_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_COMPILER=clang-22 -DCMAKE_CXX_COMPILER=clang++-22 \
    -DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache \
    -DVEOMNI_RUNTIME_ONLY=ON -DVEOMNI_ENABLE_CUDA=OFF \
    -DVEOMNI_SANITIZE=address,undefined -DVEOMNI_FUZZ=ON > /dev/null ||
    { echo "fuzz: configure failed"; echo "0 passed, 1 failed, 0 skipped"; exit 1; }
fi
start=$(date +%s)
if ! cmake --build "$SAN_DIR" -j "${VEOMNI_JOBS:-2}"; then
  echo "fuzz: the sanitizer build failed"
  echo "0 passed, 1 failed, 0 skipped"
  exit 1
fi
echo "fuzz: sanitizer build took $(($(date +%s) - start)) s"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
passed=0 failed=0 skipped=0

# The runtime's unit tests under the sanitizers (the MPI collectives test
# is left to the plain build: Open MPI's own allocations are not ours).
log=$(mktemp)
trap 'rm -f "$log"' EXIT
ctest --test-dir "$SAN_DIR" -j "${VEOMNI_JOBS:-2}" -E 'MpiCommunicator' \
  --output-on-failure 2>&1 | tee "$log" | tail -n 5
total=$(sed -n 's/.*tests failed out of \([0-9][0-9]*\).*/\1/p' "$log" | tail -n 1)
bad=$(sed -n 's/.*, \([0-9][0-9]*\) tests failed out of.*/\1/p' "$log" | tail -n 1)
skip=$(grep -c '(Skipped)' "$log" || true)
if [ -z "$total" ]; then
  echo "fuzz: ctest ran no test"
  total=1 bad=1
fi
passed=$((passed + total - bad - skip))
failed=$((failed + bad))
skipped=$((skipped + skip))

# Training jobs under the sanitizers: compiled by the plain build's veomni,
# trained by the sanitizer build's veomni-run (the runtime: data loading,
# the step, checkpoints, resume, the non-finite probe, several ranks).
# Leaks are not checked where Open MPI runs (its allocations are not ours).
job_test() { # job_test NAME COMMAND...: one counted test
  local name=$1
  shift
  if out=$("$@" 2>&1); then
    echo "fuzz: job $name passed"
    passed=$((passed + 1))
  else
    echo "$out" | tail -n 30
    echo "fuzz: job $name FAILED"
    failed=$((failed + 1))
  fi
}
if [ -x "$TOOL" ]; then
  jobs=$SAN_DIR/jobs
  rm -rf "$jobs" && mkdir -p "$jobs"
  RUN=$(cd "$SAN_DIR" && pwd)/bin/veomni-run
  "$TOOL" data pack examples/data/corpus.txt -o "$jobs/corpus.vtd" > /dev/null
  "$TOOL" compile examples/recipes/tiny_llama.yaml --data.path "$jobs/corpus.vtd" \
    --train.steps 4 --train.warmup_steps 0 --train.checkpoint_interval 2 \
    --train.output_dir "$jobs/llama-out" -o "$jobs/llama" > /dev/null
  job_test "llama (text, checkpoints)" "$RUN" "$jobs/llama"
  job_test "llama resumed" "$RUN" "$jobs/llama" \
    --train.resume "$jobs/llama-out/checkpoint-2"
  mm=test/goldens/multimodal # a PNG, a JPEG, an MP4 and a WAV
  "$TOOL" compile examples/recipes/tiny_omni.yaml --model.config $mm/omni.json \
    --model.weights $mm/omni.safetensors --data.path $mm/samples.jsonl \
    --data.tokenizer $mm/tokenizer.json --data.seq_len 128 --data.batch_size 2 \
    --data.image_patches 128 --data.audio_frames 48 --data.min_pixels 64 \
    --data.max_pixels 1024 --data.video_min_pixels 64 --data.video_max_pixels 1024 \
    --train.steps 2 --train.warmup_steps 0 --train.output_dir "$jobs/omni-out" \
    -o "$jobs/omni" > /dev/null
  job_test "omni (JSONL, images and audio)" "$RUN" "$jobs/omni"
  "$TOOL" compile examples/recipes/tiny_omni_moe.yaml --train.steps 2 --train.warmup_steps 0 \
    --train.output_dir "$jobs/moe-out" -o "$jobs/moe" > /dev/null
  job_test "omni MoE" "$RUN" "$jobs/moe"
  "$TOOL" compile examples/recipes/tiny_llama.yaml --data.path '' --train.steps 3 \
    --train.warmup_steps 0 --train.lr 1e30 --train.max_grad_norm 0 \
    --train.on_nonfinite skip --train.output_dir "$jobs/nan-out" -o "$jobs/nan" > /dev/null
  job_test "non-finite steps skipped and probed" "$RUN" "$jobs/nan"
  "$TOOL" compile examples/recipes/tiny_llama.yaml --parallel.tp 2 --parallel.dp_shard 2 \
    --data.path '' --train.steps 2 --train.warmup_steps 0 \
    --train.output_dir "$jobs/ranks-out" -o "$jobs/ranks" > /dev/null
  job_test "4 ranks (tp 2 x dp_shard 2)" env ASAN_OPTIONS="${ASAN_OPTIONS/detect_leaks=1/detect_leaks=0}" "$RUN" "$jobs/ranks"
fi

# Seeds: test/fuzz/corpus (seeds and the crashers fuzzing found), the
# shipped examples, and what the veomni tool makes of them.
corpus=$SAN_DIR/corpus
mkdir -p "$corpus"/{program,safetensors,tokens,tokenizer,jsonl,job,media} \
  "$SAN_DIR/crashes"
for name in program safetensors tokens tokenizer jsonl job media; do
  cp test/fuzz/corpus/$name/* "$corpus/$name/"
done
find test/goldens examples -name '*.safetensors' -size -512k |
  head -n 40 | while read -r f; do
    cp "$f" "$corpus/safetensors/$(echo "$f" | tr / _)"
  done
find test/goldens examples -name tokenizer.json | while read -r f; do
  cp "$f" "$corpus/tokenizer/$(echo "$f" | tr / _)"
done
find test/goldens examples -name '*.jsonl' | while read -r f; do
  n=0
  head -n 20 "$f" | while IFS= read -r line; do
    n=$((n + 1))
    printf '%s' "$line" > "$corpus/jsonl/$(echo "$f" | tr / _).$n"
  done
done
if [ -x "$TOOL" ]; then # programs of today's compiler
  "$TOOL" compile test/goldens/llama/config.json -o "$corpus/program/llama-now.vmb" > /dev/null
  "$TOOL" compile examples/tiny/qwen3_moe.json -o "$corpus/program/moe-now.vmb" > /dev/null
fi

for name in program safetensors tokens tokenizer jsonl job media; do
  bin=$SAN_DIR/test/fuzz/veomni-fuzz-$name
  out=$("$bin" -runs="$RUNS" -timeout=20 -rss_limit_mb=3072 -max_len=1048576 \
    -artifact_prefix="$SAN_DIR/crashes/$name-" -print_final_stats=1 \
    "$corpus/$name" 2>&1)
  rc=$?
  execs=$(echo "$out" | sed -n 's/^stat::number_of_executed_units: *//p')
  cov=$(echo "$out" | grep -o 'cov: [0-9]*' | tail -n 1)
  if [ $rc = 0 ]; then
    echo "fuzz: $name: ${execs:-?} runs, $cov, no crash, leak or sanitizer report"
    passed=$((passed + 1))
  else
    echo "$out" | tail -n 40
    echo "fuzz: $name FAILED (exit $rc); the input is in $SAN_DIR/crashes/"
    failed=$((failed + 1))
  fi
done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
