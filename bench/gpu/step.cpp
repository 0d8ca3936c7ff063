//===- step.cpp - GPU figures: cuBLASLt GEMMs and training steps ----------===//
//
// veomni-bench-gpu [--cpu] [JOB...]: prints cuBLASLt's TFLOP/s on large bf16
// and f32 GEMMs (through the CUDA backend's matmul kernel, as a program runs
// it), then for each compiled job folder (`veomni compile RECIPE -o JOB`)
// trains 1 warm-up and 3 timed steps on synthetic batches on GPU 0 and
// prints ms/step, tokens/s and MFU: the step's FLOPs (its matmuls, grouped
// matmuls, attention and fused LM head, as the profile counts them) over
// the time, against the card's dense bf16 peak. It also prints a
// per-kernel-kind table (ms and TFLOP/s of the profiled step) that the
// plan report's compute model can read in place of a flat MFU. Needs a
// GPU; scripts/gpu-check.sh runs it. --cpu runs the jobs' steps on the CPU
// backend instead (no GEMM table), for comparison and to check the bench
// itself where there is no GPU. VEOMNI_BENCH_VERBOSE=1 prints every step.
//
//===----------------------------------------------------------------------===//

#include "runtime/backends/cuda/CudaDevice.h"
#include "runtime/device/Device.h"
#include "runtime/executor/Executor.h"
#include "runtime/io/Init.h"
#include "runtime/program/Program.h"
#include "runtime/support/Status.h"
#include "runtime/train/Job.h"
#include "runtime/train/Loop.h"
#include "runtime/train/Profile.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

namespace rt = veomni::rt;

namespace {

double Now() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

/// Dense bf16 tensor-core peak of the cards this project is lent.
double PeakBf16(const std::string &name) {
  if (name.find("H100") != std::string::npos ||
      name.find("H200") != std::string::npos)
    return 989e12;
  if (name.find("A100") != std::string::npos)
    return 312e12;
  return 0;
}

int Fail(const absl::Status &s) {
  std::fprintf(stderr, "veomni-bench-gpu: %s\n",
               std::string(s.message()).c_str());
  return 1;
}

/// GEMMs through the backend's matmul kernel: n^3, bf16 and f32.
absl::Status Gemms(rt::Device &gpu) {
  const rt::KernelRegistry &k = gpu.Kernels();
  rt::KernelFn matmul = k.Find(rt::KernelKind::Matmul);
  rt::KernelDesc desc;
  desc.kind = rt::KernelKind::Matmul;
  desc.attrs = {{{0}, {}}, {{0}, {}}};
  for (auto [type, n] : {std::pair{rt::DType::BF16, int64_t{8192}},
                         {rt::DType::BF16, int64_t{4096}},
                         {rt::DType::F32, int64_t{4096}}}) {
    uint64_t bytes = n * n * rt::SizeOf(type);
    if (3 * bytes > (uint64_t{1} << 30))
      continue;
    rt::TensorView a{gpu.Arena(), type, {n, n}},
        b{gpu.Arena() + bytes, type, {n, n}},
        c{gpu.Arena() + 2 * bytes, type, {n, n}};
    std::vector<rt::TensorView> ins = {a, b}, outs = {c};
    VEOMNI_RETURN_IF_ERROR(matmul(desc, ins, outs)); // warm-up
    VEOMNI_RETURN_IF_ERROR(gpu.Synchronize());
    const int reps = 20;
    double t = Now();
    for (int i = 0; i < reps; ++i)
      VEOMNI_RETURN_IF_ERROR(matmul(desc, ins, outs));
    VEOMNI_RETURN_IF_ERROR(gpu.Synchronize());
    double s = (Now() - t) / reps;
    std::printf("cuBLASLt %s %ld^3: %.3f ms, %.1f TFLOP/s\n",
                type == rt::DType::BF16 ? "bf16" : "f32 (no TF32)",
                static_cast<long>(n), s * 1e3, 2.0 * n * n * n / s / 1e12);
  }
  return absl::OkStatus();
}

absl::Status Step(const std::string &dir, const std::string &device,
                  double peak) {
  VEOMNI_ASSIGN_OR_RETURN(rt::JobSettings job, rt::ReadJob(dir));
  VEOMNI_ASSIGN_OR_RETURN(rt::Program program,
                          rt::LoadProgram(dir + "/" + rt::kJobProgram));
  double flops = 0;
  for (const rt::KernelDesc &k : program.kernels)
    flops += rt::KernelFlops(program, k);
  VEOMNI_ASSIGN_OR_RETURN(std::unique_ptr<rt::Device> gpu,
                          rt::CreateDevice(device));
  VEOMNI_ASSIGN_OR_RETURN(
      std::unique_ptr<rt::Executor> ex,
      rt::Executor::Create(std::move(program), std::move(gpu)));
  VEOMNI_ASSIGN_OR_RETURN(std::unique_ptr<rt::StepRunner> runner,
                          rt::StepRunnerFor(*ex));
  VEOMNI_RETURN_IF_ERROR(runner->InitParameters(job.seed));
  VEOMNI_RETURN_IF_ERROR(runner->InitState());
  const int64_t tokens = job.TokensPerStep();
  std::vector<double> times;
  rt::KernelTrace trace;
  for (int64_t step = 1; step <= 5; ++step) {
    auto fill = [&](int64_t micro) {
      return rt::SyntheticBatch(runner->Inputs(), 1000003 * step + micro);
    };
    if (step == 5)
      runner->SetTrace(&trace);
    double t = Now();
    VEOMNI_RETURN_IF_ERROR(
        runner->Step(step, job.accumulationSteps, fill).status());
    if (std::getenv("VEOMNI_BENCH_VERBOSE"))
      std::printf("step %ld: %.1f ms\n", static_cast<long>(step),
                  (Now() - t) * 1e3);
    if (step > 1 && step < 5) // step 5 is profiled (synchronised kernels)
      times.push_back(Now() - t);
  }
  runner->SetTrace(nullptr);
  std::sort(times.begin(), times.end());
  double s = times[times.size() / 2];
  std::printf("%s: %s\n  %.1f ms/step, %.0f tokens/s, %.1f TFLOP/step, "
              "%.1f TFLOP/s",
              dir.c_str(), job.summary.c_str(), s * 1e3, tokens / s,
              flops / 1e12, flops / s / 1e12);
  if (peak > 0)
    std::printf(", MFU %.1f%% of %.0f", 100 * flops / s / peak, peak / 1e12);
  std::printf("\n%s", rt::ProfileSummary(trace, 12).c_str());
  return absl::OkStatus();
}

} // namespace

int main(int argc, char **argv) {
  if (argc > 1 && std::string(argv[1]) == "--cpu") {
    for (int i = 2; i < argc; ++i)
      if (absl::Status s = Step(argv[i], "cpu", 0); !s.ok())
        return Fail(s);
    return 0;
  }
  absl::StatusOr<std::vector<rt::cuda::DeviceInfo>> devices =
      rt::cuda::ListDevices();
  if (!devices.ok())
    return Fail(devices.status());
  if (devices->empty()) {
    std::printf("veomni-bench-gpu: no CUDA device on this machine\n");
    return 0;
  }
  const rt::cuda::DeviceInfo &d = devices->front();
  double peak = PeakBf16(d.name);
  std::printf("GPU 0: %s, %d SMs, %.1f GiB; dense bf16 peak %.0f TFLOP/s%s\n",
              d.name.c_str(), d.multiprocessors,
              d.totalMemoryBytes / double(1 << 30), peak / 1e12,
              peak > 0 ? "" : " (unknown card: no MFU)");
  {
    absl::StatusOr<std::unique_ptr<rt::Device>> gpu = rt::CreateDevice("cuda");
    if (!gpu.ok())
      return Fail(gpu.status());
    if (absl::Status s = (*gpu)->AllocateArena(uint64_t{1} << 30); !s.ok())
      return Fail(s);
    if (absl::Status s = Gemms(**gpu); !s.ok())
      return Fail(s);
  }
  for (int i = 1; i < argc; ++i)
    if (absl::Status s = Step(argv[i], "cuda", peak); !s.ok())
      std::printf("%s: %s\n", argv[i], std::string(s.message()).c_str());
  return 0;
}
