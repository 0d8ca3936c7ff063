#!/usr/bin/env bash
# The sanitizer build and the fuzz targets (docs/reliability.md):
#
#   scripts/fuzz.sh [RUNS]
#
# configures build-san/ with clang-22 (ASan + UBSan on every target, any
# report fatal; libFuzzer's coverage), builds veomni, veomni-run, the
# runtime's unit tests and the fuzz targets of test/fuzz in it, and runs
# under the sanitizers: the runtime's unit tests; the e2e lit tests listed
# in SAN_LIT below; six training jobs compiled by the sanitized veomni and
# trained by the sanitized veomni-run; then each fuzz target for RUNS
# executions (default 20000, at most 30 s each: the CI smoke run;
# docs/reliability.md records the long runs) over a corpus seeded from
# test/fuzz/corpus and the shipped examples. Ends, as scripts/test.sh
# does, with "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-20000}
SAN_DIR=${VEOMNI_SAN_DIR:-build-san}
FUZZERS=(program safetensors tokens tokenizer jsonl job media config recipe mlir)
# The e2e tests that run under the sanitizers: training, checkpoints and
# faults, LoRA, jobs, JSONL with media, the families' imports; the rest
# (parity goldens, many-rank plans, benchmarks' shapes) run in the plain
# build only, for time.
SAN_LIT=(e2e/train.test e2e/reliability.test e2e/train-omni-jsonl.test
  e2e/bad-programs.test e2e/data.test e2e/run.test Frontends)
# These start ranks under Open MPI, whose allocations outlive a rank and
# whose stacks ASan cannot unwind: leaks are not checked in them.
SAN_LIT_MPI=(e2e/lora.test e2e/jobs.test e2e/train-jsonl.test)

fail() {
  echo "fuzz: $1"
  echo "0 passed, 1 failed, 0 skipped"
  exit 1
}
command -v clang++-22 > /dev/null ||
  fail "clang++-22 is missing (scripts/setup.sh installs it)"
if [ ! -f "$SAN_DIR/build.ninja" ]; then
  cmake -S . -B "$SAN_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_COMPILER=clang-22 -DCMAKE_CXX_COMPILER=clang++-22 \
    -DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache \
    -DVEOMNI_ENABLE_CUDA=OFF -DVEOMNI_SANITIZE=address,undefined \
    -DVEOMNI_FUZZ=ON -DMLIR_DIR=/usr/lib/llvm-22/lib/cmake/mlir \
    -DLLVM_EXTERNAL_LIT=/usr/lib/llvm-22/bin/lit \
    -DMLIR_LINK_MLIR_DYLIB=ON > /dev/null || fail "configure failed"
fi
start=$(date +%s)
targets=(veomni veomni-opt veomni-run veomni-runtime-tests)
for name in "${FUZZERS[@]}"; do
  targets+=("veomni-fuzz-$name")
done
cmake --build "$SAN_DIR" -j "${VEOMNI_JOBS:-2}" --target "${targets[@]}" ||
  fail "the sanitizer build failed"
echo "fuzz: sanitizer build took $(($(date +%s) - start)) s"

# allow_user_poisoning=0: LLVM's bump allocator poisons its slabs in our
# instrumented code and the uninstrumented libMLIR fills them.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allow_user_poisoning=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
passed=0 failed=0 skipped=0
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

# record RC PASSED FAILED OUTPUT: one counted test, by its exit status;
# a failure shows the end of its output.
record() {
  if [ "$1" = 0 ]; then
    echo "fuzz: $2"
    passed=$((passed + 1))
  else
    echo "$4" | tail -n 40
    echo "fuzz: $3"
    failed=$((failed + 1))
  fi
}

# The runtime's unit tests.
"$SAN_DIR/test/unit/runtime/veomni-runtime-tests" > "$log/unit.txt" 2>&1
rc=$?
ran=$(sed -n 's/^\[==========\] \([0-9]*\) tests from .* ran\..*/\1/p' "$log/unit.txt")
bad=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) tests\{0,1\}, listed below:.*/\1/p' "$log/unit.txt")
if [ -z "$ran" ] || { [ "$rc" != 0 ] && [ -z "$bad" ]; }; then
  tail -n 40 "$log/unit.txt"
  echo "fuzz: the runtime's unit tests did not finish (exit $rc)"
  failed=$((failed + 1))
else
  echo "fuzz: runtime unit tests: $((ran - ${bad:-0})) passed, ${bad:-0} failed"
  passed=$((passed + ran - ${bad:-0}))
  failed=$((failed + ${bad:-0}))
  [ -n "$bad" ] && grep '^\[  FAILED  \]' "$log/unit.txt"
fi

# The e2e lit tests of SAN_LIT and SAN_LIT_MPI, with the sanitized tools.
run_lit() { # run_lit LEAKS TEST...: LEAKS 0 or 1
  local leaks=$1 args=() lp lf n label
  shift
  for t in "$@"; do
    args+=("$SAN_DIR/test/$t")
  done
  ASAN_OPTIONS=${ASAN_OPTIONS/detect_leaks=1/detect_leaks=$leaks} \
    /usr/lib/llvm-22/bin/lit -s "${args[@]}" > "$log/lit.txt" 2>&1
  count() { sed -n "s/^ *$1 *: *\([0-9][0-9]*\).*/\1/p" "$log/lit.txt" | head -n 1; }
  lp=$(count Passed) lf=0
  for label in Failed Unresolved "Timed Out"; do
    n=$(count "$label")
    lf=$((lf + ${n:-0}))
  done
  if [ -z "$lp" ] && [ "$lf" = 0 ]; then
    echo "fuzz: lit ran no test"
    lf=1
  fi
  [ "$lf" != 0 ] && grep -v '^PASS' "$log/lit.txt" | tail -n 60
  echo "fuzz: e2e under the sanitizers (leaks checked: $leaks): ${lp:-0} passed, $lf failed"
  passed=$((passed + ${lp:-0}))
  failed=$((failed + lf))
}
run_lit 1 "${SAN_LIT[@]}"
run_lit 0 "${SAN_LIT_MPI[@]}"

# Training jobs: the runtime's loop, checkpoints, resume, JSONL and media,
# the non-finite probe and several ranks (leaks are not checked where
# Open MPI runs: its allocations are not ours).
job_test() { # job_test NAME COMMAND...
  local name=$1 out rc
  shift
  out=$("$@" 2>&1)
  rc=$?
  record $rc "job $name passed" "job $name FAILED" "$out"
}
TOOL=$SAN_DIR/bin/veomni
RUN=$(cd "$SAN_DIR" && pwd)/bin/veomni-run
jobs=$SAN_DIR/jobs
rm -rf "$jobs" && mkdir -p "$jobs"
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
job_test "4 ranks (tp 2 x dp_shard 2)" \
  env ASAN_OPTIONS="${ASAN_OPTIONS/detect_leaks=1/detect_leaks=0}" "$RUN" "$jobs/ranks"

# Seeds: test/fuzz/corpus (seeds and the crashers fuzzing found), the
# shipped examples, and programs of today's compiler.
corpus=$SAN_DIR/corpus
mkdir -p "$SAN_DIR/crashes"
for name in "${FUZZERS[@]}"; do
  mkdir -p "$corpus/$name"
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
cp examples/tiny/*.json "$corpus/config/"
find test/goldens -name config.json | while read -r f; do
  cp "$f" "$corpus/config/$(echo "$f" | tr / _)"
done
cp examples/recipes/*.yaml "$corpus/recipe/"
cp examples/decoder_layer.mlir test/Passes/*.mlir "$corpus/mlir/"
"$TOOL" compile test/goldens/llama/config.json -o "$corpus/program/llama-now.vmb" > /dev/null
"$TOOL" compile examples/tiny/qwen3_moe.json -o "$corpus/program/moe-now.vmb" > /dev/null

for name in "${FUZZERS[@]}"; do
  bin=$SAN_DIR/test/fuzz/veomni-fuzz-$name
  out=$("$bin" -runs="$RUNS" -max_total_time=30 -timeout=20 -rss_limit_mb=3072 \
    -max_len=1048576 -artifact_prefix="$SAN_DIR/crashes/$name-" \
    -print_final_stats=1 "$corpus/$name" 2>&1)
  rc=$?
  execs=$(echo "$out" | sed -n 's/^stat::number_of_executed_units: *//p')
  cov=$(echo "$out" | grep -o 'cov: [0-9]*' | tail -n 1)
  record $rc "$name: ${execs:-?} runs, $cov, no crash, leak or sanitizer report" \
    "$name FAILED (exit $rc); the input is in $SAN_DIR/crashes/" "$out"
done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
