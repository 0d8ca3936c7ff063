//===- Executor.h - run a program on the CPU backend ------------*- C++ -*-===//
//
// One arena of exactly Program::arenaBytes, allocated once; constants copied
// in at creation; arguments written through views; kernels run in order.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_EXECUTOR_EXECUTOR_H
#define VEOMNI_RUNTIME_EXECUTOR_EXECUTOR_H

#include "runtime/program/Program.h"

#include "absl/status/statusor.h"

#include <memory>

namespace veomni::rt {

class Executor {
public:
  static absl::StatusOr<std::unique_ptr<Executor>> Create(Program program);
  ~Executor();

  const Program &program() const { return program_; }
  /// Bytes the arena really occupies (equal to the plan's arena size).
  uint64_t ArenaBytes() const { return arenaBytes_; }

  TensorView View(uint32_t buffer) const;
  /// The view of the argument called `name`.
  absl::StatusOr<TensorView> Argument(absl::string_view name) const;
  TensorView Output(size_t i) const { return View(program_.outputs[i]); }

  /// Runs every kernel. An error names the kernel, its kind and the model
  /// module it came from.
  absl::Status Run();

private:
  Executor(Program program, uint8_t *arena, uint64_t bytes)
      : program_(std::move(program)), arena_(arena), arenaBytes_(bytes) {}
  absl::Status RunKernel(const KernelDesc &k);

  Program program_;
  uint8_t *arena_;
  uint64_t arenaBytes_;
};

} // namespace veomni::rt

#endif // VEOMNI_RUNTIME_EXECUTOR_EXECUTOR_H
