//===- CudaStepTest.cpp - a whole training run on the GPU and the CPU -----===//
//
// The tiny Llama's job (compiled at build time into VEOMNI_CUDA_JOB_DIR, or
// the folder VEOMNI_CUDA_JOB names: scripts/gpu-check.sh carries one to a
// GPU machine) trains 3 steps on the CPU backend and on the CUDA backend
// from the same initialisation and batches; the checkpoints' weights and
// AdamW moments agree within 1e-5 of each tensor's largest magnitude.
// Needs no MPI and no compiler, so it runs from the GPU bundle. Without a
// GPU it skips and says so.
//
//===----------------------------------------------------------------------===//

#include "runtime/backends/cuda/CudaDevice.h"
#include "runtime/device/Device.h"
#include "runtime/executor/Executor.h"
#include "runtime/io/Safetensors.h"
#include "runtime/program/Program.h"
#include "runtime/support/Status.h"
#include "runtime/train/Job.h"
#include "runtime/train/Loop.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace veomni::rt {
namespace {

std::string JobDir() {
  const char *dir = std::getenv("VEOMNI_CUDA_JOB");
  return dir && *dir ? dir : VEOMNI_CUDA_JOB_DIR;
}

/// Trains `job` on `device` into `out`; the checkpoint folder.
absl::StatusOr<std::string> Train(JobSettings job, const std::string &device,
                                  const std::string &out) {
  VEOMNI_ASSIGN_OR_RETURN(Program program,
                          LoadProgram(JobDir() + "/" + kJobProgram));
  VEOMNI_ASSIGN_OR_RETURN(std::unique_ptr<Device> d, CreateDevice(device));
  VEOMNI_ASSIGN_OR_RETURN(std::unique_ptr<Executor> ex,
                          Executor::Create(std::move(program), std::move(d)));
  std::filesystem::remove_all(out);
  job.outputDir = out;
  job.device = device;
  VEOMNI_RETURN_IF_ERROR(RunTraining(*ex, job, stdout));
  return out + "/checkpoint-" + std::to_string(job.steps);
}

/// The largest |got - want| of each tensor over its largest |want|.
void ExpectClose(const std::string &got, const std::string &want, double tol) {
  auto g = SafetensorsFile::Open(got), w = SafetensorsFile::Open(want);
  ASSERT_TRUE(g.ok()) << g.status();
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_FALSE((*w)->entries().empty()) << want;
  for (const auto &[name, entry] : (*w)->entries()) {
    const SafetensorsFile::Entry *e = (*g)->Find(name);
    ASSERT_NE(e, nullptr) << name << " missing from " << got;
    TensorView a = (*g)->View(*e), b = (*w)->View(entry);
    ASSERT_EQ(a.shape, b.shape) << name;
    ASSERT_EQ(a.dtype, DType::F32) << name;
    const float *x = static_cast<const float *>(a.data);
    const float *y = static_cast<const float *>(b.data);
    double scale = 1e-12, worst = 0;
    for (int64_t i = 0; i < b.numel(); ++i) {
      scale = std::max(scale, std::fabs(double(y[i])));
      worst = std::max(worst, std::fabs(double(x[i]) - y[i]));
    }
    EXPECT_LE(worst / std::max(scale, 1.0), tol) << name;
  }
}

TEST(CudaStep, TinyLlamaTrainsAsOnTheCpu) {
  absl::StatusOr<std::vector<cuda::DeviceInfo>> devices = cuda::ListDevices();
  ASSERT_TRUE(devices.ok()) << devices.status();
  if (devices->empty())
    GTEST_SKIP() << "no CUDA device on this machine (GPU test)";
  absl::StatusOr<JobSettings> job = ReadJob(JobDir());
  ASSERT_TRUE(job.ok()) << job.status();
  std::string tmp = ::testing::TempDir() + "/veomni-cuda-step";
  absl::StatusOr<std::string> cpu = Train(*job, "cpu", tmp + "/cpu");
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  absl::StatusOr<std::string> gpu = Train(*job, "cuda", tmp + "/gpu");
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  ExpectClose(*gpu + "/model.safetensors", *cpu + "/model.safetensors", 1e-5);
  ExpectClose(*gpu + "/optimizer.safetensors", *cpu + "/optimizer.safetensors",
              1e-5);
}

} // namespace
} // namespace veomni::rt
