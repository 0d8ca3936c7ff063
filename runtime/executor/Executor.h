//===- Executor.h - run a program on a device -------------------*- C++ -*-===//
//
// One arena of exactly Program::arenaBytes, allocated once on the device;
// constants copied in at creation; arguments written through Write (or, on
// a host-accessible device, through views); kernels run in order. The
// executor knows the Device interface only, never a backend.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_EXECUTOR_EXECUTOR_H
#define VEOMNI_RUNTIME_EXECUTOR_EXECUTOR_H

#include "runtime/device/Communicator.h"
#include "runtime/device/Device.h"
#include "runtime/program/Program.h"

#include "absl/status/statusor.h"

#include <chrono>
#include <memory>
#include <vector>

namespace veomni::rt {

/// A buffer as host code sees it: the arena itself on a host-accessible
/// device, else a copy that lives as long as this object.
struct HostTensor {
  TensorView view;
  std::vector<uint8_t> copy;
  HostTensor() = default;
  HostTensor(HostTensor &&) = default; // moving keeps view.data valid
  HostTensor &operator=(HostTensor &&) = default;
};

/// One kernel call as it ran, for a profile (runtime/train/Profile.h):
/// which program and kernel, and when, in seconds since the trace began.
/// A collective on its own thread counts from its issue to its end.
struct KernelEvent {
  const Program *program;
  uint32_t kernel;
  double start, seconds;
  bool onCommThread;
};

/// What Executor::Run records while a trace is set.
struct KernelTrace {
  std::chrono::steady_clock::time_point origin =
      std::chrono::steady_clock::now();
  std::vector<KernelEvent> events;
  /// Collectives on their own thread, which alone writes here while a run
  /// is in flight (each run waits for them before it returns).
  std::vector<KernelEvent> commEvents;
  /// Time the kernels waited for collectives on their own thread.
  std::vector<std::pair<double, double>> waits; ///< start, seconds
  double Now() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                         origin)
        .count();
  }
};

class Executor {
public:
  /// Runs `program` on `device`; fails when the device has no kernel for
  /// one of the program's kinds. A partitioned program's collectives run
  /// through `comm` (not owned), which must span the program's mesh; its
  /// groups are made here.
  static absl::StatusOr<std::unique_ptr<Executor>>
  Create(Program program, std::unique_ptr<Device> device,
         Communicator *comm = nullptr);
  /// Runs `program` on the CPU backend.
  static absl::StatusOr<std::unique_ptr<Executor>> Create(Program program);

  const Program &program() const { return program_; }
  Device &device() const { return *device_; }
  /// Bytes the arena really occupies (equal to the plan's arena size).
  uint64_t ArenaBytes() const { return program_.arenaBytes; }

  /// Buffer `buffer` in the device's address space. Host code may read and
  /// write it only when device().HostAccessible().
  TensorView View(uint32_t buffer) const;
  /// The view of the argument called `name`.
  absl::StatusOr<TensorView> Argument(absl::string_view name) const;
  TensorView Output(size_t i) const { return View(program_.outputs[i]); }

  /// Copies buffer `buffer` to the host (`host` has its byte size) and
  /// back.
  absl::Status Read(uint32_t buffer, void *host) const;
  absl::Status Write(uint32_t buffer, const void *host);
  /// Writes `bytes` at byte `offset` of buffer `buffer`.
  absl::Status WriteAt(uint32_t buffer, uint64_t offset, const void *host,
                       uint64_t bytes);
  /// Buffer `buffer` readable on the host.
  absl::StatusOr<HostTensor> ReadHost(uint32_t buffer) const;
  /// Copies buffer `from` into buffer `to` (the same byte size) on the
  /// device.
  absl::Status CopyBuffer(uint32_t from, uint32_t to);
  /// Runs `edit` on a host view of `buffer` and stores the result: the
  /// arena itself on a host-accessible device, else a copy.
  template <typename Fn> absl::Status Edit(uint32_t buffer, Fn &&edit);

  /// Runs every kernel. An error names the kernel, its kind and the model
  /// module it came from.
  absl::Status Run();
  /// Records every kernel of the next runs in `trace` (not owned; null
  /// stops). The device is synchronized after each kernel while a trace is
  /// set, so the times are the kernels' own.
  void SetTrace(KernelTrace *trace) { trace_ = trace; }
  /// Runs every kernel as Run does, collectives in line, and checks each
  /// kernel's outputs as it goes: where the first value that is not finite
  /// appeared, over all ranks ("kernel 12 (matmul) in model.layers.0.mlp,
  /// on rank 1"), or "" if every value stayed finite. Slow (it reads every
  /// output): for a step that went wrong. Collective.
  absl::StatusOr<std::string> RunProbe();

  // Global tensors. An argument or output of a partitioned program is this
  // rank's slice of a global tensor (BufferDesc::split); host code that
  // loads weights, makes batches or saves checkpoints works with the whole
  // tensor through these, and so does not depend on the plan. For a whole
  // buffer they are Read and Write.

  /// This rank (0 without a communicator).
  int Rank() const { return comm_ ? comm_->Rank() : 0; }
  int WorldSize() const { return comm_ ? comm_->WorldSize() : 1; }
  /// Seconds this rank has spent in collectives (0 without a communicator).
  double CommSeconds() const {
    return comm_ ? comm_->SecondsInCollectives() : 0;
  }
  /// Seconds the kernels waited for collectives: all of CommSeconds() when
  /// they run in line; with their own thread, CommSeconds() less this is
  /// what computing hid.
  double CommWaitSeconds() const {
    return commThread_ ? waitSeconds_ : CommSeconds();
  }
  ~Executor();
  /// Buffer `buffer`'s global shape.
  const Shape &GlobalShape(uint32_t buffer) const {
    return program_.buffers[buffer].global;
  }
  /// Writes this rank's slice of `global` (the whole tensor, host memory,
  /// in the buffer's dtype) into buffer `buffer`.
  absl::Status WriteGlobal(uint32_t buffer, const void *global);
  /// Runs `fill` on a host tensor of the global shape, which it must fill
  /// entirely (its contents on entry are unspecified), and writes this
  /// rank's slice of it. Every rank makes the same global tensor, so no
  /// data moves between ranks.
  template <typename Fn> absl::Status FillGlobal(uint32_t buffer, Fn &&fill);
  /// The whole tensor: every rank's slice, gathered. Collective: every
  /// rank calls it for the same buffers in the same order.
  absl::StatusOr<HostTensor> ReadGlobal(uint32_t buffer) const;
  /// `mine`, or an error naming the lowest rank that failed when another
  /// did: every rank learns whether the job can go on. Collective.
  absl::Status SyncStatus(absl::Status mine) const;

private:
  Executor(Program program, std::unique_ptr<Device> device);

  absl::Status RunCollective(const KernelDesc &k, KernelIns in, KernelOuts out);
  /// A cross entropy (or its VJP) whose tokens are split over a group: a
  /// mean divides by the group's token count.
  absl::Status RunTokenSplitLoss(size_t i, const KernelDesc &k, KernelIns in,
                                 KernelOuts out);
  /// A cross entropy (or its VJP) whose vocabulary is split over a group:
  /// the row max, the sum of exponentials and (forward) the target logit
  /// are all-reduced across it, so no rank gathers the logits
  /// (SplitLoss.cpp). Its tokens may be split over another group too.
  absl::Status RunVocabSplitLoss(const KernelDesc &k, KernelIns in,
                                 KernelOuts out);
  /// A grouped matmul (or its weight VJP) over experts split across a
  /// group: this rank's rows go to their experts' ranks, which multiply the
  /// rows of every rank, and (for the product) come back in their order
  /// (ExpertSplit.cpp).
  absl::Status RunExpertSplit(size_t i, const KernelDesc &k, KernelIns in,
                              KernelOuts out);
  /// The number of labels that count (not `ignoreIndex`) in `labels`
  /// (buffer `buffer`), summed over comm group `group` when it is not -1.
  /// A group's count is exchanged once per Run: a cross entropy's VJP
  /// takes the count its forward exchanged (labels are inputs, unchanged
  /// within a Run), as the plan report counts it (Communication.cpp).
  absl::StatusOr<int64_t> CountLabels(uint32_t buffer, const TensorView &labels,
                                      int64_t ignoreIndex, int64_t group);
  struct LabelCount {
    uint32_t buffer;
    int64_t ignoreIndex, group, count;
  };
  std::vector<LabelCount> labelCounts_; // this Run's exchanged counts

  Program program_;
  std::unique_ptr<Device> device_;
  /// The thread collectives run on, when the program and the communicator
  /// allow it (Executor.cpp).
  class CommThread;
  std::unique_ptr<CommThread> commThread_;
  double waitSeconds_ = 0;
  KernelTrace *trace_ = nullptr;
  /// While RunProbe runs: the first kernel that wrote a value that is not
  /// finite (-1: none yet).
  bool probe_ = false;
  int64_t probeHit_ = -1;
  std::vector<KernelFn> fns_; ///< one per kernel, bound at creation
  Communicator *comm_ = nullptr;
  /// This rank's place in each of the program's comm groups, and the
  /// communicator's handle for it.
  std::vector<int> groupIndex_;
  std::vector<uint32_t> groupHandle_;
  /// The communicator's handle for all ranks, for ReadGlobal and
  /// SyncStatus.
  uint32_t worldGroup_ = 0;
};

template <typename Fn> absl::Status Executor::Edit(uint32_t buffer, Fn &&edit) {
  TensorView view = View(buffer);
  if (device_->HostAccessible())
    return edit(view);
  std::vector<uint8_t> host(view.bytes());
  if (absl::Status s = Read(buffer, host.data()); !s.ok())
    return s;
  view.data = host.data();
  if (absl::Status s = edit(view); !s.ok())
    return s;
  return Write(buffer, host.data());
}

template <typename Fn>
absl::Status Executor::FillGlobal(uint32_t buffer, Fn &&fill) {
  if (!program_.IsSliced(buffer))
    return Edit(buffer, fill);
  const BufferDesc &b = program_.buffers[buffer];
  TensorView view{nullptr, b.dtype, b.global};
  std::vector<uint8_t> host(view.bytes());
  view.data = host.data();
  if (absl::Status s = fill(view); !s.ok())
    return s;
  return WriteGlobal(buffer, host.data());
}

} // namespace veomni::rt

#endif // VEOMNI_RUNTIME_EXECUTOR_EXECUTOR_H
