#!/usr/bin/env bash
# The first command of the README: installs what is missing, builds, and
# shows what veomni can do so far.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${VEOMNI_BUILD_DIR:-build}
export VEOMNI_BUILD_DIR=$BUILD_DIR

scripts/setup.sh
cmake --build "$BUILD_DIR" -j "${VEOMNI_JOBS:-2}" --target veomni-opt

cat <<'TXT'

== veomni demo ==
What works today: the veomni dialect (the model-level ops a dense, MoE,
vision or audio model needs, each shape-checked) and veomni-opt.
Below, a Llama-style decoder layer (examples/decoder_layer.mlir) is parsed,
verified and canonicalized; the explicit weight transpose folds into the
matmul. Importing Hugging Face configs, running and training come next
(see the open issues); this demo will train the shipped example then.

TXT
"$BUILD_DIR/bin/veomni-opt" examples/decoder_layer.mlir -canonicalize
