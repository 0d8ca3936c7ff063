//===- CudaKernelsTest.cpp - every CUDA kernel against the CPU backend ----===//
//
// Each case is one kernel call, described as the executor makes it (a
// KernelDesc with the table's attributes): the same random inputs run
// through the CPU backend's registry on the host and through the CUDA
// backend's in a CudaDevice arena, and every output is compared within a
// stated tolerance (f32: 1e-5 relative to the output's largest magnitude,
// 16-bit: 2^-7). Data errors that only the device can see (an index or a
// label out of range) come back from Synchronize. Without a GPU the tests
// skip and say so.
//
//===----------------------------------------------------------------------===//

#include "runtime/backends/cpu/CpuDevice.h"
#include "runtime/backends/cuda/CudaDevice.h"
#include "runtime/core/Tensor.h"
#include "runtime/program/Fused.h"
#include "runtime/support/Status.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace veomni::rt {
namespace {

using kernel_table::AttrType;

/// A host tensor: its bytes, type and shape.
struct Host {
  DType type = DType::F32;
  Shape shape;
  std::vector<uint8_t> bytes;
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape)
      n *= d;
    return n;
  }
  TensorView view() { return TensorView{bytes.data(), type, shape}; }
  float at(int64_t i) const {
    switch (type) {
    case DType::F32: {
      float v;
      std::memcpy(&v, bytes.data() + 4 * i, 4);
      return v;
    }
    case DType::BF16: {
      uint16_t b;
      std::memcpy(&b, bytes.data() + 2 * i, 2);
      return Bf16ToF32(b);
    }
    case DType::F16: {
      uint16_t b;
      std::memcpy(&b, bytes.data() + 2 * i, 2);
      return F16ToF32(b);
    }
    case DType::I32: {
      int32_t v;
      std::memcpy(&v, bytes.data() + 4 * i, 4);
      return static_cast<float>(v);
    }
    default: {
      int64_t v;
      std::memcpy(&v, bytes.data() + 8 * i, 8);
      return static_cast<float>(v);
    }
    }
  }
};

Host Make(DType type, Shape shape) {
  Host h{type, std::move(shape), {}};
  h.bytes.resize(h.numel() * SizeOf(type));
  return h;
}

/// Floats uniform in [lo, hi).
Host Floats(std::mt19937 &rng, DType type, Shape shape, float lo = -2,
            float hi = 2) {
  Host h = Make(type, std::move(shape));
  std::uniform_real_distribution<float> u(lo, hi);
  for (int64_t i = 0; i < h.numel(); ++i) {
    float v = u(rng);
    if (type == DType::F32) {
      std::memcpy(h.bytes.data() + 4 * i, &v, 4);
    } else {
      uint16_t b = type == DType::BF16 ? F32ToBf16(v) : F32ToF16(v);
      std::memcpy(h.bytes.data() + 2 * i, &b, 2);
    }
  }
  return h;
}

/// Integers from `values`, i32 or i64.
Host Ints(DType type, Shape shape, const std::vector<int64_t> &values) {
  Host h = Make(type, std::move(shape));
  for (int64_t i = 0; i < h.numel(); ++i) {
    int64_t v = values[i % values.size()];
    if (type == DType::I32) {
      int32_t w = static_cast<int32_t>(v);
      std::memcpy(h.bytes.data() + 4 * i, &w, 4);
    } else {
      std::memcpy(h.bytes.data() + 8 * i, &v, 8);
    }
  }
  return h;
}

Host RandomInts(std::mt19937 &rng, DType type, Shape shape, int64_t lo,
                int64_t hi) {
  std::uniform_int_distribution<int64_t> u(lo, hi - 1);
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  std::vector<int64_t> v(n);
  for (int64_t &x : v)
    x = u(rng);
  return Ints(type, std::move(shape), v);
}

struct Case {
  std::string name;
  KernelKind kind;
  std::map<std::string, AttrValue> attrs;
  std::vector<Host> ins;
  std::vector<std::pair<DType, Shape>> outs;
  double tol = 0;         ///< 0: by the output's type
  int scratchOutputs = 0; ///< the last ones: workspaces, not compared
};

AttrValue I(int64_t v) { return {{v}, {}}; }
AttrValue F(double v) { return {{}, {v}}; }
AttrValue Is(std::vector<int64_t> v) { return {std::move(v), {}}; }

KernelDesc Desc(const Case &c) {
  KernelDesc k;
  k.kind = c.kind;
  const kernel_table::KernelInfo &info = kernel_table::Info(c.kind);
  for (uint32_t i = 0; i < info.numAttrs; ++i) {
    const kernel_table::AttrSpec &spec = info.attrs[i];
    auto it = c.attrs.find(spec.name);
    if (it != c.attrs.end()) {
      k.attrs.push_back(it->second);
    } else if (spec.type == AttrType::Float) {
      k.attrs.push_back(F(spec.defaultValue));
    } else if (spec.type == AttrType::Ints || spec.type == AttrType::Floats) {
      k.attrs.push_back({});
    } else {
      k.attrs.push_back(I(static_cast<int64_t>(spec.defaultValue)));
    }
  }
  return k;
}

/// The backend's device, opened once (one per process); null without one.
Device *Gpu() {
  static std::unique_ptr<Device> device = [] {
    absl::StatusOr<std::unique_ptr<Device>> d = cuda::CreateCudaDevice(0);
    return d.ok() ? *std::move(d) : nullptr;
  }();
  return device.get();
}

/// A second CPU device, standing in for the GPU in the CaseValidity
/// instantiation: there the cases run on the CPU backend twice, which
/// checks that every case is a call the CPU backend accepts (so the GPU
/// tests cannot rot into testing errors while no GPU is around).
Device *Stand() {
  static std::unique_ptr<Device> device = [] { return *CreateDevice("cpu"); }();
  return device.get();
}

/// Param: true for the CUDA backend, false for the stand-in.
class CudaKernels : public ::testing::TestWithParam<bool> {
protected:
  Device *Dev() { return GetParam() ? Gpu() : Stand(); }
  const KernelRegistry &Registry() {
    return GetParam() ? cuda::CudaKernels() : cpu::CpuKernels();
  }
  void SetUp() override {
    if (!Dev())
      GTEST_SKIP() << "no CUDA device on this machine (GPU test)";
    bool &allocated = GetParam() ? gpuArena_ : standArena_;
    if (!allocated) {
      ASSERT_TRUE(Dev()->AllocateArena(kArenaBytes).ok());
      allocated = true;
    }
  }

  /// Runs `c` on both backends; the CUDA call's status.
  absl::Status RunBoth(Case c, std::vector<Host> *cpuOut,
                       std::vector<Host> *gpuOut, bool cpuAccepts = true) {
    KernelDesc k = Desc(c);
    // CPU.
    std::vector<TensorView> ins, outs;
    for (Host &h : c.ins)
      ins.push_back(h.view());
    for (auto &[t, s] : c.outs)
      cpuOut->push_back(Make(t, s));
    for (Host &h : *cpuOut)
      outs.push_back(h.view());
    KernelFn cpuFn = cpu::CpuKernels().Find(c.kind);
    EXPECT_TRUE(cpuFn);
    absl::Status cs = cpuFn(k, ins, outs);
    EXPECT_EQ(cs.ok(), cpuAccepts) << c.name << " on the CPU: " << cs;
    // CUDA: operands packed into the arena at 64-byte offsets, as the
    // memory planner places buffers.
    uint64_t at = 0;
    std::vector<TensorView> dIns, dOuts;
    auto place = [&](Host &h) -> absl::StatusOr<TensorView> {
      uint64_t bytes = h.bytes.size();
      if (at + bytes > kArenaBytes)
        return absl::ResourceExhaustedError("test arena too small");
      if (bytes)
        VEOMNI_RETURN_IF_ERROR(Dev()->CopyIn(at, h.bytes.data(), bytes));
      TensorView v{Dev()->Arena() + at, h.type, h.shape};
      at += (bytes + 63) / 64 * 64; // the planner's alignment
      return v;
    };
    for (Host &h : c.ins) {
      VEOMNI_ASSIGN_OR_RETURN(TensorView v, place(h));
      dIns.push_back(v);
    }
    std::vector<uint64_t> outAt;
    for (auto &[t, s] : c.outs) {
      gpuOut->push_back(Make(t, s));
      // Garbage first, so a kernel that skips elements shows.
      std::fill(gpuOut->back().bytes.begin(), gpuOut->back().bytes.end(), 0x7f);
      outAt.push_back(at);
      VEOMNI_ASSIGN_OR_RETURN(TensorView v, place(gpuOut->back()));
      dOuts.push_back(v);
    }
    KernelFn gpuFn = Registry().Find(c.kind);
    if (!gpuFn)
      return absl::UnimplementedError("no CUDA kernel");
    VEOMNI_RETURN_IF_ERROR(gpuFn(k, dIns, dOuts));
    VEOMNI_RETURN_IF_ERROR(Dev()->Synchronize());
    for (size_t i = 0; i < gpuOut->size(); ++i) {
      Host &h = (*gpuOut)[i];
      if (!h.bytes.empty())
        VEOMNI_RETURN_IF_ERROR(
            Dev()->CopyOut(outAt[i], h.bytes.data(), h.bytes.size()));
    }
    return absl::OkStatus();
  }

  void Check(Case c) {
    SCOPED_TRACE(c.name);
    double tol = c.tol;
    std::vector<Host> want, got;
    absl::Status s = RunBoth(c, &want, &got);
    ASSERT_TRUE(s.ok()) << s;
    ASSERT_EQ(want.size(), got.size());
    for (size_t o = 0; o + c.scratchOutputs < want.size(); ++o) {
      double scale = 1e-6;
      for (int64_t i = 0; i < want[o].numel(); ++i)
        scale = std::max(scale, std::fabs(double(want[o].at(i))));
      double t =
          tol ? tol : (want[o].type == DType::F32 ? 1e-5 : 1.0 / 128) * scale;
      int bad = 0;
      for (int64_t i = 0; i < want[o].numel() && bad < 5; ++i) {
        double w = want[o].at(i), g = got[o].at(i);
        if (!(std::fabs(w - g) <= t) && !(std::isnan(w) && std::isnan(g))) {
          ADD_FAILURE() << "output " << o << " element " << i << ": cuda " << g
                        << ", cpu " << w << " (tolerance " << t << ")";
          ++bad;
        }
      }
    }
  }

  static constexpr uint64_t kArenaBytes = uint64_t{256} << 20;
  static bool gpuArena_, standArena_;
  std::mt19937 rng_{7};
};
bool CudaKernels::gpuArena_ = false;
bool CudaKernels::standArena_ = false;

INSTANTIATE_TEST_SUITE_P(Gpu, CudaKernels, ::testing::Values(true));
INSTANTIATE_TEST_SUITE_P(CaseValidity, CudaKernels, ::testing::Values(false));

TEST_P(CudaKernels, Matmul) {
  for (DType t : {DType::F32, DType::BF16}) {
    for (int tl = 0; tl < 2; ++tl)
      for (int tr = 0; tr < 2; ++tr) {
        Shape l = tl ? Shape{2, 7, 5} : Shape{2, 5, 7};
        Shape r = tr ? Shape{4, 7} : Shape{7, 4};
        Check({"matmul shared rhs",
               KernelKind::Matmul,
               {{"transpose_lhs", I(tl)}, {"transpose_rhs", I(tr)}},
               {Floats(rng_, t, l), Floats(rng_, t, r)},
               {{t, {2, 5, 4}}}});
        Shape rb = tr ? Shape{2, 4, 7} : Shape{2, 7, 4};
        Check({"matmul batched",
               KernelKind::Matmul,
               {{"transpose_lhs", I(tl)}, {"transpose_rhs", I(tr)}},
               {Floats(rng_, t, l), Floats(rng_, t, rb)},
               {{t, {2, 5, 4}}}});
      }
  }
  Check({"matmul bf16 into f32",
         KernelKind::Matmul,
         {},
         {Floats(rng_, DType::BF16, {33, 64}),
          Floats(rng_, DType::BF16, {64, 17})},
         {{DType::F32, {33, 17}}}});
  Check(
      {"matmul f32 x bf16",
       KernelKind::Matmul,
       {},
       {Floats(rng_, DType::F32, {9, 16}), Floats(rng_, DType::BF16, {16, 3})},
       {{DType::BF16, {9, 3}}}});
  Check({"matmul large",
         KernelKind::Matmul,
         {{"transpose_rhs", I(1)}},
         {Floats(rng_, DType::F32, {256, 512}),
          Floats(rng_, DType::F32, {384, 512})},
         {{DType::F32, {256, 384}}}});
}

TEST_P(CudaKernels, Elementwise) {
  const KernelKind unary[] = {
      KernelKind::Neg,  KernelKind::Exp,   KernelKind::Log,
      KernelKind::Sqrt, KernelKind::Rsqrt, KernelKind::Sin,
      KernelKind::Cos,  KernelKind::Tanh,  KernelKind::Sigmoid,
      KernelKind::Silu, KernelKind::Gelu,  KernelKind::GeluTanh};
  for (DType t : {DType::F32, DType::BF16})
    for (KernelKind k : unary) {
      // Log, sqrt and rsqrt on positive inputs.
      Check({std::string(KernelName(k)),
             k,
             {},
             {Floats(rng_, t, {1000}, 0.1f, 3.0f)},
             {{t, {1000}}}});
    }
  for (KernelKind k :
       {KernelKind::Add, KernelKind::Sub, KernelKind::Mul, KernelKind::Div})
    Check({std::string(KernelName(k)),
           k,
           {},
           {Floats(rng_, DType::F32, {3, 333}),
            Floats(rng_, DType::F32, {3, 333}, 0.5f, 2.0f)},
           {{DType::F32, {3, 333}}}});
  Check({"cast f32 to bf16",
         KernelKind::Cast,
         {},
         {Floats(rng_, DType::F32, {517})},
         {{DType::BF16, {517}}}});
  Check({"cast bf16 to f32",
         KernelKind::Cast,
         {},
         {Floats(rng_, DType::BF16, {517})},
         {{DType::F32, {517}}}});
  Check({"cast i32 to f32",
         KernelKind::Cast,
         {},
         {RandomInts(rng_, DType::I32, {100}, -50, 50)},
         {{DType::F32, {100}}}});
  Check({"cast i32 to i64",
         KernelKind::Cast,
         {},
         {RandomInts(rng_, DType::I32, {100}, -50, 50)},
         {{DType::I64, {100}}}});
  Check({"fill",
         KernelKind::Fill,
         {{"value", F(0.25)}},
         {},
         {{DType::BF16, {300}}}});
  Check({"copy",
         KernelKind::Copy,
         {},
         {Floats(rng_, DType::F32, {77})},
         {{DType::F32, {77}}}});
  Check({"clamp",
         KernelKind::Clamp,
         {{"min", F(-0.5)}, {"max", F(0.25)}},
         {Floats(rng_, DType::F32, {500})},
         {{DType::F32, {500}}}});
  Check({"clamp_grad",
         KernelKind::ClampGrad,
         {{"min", F(-1e308)}, {"max", F(0.25)}},
         {Floats(rng_, DType::F32, {500}), Floats(rng_, DType::F32, {500})},
         {{DType::F32, {500}}}});
  for (int tanhForm = 0; tanhForm < 2; ++tanhForm)
    Check({"gelu_grad",
           KernelKind::GeluGrad,
           {{"tanh_approximation", I(tanhForm)}},
           {Floats(rng_, DType::F32, {500}), Floats(rng_, DType::F32, {500})},
           {{DType::F32, {500}}}});
}

TEST_P(CudaKernels, ShapesAndReductions) {
  Host x = Floats(rng_, DType::F32, {4, 5, 6});
  Check({"reduce_sum dim 1",
         KernelKind::ReduceSum,
         {{"dims", Is({1})}},
         {x},
         {{DType::F32, {4, 6}}}});
  Check({"reduce_max dims 0 2",
         KernelKind::ReduceMax,
         {{"dims", Is({0, 2})}},
         {x},
         {{DType::F32, {1, 5, 1}}}});
  Check({"reduce_mean all",
         KernelKind::ReduceMean,
         {{"dims", Is({0, 1, 2})}},
         {x},
         {{DType::F32, {}}}});
  Check({"softmax dim 1",
         KernelKind::Softmax,
         {{"dim", I(1)}},
         {x},
         {{DType::F32, {4, 5, 6}}}});
  Check({"softmax last",
         KernelKind::Softmax,
         {{"dim", I(2)}},
         {x},
         {{DType::F32, {4, 5, 6}}}});
  Check({"broadcast",
         KernelKind::Broadcast,
         {{"dims", Is({0, 2})}},
         {Floats(rng_, DType::F32, {1, 6})},
         {{DType::F32, {3, 4, 6}}}});
  Check({"transpose",
         KernelKind::Transpose,
         {{"perm", Is({2, 0, 1})}},
         {x},
         {{DType::F32, {6, 4, 5}}}});
  Host table = Floats(rng_, DType::F32, {10, 8});
  Host idx = RandomInts(rng_, DType::I32, {2, 6}, 0, 10);
  Check({"gather",
         KernelKind::Gather,
         {},
         {table, idx},
         {{DType::F32, {2, 6, 8}}}});
  // A rank's rows [4, 9) of 10: other indices give zeros.
  Check({"gather split",
         KernelKind::Gather,
         {{"index_offset", I(4)}, {"index_total", I(10)}},
         {Floats(rng_, DType::F32, {5, 8}), idx},
         {{DType::F32, {2, 6, 8}}}});
  for (DType t : {DType::F32, DType::BF16})
    Check({"scatter_add",
           KernelKind::ScatterAdd,
           {},
           {Floats(rng_, t, {10, 8}), idx, Floats(rng_, t, {2, 6, 8})},
           {{t, {10, 8}}}});
}

TEST_P(CudaKernels, NormsAndRope) {
  for (DType t : {DType::F32, DType::BF16}) {
    Host x = Floats(rng_, t, {6, 64}), w = Floats(rng_, t, {64});
    Check({"rms_norm",
           KernelKind::RmsNorm,
           {{"epsilon", F(1e-6)}},
           {x, w},
           {{t, {6, 64}}}});
    Check({"rms_norm_grad",
           KernelKind::RmsNormGrad,
           {{"epsilon", F(1e-6)}},
           {x, w, Floats(rng_, t, {6, 64})},
           {{t, {6, 64}}, {t, {64}}}});
  }
  Host q = Floats(rng_, DType::F32, {2, 5, 3, 8});
  Host pos = RandomInts(rng_, DType::I32, {2, 5}, 0, 100);
  for (KernelKind k : {KernelKind::Rope, KernelKind::RopeInverse})
    Check({std::string(KernelName(k)),
           k,
           {{"theta", F(10000.0)}},
           {q, pos},
           {{DType::F32, {2, 5, 3, 8}}}});
  // Multimodal rope: three sections of positions.
  Check({"rope mrope",
         KernelKind::Rope,
         {{"mrope_section", Is({1, 1, 2})}, {"theta", F(10000.0)}},
         {q, RandomInts(rng_, DType::I64, {3, 2, 5}, 0, 50)},
         {{DType::F32, {2, 5, 3, 8}}}});
}

TEST_P(CudaKernels, Attention) {
  struct Shape7 {
    int64_t b, s, hq, hkv, d;
  };
  // Modes: plain; sliding window 4; sinks; window 4 and sinks (causal only).
  for (Shape7 a : {Shape7{1, 7, 2, 1, 16}, Shape7{2, 33, 4, 2, 64},
                   Shape7{1, 65, 2, 2, 128}})
    for (int causal = 0; causal < 2; ++causal)
      for (int withSeg = 0; withSeg < 3; ++withSeg) // none, [B,S], blocks
        for (int mode = 0; mode < 4; ++mode) {
          if ((mode > 0 || withSeg == 2) && !causal)
            continue;
          bool window = mode & 1, sinks = mode & 2;
          Host q = Floats(rng_, DType::F32, {a.b, a.s, a.hq, a.d});
          Host k = Floats(rng_, DType::F32, {a.b, a.s, a.hkv, a.d});
          Host v = Floats(rng_, DType::F32, {a.b, a.s, a.hkv, a.d});
          Host dout = Floats(rng_, DType::F32, {a.b, a.s, a.hq, a.d});
          Host sinkLogits = Floats(rng_, DType::F32, {a.hq});
          std::vector<int64_t> segs(a.b * a.s);
          for (int64_t i = 0; i < a.b * a.s; ++i)
            segs[i] = (i % a.s) / 5; // packed documents of 5 tokens
          // Blocks (plane 1 of [2, B, S]): runs of 4 tokens every 7, some
          // across a document boundary (17-20 over 20).
          if (withSeg == 2)
            for (int64_t i = 0; i < a.b * a.s; ++i)
              segs.push_back((i % a.s) % 7 >= 3 ? 1 + (i % a.s) / 7 : 0);
          Host seg = withSeg == 2 ? Ints(DType::I32, {2, a.b, a.s}, segs)
                                  : Ints(DType::I32, {a.b, a.s}, segs);
          std::map<std::string, AttrValue> attrs = {
              {"causal", I(causal)},
              {"scale", F(1.0 / std::sqrt(a.d))},
              {"window", I(window ? 4 : 0)}};
          std::vector<Host> fwdIns = {q, k, v}, bwdIns = {q, k, v};
          if (withSeg) {
            fwdIns.push_back(seg);
            bwdIns.push_back(seg);
          }
          if (sinks) {
            fwdIns.push_back(sinkLogits);
            bwdIns.push_back(sinkLogits);
          }
          bwdIns.push_back(dout);
          std::vector<std::pair<DType, Shape>> grads = {
              {DType::F32, {a.b, a.s, a.hq, a.d}},
              {DType::F32, {a.b, a.s, a.hkv, a.d}},
              {DType::F32, {a.b, a.s, a.hkv, a.d}}};
          if (sinks)
            grads.push_back({DType::F32, {a.hq}});
          Check({"attention",
                 KernelKind::Attention,
                 attrs,
                 fwdIns,
                 {{DType::F32, {a.b, a.s, a.hq, a.d}}}});
          Check({"attention_grad", KernelKind::AttentionGrad, attrs, bwdIns,
                 grads});
        }
}

TEST_P(CudaKernels, CrossEntropy) {
  Host logits = Floats(rng_, DType::F32, {2, 9, 50}, -4, 4);
  Host labels = Ints(DType::I64, {2, 9}, {3, 49, -100, 0, 17, 17, 8, -100, 21});
  for (int reduction = 0; reduction < 3; ++reduction) {
    Shape lossShape = reduction == 2 ? Shape{2, 9} : Shape{};
    std::map<std::string, AttrValue> attrs = {{"reduction", I(reduction)}};
    Check({"cross_entropy",
           KernelKind::CrossEntropy,
           attrs,
           {logits, labels},
           {{DType::F32, lossShape}}});
    Check({"cross_entropy_grad",
           KernelKind::CrossEntropyGrad,
           attrs,
           {logits, labels, Floats(rng_, DType::F32, lossShape, 0.5f, 1.5f)},
           {{DType::F32, {2, 9, 50}}}});
  }
}

TEST_P(CudaKernels, Fused) {
  using Op = kernel_table::fused::Op;
  auto op = [](Op o) { return static_cast<int64_t>(o); };
  // y = silu(x) * s + b[i % 50] (b Inner), z = round_bf16(y) / c[i / 50]
  // (c Outer), and the rows' sums of y and maxima of z (4 rows of 50).
  std::vector<int64_t> code = {
      op(Op::Silu),      4, 0, 0, op(Op::Mul), 4, 4, 1, op(Op::Add),   4, 4, 2,
      op(Op::RoundBf16), 5, 4, 0, op(Op::Div), 5, 5, 3, op(Op::Const), 6, 0, 0,
      op(Op::Mul),       5, 5, 6};
  std::map<std::string, AttrValue> attrs = {
      {"code", Is(code)},
      {"constants", {{}, {0.5}}},
      {"input_modes", Is({0, 1, 1, 2})},
      {"results", Is({4, 0, 5, 0, 4, 1, 5, 2})}};
  Host x = Floats(rng_, DType::F32, {4, 50});
  Host s = Floats(rng_, DType::F32, {});
  Host b = Floats(rng_, DType::F32, {50});
  Host c = Floats(rng_, DType::F32, {4, 1}, 0.5f, 2.0f);
  Check({"fused rows",
         KernelKind::Fused,
         attrs,
         {x, s, b, c},
         {{DType::F32, {4, 50}},
          {DType::BF16, {4, 50}},
          {DType::F32, {4}},
          {DType::F32, {4}}}});
  // One value over everything (partials combined in order), and two
  // segments of different sizes (multi-tensor).
  attrs["results"] = Is({4, 3, 5, 1});
  attrs["segments"] = I(2);
  Host x2 = Floats(rng_, DType::F32, {3000});
  Host b2 = Floats(rng_, DType::F32, {3000});
  Host c2 = Floats(rng_, DType::F32, {1}, 0.5f, 2.0f);
  Check({"fused segments, reduced to one",
         KernelKind::Fused,
         attrs,
         {x, s, b, c, x2, s, b2, c2},
         {{DType::F32, {}},
          {DType::F32, {}},
          {DType::F32, {}},
          {DType::F32, {}}}});
}

TEST_P(CudaKernels, LinearCrossEntropy) {
  // 9 tokens in chunks of 4 (three chunks), vocabulary 40, hidden 16; a
  // mean and a sum, f32 and bf16 (whose workspace has 16 more rows).
  const int64_t tokens = 9, h = 16, vocab = 40, chunk = 4;
  Host labels = Ints(DType::I32, {tokens}, {3, 39, -100, 0, 17, 17, 8, 2, 5});
  for (DType t : {DType::F32, DType::BF16})
    for (int reduction = 0; reduction < 2; ++reduction) {
      int64_t wsRows = chunk + (t == DType::F32 ? 0 : h);
      Check({"linear_cross_entropy",
             KernelKind::LinearCrossEntropy,
             {{"reduction", I(reduction)}},
             {Floats(rng_, t, {tokens, h}), Floats(rng_, t, {vocab, h}), labels,
              Floats(rng_, DType::F32, {}, 0.5f, 1.5f)},
             {{DType::F32, {}},
              {t, {tokens, h}},
              {t, {vocab, h}},
              {DType::F32, {wsRows, vocab}}},
             0,
             /*scratchOutputs=*/1});
    }
}

TEST_P(CudaKernels, MixtureOfExperts) {
  const int64_t tokens = 7, experts = 6, k = 2, hidden = 12, inner = 5;
  Host logits = Floats(rng_, DType::F32, {tokens, experts});
  for (int normalize = 0; normalize < 2; ++normalize) {
    std::map<std::string, AttrValue> attrs = {{"k", I(k)},
                                              {"normalize", I(normalize)}};
    Check({"moe_topk",
           KernelKind::MoETopK,
           attrs,
           {logits},
           {{DType::F32, {tokens, k}}, {DType::I32, {tokens, k}}}});
    Check({"moe_topk_grad",
           KernelKind::MoETopKGrad,
           attrs,
           {logits, Floats(rng_, DType::F32, {tokens, k})},
           {{DType::F32, {tokens, experts}}}});
  }
  Host scores = Floats(rng_, DType::F32, {tokens, experts}, 0, 1);
  Host bias = Floats(rng_, DType::F32, {experts}, -0.1, 0.1);
  for (int normalize = 0; normalize < 2; ++normalize) {
    std::map<std::string, AttrValue> attrs = {{"k", I(k)},
                                              {"groups", I(3)},
                                              {"topk_groups", I(2)},
                                              {"normalize", I(normalize)},
                                              {"scale", F(2.5)}};
    Check({"moe_group_topk",
           KernelKind::MoEGroupTopK,
           attrs,
           {scores, bias},
           {{DType::F32, {tokens, k}}, {DType::I32, {tokens, k}}}});
    Check({"moe_group_topk_grad",
           KernelKind::MoEGroupTopKGrad,
           attrs,
           {scores, bias, Floats(rng_, DType::F32, {tokens, k})},
           {{DType::F32, {tokens, experts}}}});
  }
  // Expert 4 gets no copy; expert 1 several, from tokens far apart.
  Host idx =
      Ints(DType::I64, {tokens, k}, {1, 0, 3, 1, 5, 2, 0, 1, 2, 3, 1, 5, 0, 2});
  Host x = Floats(rng_, DType::F32, {tokens, hidden});
  for (DType t : {DType::F32, DType::BF16})
    Check({"moe_dispatch",
           KernelKind::MoEDispatch,
           {{"num_experts", I(experts)}},
           {Floats(rng_, t, {tokens, hidden}), idx},
           {{t, {tokens * k, hidden}}, {DType::I32, {experts}}}});
  Host rows = Floats(rng_, DType::F32, {tokens * k, hidden});
  Host w = Floats(rng_, DType::F32, {tokens, k});
  Check({"moe_combine",
         KernelKind::MoECombine,
         {},
         {rows, w, idx},
         {{DType::F32, {tokens, hidden}}}});
  // Ids too large to count (past max(copies, 1024)) take the ranking path.
  Host big = Ints(DType::I64, {tokens, k},
                  {9000, 0, 3, 9000, 5, 2000, 0, 1, 2000, 3, 1, 5, 0, 2});
  Check({"moe_combine large ids",
         KernelKind::MoECombine,
         {},
         {rows, w, big},
         {{DType::F32, {tokens, hidden}}}});
  Check({"moe_combine_grad",
         KernelKind::MoECombineGrad,
         {},
         {rows, w, idx, Floats(rng_, DType::F32, {tokens, hidden})},
         {{DType::F32, {tokens * k, hidden}}, {DType::F32, {tokens, k}}}});
  // Rows per expert as dispatch counts them above: 3 4 3 2 0 2.
  Host sizes = Ints(DType::I32, {experts}, {3, 4, 3, 2, 0, 2});
  for (int tw = 0; tw < 2; ++tw) {
    Shape wShape =
        tw ? Shape{experts, inner, hidden} : Shape{experts, hidden, inner};
    Host weight = Floats(rng_, DType::F32, wShape);
    std::map<std::string, AttrValue> attrs = {{"transpose_weight", I(tw)}};
    Check({"grouped_matmul",
           KernelKind::GroupedMatmul,
           attrs,
           {rows, weight, sizes},
           {{DType::F32, {tokens * k, inner}}}});
    Check({"grouped_matmul_weight_grad",
           KernelKind::GroupedMatmulWeightGrad,
           attrs,
           {rows, weight, sizes, Floats(rng_, DType::F32, {tokens * k, inner})},
           {{DType::F32, wShape}}});
  }
}

TEST_P(CudaKernels, EncoderKinds) {
  Host x = Floats(rng_, DType::F32, {5, 24}, -3, 3);
  Host w = Floats(rng_, DType::F32, {24}), b = Floats(rng_, DType::F32, {24});
  Host dy = Floats(rng_, DType::F32, {5, 24});
  std::map<std::string, AttrValue> eps = {{"epsilon", F(1e-5)}};
  Check({"layer_norm",
         KernelKind::LayerNorm,
         eps,
         {x, w, b},
         {{DType::F32, {5, 24}}}});
  Check({"layer_norm no bias",
         KernelKind::LayerNorm,
         eps,
         {x, w},
         {{DType::F32, {5, 24}}}});
  Check({"layer_norm_grad",
         KernelKind::LayerNormGrad,
         eps,
         {x, w, b, dy},
         {{DType::F32, {5, 24}}, {DType::F32, {24}}, {DType::F32, {24}}}});
  Check({"layer_norm_grad no bias",
         KernelKind::LayerNormGrad,
         eps,
         {x, w, dy},
         {{DType::F32, {5, 24}}, {DType::F32, {24}}}});
  Host t = Floats(rng_, DType::BF16, {4, 9, 6});
  std::map<std::string, AttrValue> slice = {{"start", Is({1, 2, 0})},
                                            {"limit", Is({4, 9, 5})},
                                            {"step", Is({2, 3, 1})}};
  Check({"slice", KernelKind::Slice, slice, {t}, {{DType::BF16, {2, 3, 5}}}});
  Check({"slice_grad",
         KernelKind::SliceGrad,
         slice,
         {Floats(rng_, DType::BF16, {2, 3, 5})},
         {{DType::BF16, {4, 9, 6}}}});
  Check({"concat",
         KernelKind::Concat,
         {{"dim", I(1)}},
         {Floats(rng_, DType::F32, {3, 2, 4}),
          Floats(rng_, DType::F32, {3, 5, 4})},
         {{DType::F32, {3, 7, 4}}}});
  Host r = Floats(rng_, DType::F32, {4, 5, 6});
  Check({"reduce_max_grad",
         KernelKind::ReduceMaxGrad,
         {{"dims", Is({1})}},
         {r, Floats(rng_, DType::F32, {4, 6})},
         {{DType::F32, {4, 5, 6}}}});
  Host in = Floats(rng_, DType::F32, {2, 3, 17});
  Host k = Floats(rng_, DType::F32, {4, 3, 3}),
       kb = Floats(rng_, DType::F32, {4});
  std::map<std::string, AttrValue> conv = {{"stride", I(2)}, {"padding", I(1)}};
  // (17 + 2 - 3) / 2 + 1 = 9 outputs.
  Check({"conv1d",
         KernelKind::Conv1D,
         conv,
         {in, k, kb},
         {{DType::F32, {2, 4, 9}}}});
  Check(
      {"conv1d_grad",
       KernelKind::Conv1DGrad,
       conv,
       {in, k, kb, Floats(rng_, DType::F32, {2, 4, 9})},
       {{DType::F32, {2, 3, 17}}, {DType::F32, {4, 3, 3}}, {DType::F32, {4}}}});
}

TEST_P(CudaKernels, BadDataIsReportedAtSynchronize) {
  std::vector<Host> a, b;
  absl::Status s = RunBoth(
      {"gather out of range",
       KernelKind::Gather,
       {},
       {Floats(rng_, DType::F32, {4, 2}), Ints(DType::I32, {3}, {0, 9, 1})},
       {{DType::F32, {3, 2}}}},
      &a, &b, /*cpuAccepts=*/false);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  std::string message(s.message());
  std::transform(message.begin(), message.end(), message.begin(), ::tolower);
  EXPECT_NE(message.find("gather"), std::string::npos) << s;
  // The word is cleared: the next call is fine.
  a.clear();
  b.clear();
  EXPECT_TRUE(RunBoth({"fill",
                       KernelKind::Fill,
                       {{"value", F(1)}},
                       {},
                       {{DType::F32, {4}}}},
                      &a, &b)
                  .ok());
}

TEST(CudaBackend, RegistryHasEveryKernelOfTheTable) {
  // Runs without a GPU: every kind a program can hold (collectives are the
  // communicator's) has a CUDA kernel, as on the CPU backend.
  for (uint16_t i = 0; i < kernel_table::kNumKernelKinds; ++i) {
    KernelKind k = static_cast<KernelKind>(i);
    if (kernel_table::Info(k).flags & kernel_table::kCollective)
      continue;
    EXPECT_TRUE(cuda::CudaKernels().Find(k)) << KernelName(k);
    EXPECT_TRUE(cpu::CpuKernels().Find(k)) << KernelName(k);
  }
}

TEST(CudaBackend, NoDeviceIsAClearError) {
  absl::StatusOr<std::vector<cuda::DeviceInfo>> devices = cuda::ListDevices();
  ASSERT_TRUE(devices.ok()) << devices.status();
  absl::StatusOr<std::unique_ptr<Device>> d =
      cuda::CreateCudaDevice(static_cast<int>(devices->size()));
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kNotFound) << d.status();
}

} // namespace
} // namespace veomni::rt
