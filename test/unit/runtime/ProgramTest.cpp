//===- ProgramTest.cpp - loading, checking and running .vmb programs ------===//
//
// Programs are built here with the FlatBuffers API directly (the runtime's
// tests do not link the compiler), then damaged in every way a file on disk
// can be: each damage must give one clear error, never a crash.
//
//===----------------------------------------------------------------------===//

#include "runtime/executor/Executor.h"
#include "runtime/schema/ProgramFile.h"
#include "runtime/schema/program_generated.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <map>

namespace veomni::rt {
namespace {

/// What a test program looks like; Build() serializes it as the compiler
/// would. Default: y = exp(x + w) for x, w, y of 8 f32.
struct Spec {
  uint64_t arena = 3 * 64;
  std::vector<std::pair<uint64_t, std::vector<int64_t>>> buffers = {
      {0, {8}}, {64, {8}}, {128, {8}}};
  struct Arg {
    std::string name;
    fb::ArgumentRole kind;
    uint32_t buffer;
  };
  std::vector<Arg> args = {{"x", fb::ArgumentRole::BatchInput, 0},
                           {"w", fb::ArgumentRole::Parameter, 1}};
  struct Kern {
    KernelKind kind;
    std::vector<uint32_t> ins, outs;
    /// One list of integers per attribute; `floats` for Float attributes.
    std::vector<std::vector<int64_t>> attrs = {};
    std::vector<std::vector<double>> floats = {};
  };
  std::vector<Kern> kernels = {{KernelKind::Add, {0, 1}, {2}},
                               {KernelKind::Exp, {2}, {2}}};
  std::vector<std::pair<uint32_t, std::vector<uint8_t>>> constants;
  std::vector<uint32_t> outputs = {2};
  uint8_t role = 0; ///< fb::ProgramRole
  uint32_t worldSize = 1;
  std::vector<std::pair<std::string, uint32_t>> mesh;
  std::vector<std::vector<uint32_t>> commGroups;
  /// Per buffer (absent: whole), per dimension, the mesh axes splitting it.
  std::map<uint32_t, std::vector<std::vector<uint32_t>>> splits;
};

std::vector<uint8_t> Build(const Spec &spec) {
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<flatbuffers::Offset<fb::Buffer>> buffers;
  for (uint32_t i = 0; i < spec.buffers.size(); ++i) {
    auto &[offset, shape] = spec.buffers[i];
    std::vector<flatbuffers::Offset<fb::DimSplit>> split;
    auto it = spec.splits.find(i);
    if (it != spec.splits.end())
      for (const std::vector<uint32_t> &axes : it->second)
        split.push_back(fb::CreateDimSplitDirect(fbb, &axes));
    buffers.push_back(
        fb::CreateBufferDirect(fbb, offset, fb::DType::F32, &shape,
                               it != spec.splits.end() ? &split : nullptr));
  }
  std::vector<flatbuffers::Offset<fb::Argument>> args;
  for (const Spec::Arg &a : spec.args)
    args.push_back(fb::CreateArgumentDirect(
        fbb, a.name.c_str(), a.kind, a.buffer, "", fb::ParamInit::Normal, 0));
  std::vector<flatbuffers::Offset<fb::Kernel>> kernels;
  for (const Spec::Kern &k : spec.kernels) {
    std::vector<flatbuffers::Offset<fb::Attr>> attrs;
    for (const std::vector<int64_t> &ints : k.attrs)
      attrs.push_back(fb::CreateAttrDirect(fbb, &ints, nullptr));
    for (const std::vector<double> &floats : k.floats)
      attrs.push_back(fb::CreateAttrDirect(fbb, nullptr, &floats));
    kernels.push_back(fb::CreateKernelDirect(fbb, static_cast<uint16_t>(k.kind),
                                             &k.ins, &k.outs, &attrs, "test"));
  }
  std::vector<flatbuffers::Offset<fb::Constant>> constants;
  for (auto &[buffer, data] : spec.constants)
    constants.push_back(fb::CreateConstantDirect(fbb, buffer, &data));
  std::vector<flatbuffers::Offset<fb::MeshAxis>> mesh;
  for (auto &[name, size] : spec.mesh)
    mesh.push_back(fb::CreateMeshAxisDirect(fbb, name.c_str(), size));
  std::vector<flatbuffers::Offset<fb::CommGroup>> groups;
  for (const std::vector<uint32_t> &axes : spec.commGroups)
    groups.push_back(fb::CreateCommGroupDirect(fbb, &axes));
  auto program = fb::CreateProgramDirect(
      fbb, "test", static_cast<fb::ProgramRole>(spec.role), spec.arena,
      &buffers, &args, &constants, &kernels, &spec.outputs, nullptr, nullptr,
      nullptr, spec.worldSize, &mesh, &groups);
  fb::FinishProgramBuffer(fbb, program);
  fb::ProgramHeader h = fb::MakeHeader(fbb.GetBufferPointer(), fbb.GetSize());
  std::vector<uint8_t> bytes(sizeof(h) + fbb.GetSize());
  std::memcpy(bytes.data(), &h, sizeof(h));
  std::memcpy(bytes.data() + sizeof(h), fbb.GetBufferPointer(), fbb.GetSize());
  return bytes;
}

std::string ErrorOf(const std::vector<uint8_t> &bytes) {
  absl::StatusOr<Program> p = ParseProgram(bytes, "p.vmb");
  return p.ok() ? "" : std::string(p.status().message());
}

TEST(Program, LoadsRunsAndAllocatesExactlyThePlannedArena) {
  absl::StatusOr<Program> p = ParseProgram(Build(Spec()), "p.vmb");
  ASSERT_TRUE(p.ok()) << p.status();
  auto ex = Executor::Create(*std::move(p));
  ASSERT_TRUE(ex.ok()) << ex.status();
  EXPECT_EQ((*ex)->ArenaBytes(), 3u * 64);
  TensorView x = *(*ex)->Argument("x"), w = *(*ex)->Argument("w");
  for (int i = 0; i < 8; ++i) {
    StoreF(x, i, 0.25f * i);
    StoreF(w, i, -0.5f);
  }
  ASSERT_TRUE((*ex)->Run().ok());
  for (int i = 0; i < 8; ++i)
    EXPECT_FLOAT_EQ(LoadF((*ex)->Output(0), i), std::exp(0.25f * i - 0.5f));
  EXPECT_FALSE((*ex)->Argument("nope").ok());
}

// After a step that was not finite, the runtime runs it again and names the
// first kernel that wrote a value that is not finite (y = exp(x + w)).
TEST(Program, TheProbeNamesTheFirstKernelThatIsNotFinite) {
  absl::StatusOr<Program> p = ParseProgram(Build(Spec()), "p.vmb");
  ASSERT_TRUE(p.ok()) << p.status();
  auto ex = Executor::Create(*std::move(p));
  ASSERT_TRUE(ex.ok()) << ex.status();
  TensorView x = *(*ex)->Argument("x"), w = *(*ex)->Argument("w");
  for (int i = 0; i < 8; ++i) {
    StoreF(x, i, 0.25f * i);
    StoreF(w, i, -0.5f);
  }
  absl::StatusOr<std::string> where = (*ex)->RunProbe();
  ASSERT_TRUE(where.ok()) << where.status();
  EXPECT_EQ(*where, "");
  StoreF(x, 3, 200); // exp overflows
  where = (*ex)->RunProbe();
  ASSERT_TRUE(where.ok()) << where.status();
  EXPECT_EQ(*where, "kernel 1 (Exp) in test");
  StoreF(x, 5, std::numeric_limits<float>::infinity());
  StoreF(w, 5, -std::numeric_limits<float>::infinity()); // inf - inf
  where = (*ex)->RunProbe();
  ASSERT_TRUE(where.ok()) << where.status();
  EXPECT_EQ(*where, "kernel 0 (Add) in test");
  // An ordinary run afterwards checks nothing and still computes.
  StoreF(x, 5, 0);
  StoreF(w, 5, 0);
  StoreF(x, 3, 0);
  ASSERT_TRUE((*ex)->Run().ok());
  EXPECT_FLOAT_EQ(LoadF((*ex)->Output(0), 3), std::exp(-0.5f));
}

TEST(Program, EveryTruncationIsAnError) {
  std::vector<uint8_t> good = Build(Spec());
  for (size_t n = 0; n < good.size(); ++n) {
    std::vector<uint8_t> cut(good.begin(), good.begin() + n);
    std::string error = ErrorOf(cut);
    ASSERT_FALSE(error.empty()) << "accepted " << n << " bytes";
    EXPECT_NE(error.find("p.vmb: invalid program: truncated"),
              std::string::npos)
        << error;
  }
}

TEST(Program, EveryFlippedBitIsAnError) {
  std::vector<uint8_t> good = Build(Spec());
  for (size_t byte = 0; byte < good.size(); ++byte) {
    for (int bit = 0; bit < 8; bit += 3) {
      std::vector<uint8_t> bad = good;
      bad[byte] ^= static_cast<uint8_t>(1u << bit);
      std::string error = ErrorOf(bad);
      // Byte 12..15 are reserved: a flip there is harmless by design.
      if (byte >= 12 && byte < 16)
        continue;
      EXPECT_FALSE(error.empty()) << "accepted a flip at byte " << byte;
    }
  }
  std::vector<uint8_t> bad = good;
  bad[fb::kHeaderBytes + 20] ^= 1;
  EXPECT_NE(ErrorOf(bad).find("checksum mismatch"), std::string::npos);
  bad = good;
  bad[0] = 'X';
  EXPECT_NE(ErrorOf(bad).find("bad magic"), std::string::npos);
  bad = good;
  bad[8] = 99;
  EXPECT_NE(ErrorOf(bad).find("format version 99"), std::string::npos);
}

/// A well-formed file (correct hash) with one semantic defect.
void ExpectRejected(std::function<void(Spec &)> damage,
                    const std::string &message) {
  Spec spec;
  damage(spec);
  std::string error = ErrorOf(Build(spec));
  EXPECT_NE(error.find(message), std::string::npos) << "got: '" << error << "'";
}

// A sliced buffer's global shape and each rank's place in it: chunks are
// row-major over a dimension's axes, as an all-gather over them
// concatenates.
TEST(Program, SlicesHaveGlobalShapesAndStarts) {
  Spec s;
  s.worldSize = 4;
  s.mesh = {{"dp", 2}, {"tp", 2}};
  s.buffers[1] = {64, {2, 4}};
  s.buffers[0] = {0, {2, 4}};
  s.buffers[2] = {128, {2, 4}};
  s.splits[1] = {{0, 1}, {}}; // rows over dp then tp
  s.splits[2] = {{}, {1}};    // columns over tp
  std::vector<uint8_t> bytes = Build(s);
  auto p = ParseProgram(bytes, "p.vmb");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->buffers[1].global, (Shape{8, 4}));
  EXPECT_EQ(p->buffers[2].global, (Shape{2, 8}));
  EXPECT_FALSE(p->IsSliced(0));
  EXPECT_TRUE(p->IsSliced(1));
  // Rank r sits at (dp, tp) = (r / 2, r % 2).
  for (uint32_t r = 0; r < 4; ++r) {
    EXPECT_EQ(p->SliceStart(1, r), (std::vector<int64_t>{2 * r, 0})) << r;
    EXPECT_EQ(p->SliceStart(2, r), (std::vector<int64_t>{0, 4 * (r % 2)})) << r;
  }
}

TEST(Program, SemanticDefectsAreNamed) {
  ExpectRejected([](Spec &s) { s.buffers[2].first = 192; },
                 "buffer 2 [192, +32) lies outside the arena of 192 bytes");
  ExpectRejected([](Spec &s) { s.buffers[1].first = 70; },
                 "buffer 1 [70, +32) lies outside");
  ExpectRejected(
      [](Spec &s) {
        s.buffers[0].second = {8, 0};
      },
      "buffer 0: bad dimension 0");
  ExpectRejected(
      [](Spec &s) {
        s.kernels[0].ins = {0, 7};
      },
      "kernel 0 (Add) names buffer 7 of 3");
  ExpectRejected(
      [](Spec &s) {
        s.kernels[1].ins = {0, 1};
      },
      "kernel 1 (Exp) has 2 inputs and 1 outputs");
  ExpectRejected([](Spec &s) { s.kernels[0].attrs = {{1}}; },
                 "kernel 0 (Add) has 1 attributes, its kind takes 0");
  ExpectRejected(
      [](Spec &s) {
        s.kernels[1] = {KernelKind::Softmax, {2}, {2}, {}, {{1.0}}};
      },
      "kernel 1 (Softmax): attribute 'dim' has 0 integers and 1 floats");
  ExpectRejected(
      [](Spec &s) {
        s.kernels[1] = {KernelKind::Softmax, {2}, {2}, {{0, 1}}};
      },
      "kernel 1 (Softmax): attribute 'dim' has 2 integers and 0 floats");
  ExpectRejected(
      [](Spec &s) { s.kernels[0].kind = static_cast<KernelKind>(999); },
      "kernel 0: unknown kind 999");
  ExpectRejected(
      [](Spec &s) { s.args[0].kind = static_cast<fb::ArgumentRole>(19); },
      "argument 'x': unknown role 19");
  ExpectRejected([](Spec &s) { s.args[1].name = "x"; },
                 "argument 'x' appears twice");
  ExpectRejected([](Spec &s) { s.args[0].buffer = 3; },
                 "argument 'x' names buffer 3 of 3");
  ExpectRejected(
      [](Spec &s) {
        s.constants = {{2, std::vector<uint8_t>(4)}};
      },
      "constant 0 has 4 bytes for a buffer of 32");
  ExpectRejected([](Spec &s) { s.outputs = {}; }, "has no outputs");
  ExpectRejected([](Spec &s) { s.role = 17; }, "unknown program role 17");
  // A partitioned program: its mesh, groups and collectives must agree.
  auto partitioned = [](Spec &s) {
    s.worldSize = 4;
    s.mesh = {{"dp", 2}, {"tp", 2}};
    s.commGroups = {{1}};
    s.kernels[1] = {KernelKind::AllReduce, {2}, {2}, {{0}}};
  };
  ExpectRejected(
      [&](Spec &s) {
        partitioned(s);
        s.worldSize = 8;
      },
      "world size 8 is not the mesh's 4 devices");
  ExpectRejected(
      [&](Spec &s) {
        partitioned(s);
        s.commGroups = {{2}};
      },
      "comm group 0 names mesh axis 2 of 2");
  ExpectRejected(
      [&](Spec &s) {
        partitioned(s);
        s.commGroups = {{1, 1}};
      },
      "comm group 0 names mesh axis 1 of 2 (or twice)");
  ExpectRejected(
      [&](Spec &s) {
        partitioned(s);
        s.kernels[1].attrs = {{3}};
      },
      "kernel 1 (AllReduce) names comm group 3 of 1");
  // Slices: axes of the mesh, each once, one list per dimension.
  ExpectRejected(
      [&](Spec &s) {
        partitioned(s);
        s.splits[1] = {{2}};
      },
      "buffer 1 is split over mesh axis 2 of 2 (or twice)");
  ExpectRejected(
      [&](Spec &s) {
        partitioned(s);
        s.splits[1] = {{0, 0}};
      },
      "buffer 1 is split over mesh axis 0 of 2 (or twice)");
  ExpectRejected(
      [&](Spec &s) {
        partitioned(s);
        s.splits[1] = {{0}, {1}};
      },
      "buffer 1 splits 2 dimensions of 1");
  ExpectRejected(
      [&](Spec &s) {
        partitioned(s);
        s.mesh[0].second = 0;
      },
      "mesh axis 0 is unnamed or of size 0");
  ExpectRejected(
      [](Spec &s) {
        s.kernels[1] = {
            KernelKind::CrossEntropy, {0, 1}, {2}, {{-100}, {0}, {5}, {-1}}};
      },
      "kernel 1 (CrossEntropy) names comm group 5 of 0 (token_group)");
  ExpectRejected(
      [](Spec &s) {
        s.kernels[1] = {
            KernelKind::CrossEntropy, {0, 1}, {2}, {{-100}, {0}, {-1}, {3}}};
      },
      "kernel 1 (CrossEntropy) names comm group 3 of 0 (vocab_group)");
}

TEST(Program, ShapeMismatchesAreCaughtWhenKernelsRun) {
  Spec spec;
  spec.buffers[1].second = {4}; // w has 4 elements, x 8: add must refuse
  absl::StatusOr<Program> p = ParseProgram(Build(spec), "p.vmb");
  ASSERT_TRUE(p.ok()) << p.status();
  auto ex = Executor::Create(*std::move(p));
  ASSERT_TRUE(ex.ok());
  absl::Status s = (*ex)->Run();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("kernel 0 (Add) in test:"), std::string::npos)
      << s;
}

TEST(Program, ConstantsAreInPlaceBeforeTheFirstRun) {
  Spec spec;
  std::vector<uint8_t> ones(32);
  for (int i = 0; i < 8; ++i) {
    float one = 1.0f;
    std::memcpy(ones.data() + 4 * i, &one, 4);
  }
  spec.args.pop_back(); // w is now a constant
  spec.constants = {{1, ones}};
  auto p = ParseProgram(Build(spec), "p.vmb");
  ASSERT_TRUE(p.ok()) << p.status();
  auto ex = Executor::Create(*std::move(p));
  ASSERT_TRUE(ex.ok());
  TensorView x = *(*ex)->Argument("x");
  for (int i = 0; i < 8; ++i)
    StoreF(x, i, 0.0f);
  ASSERT_TRUE((*ex)->Run().ok());
  EXPECT_FLOAT_EQ(LoadF((*ex)->Output(0), 3), std::exp(1.0f));
}

/// Conv1DGrad of x = [1 2 3] (w = [1 -1], dout = [1 1]): its bias
/// gradient is an optional third output, present with the bias input.
Spec Conv1DGradSpec(bool bias) {
  Spec spec;
  spec.arena = 7 * 64;
  spec.buffers = {{0, {1, 1, 3}},   {64, {1, 1, 2}},  {128, {1}},
                  {192, {1, 1, 2}}, {256, {1, 1, 3}}, {320, {1, 1, 2}},
                  {384, {1}}};
  spec.args = {{"x", fb::ArgumentRole::BatchInput, 0},
               {"w", fb::ArgumentRole::Parameter, 1},
               {"b", fb::ArgumentRole::Parameter, 2},
               {"g", fb::ArgumentRole::BatchInput, 3}};
  if (bias) {
    spec.kernels = {
        {KernelKind::Conv1DGrad, {0, 1, 2, 3}, {4, 5, 6}, {{1}, {0}}}};
    spec.outputs = {4, 5, 6};
  } else {
    spec.kernels = {{KernelKind::Conv1DGrad, {0, 1, 3}, {4, 5}, {{1}, {0}}}};
    spec.outputs = {4, 5};
  }
  return spec;
}

TEST(Program, GradientKernelsMayHaveOptionalOutputs) {
  for (bool bias : {false, true}) {
    SCOPED_TRACE(bias ? "with bias" : "without bias");
    auto p = ParseProgram(Build(Conv1DGradSpec(bias)), "p.vmb");
    ASSERT_TRUE(p.ok()) << p.status();
    auto ex = Executor::Create(*std::move(p));
    ASSERT_TRUE(ex.ok());
    const float x[] = {1, 2, 3}, w[] = {1, -1}, g[] = {1, 1};
    for (int i = 0; i < 3; ++i)
      StoreF(*(*ex)->Argument("x"), i, x[i]);
    for (int i = 0; i < 2; ++i) {
      StoreF(*(*ex)->Argument("w"), i, w[i]);
      StoreF(*(*ex)->Argument("g"), i, g[i]);
    }
    ASSERT_TRUE((*ex)->Run().ok());
    EXPECT_FLOAT_EQ(LoadF((*ex)->Output(0), 0), 1.0f); // dx = [1 0 -1]
    EXPECT_FLOAT_EQ(LoadF((*ex)->Output(0), 2), -1.0f);
    EXPECT_FLOAT_EQ(LoadF((*ex)->Output(1), 1), 5.0f); // dw = [3 5]
    if (bias)
      EXPECT_FLOAT_EQ(LoadF((*ex)->Output(2), 0), 2.0f); // db = 2
  }
  Spec tooMany = Conv1DGradSpec(true);
  tooMany.kernels[0].outs = {4, 5, 6, 6};
  EXPECT_NE(ErrorOf(Build(tooMany))
                .find("kernel 0 (Conv1DGrad) has 4 inputs and 4 outputs"),
            std::string::npos);
  // A bias gradient needs the bias, checked when the kernel runs.
  Spec mismatch = Conv1DGradSpec(false);
  mismatch.kernels[0].outs = {4, 5, 6};
  auto p = ParseProgram(Build(mismatch), "p.vmb");
  ASSERT_TRUE(p.ok()) << p.status();
  auto ex = Executor::Create(*std::move(p));
  ASSERT_TRUE(ex.ok());
  absl::Status s = (*ex)->Run();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("kernel 0 (Conv1DGrad) in test: a bias gradient "
                             "needs the bias input"),
            std::string::npos)
      << s;
}

/// A device with host memory and only the kernels a test registers: the
/// executor must run through the interface, and refuse a program with a
/// kind the device lacks before running anything.
class HostDevice final : public Device {
public:
  explicit HostDevice(KernelRegistry kernels) : kernels_(kernels) {}
  absl::string_view Name() const override { return "host-test"; }
  absl::Status AllocateArena(uint64_t bytes) override {
    arena_.assign(bytes, 0);
    return absl::OkStatus();
  }
  uint8_t *Arena() const override {
    return const_cast<uint8_t *>(arena_.data());
  }
  bool HostAccessible() const override { return false; }
  absl::Status CopyIn(uint64_t offset, const void *src,
                      uint64_t bytes) override {
    ++copies;
    std::memcpy(arena_.data() + offset, src, bytes);
    return absl::OkStatus();
  }
  absl::Status CopyOut(uint64_t offset, void *dst,
                       uint64_t bytes) const override {
    ++copies;
    std::memcpy(dst, arena_.data() + offset, bytes);
    return absl::OkStatus();
  }
  absl::Status CopyWithin(uint64_t dst, uint64_t src, uint64_t bytes) override {
    std::memmove(arena_.data() + dst, arena_.data() + src, bytes);
    return absl::OkStatus();
  }
  const KernelRegistry &Kernels() const override { return kernels_; }
  mutable int copies = 0;

private:
  KernelRegistry kernels_;
  std::vector<uint8_t> arena_;
};

absl::Status TestAdd(KernelIns in, KernelOuts out, const AddAttrs &) {
  for (int64_t i = 0; i < out[0].numel(); ++i)
    StoreF(out[0], i, LoadF(in[0], i) + LoadF(in[1], i));
  return absl::OkStatus();
}
absl::Status TestExp(KernelIns in, KernelOuts out, const ExpAttrs &) {
  for (int64_t i = 0; i < out[0].numel(); ++i)
    StoreF(out[0], i, std::exp(LoadF(in[0], i)));
  return absl::OkStatus();
}

TEST(Program, TheExecutorRunsAnyDeviceThroughTheInterface) {
  KernelRegistry onlyAdd;
  onlyAdd.Register<KernelKind::Add, &TestAdd>();
  auto p = ParseProgram(Build(Spec()), "p.vmb");
  ASSERT_TRUE(p.ok()) << p.status();
  auto refused = Executor::Create(*p, std::make_unique<HostDevice>(onlyAdd));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(refused.status().message().find(
                "kernel 1 (Exp): the host-test backend has no such kernel"),
            std::string::npos)
      << refused.status();

  KernelRegistry both = onlyAdd;
  both.Register<KernelKind::Exp, &TestExp>();
  auto device = std::make_unique<HostDevice>(both);
  HostDevice *raw = device.get();
  auto ex = Executor::Create(*std::move(p), std::move(device));
  ASSERT_TRUE(ex.ok()) << ex.status();
  // The arena is not host memory here: arguments go in with Write (or
  // Edit), results come out with Read.
  std::vector<float> x(8, 0.5f), w(8, 0.25f), y(8);
  ASSERT_TRUE(
      (*ex)->Write((*ex)->program().FindArgument("x")->buffer, x.data()).ok());
  ASSERT_TRUE((*ex)
                  ->Edit((*ex)->program().FindArgument("w")->buffer,
                         [&](const TensorView &v) {
                           for (int i = 0; i < 8; ++i)
                             StoreF(v, i, w[i]);
                           return absl::OkStatus();
                         })
                  .ok());
  ASSERT_TRUE((*ex)->Run().ok());
  ASSERT_TRUE((*ex)->Read((*ex)->program().outputs[0], y.data()).ok());
  EXPECT_FLOAT_EQ(y[5], std::exp(0.75f));
  EXPECT_EQ(raw->copies, 4); // x in, w out and in, y out
}

TEST(Program, CommGroupsAreTheRanksThatShareTheOtherCoordinates) {
  Program p;
  p.worldSize = 4;
  p.mesh = {{"dp", 2}, {"tp", 2}}; // rank = 2 dp + tp
  p.commGroups = {{1}, {0}, {0, 1}, {1, 0}};
  EXPECT_EQ(p.GroupRanks(0, 3), (std::vector<uint32_t>{2, 3}));
  EXPECT_EQ(p.GroupRanks(1, 1), (std::vector<uint32_t>{1, 3}));
  EXPECT_EQ(p.GroupRanks(2, 2), (std::vector<uint32_t>{0, 1, 2, 3}));
  // Group order is row-major over the axes as the collective lists them.
  EXPECT_EQ(p.GroupRanks(3, 2), (std::vector<uint32_t>{0, 2, 1, 3}));
}

} // namespace
} // namespace veomni::rt
