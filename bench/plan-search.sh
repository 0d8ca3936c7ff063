#!/bin/bash
# bench/plan-search.sh: how long `veomni plan --search` takes, and how many
# plans it weighs, for Qwen3-30B-A3B on 128 and 1,024 H100s (4096-token
# sequences, one a GPU) and at 160K tokens a sequence on 128, and for the
# other shipped large recipes. Prints one line per search: plans that
# divide the model, plans measured exactly, seconds, and the best plan that
# fits. Prints figures only (docs/parallel.md, "Searching for a plan").
set -euo pipefail
cd "$(dirname "$0")/.."
veomni=build/bin/veomni
[ -x $veomni ] || { echo "build first (scripts/test.sh or cmake --build build)"; exit 1; }
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
echo "CPU: $cpu, $(nproc) cores"
cluster=examples/clusters/h100_sxm.yaml
qwen=examples/recipes/qwen3_30b_a3b_128_ranks.yaml
run() {
  local name=$1
  shift
  local start end out
  start=$(date +%s%N)
  out=$($veomni plan "$@" --search --cluster $cluster --top 1)
  end=$(date +%s%N)
  local plans measured best
  plans=$(echo "$out" | sed -n 's/^plans: [0-9]* meshes, \([0-9]*\) with.*/\1/p')
  measured=$(echo "$out" | sed -n 's/.* \([0-9]*\) measured exactly.*/\1/p')
  best=$(echo "$out" | sed -n 's/^best that fits: //p')
  [ -n "$best" ] || best="none fits: $(echo "$out" | sed -n '4p' | tr -s ' ')"
  local ms=$(((end - start) / 1000000))
  printf '%-40s %6s plans %3s measured %3d.%02d s  %s\n' "$name" "$plans" \
    "$measured" $((ms / 1000)) $((ms % 1000 / 10)) "$best"
}
run "Qwen3-30B-A3B, 128 GPUs" $qwen
run "Qwen3-30B-A3B, 1,024 GPUs" $qwen --parallel.dp_shard 128 --data.batch_size 1024
run "Qwen3-30B-A3B, 128 GPUs, 160K tokens" $qwen --data.seq_len 163840 --data.batch_size 8
run "Llama-3-8B LoRA, 8 GPUs" examples/recipes/llama3_8b_lora_8_ranks.yaml
run "gpt-oss-120b, 64 GPUs" examples/recipes/gpt_oss_120b_64_ranks.yaml
run "DeepSeek-V3, 256 GPUs" examples/recipes/deepseek_v3_256_ranks.yaml
