//===- gemm.cpp - GEMM libraries side by side (issue 15) ------------------===//
//
// veomni-bench-gemm [REPEATS]: times the same row-major f32 GEMMs with
// Debian's OpenBLAS (cblas_sgemm) and Debian's oneDNN (dnnl_sgemm), on the
// shapes of a training
// step: a square 2048^3 and the matmuls of the 155.7M Llama of issue 15
// (512 tokens, hidden 1024, intermediate 2816, vocabulary 32000) in the
// three forms a step uses them (x W^T forward, dY W for the input gradient,
// dY^T X for the weight gradient). Prints GFLOP/s (best of REPEATS) for
// each, the libraries' thread counts and the CPU, and checks that the
// libraries agree (largest difference relative to the largest element).
// Built only when oneDNN (libdnnl-dev) is installed. (Debian 12's OpenBLAS
// 0.3.21 is built without its bf16 GEMM, cblas_sbgemm: it has no bf16 path
// to compare.) It also prints the library veomni chose on this machine.
//
//===----------------------------------------------------------------------===//

#include "runtime/backends/cpu/KernelUtil.h"

#include <cblas.h>
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace {

std::string cpuName() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("model name", 0) == 0)
      return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

double bestSeconds(int repeats, const std::function<void()> &run) {
  run(); // warm: JIT kernels, pages
  double best = 1e30;
  for (int r = 0; r < repeats; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    run();
    best = std::min(best, std::chrono::duration<double>(
                              std::chrono::steady_clock::now() - t0)
                              .count());
  }
  return best;
}

struct Shape {
  const char *what;
  int64_t m, n, k;
  bool ta, tb; // A is K x M, B is N x K
};

} // namespace

int main(int argc, char **argv) {
  int repeats = argc > 1 ? std::max(1, std::atoi(argv[1])) : 5;
  const char *omp = std::getenv("OMP_NUM_THREADS");
  std::printf("CPU: %s; OpenBLAS %s (core %s, %d threads); oneDNN %d.%d "
              "(OpenMP threads: %s)\n",
              cpuName().c_str(), openblas_get_config(), openblas_get_corename(),
              openblas_get_num_threads(), dnnl_version()->major,
              dnnl_version()->minor, omp ? omp : "default");
  // The library veomni's GEMMs take on this machine (VEOMNI_GEMM, default
  // auto): bench/train_vs_torch.py reads this line.
  std::printf("veomni uses: %s\n",
              veomni::rt::cpu::detail::GemmLibraryName().c_str());
  const Shape shapes[] = {
      {"square 2048^3", 2048, 2048, 2048, false, false},
      {"qkv/o forward   x W^T", 512, 1024, 1024, false, true},
      {"mlp up forward  x W^T", 512, 2816, 1024, false, true},
      {"mlp down fwd    x W^T", 512, 1024, 2816, false, true},
      {"lm head forward x W^T", 512, 32000, 1024, false, true},
      {"lm head dX      dY W", 512, 1024, 32000, false, false},
      {"lm head dW      dY^T X", 32000, 1024, 512, true, false},
      {"mlp up dW       dY^T X", 2816, 1024, 512, true, false},
  };
  std::printf("%-26s %8s %8s %8s   %10s %10s  %s\n", "shape", "M", "N", "K",
              "openblas", "onednn", "agree");
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0, 1);
  for (const Shape &s : shapes) {
    std::vector<float> a(s.m * s.k), b(s.k * s.n), c1(s.m * s.n), c2(s.m * s.n);
    for (float &x : a)
      x = normal(rng);
    for (float &x : b)
      x = normal(rng);
    const int64_t lda = s.ta ? s.m : s.k, ldb = s.tb ? s.k : s.n;
    const double flops = 2.0 * s.m * s.n * s.k;
    double blas = bestSeconds(repeats, [&] {
      cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans,
                  s.tb ? CblasTrans : CblasNoTrans, s.m, s.n, s.k, 1.0f,
                  a.data(), lda, b.data(), ldb, 0.0f, c1.data(), s.n);
    });
    dnnl_status_t status = dnnl_success;
    double dnnl = bestSeconds(repeats, [&] {
      status =
          dnnl_sgemm(s.ta ? 'T' : 'N', s.tb ? 'T' : 'N', s.m, s.n, s.k, 1.0f,
                     a.data(), lda, b.data(), ldb, 0.0f, c2.data(), s.n);
    });
    if (status != dnnl_success) {
      std::fprintf(stderr, "dnnl_sgemm failed (%d) on %s\n", int(status),
                   s.what);
      return 1;
    }
    double scale = 0, diff = 0;
    for (size_t i = 0; i < c1.size(); ++i) {
      scale = std::max(scale, double(std::abs(c1[i])));
      diff = std::max(diff, double(std::abs(c1[i] - c2[i])));
    }
    std::printf("%-26s %8lld %8lld %8lld   %10.1f %10.1f  %.1e\n", s.what,
                (long long)s.m, (long long)s.n, (long long)s.k,
                flops / blas * 1e-9, flops / dnnl * 1e-9,
                diff / std::max(scale, 1e-30));
  }
  std::printf("GFLOP/s, best of %d; 'agree': the largest |openblas - onednn| "
              "over the largest element (f32)\n",
              repeats);
  return 0;
}
