//===- dispatch.cpp - the executor's cost per kernel call -----------------===//
//
// A program of many kernels on one-element buffers does almost no work, so
// its run time divided by the kernel count is what the executor adds to
// every kernel call (decoding, views, dispatch, shape checks).
//
//===----------------------------------------------------------------------===//

#include "runtime/executor/Executor.h"
#include "runtime/schema/ProgramFile.h"
#include "runtime/schema/program_generated.h"

#include <chrono>
#include <cstdio>

namespace fb = veomni::fb;
namespace rt = veomni::rt;

int main() {
  constexpr int kKernels = 10000;
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<int64_t> shape = {1};
  std::vector<flatbuffers::Offset<fb::Buffer>> buffers = {
      fb::CreateBufferDirect(fbb, 0, fb::DType::F32, &shape),
      fb::CreateBufferDirect(fbb, 64, fb::DType::F32, &shape)};
  std::vector<flatbuffers::Offset<fb::Argument>> args = {
      fb::CreateArgumentDirect(fbb, "x", fb::ArgumentRole::BatchInput, 0, "",
                               fb::ParamInit::Normal, 0)};
  std::vector<flatbuffers::Offset<fb::Kernel>> kernels;
  std::vector<uint32_t> in = {0, 1}, out = {1};
  for (int i = 0; i < kKernels; ++i)
    kernels.push_back(
        fb::CreateKernelDirect(fbb, static_cast<uint16_t>(rt::KernelKind::Add),
                               &in, &out, nullptr, ""));
  std::vector<uint32_t> outputs = {1};
  fb::FinishProgramBuffer(
      fbb,
      fb::CreateProgramDirect(fbb, "bench", fb::ProgramRole::Forward, 128,
                              &buffers, &args, nullptr, &kernels, &outputs));
  fb::ProgramHeader h = fb::MakeHeader(fbb.GetBufferPointer(), fbb.GetSize());
  std::vector<uint8_t> bytes(sizeof(h) + fbb.GetSize());
  std::memcpy(bytes.data(), &h, sizeof(h));
  std::memcpy(bytes.data() + sizeof(h), fbb.GetBufferPointer(), fbb.GetSize());

  auto program = rt::ParseProgram(bytes, "bench");
  auto ex = rt::Executor::Create(*std::move(program));
  if (!ex.ok()) {
    std::fprintf(stderr, "%s\n", ex.status().ToString().c_str());
    return 1;
  }
  (void)(*ex)->Run(); // warm up
  double best = 1e30;
  for (int rep = 0; rep < 5; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    if (!(*ex)->Run().ok())
      return 1;
    double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
            .count();
    best = std::min(best, s);
  }
  std::printf("dispatch overhead: %.1f ns per kernel call (%d one-element "
              "Add kernels, best of 5)\n",
              best / kKernels * 1e9, kKernels);
  return 0;
}
