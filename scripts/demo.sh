#!/usr/bin/env bash
# The first command of the README: installs what is missing, builds, and
# shows what veomni can do so far.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${VEOMNI_BUILD_DIR:-build}
export VEOMNI_BUILD_DIR=$BUILD_DIR

scripts/setup.sh
cmake --build "$BUILD_DIR" -j "${VEOMNI_JOBS:-2}" --target veomni veomni-opt
veomni="$BUILD_DIR/bin/veomni"

cat <<'TXT'

== veomni demo ==
What works today: importing Hugging Face configs (llama, qwen2, qwen3,
qwen3_moe, qwen2_vl, qwen2_5_vl, qwen2_5_omni) into the veomni dialect, with
parameter counts and each family's parallel plan; compiling a model to a
runtime program with its memory planned; running its forward pass and loss
on the CPU backend. Training comes next (see the open issues); this demo
will train the shipped tiny omni model then.

-- the shipped tiny omni model (vision + audio + LLM), per module:
TXT
"$veomni" import examples/tiny/qwen2_5_omni.json --summary

echo
echo "-- Qwen3-30B-A3B's public config: total and active parameters:"
"$veomni" import test/Frontends/configs/qwen3_30b_a3b.json --summary | tail -n 2

echo
echo "-- its parallel plan (first layer):"
"$veomni" import test/Frontends/configs/qwen3_30b_a3b.json --plan |
  grep -E 'embed_tokens|layers\.0\.|lm_head'

echo
echo "-- compile the tiny omni model to a program, with its memory plan:"
"$veomni" compile examples/tiny/qwen2_5_omni.json --dtype f32 --seq-len 64 \
  --image-patches 16 --audio-frames 32 -o "$BUILD_DIR/tiny_omni.vmb" --report
echo
echo "-- one forward pass and its loss (seeded init, synthetic image+audio+text batch):"
"$veomni" run "$BUILD_DIR/tiny_omni.vmb" --eval --seed 0

echo
echo "-- the start of the imported tiny omni model, global shapes, no parallelism:"
"$veomni" import examples/tiny/qwen2_5_omni.json --seq-len 64 --image-patches 16 \
  --audio-frames 32 -o "$BUILD_DIR/tiny_omni.mlir"
"$BUILD_DIR/bin/veomni-opt" "$BUILD_DIR/tiny_omni.mlir" | sed -n '3,14p' | cut -c1-150
echo "   ... (the whole module is in $BUILD_DIR/tiny_omni.mlir)"
