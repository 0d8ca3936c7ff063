//===- Reference.h - naive reference kernels, for tests ---------*- C++ -*-===//
//
// The same declarations as runtime/backends/cpu/Kernels.h, in
// veomni::rt::cpu::ref: naive loop nests written for obviousness, which the
// kernel tests compare the fast kernels with. They live in a test-only
// library (veomni_rt_cpu_reference) and never ship in the runtime.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_TEST_UNIT_RUNTIME_REFERENCE_REFERENCE_H
#define VEOMNI_TEST_UNIT_RUNTIME_REFERENCE_REFERENCE_H

#include "runtime/backends/cpu/Kernels.h"

namespace veomni::rt::cpu::ref {
// clang-format off
VEOMNI_CPU_KERNELS
// clang-format on
} // namespace veomni::rt::cpu::ref

#endif // VEOMNI_TEST_UNIT_RUNTIME_REFERENCE_REFERENCE_H
