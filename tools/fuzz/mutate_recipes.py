#!/usr/bin/env python3
"""Sets every number of every shipped recipe (examples/recipes/*.yaml) to 0,
-1, 2^31, 2^62 and 1e308 in turn and runs `veomni plan` on each: a crash (a
signal, an exit status other than 0 or 1) or a run longer than 20 seconds is
printed. What it found is kept in test/e2e/reliability.test.

    python3 tools/fuzz/mutate_recipes.py [build/bin/veomni]
"""
import glob
import re
import sys
import tempfile
from pathlib import Path

from mutation import Runs

REPO = Path(__file__).resolve().parents[2]
VALUES = ("0", "-1", "2147483648", "4611686018427387904", "1e308")
NUMBER = re.compile(r"^(\s*[a-z_]+:\s*)(-?[0-9][0-9.e+-]*)(\s*(#.*)?)$")


def main():
    veomni = sys.argv[1] if len(sys.argv) > 1 else str(REPO / "build" / "bin" / "veomni")
    runs = Runs(veomni, timeout=20)
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "recipe.yaml"
        for name in sorted(glob.glob(str(REPO / "examples" / "recipes" / "*.yaml"))):
            lines = Path(name).read_text().split("\n")
            for i, line in enumerate(lines):
                m = NUMBER.match(line)
                if not m:
                    continue
                for value in VALUES:
                    mutated = list(lines)
                    mutated[i] = m.group(1) + value + (m.group(3) or "")
                    target.write_text("\n".join(mutated))
                    runs.run(["plan", str(target), "--data.path", ""],
                             (name, line.strip(), value), cwd=REPO)
    return runs.report()

if __name__ == "__main__":
    sys.exit(main())
