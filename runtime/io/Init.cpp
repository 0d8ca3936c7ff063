//===- Init.cpp - seeded parameters and synthetic batches -----------------===//

#include "runtime/io/Init.h"
#include "runtime/support/Status.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

#include <cmath>

namespace veomni::rt {
namespace {

/// SplitMix64: a strong 64-bit mixer, enough for initialisation.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/// A stream per argument name, so adding an argument changes no other.
uint64_t StreamSeed(uint64_t seed, absl::string_view name) {
  uint64_t h = Mix(seed);
  for (char c : name)
    h = Mix(h ^ static_cast<uint8_t>(c));
  return h;
}

} // namespace

double Philox::Uniform(uint64_t i) const {
  return static_cast<double>(Mix(seed_ ^ Mix(i)) >> 11) * 0x1.0p-53;
}

double Philox::Normal(uint64_t i) const {
  double u1 = Uniform(2 * i), u2 = Uniform(2 * i + 1);
  u1 = std::max(u1, 1e-300);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

absl::Status InitParameters(Executor &executor, uint64_t seed, double stddev,
                            bool adaptersOnly) {
  for (const ArgumentDesc &a : executor.program().arguments) {
    if (!a.isParam || (adaptersOnly && !a.adapter))
      continue;
    if (!IsFloat(executor.program().buffers[a.buffer].dtype))
      return absl::InvalidArgumentError(
          absl::StrCat("parameter '", a.name, "' is not a float tensor"));
    Philox rng(StreamSeed(seed, a.name));
    absl::Status s = executor.FillGlobal(a.buffer, [&](const TensorView &v) {
      // PEFT's lora_A: kaiming_uniform_(a = sqrt(5)), +-1/sqrt(fan_in).
      // (An experts' A [E, r, in] is peft's [E r, in]: fan_in is in.)
      const double bound =
          v.shape.size() >= 2 ? 1.0 / std::sqrt(double(v.shape.back())) : 0.0;
      for (int64_t i = 0, n = v.numel(); i < n; ++i) {
        float value = a.init == ParamInit::Ones    ? 1.0f
                      : a.init == ParamInit::Zeros ? 0.0f
                      : a.init == ParamInit::LoraA
                          ? float(bound * (2 * rng.Uniform(i) - 1))
                          : float(stddev * rng.Normal(i));
        StoreF(v, i, value);
      }
      return absl::OkStatus();
    });
    if (!s.ok())
      return s;
  }
  return absl::OkStatus();
}

absl::Status SyntheticBatch(Executor &executor, uint64_t seed) {
  const Program &p = executor.program();
  int64_t nextTokenPosition = 1; // image then audio rows, after position 0
  // The image rows, for token_type_ids (Gemma 3's bidirectional blocks).
  int64_t imageFirst = 0, imageRows = 0;
  for (const ArgumentDesc &a : p.arguments) {
    if (!IsBatchInput(a))
      continue;
    // Labels are the next tokens: id i is a pure function of the seed, so
    // they need not be read back (on a partitioned program, this rank holds
    // a slice of them).
    const ArgumentDesc *ids = p.FindArgument("input_ids");
    const Philox idRng(StreamSeed(seed, "input_ids"));
    const int64_t vocab = std::max<int64_t>(ids ? ids->bound : 1, 1);
    auto idAt = [&](int64_t i) {
      return static_cast<int64_t>(idRng.Uniform(i) * vocab) % vocab;
    };
    Philox rng(StreamSeed(seed, a.name));
    absl::Status filled =
        executor.FillGlobal(a.buffer, [&](const TensorView &v) {
          const int64_t n = v.numel();
          const int64_t last = v.shape.empty() ? 1 : v.shape.back();
          if (a.name == "input_ids") {
            for (int64_t i = 0; i < n; ++i)
              StoreI(v, i, idAt(i));
          } else if (a.name == "labels") {
            // The next token of the same sequence; the last one predicts
            // nothing.
            for (int64_t i = 0; i < n; ++i)
              StoreI(v, i, (!ids || (i + 1) % last == 0) ? -100 : idAt(i + 1));
          } else if (a.name == "position_ids" ||
                     a.name == "audio_position_ids") {
            for (int64_t i = 0; i < n; ++i)
              StoreI(v, i, i % last);
          } else if (a.name == "vision_position_ids") {
            // [2, 1, P]: row then column of each patch in a w-wide grid.
            int64_t patches = last, w = 1;
            for (int64_t d = 1; d * d <= patches; ++d)
              if (patches % d == 0)
                w = d;
            for (int64_t i = 0; i < patches && 2 * patches == n; ++i) {
              StoreI(v, i, i / w);
              StoreI(v, patches + i, i % w);
            }
          } else if (absl::EndsWith(a.name, "_token_positions")) {
            int64_t bound = std::max<int64_t>(a.bound, 1);
            for (int64_t i = 0; i < n; ++i)
              StoreI(v, i, (nextTokenPosition + i) % bound);
            if (a.name == "image_token_positions") {
              imageFirst = nextTokenPosition;
              imageRows = n;
            }
            nextTokenPosition += n;
          } else if (a.name == "token_type_ids") {
            // 1 on the image rows (declared after their positions).
            for (int64_t i = 0; i < n; ++i)
              StoreI(v, i, ((i - imageFirst) % n + n) % n < imageRows ? 1 : 0);
          } else if (IsFloat(v.dtype)) {
            for (int64_t i = 0; i < n; ++i)
              StoreF(v, i, static_cast<float>(rng.Normal(i)));
          } else { // segment ids and anything else integral: one segment
            for (int64_t i = 0; i < n; ++i)
              StoreI(v, i, 0);
          }
          return absl::OkStatus();
        });
    if (!filled.ok())
      return filled;
  }
  return absl::OkStatus();
}

} // namespace veomni::rt
