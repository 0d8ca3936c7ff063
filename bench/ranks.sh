#!/bin/bash
# bench/ranks.sh [STEPS]: training throughput on 1, 2 and 4 MPI ranks (data
# parallel, dp_shard = ranks) for the tiny Llama and the 109.5M-parameter
# bench/configs/llama_100m.json, on synthetic batches of the same global
# size, and the share of each step rank 0 spends in collectives. Prints one
# line per run: the median over the steps after the first of tokens/s (the
# job's), step time, communication time (on the collectives' own thread)
# and how much of it computing hid (the rest the kernels waited for).
# VEOMNI_COMM_THREAD=0 runs collectives in line instead. Prints figures only.
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-6}
veomni=build/bin/veomni
[ -x $veomni ] || { echo "build first (scripts/test.sh or cmake --build build)"; exit 1; }
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
echo "CPU: $cpu, $(nproc) cores (ranks beyond that share them)"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
printf '%-12s %5s %10s %12s %10s %9s %8s\n' model ranks tokens/s "step ms" "comm ms" comm hidden
for model in tiny llama_100m; do
  if [ $model = tiny ]; then
    config=examples/tiny/llama.json; seq=64; batch=4
  else
    config=bench/configs/llama_100m.json; seq=256; batch=4
  fi
  for run in 1 2 2t 4; do
    ranks=${run%t}
    # 2t: collectives forced onto their own thread (with fewer than 2
    # cores per rank veomni keeps them in line).
    thread=$([ "$run" = 2t ] && echo 1 || echo "${VEOMNI_COMM_THREAD:-}")
    dir=$out/$model-$run
    VEOMNI_COMM_THREAD=$thread $veomni train examples/recipes/tiny_llama.yaml --nproc $ranks \
      --model.config $config --data.path '' --data.seq_len $seq \
      --data.batch_size $batch --train.steps $steps --train.warmup_steps 1 \
      --train.checkpoint_interval 0 --train.log_interval $steps \
      --train.output_dir $dir > $dir.log 2>&1 ||
      { echo "$model on $ranks ranks failed:"; tail -5 $dir.log; exit 1; }
    # Steps after the first (which warms caches and pages in the arena).
    tail -n +2 $dir/metrics.jsonl > $dir/steady
    tps=$(sed 's/.*"tokens_per_s": \([0-9.]*\).*/\1/' $dir/steady | median)
    step=$(sed 's/.*"step_s": \([0-9.]*\).*/\1/' $dir/steady | median)
    if grep -q comm_s $dir/steady; then
      comm=$(sed 's/.*"comm_s": \([0-9.]*\).*/\1/' $dir/steady | median)
      wait=$(sed 's/.*"comm_wait_s": \([0-9.]*\).*/\1/' $dir/steady | median)
    else
      comm=0 wait=0
    fi
    awk -v m=$model -v r=$run -v t=$tps -v s=$step -v c=$comm -v w=$wait 'BEGIN {
      printf "%-12s %5s %10.0f %12.1f %10.1f %8.0f%% %7.0f%%\n", m, r, t, s * 1e3,
             c * 1e3, (s > 0 ? 100 * c / s : 0), (c > 0 ? 100 * (c - w) / c : 0) }'
  done
done
