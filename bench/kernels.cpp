//===- kernels.cpp - CPU kernel throughput --------------------------------===//
//
// Prints GFLOP/s of the fast Matmul (and its fraction of an assumed FP32
// peak), ns per element of Unary silu and RmsNorm, and tokens/s of causal
// Attention. Each figure is the best of several timed runs after a warm-up,
// so it shows what the kernel can do rather than scheduler noise.
//
//===----------------------------------------------------------------------===//

#include "runtime/backends/cpu/Kernels.h"
#include "runtime/backends/cpu/VecMath.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace veomni::rt;

namespace {

struct Buffer {
  std::vector<uint8_t> bytes;
  TensorView view;
  Buffer(DType t, Shape shape, std::mt19937 &rng) {
    view.dtype = t;
    view.shape = std::move(shape);
    bytes.resize(view.bytes());
    view.data = bytes.data();
    std::uniform_real_distribution<float> dist(-1, 1);
    for (int64_t i = 0; i < view.numel(); ++i)
      StoreF(view, i, dist(rng));
  }
};

/// Best wall time in seconds of `fn` over `reps` runs, after one warm-up.
double Best(int reps, const std::function<absl::Status()> &fn) {
  if (absl::Status s = fn(); !s.ok()) {
    std::fprintf(stderr, "kernel failed: %s\n", s.ToString().c_str());
    std::exit(1);
  }
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    (void)fn();
    auto t1 = std::chrono::steady_clock::now();
    best = std::min(best, std::chrono::duration<double>(t1 - t0).count());
  }
  return best;
}

double CpuGHz() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("cpu MHz", 0) == 0) {
      size_t colon = line.find(':');
      if (colon != std::string::npos)
        return std::atof(line.c_str() + colon + 1) / 1000.0;
    }
  return 0;
}

const char *TypeName(DType t) { return t == DType::F32 ? "f32" : "bf16"; }

} // namespace

int main() {
  std::mt19937 rng(0);
  unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  double ghz = CpuGHz();
  double peak = cores * ghz * 32.0; // GFLOP/s: 2 x 256-bit FMA = 32 FLOP/cycle
  std::printf("Assumed FP32 peak: %u cores x %.3f GHz (/proc/cpuinfo "
              "\"cpu MHz\") x 32 FLOP/cycle = %.1f GFLOP/s\n",
              cores, ghz, peak);
  std::printf("(turbo clocks above the reported MHz can push the fraction "
              "past 100%%)\n");
  std::printf("Vector loops: %s\n\n", cpu::vec::IsaName());

  struct MatmulCase {
    int64_t m, k, n;
    DType t;
  };
  for (MatmulCase c : {MatmulCase{512, 512, 512, DType::F32},
                       MatmulCase{1024, 1024, 1024, DType::F32},
                       MatmulCase{2048, 2048, 2048, DType::F32},
                       MatmulCase{1024, 1024, 1024, DType::BF16}}) {
    Buffer a(c.t, {c.m, c.k}, rng), b(c.t, {c.k, c.n}, rng),
        o(c.t, {c.m, c.n}, rng);
    double s = Best(c.m >= 2048 ? 5 : 20, [&] {
      return cpu::Matmul(a.view, b.view, o.view, false, false);
    });
    double gflops = 2.0 * c.m * c.k * c.n / s / 1e9;
    std::printf("Matmul %-4s %4ldx%4ldx%4ld: %8.3f ms  %7.1f GFLOP/s  %5.1f%% "
                "of peak\n",
                TypeName(c.t), static_cast<long>(c.m), static_cast<long>(c.k),
                static_cast<long>(c.n), s * 1e3, gflops, 100 * gflops / peak);
  }
  std::printf("\n");

  for (DType t : {DType::F32, DType::BF16}) {
    const int64_t n = int64_t{1} << 22;
    Buffer x(t, {n}, rng), y(t, {n}, rng);
    double s = Best(
        20, [&] { return cpu::Unary(cpu::UnaryKind::Silu, x.view, y.view); });
    std::printf("Unary silu %-4s [%ld]: %.3f ns/element\n", TypeName(t),
                static_cast<long>(n), s * 1e9 / n);
  }
  for (DType t : {DType::F32, DType::BF16}) {
    const int64_t rows = 2048, d = 4096;
    Buffer x(t, {rows, d}, rng), w(t, {d}, rng), y(t, {rows, d}, rng);
    double s =
        Best(20, [&] { return cpu::RmsNorm(x.view, w.view, y.view, 1e-6); });
    std::printf("RmsNorm %-4s [%ldx%ld]: %.3f ns/element\n", TypeName(t),
                static_cast<long>(rows), static_cast<long>(d),
                s * 1e9 / (rows * d));
  }
  std::printf("\n");

  for (DType t : {DType::F32, DType::BF16}) {
    const int64_t b = 1, s = 2048, h = 16, d = 64;
    Buffer q(t, {b, s, h, d}, rng), k(t, {b, s, h, d}, rng),
        v(t, {b, s, h, d}, rng), o(t, {b, s, h, d}, rng);
    double sec = Best(5, [&] {
      return cpu::Attention(q.view, k.view, v.view, nullptr, o.view, true,
                            0.125);
    });
    // Causal: Q K^T and P V over the visible half of the score matrix.
    double flops = 2.0 * 2.0 * b * h * d * (s * (s + 1) / 2.0);
    std::printf("Attention %-4s causal [%ld,%ld,%ld,%ld]: %.2f ms  %.0f "
                "tokens/s  %.1f GFLOP/s\n",
                TypeName(t), static_cast<long>(b), static_cast<long>(s),
                static_cast<long>(h), static_cast<long>(d), sec * 1e3,
                b * s / sec, flops / sec / 1e9);
  }
  return 0;
}
