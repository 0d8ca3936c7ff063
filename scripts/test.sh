#!/usr/bin/env bash
# Installs what is missing, builds what changed, runs every test (the lit
# suite, check-veomni, and the GoogleTests through ctest) and ends with one
# line: "N passed, N failed, N skipped". Exits non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${VEOMNI_BUILD_DIR:-build}
export VEOMNI_BUILD_DIR=$BUILD_DIR
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

if ! scripts/setup.sh; then
  echo "test: setup failed"
  echo "0 passed, 1 failed"
  exit 1
fi

start=$(date +%s)
if ! cmake --build "$BUILD_DIR" -j "${VEOMNI_JOBS:-2}"; then
  echo "test: build failed"
  echo "0 passed, 1 failed"
  exit 1
fi
echo "test: build took $(($(date +%s) - start)) s"

# lit: its summary has "Passed: N", "Failed: N", "Unsupported: N", ...
cmake --build "$BUILD_DIR" --target check-veomni 2>&1 | tee "$log/lit.txt"
count() { # count FILE LABEL: the number after "LABEL:" in a lit summary
  sed -n "s/^ *$2 *: *\([0-9][0-9]*\).*/\1/p" "$1" | head -n 1
}
lit_pass=$(count "$log/lit.txt" "Passed")
lit_fail=0
for label in "Failed" "Unresolved" "Timed Out" "Unexpectedly Passed"; do
  n=$(count "$log/lit.txt" "$label")
  lit_fail=$((lit_fail + ${n:-0}))
done
lit_skip=$(count "$log/lit.txt" "Unsupported")
lit_pass=${lit_pass:-0}
lit_skip=${lit_skip:-0}
if [ "$lit_pass" = 0 ] && [ "$lit_fail" = 0 ]; then
  echo "test: lit ran no test"
  lit_fail=1
fi

# GoogleTest through ctest: "N% tests passed, F tests failed out of T", and
# skipped tests listed with "(Skipped)".
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "${VEOMNI_JOBS:-2}" \
  2>&1 | tee "$log/ctest.txt"
total=$(sed -n 's/.*tests failed out of \([0-9][0-9]*\).*/\1/p' "$log/ctest.txt" | tail -n 1)
gt_fail=$(sed -n 's/.*, \([0-9][0-9]*\) tests failed out of.*/\1/p' "$log/ctest.txt" | tail -n 1)
gt_skip=$(grep -c '(Skipped)' "$log/ctest.txt" || true)
if [ -z "$total" ]; then
  echo "test: ctest ran no test"
  total=0 gt_fail=1
fi
gt_pass=$((total - gt_fail - gt_skip))

passed=$((lit_pass + gt_pass))
failed=$((lit_fail + gt_fail))
skipped=$((lit_skip + gt_skip))
echo "test: lit $lit_pass passed, $lit_fail failed, $lit_skip skipped;" \
  "googletest $gt_pass passed, $gt_fail failed, $gt_skip skipped"

# The sanitizer build (ASan + UBSan) of the runtime: its unit tests, and a
# smoke run of every runtime fuzz target (scripts/fuzz.sh; the compiler's
# targets replay their corpora in ctest above). VEOMNI_SANITIZE=0 skips it.
if [ "${VEOMNI_SANITIZE:-1}" != 0 ]; then
  scripts/fuzz.sh "${VEOMNI_FUZZ_RUNS:-20000}" 2>&1 | tee "$log/fuzz.txt"
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log/fuzz.txt" | tail -n 1)
  if [ -z "$line" ]; then
    echo "test: the sanitizer run gave no count"
    failed=$((failed + 1))
  else
    read -r fp _ ff _ fs _ <<< "$(echo "$line" | tr -d ',')"
    echo "test: sanitizers and fuzzing $fp passed, $ff failed, $fs skipped"
    passed=$((passed + fp))
    failed=$((failed + ff))
    skipped=$((skipped + fs))
  fi
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
