"""Checks a Chrome trace written by `veomni train --profile`.

usage: check_trace.py TRACE.json TRAIN_OUTPUT [RANK]
TRAIN_OUTPUT is what veomni train printed, whose "N kernels" is the
program's kernel count.
Every kernel of the step is one complete ("X") event on the rank's
process, with its module, program and shapes; matmuls carry their FLOPs;
events do not overlap on the main thread. Prints a line FileCheck reads.
"""
import json
import re
import sys

path = sys.argv[1]
with open(sys.argv[2]) as f:
    kernels = int(re.search(r", (\d+) kernels", f.read()).group(1))
rank = int(sys.argv[3]) if len(sys.argv) > 3 else 0
with open(path) as f:
    trace = json.load(f)
events = [e for e in trace["traceEvents"] if e["ph"] == "X"]
calls = [e for e in events if e["cat"] in ("kernel", "collective")]
assert len(calls) == kernels, (len(calls), kernels)
assert all(e["pid"] == rank for e in events)
for e in calls:
    for key in ("module", "program", "kernel", "inputs", "outputs"):
        assert key in e["args"], (key, e)
    assert e["dur"] >= 0
assert sorted(e["args"]["kernel"] for e in calls) == list(range(kernels))
matmuls = [e for e in calls if e["name"] == "matmul"]
assert matmuls and all(e["args"]["gflop"] > 0 for e in matmuls)
main = sorted((e for e in events if e["tid"] == 0), key=lambda e: e["ts"])
for a, b in zip(main, main[1:]):
    assert a["ts"] + a["dur"] <= b["ts"] + 1e-3, (a, b)
modules = {e["args"]["module"] for e in calls}
print("trace ok:", len(calls), "kernels,", len(matmuls), "matmuls,",
      "optimizer" if "optimizer" in modules else "no optimizer")
