#!/usr/bin/env python3
"""Mutates every integer of every shipped tiny config (examples/tiny/*.json)
to 0, -1, 2^31 and 2^62, one at a time, and runs `veomni import --summary`
on each: a crash (a signal, an exit status other than 0 or 1) or a run
longer than 10 seconds is printed. What it found is kept as regression
tests in test/e2e/reliability.test.

    python3 tools/fuzz/mutate_configs.py [build/bin/veomni]
"""
import glob
import json
import sys
import tempfile
from pathlib import Path

from mutation import Runs

REPO = Path(__file__).resolve().parents[2]
VALUES = (2**31, 2**62, -1, 0)


def integers(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from integers(value, path + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from integers(value, path + (index,))
    elif isinstance(node, int) and not isinstance(node, bool):
        yield path


def mutated(config, path, value):
    copy = json.loads(json.dumps(config))
    node = copy
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return copy


def main():
    veomni = sys.argv[1] if len(sys.argv) > 1 else str(REPO / "build" / "bin" / "veomni")
    runs = Runs(veomni, timeout=10)
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "config.json"
        for name in sorted(glob.glob(str(REPO / "examples" / "tiny" / "*.json"))):
            config = json.load(open(name))
            for path in integers(config):
                for value in VALUES:
                    target.write_text(json.dumps(mutated(config, path, value)))
                    runs.run(["import", str(target), "--summary"], (name, path, value))
    return runs.report()

if __name__ == "__main__":
    sys.exit(main())
