#!/usr/bin/env python3
"""Checks a run with frozen parameters (train.freeze), without numpy:

    frozen.py check INIT.safetensors AFTER.safetensors OPTIMIZER.safetensors PARTS
        every parameter whose name contains one of PARTS (a comma-separated
        list) is byte for byte as in
        INIT and has no optimizer state; every other one has its state,
        and most of them moved
    frozen.py same ONE.safetensors OTHER.safetensors PART
        every tensor whose name does not contain PART is byte for byte the
        same in both files
"""
import json
import struct
import sys


def read(path):
    """{name: raw bytes} of a .safetensors file."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    header.pop("__metadata__", None)
    body = data[8 + n :]
    return {k: body[v["data_offsets"][0] : v["data_offsets"][1]] for k, v in header.items()}


def main():
    mode = sys.argv[1]
    if mode == "check":
        init, after, opt, parts = read(sys.argv[2]), read(sys.argv[3]), read(sys.argv[4]), sys.argv[5]
        frozen = [k for k in init if any(p in k for p in parts.split(","))]
        others = [k for k in init if k not in frozen]
        assert frozen, f"no parameter contains {parts!r}"
        changed = [k for k in frozen if after[k] != init[k]]
        assert not changed, f"frozen parameters changed: {changed[:3]}"
        stated = [k for k in frozen if any(s.endswith("." + k) for s in opt)]
        assert not stated, f"frozen parameters with optimizer state: {stated[:3]}"
        missing = [k for k in others if f"optimizer.exp_avg.{k}" not in opt]
        assert not missing, f"trained parameters without state: {missing[:3]}"
        moved = sum(after[k] != init[k] for k in others)
        assert moved * 2 > len(others), f"only {moved} of {len(others)} trained parameters moved"
        print(f"{len(frozen)} frozen parameters unchanged, without state; "
              f"{moved} of {len(others)} others moved")
    else:
        one, other, part = read(sys.argv[2]), read(sys.argv[3]), sys.argv[4]
        names = [k for k in one if part not in k]
        differ = [k for k in names if one[k] != other.get(k)]
        assert not differ, f"differ: {differ[:3]}"
        print(f"{len(names)} tensors the same")


if __name__ == "__main__":
    main()
