//===- SentencePiece.h - libsentencepiece behind a plain interface -*- C++
//-*-===//
//
// Debian's sentencepiece_processor.h declares its own absl::string_view,
// which collides with Abseil's: only SentencePiece.cpp includes it, and
// this header speaks std types alone.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_DATA_SENTENCEPIECE_H
#define VEOMNI_RUNTIME_DATA_SENTENCEPIECE_H

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace veomni::rt::spm {

class Model {
public:
  /// The model at `path`, or null with `error` set.
  static std::unique_ptr<Model> Load(const std::string &path,
                                     std::string &error);
  ~Model();
  /// False with `error` set when SentencePiece refuses the text.
  bool Encode(const std::string &text, std::vector<int32_t> &ids,
              std::string &error) const;
  /// The text of `ids` (false with `error` set for an id out of range).
  bool Decode(const std::vector<int32_t> &ids, std::string &text,
              std::string &error) const;
  /// The piece's id, or -1.
  int32_t PieceToId(const std::string &piece) const;
  int64_t Size() const;

private:
  struct Impl;
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

} // namespace veomni::rt::spm

#endif // VEOMNI_RUNTIME_DATA_SENTENCEPIECE_H
