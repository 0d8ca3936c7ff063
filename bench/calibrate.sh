#!/bin/bash
# bench/calibrate.sh [CLUSTER] [STEPS]: the plan's predicted tokens/s
# (veomni plan --report under the cluster file, default
# examples/clusters/cpu_core.yaml) against the CPU backend's measured
# tokens/s (veomni train, the median of the steps after the first) for
# two Llama models on 1 and 2 ranks with one thread each (data parallel,
# dp_shard = ranks, collectives in line). Prints one line per run with the
# ratio predicted / measured (docs/parallel.md, "Calibration"). Prints
# figures only.
set -euo pipefail
cd "$(dirname "$0")/.."
cluster=${1:-examples/clusters/cpu_core.yaml}
steps=${2:-6}
veomni=build/bin/veomni
[ -x $veomni ] || { echo "build first (scripts/test.sh or cmake --build build)"; exit 1; }
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
echo "CPU: $cpu, $(nproc) cores; cluster file: $cluster"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
printf '%-12s %5s %12s %12s %7s\n' model ranks predicted measured ratio
for model in llama_100m llama_155m; do
  config=bench/configs/$model.json
  for ranks in 1 2; do
    common=(--model.config $config --data.seq_len 256 --data.batch_size 4)
    dir=$out/$model-$ranks
    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 VEOMNI_CPU_THREADS=1 VEOMNI_COMM_THREAD=0 \
      $veomni train examples/recipes/tiny_llama.yaml \
      --nproc $ranks "${common[@]}" --data.path '' --train.steps $steps \
      --train.warmup_steps 1 --train.checkpoint_interval 0 --train.log_interval $steps \
      --train.output_dir $dir > $dir.log 2>&1 ||
      { echo "$model on $ranks ranks failed:"; tail -5 $dir.log; exit 1; }
    measured=$(tail -n +2 $dir/metrics.jsonl |
      sed 's/.*"tokens_per_s": \([0-9.]*\).*/\1/' | median)
    rank=$($veomni plan examples/recipes/tiny_llama.yaml --report --cluster $cluster \
      "${common[@]}" --parallel.dp_shard $ranks |
      sed -n 's/^predicted step time: .*; \([0-9]*\) tokens\/s\/rank$/\1/p')
    awk -v m=$model -v r=$ranks -v p=$((rank * ranks)) -v t=$measured 'BEGIN {
      printf "%-12s %5d %12.0f %12.0f %7.2f\n", m, r, p, t, p / t }'
  done
done
