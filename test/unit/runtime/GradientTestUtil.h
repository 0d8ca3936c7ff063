//===- GradientTestUtil.h - comparisons for the gradient kernel tests -----===//
//
// Shared by GradientKernelsTest.cpp and GradientKernels2Test.cpp: tolerance
// checks with optional statistics (VEOMNI_GRAD_STATS), hand-value checks,
// the finite-difference check of a gradient against its forward kernel, and
// EXPECT_INVALID.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_TEST_UNIT_RUNTIME_GRADIENTTESTUTIL_H
#define VEOMNI_TEST_UNIT_RUNTIME_GRADIENTTESTUTIL_H

#include "test/unit/runtime/KernelTestUtil.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

namespace veomni::rt::kerneltest {

/// The tolerance of central differences against an analytic gradient: the
/// O(h^2) truncation error and the f32 rounding of the forward outputs
/// (divided by 2h) both stay well below it for inputs in [-1, 1].
inline constexpr Tol kFdTol = {1e-2, 2e-3};
inline constexpr float kFdStep = 1e-2f;

/// Central differences of `forward` (which reads `x`, among others) against
/// `grad`, the analytic gradient of <dy, forward()> with respect to x. x is
/// perturbed in place and restored.
inline ::testing::AssertionResult
MatchesFiniteDifferences(Buffer &x, const Buffer &grad, const Buffer &dy,
                         const std::function<Buffer()> &forward,
                         const std::string &what) {
  if (x.dtype != DType::F32 || grad.shape != x.shape)
    return ::testing::AssertionFailure()
           << "bad finite-difference setup: x " << x.view().ToString()
           << ", grad " << grad.view().ToString();
  Buffer fd(DType::F32, x.shape);
  for (int64_t i = 0; i < x.numel(); ++i) {
    float x0 = x.f(i);
    float plus = x0 + kFdStep, minus = x0 - kFdStep;
    x.setF(i, plus);
    Buffer fp = forward();
    x.setF(i, minus);
    Buffer fm = forward();
    x.setF(i, x0);
    if (fp.numel() != dy.numel() || fm.numel() != dy.numel())
      return ::testing::AssertionFailure()
             << "forward output has " << fp.numel() << " elements, dy "
             << dy.numel();
    double dot = 0;
    for (int64_t o = 0; o < dy.numel(); ++o)
      dot += static_cast<double>(dy.f(o)) *
             (static_cast<double>(fp.f(o)) - fm.f(o));
    fd.setF(i, static_cast<float>(dot / (static_cast<double>(plus) - minus)));
  }
  return AllClose(grad, fd, kFdTol, what);
}

/// An InvalidArgument whose message starts "<Kernel>: ".
#define EXPECT_INVALID(impl, expr, Kernel)                                     \
  do {                                                                         \
    absl::Status status_ = (expr);                                             \
    EXPECT_EQ(status_.code(), absl::StatusCode::kInvalidArgument)              \
        << (impl).name << ": " << Describe(status_);                           \
    EXPECT_TRUE(absl::StartsWith(status_.message(), #Kernel ": "))             \
        << (impl).name << ": " << Describe(status_);                           \
  } while (0)

} // namespace veomni::rt::kerneltest

#endif // VEOMNI_TEST_UNIT_RUNTIME_GRADIENTTESTUTIL_H
