#!/usr/bin/env python3
"""Checks DeepSeek-V3's balancing steps, without numpy:

    bias_steps.py BEFORE.safetensors BALANCED.safetensors FROZEN.safetensors RATE
    bias_steps.py BEFORE.safetensors ONE.safetensors OTHER.safetensors RATE --same

Every ...e_score_correction_bias (f32) of BALANCED must differ from BEFORE's
by a whole multiple of RATE (within f32 rounding) of at most 3, not all zero;
FROZEN's must equal BEFORE's. Prints each bias's multiples. With --same, the
biases of two balanced runs (any dtype) must be equal bit for bit.
"""
import struct
import sys

from fuse_experts import read


def biases(path):
    tensors, _ = read(path)
    out = {}
    for name, (dtype, shape, raw) in tensors.items():
        if name.endswith(".e_score_correction_bias"):
            assert dtype == "F32", (name, dtype)
            out[name] = struct.unpack(f"<{len(raw) // 4}f", raw)
    return out


def raw_biases(path):
    tensors, _ = read(path)
    return {n: t for n, t in tensors.items() if n.endswith(".e_score_correction_bias")}


def main():
    if "--same" in sys.argv:
        one, other = raw_biases(sys.argv[2]), raw_biases(sys.argv[3])
        assert one and sorted(one) == sorted(other), sorted(other)
        for name in sorted(one):
            assert one[name] == other[name], name
            print(f"{name}: equal in both")
        return
    before, balanced, frozen = (biases(p) for p in sys.argv[1:4])
    rate = float(sys.argv[4])
    assert before and sorted(before) == sorted(balanced) == sorted(frozen), sorted(balanced)
    for name in sorted(before):
        steps = [(b - a) / rate for a, b in zip(before[name], balanced[name])]
        whole = [round(s) for s in steps]
        assert all(abs(s - w) < 1e-3 and abs(w) <= 3 for s, w in zip(steps, whole)), steps
        assert any(whole), "no bias moved"
        assert frozen[name] == before[name], "the frozen run moved a bias"
        print(f"{name}: moved by {whole} x {rate} in 3 steps; frozen: unchanged")


if __name__ == "__main__":
    main()
