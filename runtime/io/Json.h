//===- Json.h - the JSON the runtime reads ----------------------*- C++ -*-===//
//
// Safetensors headers and sharded-weight indexes
// (model.safetensors.index.json): objects, arrays, strings and numbers,
// parsed with a depth limit; anything malformed is an error, never a crash.
// The runtime links no LLVM, so it has its own small reader.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_IO_JSON_H
#define VEOMNI_RUNTIME_IO_JSON_H

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace veomni::rt {

struct Json {
  /// Numbers keep their integer part; `integral` is false for 1.5 or 1e3.
  /// true and false are Bool with number 1 and 0.
  enum Kind { Null, Number, String, Array, Object, Bool } kind = Null;
  int64_t number = 0;
  bool integral = true;
  std::string text;
  std::vector<Json> items;
  std::vector<std::pair<std::string, Json>> fields;
};

/// The field `key` of an object, or null.
const Json *FindField(const Json &object, absl::string_view key);

/// Parses one JSON document.
absl::StatusOr<Json> ParseJson(absl::string_view text);

} // namespace veomni::rt

#endif // VEOMNI_RUNTIME_IO_JSON_H
