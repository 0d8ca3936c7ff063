#!/usr/bin/env python3
"""torch.matmul's TFLOP/s on the same GEMMs as veomni-bench-gpu (bf16
8192^3 and 4096^3, f32 4096^3 without TF32), on GPU 0: the yardstick for
the target "large cuBLASLt GEMMs at >= 95% of torch.matmul" (issue 16).
Run by scripts/gpu-check.sh where PyTorch is installed."""
import time

import torch


def rate(dtype, n, reps=20):
    a = torch.randn(n, n, device="cuda", dtype=dtype)
    b = torch.randn(n, n, device="cuda", dtype=dtype)
    torch.matmul(a, b)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        torch.matmul(a, b)
    torch.cuda.synchronize()
    s = (time.perf_counter() - t) / reps
    return s, 2.0 * n ** 3 / s / 1e12


def main():
    if not torch.cuda.is_available():
        print("torch: no CUDA device")
        return
    torch.backends.cuda.matmul.allow_tf32 = False
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}")
    for dtype, n, name in [(torch.bfloat16, 8192, "bf16"),
                           (torch.bfloat16, 4096, "bf16"),
                           (torch.float32, 4096, "f32 (no TF32)")]:
        s, tflops = rate(dtype, n)
        print(f"torch.matmul {name} {n}^3: {s * 1e3:.3f} ms, {tflops:.1f} TFLOP/s")


if __name__ == "__main__":
    main()
