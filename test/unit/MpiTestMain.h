//===- MpiTestMain.h - main() of a test binary run by mpirun ----*- C++ -*-===//

#ifndef VEOMNI_TEST_UNIT_MPITESTMAIN_H
#define VEOMNI_TEST_UNIT_MPITESTMAIN_H

#include "runtime/comm/mpi/MpiCommunicator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <initializer_list>
#include <memory>

/// Runs the binary's tests on one rank of an mpirun job of one of `sizes`
/// ranks, with `comm` set to the job's communicator. Every rank checks and
/// rank 0 reports in full; mpirun fails when any rank does.
inline int MpiTestMain(int argc, char **argv, std::initializer_list<int> sizes,
                       veomni::rt::mpi::MpiCommunicator *&comm) {
  auto created = veomni::rt::mpi::MpiCommunicator::Create();
  if (!created.ok()) {
    std::fprintf(stderr, "%s\n", created.status().ToString().c_str());
    return 1;
  }
  std::unique_ptr<veomni::rt::mpi::MpiCommunicator> owner = *std::move(created);
  comm = owner.get();
  if (std::find(sizes.begin(), sizes.end(), comm->WorldSize()) == sizes.end()) {
    std::fprintf(stderr, "run with mpirun -np %d (not %d ranks)\n",
                 *sizes.begin(), comm->WorldSize());
    return 1;
  }
  ::testing::InitGoogleTest(&argc, argv);
  if (comm->Rank() != 0)
    ::testing::GTEST_FLAG(brief) = true;
  return RUN_ALL_TESTS();
}

#endif // VEOMNI_TEST_UNIT_MPITESTMAIN_H
