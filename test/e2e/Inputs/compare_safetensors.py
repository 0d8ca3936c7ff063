#!/usr/bin/env python3
"""Compares the float tensors (f32, f64, bf16) of two .safetensors files,
without numpy.

    compare_safetensors.py GOT WANT [--prefix P] [--tol T]

Every tensor of WANT must be in GOT under P + its name, with its shape; the
largest |got - want| of a tensor, relative to the largest |want| of that
tensor (or absolute when that is below 1), must be below T. Prints the worst.
"""
import argparse
import array
import json
import struct
import sys

FORMATS = {"F32": "f", "F64": "d", "I32": "i", "I64": "q"}


def read(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    header.pop("__metadata__", None)
    body = data[8 + n :]
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        if info["dtype"] == "BF16":  # the upper half of an f32
            raw = array.array("H")
            raw.frombytes(body[begin:end])
            wide = array.array("I", (x << 16 for x in raw))
            values = array.array("f")
            values.frombytes(wide.tobytes())
            tensors[name] = (info["shape"], values)
            continue
        fmt = FORMATS.get(info["dtype"])
        if fmt is None:
            sys.exit(f"{path}: tensor {name}: dtype {info['dtype']} not handled")
        values = array.array(fmt)
        values.frombytes(body[begin:end])
        tensors[name] = (info["shape"], values)
    return tensors


def main():
    p = argparse.ArgumentParser()
    p.add_argument("got")
    p.add_argument("want")
    p.add_argument("--prefix", default="")
    p.add_argument("--tol", type=float, default=1e-5)
    a = p.parse_args()
    got, want = read(a.got), read(a.want)
    worst, where = 0.0, None
    for name, (shape, values) in sorted(want.items()):
        key = a.prefix + name
        if key not in got:
            sys.exit(f"{a.got}: no tensor {key}")
        gshape, gvalues = got[key]
        if gshape != shape:
            sys.exit(f"{a.got}: {key} has shape {gshape}, want {shape}")
        scale = max([1.0] + [abs(v) for v in values])
        err = max([0.0] + [abs(x - y) for x, y in zip(gvalues, values)]) / scale
        if err > worst:
            worst, where = err, key
    print(f"{len(want)} tensors compared, worst relative error {worst:.2e} ({where})")
    if worst >= a.tol:
        sys.exit(f"{where}: error {worst:.2e} exceeds {a.tol:.0e}")


if __name__ == "__main__":
    main()
