#!/bin/bash
# kill-a-rank.sh SIGNAL OUT_DIR VEOMNI ARGS...: starts `VEOMNI ARGS...` (a
# job of several ranks), sends one of its ranks SIGNAL (KILL: it dies; STOP:
# it hangs) once training has begun, and prints how long the job took to
# end after that, its exit status and its output. Fails if the job had not
# started within 60 s.
signal=$1
out=$2
shift 2
"$@" > "$out/job.log" 2>&1 &
job=$!
for _ in $(seq 600); do
  [ -s "$out/metrics.jsonl" ] && break
  sleep 0.1
done
[ -s "$out/metrics.jsonl" ] || { echo "the job did not start"; kill $job; exit 1; }
# The last rank's process (not mpirun, whose command line names it too).
victim=$(pgrep -f "^[^ ]*veomni-run $out/job" | tail -1)
[ -n "$victim" ] || { echo "no rank found"; kill $job; exit 1; }
kill -"$signal" "$victim"
start=$(date +%s%N)
wait $job
status=$?
end=$(date +%s%N)
echo "ended $(( (end - start) / 1000000000 )) s after the kill, exit status $status"
cat "$out/job.log"
