//===- ConfigReader.h - typed access to a Hugging Face config ---*- C++ -*-===//
//
// Reads config.json with the field semantics of transformers' config classes.
// Every failure (unreadable file, bad JSON, a missing required field, a field
// of the wrong type, an inconsistent value) is recorded once, as one line
// naming the file and the dotted field: the first error wins and every later
// read returns a harmless default, so importers read straight through and
// check `failed()` once.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_FRONTENDS_CONFIGREADER_H
#define VEOMNI_FRONTENDS_CONFIGREADER_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/ADT/Twine.h"
#include "llvm/Support/JSON.h"

#include "absl/status/status.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace mlir::veomni {

class ConfigReader {
public:
  /// Loads and parses `path`. On failure the reader is failed() with the
  /// reason in error(); it is still safe to read from.
  static ConfigReader load(llvm::StringRef path);
  /// Parses JSON text; `path` only names it in messages.
  static ConfigReader fromText(llvm::StringRef text, llvm::StringRef path);

  bool failed() const { return !state->error.empty(); }
  /// "<file>: field '<a.b>': <what>", or "<file>: <what>".
  const std::string &error() const { return state->error; }
  /// OK, or InvalidArgument with error(): how importers hand the first
  /// failure on.
  absl::Status status() const {
    return failed() ? absl::InvalidArgumentError(state->error)
                    : absl::OkStatus();
  }
  const std::string &path() const { return state->path; }

  /// True when the field is present and not null.
  bool has(llvm::StringRef key) const;
  /// True when the field is present and null.
  bool isNull(llvm::StringRef key) const;

  /// Required fields: a missing one is an error.
  int64_t getInt(llvm::StringRef key);
  double getFloat(llvm::StringRef key);
  std::string getString(llvm::StringRef key);
  /// Optional fields: missing or null gives `otherwise`.
  int64_t getInt(llvm::StringRef key, int64_t otherwise);
  double getFloat(llvm::StringRef key, double otherwise);
  bool getBool(llvm::StringRef key, bool otherwise);
  std::string getString(llvm::StringRef key, llvm::StringRef otherwise);
  std::vector<int64_t> getIntList(llvm::StringRef key,
                                  std::vector<int64_t> otherwise = {});
  /// A list of strings; nullopt (and an error) when it is not one.
  std::optional<std::vector<std::string>> getStringList(llvm::StringRef key);
  /// Marks the keys every transformers config may carry and that do not
  /// change what is trained (transformers_version, dtype, token ids,
  /// generation defaults, ...) as known in this object.
  void ignoreGenericKeys();
  /// Marks the keys of this object that `other` also has as known: the
  /// flat copies of text_config's keys that transformers 4.x writes at the
  /// top level of VL configs.
  void ignoreKeysOf(const ConfigReader &other);
  /// A nested object (vision_config, rope_scaling, ...); nullopt when
  /// missing or null.
  std::optional<ConfigReader> getObject(llvm::StringRef key);

  /// Marks `keys` of this object as known: they do not change what is
  /// trained (token ids, generation settings, initializer_range, ...).
  void ignore(llvm::ArrayRef<llvm::StringRef> keys);
  /// Every key of the file that no importer read or marked known, dotted
  /// (vision_config.foo), sorted. Objects that were opened are searched
  /// inside; others count as one key.
  std::vector<std::string> unknownKeys() const;

  /// Records a semantic error about `key` (e.g. sizes that do not divide).
  void fail(llvm::StringRef key, const llvm::Twine &message);
  /// The dotted name of `key` inside this object.
  std::string fieldName(llvm::StringRef key) const;

private:
  struct State {
    std::string path;
    std::string error;
    llvm::json::Value root = nullptr;
    /// Dotted names that were looked up or ignored, and objects opened.
    std::set<std::string> known, opened;
  };
  ConfigReader(std::shared_ptr<State> state, const llvm::json::Object *object,
               std::string prefix)
      : state(std::move(state)), object(object), prefix(std::move(prefix)) {}

  /// The field's value, or null when missing or null.
  const llvm::json::Value *lookup(llvm::StringRef key) const;
  void failType(llvm::StringRef key, llvm::StringRef expected,
                const llvm::json::Value &got);

  std::shared_ptr<State> state;
  const llvm::json::Object *object;
  std::string prefix;
};

} // namespace mlir::veomni

#endif // VEOMNI_FRONTENDS_CONFIGREADER_H
