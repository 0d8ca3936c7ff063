#!/usr/bin/env bash
# Installs, only where missing, every Debian package veomni needs, then
# configures the build in build/. Safe to run again: it does nothing twice.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  cmake ninja-build ccache g++ python3
  llvm-22-dev llvm-22-tools libmlir-22-dev mlir-22-tools
  libflatbuffers-dev flatbuffers-compiler
  libabsl-dev libgtest-dev libgmock-dev
  libopenblas-dev libdnnl-dev openmpi-bin libopenmpi-dev libpcre2-dev
  libicu-dev libsentencepiece-dev libfftw3-dev libpng-dev
  libjpeg62-turbo-dev pkg-config libavformat-dev libavcodec-dev libavutil-dev
  libswresample-dev libswscale-dev
  clang-22 libclang-rt-22-dev
  chromium
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

BUILD_DIR=${VEOMNI_BUILD_DIR:-build}
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  echo "setup: configuring $BUILD_DIR"
  cmake -S . -B "$BUILD_DIR" -G Ninja \
    -DCMAKE_BUILD_TYPE=${CMAKE_BUILD_TYPE:-Release} \
    -DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache \
    -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache \
    -DMLIR_DIR=/usr/lib/llvm-22/lib/cmake/mlir \
    -DLLVM_EXTERNAL_LIT=/usr/lib/llvm-22/bin/lit \
    -DMLIR_LINK_MLIR_DYLIB=ON
fi
