#!/usr/bin/env python3
"""Writes a config in transformers 4.x form: save_v4_config.py SOURCE.json OUT.json

Run with a Python that has transformers 4.x (no torch needed: config classes
save without it); make_goldens.py runs it (--v4-python) to write each golden
case's config.v4.json. SOURCE.json is loaded with AutoConfig.from_pretrained
and saved with save_pretrained; OUT.json is the config.json that writes.
Prints the transformers version last.
"""

import shutil
import sys
import tempfile
from pathlib import Path

import transformers


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__.split("\n\n")[0])
    if int(transformers.__version__.split(".")[0]) != 4:
        raise SystemExit(f"transformers {transformers.__version__}: config.v4.json needs transformers 4.x")
    transformers.logging.set_verbosity_error()
    source, out = sys.argv[1:]
    config = transformers.AutoConfig.from_pretrained(source)
    with tempfile.TemporaryDirectory() as tmp:
        config.save_pretrained(tmp)
        shutil.copyfile(Path(tmp) / "config.json", out)
    print(f"transformers {transformers.__version__}")


if __name__ == "__main__":
    sys.exit(main())
