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
#include "runtime/program/Fused.h"
#include "runtime/support/Status.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <utility>
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
  {
    // AdamW's update as veomni-fuse makes it (runtime/program/Fused.h): p,
    // g, m, v read, p, m, v written in place, the step's scalars broadcast;
    // against the same chain as one kernel per op.
    using kernel_table::fused::Op;
    const int64_t n = int64_t{1} << 24;
    Buffer p(DType::F32, {n}, rng), g(DType::F32, {n}, rng),
        m(DType::F32, {n}, rng), v(DType::F32, {n}, rng);
    for (int64_t i = 0; i < n; ++i)
      static_cast<float *>(v.view.data)[i] =
          std::abs(static_cast<float *>(v.view.data)[i]);
    Buffer clip(DType::F32, {}, rng), decay(DType::F32, {}, rng),
        step(DType::F32, {}, rng), bias2(DType::F32, {}, rng);
    std::vector<int64_t> code;
    std::vector<double> constants = {0.1, 0.9, 0.05, 0.95, 1e-8};
    auto emit = [&](Op o, int64_t d, int64_t a, int64_t b = 0) {
      code.insert(code.end(), {static_cast<int64_t>(o), d, a, b});
    };
    // registers: 0 p, 1 g, 2 m, 3 v, 4 clip, 5 decay, 6 step, 7 bias2
    // Constants in registers of their own, as veomni-lower-to-vrt gives
    // them (the kernel fills those once per thread): 12..16.
    for (int64_t c = 0; c < 5; ++c)
      emit(Op::Const, 12 + c, c);
    emit(Op::Mul, 8, 1, 4);    // g' = g clip
    emit(Op::Mul, 10, 8, 12);  // 0.1 g'
    emit(Op::Mul, 11, 2, 13);  // 0.9 m
    emit(Op::Add, 2, 11, 10);  // m'
    emit(Op::Mul, 10, 8, 8);   // g'^2
    emit(Op::Mul, 10, 10, 14); // 0.05 g'^2
    emit(Op::Mul, 11, 3, 15);  // 0.95 v
    emit(Op::Add, 3, 11, 10);  // v'
    emit(Op::Mul, 0, 0, 5);    // p decay
    emit(Op::Sqrt, 10, 3);
    emit(Op::Div, 10, 10, 7);  // sqrt(v') / bias2
    emit(Op::Add, 10, 10, 16); // + eps
    emit(Op::Div, 10, 2, 10);  // m' / (...)
    emit(Op::Mul, 10, 10, 6);  // step size
    emit(Op::Sub, 0, 0, 10);   // p'
    std::vector<int64_t> modes = {0, 0, 0, 0, 1, 1, 1, 1};
    std::vector<int64_t> results = {0, 0, 2, 0, 3, 0};
    cpu::FusedProgram prog{code, constants, modes, results, 1};
    std::vector<TensorView> ins = {p.view,    g.view,    m.view,
                                   v.view,    clip.view, decay.view,
                                   step.view, bias2.view};
    std::vector<TensorView> outs = {p.view, m.view, v.view};
    double s = Best(5, [&] { return cpu::Fused(ins, outs, prog); });
    std::printf("Fused AdamW f32 [%ld]: %.3f ns/element, %.1f GB/s (7 x 4 "
                "bytes an element)\n",
                static_cast<long>(n), s * 1e9 / n, 28.0 * n / s / 1e9);
    // The floor: a program that only reads p and writes it to g.
    std::vector<int64_t> copyModes = {0}, copyResults = {0, 0};
    cpu::FusedProgram copy{{}, {}, copyModes, copyResults, 1};
    double c = Best(5, [&] { return cpu::Fused({p.view}, {g.view}, copy); });
    std::printf("Fused copy f32 [%ld]: %.3f ns/element, %.1f GB/s\n",
                static_cast<long>(n), c * 1e9 / n, 8.0 * n / c / 1e9);
    // A gradient's squared norm, the clipping's first pass.
    std::vector<int64_t> sqCode = {static_cast<int64_t>(Op::Mul), 1, 0, 0},
                         sqResults = {1, 1};
    cpu::FusedProgram sq{sqCode, {}, copyModes, sqResults, 1};
    Buffer norm(DType::F32, {}, rng);
    double q = Best(5, [&] { return cpu::Fused({g.view}, {norm.view}, sq); });
    std::printf("Fused sum of squares f32 [%ld]: %.3f ns/element, %.1f GB/s\n",
                static_cast<long>(n), q * 1e9 / n, 4.0 * n / q / 1e9);
    // The same chain, one kernel per op (scalars pre-broadcast, as the
    // unfused step does with broadcast kernels).
    Buffer t1(DType::F32, {n}, rng), t2(DType::F32, {n}, rng),
        k(DType::F32, {n}, rng);
    auto bin = [&](cpu::BinaryKind kind, const Buffer &a, const Buffer &b,
                   const Buffer &o) {
      return cpu::Binary(kind, a.view, b.view, o.view);
    };
    double u = Best(3, [&]() -> absl::Status {
      using B = cpu::BinaryKind;
      for (int i = 0; i < 16; ++i) // 16 binary passes over n elements
        if (absl::Status st = bin(i % 2 ? B::Mul : B::Add, g, k, t1); !st.ok())
          return st;
      if (absl::Status st = cpu::Unary(cpu::UnaryKind::Sqrt, v.view, t2.view);
          !st.ok())
        return st;
      for (int i = 0; i < 3; ++i) // broadcasts of the scalars
        if (absl::Status st = bin(B::Mul, k, k, t2); !st.ok())
          return st;
      return absl::OkStatus();
    });
    std::printf("Unfused AdamW f32 [%ld] (20 kernels): %.3f ns/element\n",
                static_cast<long>(n), u * 1e9 / n);
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
  // The 155.7M Llama's attention (issue 15): 512 tokens, 16 query heads
  // over 4 kv heads, forward and VJP.
  {
    const int64_t b = 1, s = 512, hq = 16, hkv = 4, d = 64;
    Buffer q(DType::F32, {b, s, hq, d}, rng),
        k(DType::F32, {b, s, hkv, d}, rng), v(DType::F32, {b, s, hkv, d}, rng),
        o(DType::F32, {b, s, hq, d}, rng), dq(DType::F32, {b, s, hq, d}, rng),
        dk(DType::F32, {b, s, hkv, d}, rng),
        dv(DType::F32, {b, s, hkv, d}, rng);
    double fwd = Best(9, [&] {
      return cpu::Attention(q.view, k.view, v.view, nullptr, o.view, true,
                            0.125);
    });
    double bwd = Best(9, [&] {
      return cpu::AttentionGrad(q.view, k.view, v.view, nullptr, o.view,
                                dq.view, dk.view, dv.view, true, 0.125);
    });
    // Visible half of the scores: 2 GEMMs forward, 5 in the VJP.
    double gemm = 2.0 * b * hq * d * (s * (s + 1) / 2.0);
    std::printf("Attention f32 causal GQA [%ld,%ld,%ld/%ld,%ld]: forward "
                "%.2f ms (%.1f GFLOP/s), VJP %.2f ms (%.1f GFLOP/s)\n",
                static_cast<long>(b), static_cast<long>(s),
                static_cast<long>(hq), static_cast<long>(hkv),
                static_cast<long>(d), fwd * 1e3, 2 * gemm / fwd / 1e9,
                bwd * 1e3, 5 * gemm / bwd / 1e9);
  }
  // Long sequences: one query block against all its keys at once (the
  // block shrinks to 8 rows as the keys grow) against key tiles with a
  // running softmax (the default past kAttentionOneTileKeys keys).
  for (int64_t s : {4096, 8192}) {
    const int64_t b = 1, hq = 4, hkv = 1, d = 128;
    Buffer q(DType::F32, {b, s, hq, d}, rng),
        k(DType::F32, {b, s, hkv, d}, rng), v(DType::F32, {b, s, hkv, d}, rng),
        o(DType::F32, {b, s, hq, d}, rng), dq(DType::F32, {b, s, hq, d}, rng),
        dk(DType::F32, {b, s, hkv, d}, rng),
        dv(DType::F32, {b, s, hkv, d}, rng);
    double gemm = 2.0 * b * hq * d * (s * (s + 1) / 2.0);
    for (int64_t tile : {s, int64_t{512}, int64_t{1024}}) {
      cpu::SetAttentionKeyTile(tile);
      double fwd = Best(2, [&] {
        return cpu::Attention(q.view, k.view, v.view, nullptr, o.view, true,
                              0.08);
      });
      double bwd = Best(2, [&] {
        return cpu::AttentionGrad(q.view, k.view, v.view, nullptr, o.view,
                                  dq.view, dk.view, dv.view, true, 0.08);
      });
      std::printf("Attention f32 causal [%ld,%ld,%ld/%ld,%ld] key tile %ld: "
                  "forward %.1f ms (%.1f GFLOP/s), VJP %.1f ms\n",
                  static_cast<long>(b), static_cast<long>(s),
                  static_cast<long>(hq), static_cast<long>(hkv),
                  static_cast<long>(d), static_cast<long>(tile), fwd * 1e3,
                  2 * gemm / fwd / 1e9, bwd * 1e3);
    }
    cpu::SetAttentionKeyTile(0);
  }
  // Sliding windows and sinks (gpt-oss: 128-token windows, 64-wide heads):
  // the cost follows the window, not the sequence, and no score matrix
  // longer than a key tile exists.
  for (int64_t s : {2048, 8192}) {
    const int64_t b = 1, hq = 8, hkv = 1, d = 64, window = 128;
    Buffer q(DType::F32, {b, s, hq, d}, rng),
        k(DType::F32, {b, s, hkv, d}, rng), v(DType::F32, {b, s, hkv, d}, rng),
        o(DType::F32, {b, s, hq, d}, rng), dq(DType::F32, {b, s, hq, d}, rng),
        dk(DType::F32, {b, s, hkv, d}, rng),
        dv(DType::F32, {b, s, hkv, d}, rng), sinks(DType::F32, {hq}, rng),
        dsinks(DType::F32, {hq}, rng);
    double fwd = Best(3, [&] {
      return cpu::Attention(q.view, k.view, v.view, nullptr, o.view, true,
                            0.125, window, &sinks.view);
    });
    double bwd = Best(3, [&] {
      return cpu::AttentionGrad(q.view, k.view, v.view, nullptr, o.view,
                                dq.view, dk.view, dv.view, true, 0.125, window,
                                &sinks.view, &dsinks.view);
    });
    std::printf("Attention f32 window %ld + sinks [%ld,%ld,%ld/%ld,%ld]: "
                "forward %.2f ms (%.2f us/token), VJP %.2f ms\n",
                static_cast<long>(window), static_cast<long>(b),
                static_cast<long>(s), static_cast<long>(hq),
                static_cast<long>(hkv), static_cast<long>(d), fwd * 1e3,
                fwd * 1e6 / s, bwd * 1e3);
  }
  // The LM head and its loss of the 155.7M Llama (512 tokens, hidden 1024,
  // vocabulary 32000): the unfused chain (matmul, cross_entropy,
  // cross_entropy_grad, two matmuls) and linear_cross_entropy over chunks.
  for (auto [t, hdim] : {std::pair<int64_t, int64_t>{256, 768}, {512, 1024}}) {
    const int64_t vocab = 32000;
    Buffer h(DType::F32, {t, hdim}, rng), w(DType::F32, {vocab, hdim}, rng),
        dh(DType::F32, {t, hdim}, rng), dw(DType::F32, {vocab, hdim}, rng),
        logits(DType::F32, {t, vocab}, rng), dl(DType::F32, {t, vocab}, rng),
        loss(DType::F32, {}, rng);
    std::vector<int32_t> ids(t);
    for (int64_t i = 0; i < t; ++i)
      ids[i] = static_cast<int32_t>((i * 7919) % vocab);
    TensorView labels{ids.data(), DType::I32, {t}};
    float one = 1.0f;
    TensorView seed{&one, DType::F32, {}};
    const double flops = 3 * 2.0 * t * hdim * vocab;
    double unfused = Best(3, [&]() -> absl::Status {
      VEOMNI_RETURN_IF_ERROR(
          cpu::Matmul(h.view, w.view, logits.view, false, true));
      VEOMNI_RETURN_IF_ERROR(cpu::CrossEntropy(logits.view, labels, loss.view,
                                               -100, cpu::LossReduction::Mean));
      VEOMNI_RETURN_IF_ERROR(cpu::CrossEntropyGrad(
          logits.view, labels, seed, dl.view, -100, cpu::LossReduction::Mean));
      VEOMNI_RETURN_IF_ERROR(
          cpu::Matmul(dl.view, w.view, dh.view, false, false));
      return cpu::Matmul(dl.view, h.view, dw.view, true, false);
    });
    std::printf("LM head + loss [%ld x %ld, V %ld] unfused: %.1f ms (%.1f "
                "GFLOP/s)\n",
                static_cast<long>(t), static_cast<long>(hdim),
                static_cast<long>(vocab), unfused * 1e3, flops / unfused / 1e9);
    // Its parts: the three GEMMs and the softmax cross entropy between.
    double parts[4] = {
        Best(3,
             [&] {
               return cpu::Matmul(h.view, w.view, logits.view, false, true);
             }),
        Best(3,
             [&]() -> absl::Status {
               VEOMNI_RETURN_IF_ERROR(
                   cpu::CrossEntropy(logits.view, labels, loss.view, -100,
                                     cpu::LossReduction::Mean));
               return cpu::CrossEntropyGrad(logits.view, labels, seed, dl.view,
                                            -100, cpu::LossReduction::Mean);
             }),
        Best(3,
             [&] {
               return cpu::Matmul(dl.view, w.view, dh.view, false, false);
             }),
        Best(3, [&] {
          return cpu::Matmul(dl.view, h.view, dw.view, true, false);
        })};
    const double gemm = 2.0 * t * hdim * vocab;
    std::printf("  parts: h W^T %.1f ms (%.1f GFLOP/s), loss and dlogits %.1f "
                "ms, dlogits W %.1f ms (%.1f), dlogits^T h %.1f ms (%.1f)\n",
                parts[0] * 1e3, gemm / parts[0] / 1e9, parts[1] * 1e3,
                parts[2] * 1e3, gemm / parts[2] / 1e9, parts[3] * 1e3,
                gemm / parts[3] / 1e9);
    for (int64_t chunk : {128, 256, 512}) {
      Buffer ws(DType::F32, {chunk, vocab}, rng);
      double fused = Best(3, [&] {
        return cpu::LinearCrossEntropy(h.view, w.view, labels, seed, loss.view,
                                       dh.view, dw.view, ws.view, -100,
                                       cpu::LossReduction::Mean);
      });
      std::printf("LM head + loss, linear_cross_entropy chunk %ld: %.1f ms "
                  "(%.1f GFLOP/s)\n",
                  static_cast<long>(chunk), fused * 1e3, flops / fused / 1e9);
    }
  }
  return 0;
}
