//===- Communicator.h - collectives between ranks ---------------*- C++ -*-===//
//
// The interface the distributed runtime implements (MPI on the CPU, NCCL
// on CUDA). A program lists, per mesh axis, the ranks this rank talks to
// (Program::commGroups, derived from the mesh by the compiler); the
// executor asks the communicator for each group once and runs collective
// kernels on the handle it got. Buffers are views of the device's arena.
//
// Implementations: runtime/comm/mpi (Open MPI, the CPU backend's); NCCL
// comes with the CUDA backend.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_DEVICE_COMMUNICATOR_H
#define VEOMNI_RUNTIME_DEVICE_COMMUNICATOR_H

#include "runtime/core/Tensor.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

#include <cstdint>

namespace veomni::rt {

enum class ReduceOp : uint8_t { Sum, Max };

class Communicator {
public:
  virtual ~Communicator() = default;
  virtual int Rank() const = 0;
  virtual int WorldSize() const = 0;
  /// The group of `ranks` (in this order, this rank among them), made on
  /// first use; `name` labels errors. Every rank of the group asks for it,
  /// in the same order relative to the other groups they share. Returns
  /// the handle the collectives take: the same ranks, the same handle, so
  /// the programs of one job (a forward and a step, pipeline stages, a
  /// re-planned resume) share their groups.
  virtual absl::StatusOr<uint32_t>
  AddGroup(absl::string_view name, absl::Span<const uint32_t> ranks) = 0;

  /// out = the group's inputs concatenated along `dim`, in rank order.
  virtual absl::Status AllGather(uint32_t group, const TensorView &in,
                                 const TensorView &out, int64_t dim) = 0;
  /// out = this rank's part (along `dim`) of the reduction of the inputs.
  virtual absl::Status ReduceScatter(uint32_t group, const TensorView &in,
                                     const TensorView &out, int64_t dim,
                                     ReduceOp op) = 0;
  /// out (which may be in) = the reduction of the group's inputs.
  virtual absl::Status AllReduce(uint32_t group, const TensorView &in,
                                 const TensorView &out, ReduceOp op) = 0;
  /// Splits `in` along splitDim, sends part i to rank i, and concatenates
  /// what arrives along concatDim.
  virtual absl::Status AllToAll(uint32_t group, const TensorView &in,
                                const TensorView &out, int64_t splitDim,
                                int64_t concatDim) = 0;
  /// Rows of `rowBytes` each: `send` holds sendRows[i] rows for group rank
  /// i, one block after another; `recv` gets recvRows[i] rows from rank i
  /// likewise (expert parallelism's token exchange, whose sizes depend on
  /// the routing). Counted in BytesSent as the plan report models it: an
  /// all-to-all of `modelBytes` (the rows a rank holds).
  virtual absl::Status ExchangeRows(uint32_t group, const void *send,
                                    absl::Span<const int64_t> sendRows,
                                    void *recv,
                                    absl::Span<const int64_t> recvRows,
                                    int64_t rowBytes, double modelBytes) = 0;
  virtual absl::Status Send(uint32_t group, const TensorView &in, int peer) = 0;
  virtual absl::Status Recv(uint32_t group, const TensorView &out,
                            int peer) = 0;
  /// Starts sending `in` to group rank `peer` and returns without waiting
  /// for the receiver; `in` must stay unchanged until WaitSends(). Sends to
  /// one peer arrive in the order they started. A pipeline's stages send
  /// this way, so two stages that send to each other never deadlock.
  virtual absl::Status StartSend(uint32_t group, const TensorView &in,
                                 int peer) = 0;
  /// Returns once every send StartSend began is complete (its buffer may
  /// be reused; the receiver may not have it yet).
  virtual absl::Status WaitSends() = 0;
  /// Every rank's `buffer` becomes the one of group rank `root`.
  virtual absl::Status Broadcast(uint32_t group, const TensorView &buffer,
                                 int root) = 0;
  virtual absl::Status Barrier(uint32_t group) = 0;
  /// Ends every rank of the job with exit status `code` (after this rank
  /// has said why): one rank's failure never leaves the others waiting.
  [[noreturn]] virtual void Abort(int code) = 0;

  /// Bytes this rank has sent so far, counted as the plan report counts
  /// them (the ring volume of each collective: (G-1)/G of the gathered,
  /// scattered or exchanged bytes, twice that for an all-reduce; a send's
  /// own bytes).
  virtual double BytesSent() const = 0;
  /// Wall seconds this rank has spent inside collectives so far (waiting
  /// for peers included): the step time communication costs it.
  virtual double SecondsInCollectives() const = 0;
  /// Whether calls may come from a thread other than the one that made the
  /// communicator (one thread at a time): the executor then runs
  /// collectives on a thread of their own.
  virtual bool CallableFromAnyThread() const { return false; }
};

} // namespace veomni::rt

#endif // VEOMNI_RUNTIME_DEVICE_COMMUNICATOR_H
