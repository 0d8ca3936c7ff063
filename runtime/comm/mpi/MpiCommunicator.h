//===- MpiCommunicator.h - collectives over MPI -----------------*- C++ -*-===//
//
// The CPU backend's communicator: every collective of Communicator.h on
// host buffers, over MPI communicators made once per program group. Floats
// reduce in f32 (bf16 and f16 are widened, summed, and rounded once, as the
// kernels do), integers exactly. Every MPI call returns through
// VEOMNI_MPI_CALL, so a failure is an absl::Status naming the call, never an
// abort.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_COMM_MPI_MPICOMMUNICATOR_H
#define VEOMNI_RUNTIME_COMM_MPI_MPICOMMUNICATOR_H

#include "runtime/device/Communicator.h"

#include "absl/status/statusor.h"

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace veomni::rt::mpi {

class MpiCommunicator final : public Communicator {
public:
  /// Initialises MPI if nobody has (and finalises it on destruction then);
  /// rank and size come from the launcher (mpirun, srun).
  static absl::StatusOr<std::unique_ptr<MpiCommunicator>> Create();
  ~MpiCommunicator() override;

  int Rank() const override { return rank_; }
  int WorldSize() const override { return size_; }
  absl::StatusOr<uint32_t> AddGroup(absl::string_view name,
                                    absl::Span<const uint32_t> ranks) override;

  absl::Status AllGather(uint32_t group, const TensorView &in,
                         const TensorView &out, int64_t dim) override;
  absl::Status ReduceScatter(uint32_t group, const TensorView &in,
                             const TensorView &out, int64_t dim,
                             ReduceOp op) override;
  absl::Status AllReduce(uint32_t group, const TensorView &in,
                         const TensorView &out, ReduceOp op) override;
  absl::Status AllToAll(uint32_t group, const TensorView &in,
                        const TensorView &out, int64_t splitDim,
                        int64_t concatDim) override;
  absl::Status ExchangeRows(uint32_t group, const void *send,
                            absl::Span<const int64_t> sendRows, void *recv,
                            absl::Span<const int64_t> recvRows,
                            int64_t rowBytes, double modelBytes) override;
  absl::Status Send(uint32_t group, const TensorView &in, int peer) override;
  absl::Status Recv(uint32_t group, const TensorView &out, int peer) override;
  absl::Status StartSend(uint32_t group, const TensorView &in,
                         int peer) override;
  absl::Status WaitSends() override;
  absl::Status Broadcast(uint32_t group, const TensorView &buffer,
                         int root) override;
  absl::Status Barrier(uint32_t group) override;
  [[noreturn]] void Abort(int code) override;
  double BytesSent() const override { return bytesSent_; }
  double SecondsInCollectives() const override { return collectiveSeconds_; }
  bool CallableFromAnyThread() const override { return serialized_; }

  /// Seconds a collective may wait for its peers before this rank ends the
  /// job (a peer stuck or gone): VEOMNI_COMM_TIMEOUT, 900 by default.
  double TimeoutSeconds() const { return timeout_; }

private:
  struct Group;
  /// Marks this rank as waiting in collective `op` over `axis` while alive.
  class Waiting;
  MpiCommunicator() = default;
  void Watch();
  absl::StatusOr<Group *> Find(uint32_t group, absl::string_view op);

  int rank_ = 0, size_ = 1;
  bool finalize_ = false;
  double bytesSent_ = 0;
  double collectiveSeconds_ = 0;
  bool serialized_ = false; ///< MPI_THREAD_SERIALIZED or better
  std::vector<std::unique_ptr<Group>> groups_; ///< by handle
  struct Sends; ///< StartSend's requests, in flight
  std::unique_ptr<Sends> sends_;
  // The watchdog: a thread that ends the job when a collective has waited
  // longer than timeout_ (a dead rank ends it through mpirun already; a
  // stuck one would otherwise hang every other).
  double timeout_ = 900;
  std::atomic<int64_t> since_{0}; ///< steady-clock ns; 0 when not waiting
  std::atomic<const char *> op_{""};
  std::atomic<const char *> axis_{""};
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread watchdog_;
};

} // namespace veomni::rt::mpi

#endif // VEOMNI_RUNTIME_COMM_MPI_MPICOMMUNICATOR_H
