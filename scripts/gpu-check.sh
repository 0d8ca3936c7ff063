#!/usr/bin/env bash
# The one GPU check of issue 16, in two halves:
#
#   scripts/gpu-check.sh prepare   (here, with the Debian toolchain)
#     builds build-gpu/ (the runtime and its CUDA tests only: no MLIR, no
#     oneDNN, libstdc++ linked statically, sm_80 and sm_90), compiles the
#     tiny Llama's job with the main build's veomni, and puts the test
#     binary, the job and the shared libraries it needs (not glibc's, not
#     CUDA's) in gpu-bundle/, which must stay under 64 MiB.
#
#   scripts/gpu-check.sh run       (on the GPU machine: CUDA 13, no Debian
#     libraries) finds CUDA's libraries (the toolkit's, else PyTorch's
#     nvidia-* wheels), says which are missing, runs every CUDA test (each
#     kernel against the CPU backend, and 3 training steps of the tiny
#     Llama on both backends) and writes the results to $OUT (or
#     gpu-bundle/out/).
#
# With the device tool: run(command="scripts/gpu-check.sh run",
# carry=["gpu-bundle"]).
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=gpu-bundle

prepare() {
  local jobs=${VEOMNI_JOBS:-2}
  local launcher=()
  command -v ccache > /dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache
                                             -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DVEOMNI_RUNTIME_ONLY=ON -DVEOMNI_WITH_DNNL=OFF \
    -DCMAKE_CUDA_ARCHITECTURES="80;90" \
    -DCMAKE_EXE_LINKER_FLAGS="-static-libstdc++ -static-libgcc" \
    "${launcher[@]}" > /dev/null
  cmake --build build-gpu -j "$jobs" --target veomni-cuda-tests
  # The job comes from the main build's compiler.
  cmake --build "${VEOMNI_BUILD_DIR:-build}" -j "$jobs" --target veomni_cuda_job
  rm -rf "$BUNDLE"
  mkdir -p "$BUNDLE/bin" "$BUNDLE/lib" "$BUNDLE/job"
  cp build-gpu/test/unit/runtime/veomni-cuda-tests "$BUNDLE/bin/"
  cp "${VEOMNI_BUILD_DIR:-build}"/test/cuda-job/* "$BUNDLE/job/"
  ldd "$BUNDLE/bin/veomni-cuda-tests" | awk '/=>/ {print $3}' | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*) continue ;;
      libcuda.so*|libcudart.so*|libcublas*|libnccl.so*) continue ;; # the GPU machine's
    esac
    cp -L "$lib" "$BUNDLE/lib/"
  done
  local kib
  kib=$(du -sk "$BUNDLE" | cut -f1)
  echo "gpu-check: $BUNDLE/ holds $((kib / 1024)) MiB:"
  du -sh "$BUNDLE"/bin/* "$BUNDLE"/lib/* | sort -h | tail -n 5
  if [ "$kib" -gt $((64 * 1024)) ]; then
    echo "gpu-check: the bundle exceeds the 64 MiB a device call carries"
    exit 1
  fi
}

run() {
  if [ ! -x "$BUNDLE/bin/veomni-cuda-tests" ]; then
    echo "gpu-check: no $BUNDLE/: run 'scripts/gpu-check.sh prepare' first"
    exit 2
  fi
  local out=${OUT:-$BUNDLE/out}
  mkdir -p "$out"
  nvidia-smi -L || echo "gpu-check: nvidia-smi lists no GPU"
  local libs="$PWD/$BUNDLE/lib" d
  for d in /usr/local/cuda/lib64 /usr/local/cuda/lib \
           /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -d "$d" ] && libs="$libs:$d"
  done
  # PyTorch's wheels carry cuBLAS and NCCL as nvidia-* packages.
  local roots
  roots=$(python3 -c 'import nvidia; print("\n".join(nvidia.__path__))' 2> /dev/null || true)
  for r in $roots; do
    for d in "$r"/*/lib; do
      [ -d "$d" ] && libs="$libs:$d"
    done
  done
  export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  if ldd "$BUNDLE/bin/veomni-cuda-tests" | grep "not found"; then
    echo "gpu-check: the libraries above are missing (LD_LIBRARY_PATH=$LD_LIBRARY_PATH)"
  fi
  local rc=0
  VEOMNI_CUDA_JOB="$PWD/$BUNDLE/job" "$BUNDLE/bin/veomni-cuda-tests" \
    --gtest_output="xml:$out/cuda-tests.xml" 2>&1 | tee "$out/cuda-tests.txt" || rc=$?
  echo "gpu-check: veomni-cuda-tests exited $rc"
  return "$rc"
}

case "${1:-}" in
  prepare) prepare ;;
  run) run ;;
  *) echo "usage: scripts/gpu-check.sh prepare|run"; exit 2 ;;
esac
