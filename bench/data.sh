#!/usr/bin/env bash
# The data pipeline's throughput: conversations with an image and an audio
# clip each (examples/data/omni, repeated to 512 lines) decoded, patched,
# turned into log-mel features and tokenized as training reads them, with
# 0, 1 and 2 worker threads; and a training run's data_s against its
# step_s (metrics.jsonl), to see whether steps wait for data.
#   bench/data.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
veomni=$build/bin/veomni
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r examples/data/omni/images examples/data/omni/audio "$tmp"/
for _ in $(seq 32); do cat examples/data/omni/conversations.jsonl; done > "$tmp/big.jsonl"
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) cores)"
for w in 0 1 2; do
  start=$(date +%s.%N)
  "$veomni" data inspect "$tmp/big.jsonl" --tokenizer examples/data/omni/tokenizer.json \
    --config examples/tiny/omni_moe.json --min-pixels 64 --max-pixels 256 --workers $w > /dev/null
  end=$(date +%s.%N)
  python3 -c "import sys; s = float(sys.argv[2]) - float(sys.argv[1]); print(f'workers {sys.argv[3]}: 512 conversations in {s:.2f} s, {512 / s:.0f} a second')" "$start" "$end" $w
done
"$veomni" train examples/recipes/tiny_omni_moe.yaml --train.steps 100 --train.checkpoint_interval 0 \
  --train.output_dir "$tmp/run" > /dev/null
python3 - "$tmp/run/metrics.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])][1:]
step = statistics.median(r["step_s"] for r in rows)
data = statistics.median(r["data_s"] for r in rows)
print(f"tiny omni MoE from JSONL: step {step * 1e3:.2f} ms, of which data {data * 1e6:.0f} us "
      f"(max {max(r['data_s'] for r in rows) * 1e6:.0f} us)")
PY
