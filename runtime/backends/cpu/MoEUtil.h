//===- MoEUtil.h - the expert row order of the MoE kernels ------*- C++ -*-===//
//
// Internal to the fast CPU kernels: MoEDispatch, MoECombine and
// the gradients that read their rows (MoE.cpp) place the k copies
// of every token by the same order, computed here.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_BACKENDS_CPU_MOEUTIL_H
#define VEOMNI_RUNTIME_BACKENDS_CPU_MOEUTIL_H

#include "runtime/backends/cpu/KernelUtil.h"

#include <algorithm>
#include <numeric>
#include <vector>

namespace veomni::rt::cpu::detail {

/// row[t*k+j]: the output row of copy j of token t, given expert ids and the
/// expert count (ids already checked to lie in [0, experts)). Fills `counts`
/// with the rows per expert when given.
inline std::vector<int64_t>
ExpertOrder(const TensorView &indices, int64_t experts,
            std::vector<int64_t> *counts = nullptr) {
  int64_t n = indices.numel();
  std::vector<int64_t> next(experts + 1, 0);
  for (int64_t i = 0; i < n; ++i)
    ++next[IndexAt(indices, i) + 1];
  if (counts)
    counts->assign(next.begin() + 1, next.end());
  for (int64_t e = 0; e < experts; ++e)
    next[e + 1] += next[e];
  std::vector<int64_t> row(n);
  for (int64_t i = 0; i < n; ++i)
    row[i] = next[IndexAt(indices, i)]++;
  return row;
}

/// row[t*k+j]: the row MoECombine reads copy j of token t from, when no
/// expert count is given (ids already checked to be >= 0): any ids define
/// the order, as dispatch with more experts than the largest id would have.
/// Small ids take the counting sort; large ones a stable sort, so memory
/// stays O(T*k).
inline std::vector<int64_t> CombineOrder(const TensorView &indices) {
  int64_t n = indices.numel();
  int64_t maxId = -1;
  for (int64_t i = 0; i < n; ++i)
    maxId = std::max(maxId, IndexAt(indices, i));
  if (maxId < std::max<int64_t>(n, 1024))
    return ExpertOrder(indices, maxId + 1);
  std::vector<int64_t> byExpert(n);
  std::iota(byExpert.begin(), byExpert.end(), 0);
  std::stable_sort(byExpert.begin(), byExpert.end(), [&](int64_t a, int64_t b) {
    return IndexAt(indices, a) < IndexAt(indices, b);
  });
  std::vector<int64_t> row(n);
  for (int64_t r = 0; r < n; ++r)
    row[byExpert[r]] = r;
  return row;
}

} // namespace veomni::rt::cpu::detail

#endif // VEOMNI_RUNTIME_BACKENDS_CPU_MOEUTIL_H
