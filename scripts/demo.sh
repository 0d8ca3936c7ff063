#!/usr/bin/env bash
# The README's first command: installs what is missing, builds, and trains
# the shipped tiny omni model (vision tower + audio encoder + MoE LLM) on the
# shipped image/tone/caption samples, showing the loss fall.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${VEOMNI_BUILD_DIR:-build}
export VEOMNI_BUILD_DIR=$BUILD_DIR

scripts/setup.sh
cmake --build "$BUILD_DIR" -j "${VEOMNI_JOBS:-2}" --target veomni veomni-opt
veomni="$BUILD_DIR/bin/veomni"

cat <<'TXT'

== veomni demo ==
The model: a tiny omni composition (examples/tiny/omni_moe.json): a
Qwen2.5-Omni-style vision tower and Whisper-style audio encoder feeding a
Qwen3-MoE language model. Per module, total and active parameters:
TXT
"$veomni" import examples/tiny/omni_moe.json --summary | tail -n 6

cat <<'TXT'

The data: 16 conversations (examples/data/omni/conversations.jsonl), each
a PNG or JPEG of a coloured square, a WAV, FLAC or MP3 tone, the question
"Colour and pitch?" and an answer naming the colour and whether the tone
is low or high. veomni decodes the files, resizes and patches the images
as Qwen2-VL's processor does, resamples the audio to 16 kHz for Whisper
log-mel features, and tokenizes the conversations with the tokenizer.json
beside them; only a model that sees and hears gets the loss below
(ln 4 + ln 2) / 11 = 0.19 (11 trained tokens an answer).

Training (examples/recipes/tiny_omni_moe.yaml): veomni imports the config,
builds the whole step (forward, autodiff, AdamW) as one program, plans its
memory, and runs it on the CPU backend:
TXT
"$veomni" train examples/recipes/tiny_omni_moe.yaml \
  --train.output_dir "$BUILD_DIR/runs/demo" --train.resume ""

cat <<TXT

Written to $BUILD_DIR/runs/demo: metrics.jsonl (every step),
loss_curve.svg, and checkpoint-200/ (a Hugging Face model folder: config.json,
model.safetensors, and the optimizer state in optimizer.safetensors).
TXT
