//===- DeviceTest.cpp - training through the device interface only --------===//
//
// The trainer and io/ must work on a device whose arena the host cannot
// touch (a GPU). Here the CPU backend is wrapped so that it says exactly
// that: every read and write then goes through CopyIn / CopyOut /
// CopyWithin. Initialisation, synthetic batches, training steps with
// bf16 parameters and f32 masters, stacked experts, checkpoint save and
// load must give the same bits as on the plain CPU device.
//
//===----------------------------------------------------------------------===//

#include "compiler/Compile.h"
#include "compiler/Registration.h"
#include "frontends/Importer.h"
#include "runtime/executor/Executor.h"
#include "runtime/io/Init.h"
#include "runtime/io/Safetensors.h"
#include "runtime/train/Trainer.h"

#include "mlir/IR/MLIRContext.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

using namespace mlir;
using namespace mlir::veomni;
namespace rt = ::veomni::rt;

namespace {

/// The CPU backend, claiming its arena is not host memory.
class StagedDevice final : public rt::Device {
public:
  explicit StagedDevice(std::unique_ptr<rt::Device> inner)
      : inner_(std::move(inner)) {}
  absl::string_view Name() const override { return "staged-cpu"; }
  absl::Status AllocateArena(uint64_t bytes) override {
    return inner_->AllocateArena(bytes);
  }
  uint8_t *Arena() const override { return inner_->Arena(); }
  bool HostAccessible() const override { return false; }
  absl::Status CopyIn(uint64_t offset, const void *src,
                      uint64_t bytes) override {
    ++copies;
    return inner_->CopyIn(offset, src, bytes);
  }
  absl::Status CopyOut(uint64_t offset, void *dst,
                       uint64_t bytes) const override {
    ++copies;
    return inner_->CopyOut(offset, dst, bytes);
  }
  absl::Status CopyWithin(uint64_t dst, uint64_t src, uint64_t bytes) override {
    return inner_->CopyWithin(dst, src, bytes);
  }
  const rt::KernelRegistry &Kernels() const override {
    return inner_->Kernels();
  }
  mutable int64_t copies = 0;

private:
  std::unique_ptr<rt::Device> inner_;
};

std::string ReadFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(Device, TrainingThroughCopiesGivesTheSameBits) {
  DialectRegistry registry;
  registerAllVeOmni(registry);
  MLIRContext context(registry);
  context.loadAllAvailableDialects();
  ImportOptions io;
  io.model.dtype = "bf16";
  io.data.seqLen = 16;
  auto model = importHFConfig(
      context, std::string(VEOMNI_SOURCE_DIR) + "/examples/tiny/qwen3_moe.json",
      io);
  ASSERT_TRUE(model.ok()) << model.status();
  CompileOptions options;
  options.train = TrainOptions{};
  options.train->warmupSteps = 1;
  options.train->steps = 10;
  CompileReport report;
  FailureOr<std::string> bytes = compileToProgram(*model, report, options);
  ASSERT_TRUE(succeeded(bytes));
  auto program = [&] {
    return rt::ParseProgram(
        absl::Span<const uint8_t>(
            reinterpret_cast<const uint8_t *>(bytes->data()), bytes->size()),
        "qwen3_moe");
  };

  std::string dir = ::testing::TempDir() + "/veomni-device-test";
  std::filesystem::remove_all(dir);
  std::vector<double> losses[2];
  int64_t stagedCopies = 0;
  for (int staged = 0; staged < 2; ++staged) {
    auto p = program();
    ASSERT_TRUE(p.ok()) << p.status();
    auto cpu = rt::CreateDevice("cpu");
    ASSERT_TRUE(cpu.ok());
    std::unique_ptr<rt::Device> device = *std::move(cpu);
    StagedDevice *counter = nullptr;
    if (staged) {
      auto wrapped = std::make_unique<StagedDevice>(std::move(device));
      counter = wrapped.get();
      device = std::move(wrapped);
    }
    auto ex = rt::Executor::Create(*std::move(p), std::move(device));
    ASSERT_TRUE(ex.ok()) << ex.status();
    ASSERT_TRUE(rt::InitParameters(**ex, 7, 0.02).ok());
    auto trainer = rt::Trainer::Create(**ex);
    ASSERT_TRUE(trainer.ok()) << trainer.status();
    ASSERT_TRUE(trainer->InitState().ok());
    for (int64_t step = 1; step <= 3; ++step) {
      ASSERT_TRUE(rt::SyntheticBatch(**ex, 100 + step).ok());
      auto m = trainer->Step(step);
      ASSERT_TRUE(m.ok()) << m.status();
      losses[staged].push_back(m->loss);
      losses[staged].push_back(m->gradNorm);
    }
    std::string out = dir + (staged ? "/staged" : "/cpu");
    ASSERT_TRUE(trainer->Save(out, 3, {}, {}).ok());
    // Reload into a fresh executor of the same kind and go on one step.
    std::map<std::string, std::string> meta;
    auto step = trainer->Load(out, meta);
    ASSERT_TRUE(step.ok()) << step.status();
    EXPECT_EQ(*step, 3);
    ASSERT_TRUE(rt::SyntheticBatch(**ex, 104).ok());
    auto m = trainer->Step(4);
    ASSERT_TRUE(m.ok()) << m.status();
    losses[staged].push_back(m->loss);
    if (counter)
      stagedCopies = counter->copies;
  }
  EXPECT_EQ(losses[0], losses[1]);
  EXPECT_GT(stagedCopies, 100) << "the staged run must go through copies";
  for (const char *file : {"/model.safetensors", "/optimizer.safetensors"})
    EXPECT_EQ(ReadFile(dir + "/cpu" + file), ReadFile(dir + "/staged" + file))
        << file;
  std::filesystem::remove_all(dir);
}

TEST(Device, TheTrainerTakesOnlyATrainStep) {
  DialectRegistry registry;
  registerAllVeOmni(registry);
  MLIRContext context(registry);
  context.loadAllAvailableDialects();
  ImportOptions io;
  io.data.seqLen = 16;
  for (bool train : {false, true}) {
    auto model = importHFConfig(
        context, std::string(VEOMNI_SOURCE_DIR) + "/examples/tiny/llama.json",
        io);
    ASSERT_TRUE(model.ok()) << model.status();
    CompileOptions options;
    options.gradients = !train;
    if (train)
      options.train = TrainOptions{};
    CompileReport report;
    FailureOr<std::string> bytes = compileToProgram(*model, report, options);
    ASSERT_TRUE(succeeded(bytes));
    auto p = rt::ParseProgram(
        absl::Span<const uint8_t>(
            reinterpret_cast<const uint8_t *>(bytes->data()), bytes->size()),
        "llama");
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->role,
              train ? rt::ProgramRole::TrainStep : rt::ProgramRole::Gradients);
    auto ex = rt::Executor::Create(*std::move(p));
    ASSERT_TRUE(ex.ok());
    auto trainer = rt::Trainer::Create(**ex);
    EXPECT_EQ(trainer.ok(), train) << trainer.status();
    if (!train)
      EXPECT_NE(trainer.status().message().find("not a training program"),
                std::string::npos);
  }
}

} // namespace
