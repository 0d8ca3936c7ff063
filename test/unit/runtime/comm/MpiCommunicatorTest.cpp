//===- MpiCommunicatorTest.cpp - every collective on 4 MPI ranks ----------===//
//
// Run by ctest through mpirun with 4 ranks on a 2 x 2 mesh (dp, tp): rank =
// 2 dp + tp. Every collective is checked against values each rank can
// compute by itself, in every element type that matters, and bad calls
// give errors rather than hangs. A failure on any rank fails the run.
//
//===----------------------------------------------------------------------===//

#include "runtime/comm/mpi/MpiCommunicator.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

namespace veomni::rt::mpi {
namespace {

MpiCommunicator *comm = nullptr;
uint32_t kTp = 0, kDp = 0, kWorld = 0; // handles, made in main

/// An f32 (or other) buffer of `shape` that owns its bytes.
struct Buffer {
  std::vector<uint8_t> bytes;
  TensorView view;
  Buffer(DType t, Shape shape) {
    int64_t n = 1;
    for (int64_t d : shape)
      n *= d;
    bytes.assign(n * SizeOf(t), 0);
    view = TensorView{bytes.data(), t, std::move(shape)};
  }
};

int Rank() { return comm->Rank(); }
int Dp() { return Rank() / 2; }
int Tp() { return Rank() % 2; }

TEST(MpiCommunicator, AllGatherConcatenatesInGroupOrder) {
  Buffer in(DType::F32, {2, 3}), out(DType::F32, {2, 6});
  for (int i = 0; i < 6; ++i)
    StoreF(in.view, i, Rank() * 100 + i);
  ASSERT_TRUE(comm->AllGather(kTp, in.view, out.view, 1).ok());
  for (int o = 0; o < 2; ++o)
    for (int g = 0; g < 2; ++g)
      for (int j = 0; j < 3; ++j)
        EXPECT_EQ(LoadF(out.view, o * 6 + g * 3 + j),
                  (2 * Dp() + g) * 100 + o * 3 + j);
}

TEST(MpiCommunicator, ReduceScatterSumsAndKeepsThisRanksPart) {
  Buffer in(DType::F32, {8, 2}), out(DType::F32, {2, 2});
  for (int i = 0; i < 16; ++i)
    StoreF(in.view, i, Rank() + i);
  ASSERT_TRUE(
      comm->ReduceScatter(kWorld, in.view, out.view, 0, ReduceOp::Sum).ok());
  for (int k = 0; k < 4; ++k) // 0 + 1 + 2 + 3 + 4 (rank's block + k)
    EXPECT_EQ(LoadF(out.view, k), 6 + 4 * (Rank() * 4 + k));
}

TEST(MpiCommunicator, AllReduceInBf16AndIntegers) {
  Buffer x(DType::BF16, {5}), y(DType::BF16, {5});
  for (int i = 0; i < 5; ++i)
    StoreF(x.view, i, Rank() + i);
  ASSERT_TRUE(comm->AllReduce(kDp, x.view, y.view, ReduceOp::Sum).ok());
  for (int i = 0; i < 5; ++i) // dp members: tp and tp + 2
    EXPECT_EQ(LoadF(y.view, i), (Tp()) + (Tp() + 2) + 2 * i);

  Buffer m(DType::I64, {3});
  for (int i = 0; i < 3; ++i)
    StoreI(m.view, i, Rank() * 10 - i);
  ASSERT_TRUE(comm->AllReduce(kWorld, m.view, m.view, ReduceOp::Max).ok());
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(LoadI(m.view, i), 30 - i);
}

TEST(MpiCommunicator, AllToAllExchangesParts) {
  // Split dimension 0 into 4 parts [1, 3]; part r goes to rank r, and what
  // arrives is concatenated along dimension 1.
  Buffer in(DType::F32, {4, 3}), out(DType::F32, {1, 12});
  for (int i = 0; i < 12; ++i)
    StoreF(in.view, i, Rank() * 100 + i);
  ASSERT_TRUE(comm->AllToAll(kWorld, in.view, out.view, 0, 1).ok());
  for (int g = 0; g < 4; ++g)
    for (int j = 0; j < 3; ++j)
      EXPECT_EQ(LoadF(out.view, g * 3 + j), g * 100 + Rank() * 3 + j);
}

TEST(MpiCommunicator, SendRecvAndBroadcast) {
  Buffer b(DType::I32, {4});
  if (Tp() == 0) {
    for (int i = 0; i < 4; ++i)
      StoreI(b.view, i, Rank() * 7 + i);
    ASSERT_TRUE(comm->Send(kTp, b.view, 1).ok());
  } else {
    ASSERT_TRUE(comm->Recv(kTp, b.view, 0).ok());
    for (int i = 0; i < 4; ++i)
      EXPECT_EQ(LoadI(b.view, i), (Rank() - 1) * 7 + i);
  }
  Buffer c(DType::F16, {3});
  for (int i = 0; i < 3; ++i)
    StoreF(c.view, i, Rank() + 0.5f * i);
  ASSERT_TRUE(comm->Broadcast(kWorld, c.view, 2).ok());
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(LoadF(c.view, i), 2 + 0.5f * i);
  EXPECT_TRUE(comm->Barrier(kWorld).ok());
}

TEST(MpiCommunicator, BytesAreCountedAsThePlanReportCountsThem) {
  double before = comm->BytesSent();
  Buffer x(DType::F32, {16});
  ASSERT_TRUE(comm->AllReduce(kWorld, x.view, x.view, ReduceOp::Sum).ok());
  EXPECT_DOUBLE_EQ(comm->BytesSent() - before, 2 * 3.0 / 4.0 * 64);
}

TEST(MpiCommunicator, BadCallsAreErrorsNotHangs) {
  Buffer in(DType::F32, {2, 3}), wrong(DType::F32, {2, 5});
  absl::Status s = comm->AllGather(kTp, in.view, wrong.view, 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  s = comm->AllReduce(7, in.view, in.view, ReduceOp::Sum);
  EXPECT_NE(s.message().find("no group 7"), std::string::npos) << s;
  // A group must contain this rank; every rank refuses alike.
  uint32_t other[] = {static_cast<uint32_t>((Rank() + 1) % 4)};
  absl::StatusOr<uint32_t> h = comm->AddGroup("tp", other);
  EXPECT_NE(h.status().message().find("does not include this rank"),
            std::string::npos)
      << h.status();
  s = comm->Send(kTp, in.view, Tp());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
}

} // namespace
} // namespace veomni::rt::mpi

int main(int argc, char **argv) {
  using namespace veomni::rt::mpi;
  auto created = MpiCommunicator::Create();
  if (!created.ok()) {
    std::fprintf(stderr, "%s\n", created.status().ToString().c_str());
    return 1;
  }
  std::unique_ptr<MpiCommunicator> owner = *std::move(created);
  comm = owner.get();
  if (comm->WorldSize() != 4) {
    std::fprintf(stderr, "run with 4 ranks (mpirun -np 4), not %d\n",
                 comm->WorldSize());
    return 1;
  }
  const uint32_t r = comm->Rank();
  const uint32_t tp[] = {r / 2 * 2, r / 2 * 2 + 1};
  const uint32_t dp[] = {r % 2, r % 2 + 2};
  const uint32_t world[] = {0, 1, 2, 3};
  // Every rank makes every group it is in, in the same order.
  for (auto [handle, axis, ranks] :
       {std::tuple<uint32_t *, const char *, absl::Span<const uint32_t>>{
            &kTp, "tp", tp},
        {&kDp, "dp", dp},
        {&kWorld, "world", world}}) {
    absl::StatusOr<uint32_t> h = comm->AddGroup(axis, ranks);
    if (!h.ok()) {
      std::fprintf(stderr, "%s\n", h.status().ToString().c_str());
      return 1;
    }
    *handle = *h;
  }
  // The same ranks give the same group.
  if (*comm->AddGroup("tp again", tp) != kTp) {
    std::fprintf(stderr, "a group made twice\n");
    return 1;
  }
  ::testing::InitGoogleTest(&argc, argv);
  if (r != 0) // one rank reports; every rank's failures still fail the run
    ::testing::GTEST_FLAG(brief) = true;
  return RUN_ALL_TESTS();
}
