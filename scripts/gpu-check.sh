#!/usr/bin/env bash
# The one GPU check of issue 16, in two halves:
#
#   scripts/gpu-check.sh prepare   (here, with the Debian toolchain)
#     builds build-gpu/ (the runtime and its CUDA tests only: no MLIR, no
#     oneDNN, libstdc++ linked statically, sm_80 and sm_90), compiles the
#     tiny Llama's job with the main build's veomni, and puts the test
#     binary, the job and the shared libraries it needs (not glibc's, not
#     CUDA's) in gpu-bundle/, packed as gpu-bundle.tar.xz (about 8 MiB:
#     what travels with the working tree must stay under 64 MiB).
#
#   scripts/gpu-check.sh run       (on the GPU machine: CUDA 13, no Debian
#     libraries) finds CUDA's libraries (the toolkit's, else PyTorch's
#     nvidia-* wheels), says which are missing, runs every CUDA test (each
#     kernel against the CPU backend, and 3 training steps of the tiny
#     Llama on both backends), then the benchmarks (cuBLASLt against
#     torch.matmul; training steps of 4-layer Llama-3-8B and Qwen3-30B-A3B
#     shapes at 4K, 8K and 16K tokens: tokens/s, MFU, per-kernel table)
#     and writes the results to $OUT (or gpu-bundle/out/).
#
# With the device tool: run(command="scripts/gpu-check.sh run",
# carry=["gpu-bundle.tar.xz"]).
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
    -DCMAKE_EXE_LINKER_FLAGS="-static-libstdc++ -static-libgcc -Wl,--as-needed" \
    "${launcher[@]}" > /dev/null
  cmake --build build-gpu -j "$jobs" --target veomni-cuda-tests veomni-bench-gpu
  # The jobs come from the main build's compiler.
  local build=${VEOMNI_BUILD_DIR:-build}
  cmake --build "$build" -j "$jobs" --target veomni_cuda_job veomni
  rm -rf "$BUNDLE"
  mkdir -p "$BUNDLE/bin" "$BUNDLE/lib" "$BUNDLE/job" "$BUNDLE/bench"
  cp build-gpu/test/unit/runtime/veomni-cuda-tests "$BUNDLE/bin/"
  cp build-gpu/bench/veomni-bench-gpu "$BUNDLE/bin/"
  cp "$build"/test/cuda-job/* "$BUNDLE/job/"
  # The benchmark's jobs: 4-layer Llama-3-8B and Qwen3-30B-A3B shapes, bf16,
  # one sequence of 4K, 8K and 16K tokens.
  local model len
  for model in llama3_8b_4_layers qwen3_30b_a3b_4_layers; do
    for len in 4096 8192 16384; do
      printf 'model:\n  config: bench/gpu/%s.json\n  dtype: bf16\ndata:\n  seq_len: %s\n  batch_size: 1\n' \
        "$model" "$len" > "$BUNDLE/bench/recipe.yaml"
      "$build/bin/veomni" compile "$BUNDLE/bench/recipe.yaml" --data.path '' \
        -o "$BUNDLE/bench/$model-$len" > /dev/null
    done
  done
  rm "$BUNDLE/bench/recipe.yaml"
  cp bench/gpu/torch_matmul.py "$BUNDLE/bench/"
  ldd "$BUNDLE/bin/veomni-cuda-tests" "$BUNDLE/bin/veomni-bench-gpu" |
    awk '/=>/ {print $3}' | sort -u | while read -r lib; do
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
  tar cJf "$BUNDLE.tar.xz" "$BUNDLE"
  kib=$(du -sk "$BUNDLE.tar.xz" | cut -f1)
  echo "gpu-check: packed as $BUNDLE.tar.xz, $((kib / 1024)) MiB"
  # With the tracked tree (about 25 MiB) it must fit the 64 MiB a call
  # carries.
  if [ "$kib" -gt $((32 * 1024)) ]; then
    echo "gpu-check: the packed bundle is too large to travel"
    exit 1
  fi
}

run() {
  if [ ! -x "$BUNDLE/bin/veomni-cuda-tests" ] && [ -f "$BUNDLE.tar.xz" ]; then
    tar xJf "$BUNDLE.tar.xz"
  fi
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
  # The figures: cuBLASLt against torch.matmul, then the training steps.
  python3 "$BUNDLE/bench/torch_matmul.py" 2>&1 | tee "$out/torch-matmul.txt" || true
  "$BUNDLE/bin/veomni-bench-gpu" "$BUNDLE"/bench/*-*/ 2>&1 | tee "$out/bench.txt" || true
  return "$rc"
}

case "${1:-}" in
  prepare) prepare ;;
  run) run ;;
  *) echo "usage: scripts/gpu-check.sh prepare|run"; exit 2 ;;
esac
