//===- SentencePiece.cpp - libsentencepiece behind a plain interface ------===//

#include "runtime/data/SentencePiece.h"

#include <sentencepiece_processor.h>

namespace veomni::rt::spm {

struct Model::Impl {
  sentencepiece::SentencePieceProcessor processor;
};

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;

std::unique_ptr<Model> Model::Load(const std::string &path,
                                   std::string &error) {
  auto impl = std::make_unique<Impl>();
  auto status = impl->processor.Load(path);
  if (!status.ok()) {
    error = status.ToString();
    return nullptr;
  }
  return std::unique_ptr<Model>(new Model(std::move(impl)));
}

bool Model::Encode(const std::string &text, std::vector<int32_t> &ids,
                   std::string &error) const {
  std::vector<int> out;
  auto status = impl_->processor.Encode(text, &out);
  if (!status.ok()) {
    error = status.ToString();
    return false;
  }
  ids.assign(out.begin(), out.end());
  return true;
}

bool Model::Decode(const std::vector<int32_t> &ids, std::string &text,
                   std::string &error) const {
  std::vector<int> in(ids.begin(), ids.end());
  for (int id : in)
    if (id < 0 || id >= impl_->processor.GetPieceSize()) {
      error = "id " + std::to_string(id) + " is outside the vocabulary";
      return false;
    }
  auto status = impl_->processor.Decode(in, &text);
  if (!status.ok()) {
    error = status.ToString();
    return false;
  }
  return true;
}

int32_t Model::PieceToId(const std::string &piece) const {
  int id = impl_->processor.PieceToId(piece);
  return impl_->processor.IdToPiece(id) == piece ? id : -1;
}

int64_t Model::Size() const { return impl_->processor.GetPieceSize(); }

} // namespace veomni::rt::spm
