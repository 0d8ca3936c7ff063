//===- SubCommunicator.h - some ranks of a communicator -----*- C++ -*-===//
//
// A pipeline stage's programs are partitioned for the stage's own mesh
// (every axis but pp): their rank numbers and groups count the stage's
// ranks only. A SubCommunicator presents ranks `ranks` of a parent
// communicator as a world of their own: rank i here is parent rank
// ranks[i], and a group's ranks are mapped the same way before the parent
// makes it. Everything else goes to the parent, whose groups, byte counts
// and failure handling are shared.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_COMM_SUBCOMMUNICATOR_H
#define VEOMNI_RUNTIME_COMM_SUBCOMMUNICATOR_H

#include "runtime/device/Communicator.h"

#include <vector>

namespace veomni::rt {

class SubCommunicator final : public Communicator {
public:
  /// `ranks` (parent ranks, this rank among them) must outlive nothing:
  /// they are copied. Fails when this rank is not among them.
  static absl::StatusOr<std::unique_ptr<SubCommunicator>>
  Create(Communicator &parent, std::vector<uint32_t> ranks);

  int Rank() const override { return rank_; }
  int WorldSize() const override { return static_cast<int>(ranks_.size()); }
  absl::StatusOr<uint32_t> AddGroup(absl::string_view name,
                                    absl::Span<const uint32_t> ranks) override;
  absl::Status AllGather(uint32_t group, const TensorView &in,
                         const TensorView &out, int64_t dim) override {
    return parent_->AllGather(group, in, out, dim);
  }
  absl::Status ReduceScatter(uint32_t group, const TensorView &in,
                             const TensorView &out, int64_t dim,
                             ReduceOp op) override {
    return parent_->ReduceScatter(group, in, out, dim, op);
  }
  absl::Status AllReduce(uint32_t group, const TensorView &in,
                         const TensorView &out, ReduceOp op) override {
    return parent_->AllReduce(group, in, out, op);
  }
  absl::Status AllToAll(uint32_t group, const TensorView &in,
                        const TensorView &out, int64_t splitDim,
                        int64_t concatDim) override {
    return parent_->AllToAll(group, in, out, splitDim, concatDim);
  }
  absl::Status ExchangeRows(uint32_t group, const void *send,
                            absl::Span<const int64_t> sendRows, void *recv,
                            absl::Span<const int64_t> recvRows,
                            int64_t rowBytes, double modelBytes) override {
    return parent_->ExchangeRows(group, send, sendRows, recv, recvRows,
                                 rowBytes, modelBytes);
  }
  absl::Status Send(uint32_t group, const TensorView &in, int peer) override {
    return parent_->Send(group, in, peer);
  }
  absl::Status Recv(uint32_t group, const TensorView &out, int peer) override {
    return parent_->Recv(group, out, peer);
  }
  absl::Status StartSend(uint32_t group, const TensorView &in,
                         int peer) override {
    return parent_->StartSend(group, in, peer);
  }
  absl::Status WaitSends() override { return parent_->WaitSends(); }
  absl::Status Broadcast(uint32_t group, const TensorView &buffer,
                         int root) override {
    return parent_->Broadcast(group, buffer, root);
  }
  absl::Status Barrier(uint32_t group) override {
    return parent_->Barrier(group);
  }
  [[noreturn]] void Abort(int code) override { parent_->Abort(code); }
  double BytesSent() const override { return parent_->BytesSent(); }
  double SecondsInCollectives() const override {
    return parent_->SecondsInCollectives();
  }
  bool CallableFromAnyThread() const override {
    return parent_->CallableFromAnyThread();
  }

private:
  SubCommunicator(Communicator &parent, std::vector<uint32_t> ranks, int rank)
      : parent_(&parent), ranks_(std::move(ranks)), rank_(rank) {}
  Communicator *parent_;
  std::vector<uint32_t> ranks_;
  int rank_;
};

} // namespace veomni::rt

#endif // VEOMNI_RUNTIME_COMM_SUBCOMMUNICATOR_H
