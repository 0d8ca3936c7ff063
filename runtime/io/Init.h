//===- Init.h - seeded parameters and synthetic batches ---------*- C++ -*-===//
//
// Without --weights, parameters start as transformers' _init_weights would
// (normal(0, 0.02), ones for norm weights, zeros for biases); without
// --data, a synthetic batch fills the inputs by their documented meaning
// (docs/frontends.md). Both are deterministic in the seed on every platform
// (no std::*_distribution, whose output is implementation-defined).
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_IO_INIT_H
#define VEOMNI_RUNTIME_IO_INIT_H

#include "runtime/executor/Executor.h"

#include <cstdint>

namespace veomni::rt {

/// A counter-based generator: value i of stream `seed` is a pure function
/// of (seed, i), so results do not depend on the order of filling.
class Philox {
public:
  explicit Philox(uint64_t seed) : seed_(seed) {}
  /// Uniform in [0, 1).
  double Uniform(uint64_t i) const;
  /// Standard normal (Box-Muller over two uniforms).
  double Normal(uint64_t i) const;

private:
  uint64_t seed_;
};

/// Fills every parameter by its ArgumentDesc::init (with `adaptersOnly`,
/// the LoRA adapters alone: what base weights lack).
absl::Status InitParameters(Executor &executor, uint64_t seed,
                            double stddev = 0.02, bool adaptersOnly = false);
/// Fills every batch input with a plausible synthetic value.
absl::Status SyntheticBatch(Executor &executor, uint64_t seed);

} // namespace veomni::rt

#endif // VEOMNI_RUNTIME_IO_INIT_H
