//===- TokenDataset.cpp - token datasets and sequence packing -------------===//

#include "runtime/io/TokenDataset.h"
#include "runtime/support/Status.h"

#include "runtime/io/MappedFile.h"

#include "absl/strings/str_cat.h"

#include <cstdio>
#include <cstring>
#include <unistd.h>

namespace veomni::rt {
namespace {
constexpr char kMagic[8] = {'V', 'E', 'O', 'M', 'N', 'I', 'T', 'D'};
constexpr size_t kHeader = 32;
/// Version 2's flag: a trained mask (u8 per token) follows the tokens.
constexpr uint32_t kTrainedMask = 1;
} // namespace

TokenDataset::~TokenDataset() = default;

absl::StatusOr<std::unique_ptr<TokenDataset>>
TokenDataset::Open(const std::string &path) {
  auto bad = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
  };
  absl::StatusOr<std::unique_ptr<MappedFile>> mapped =
      MappedFile::Open(path, kHeader);
  if (!mapped.ok())
    return mapped.status();
  std::unique_ptr<TokenDataset> d(new TokenDataset());
  d->path_ = path;
  d->file_ = *std::move(mapped);
  d->map_ = d->file_->data();
  size_t size = d->file_->size();
  if (std::memcmp(d->map_, kMagic, 8))
    return bad("not a veomni token dataset (bad magic)");
  uint32_t version, flags;
  std::memcpy(&version, d->map_ + 8, 4);
  std::memcpy(&flags, d->map_ + 12, 4);
  if (version != 1 && version != 2)
    return bad(
        absl::StrCat("version ", version, ", this runtime reads 1 and 2"));
  if ((version == 1 && flags != 0) || (version == 2 && flags != kTrainedMask))
    return bad(
        absl::StrCat("flags ", flags, " are not those of version ", version));
  const bool masked = flags & kTrainedMask;
  std::memcpy(&d->documents_, d->map_ + 16, 8);
  std::memcpy(&d->tokens_, d->map_ + 24, 8);
  if (d->documents_ > (uint64_t{1} << 40) || d->tokens_ > (uint64_t{1} << 40))
    return bad("implausible document or token count");
  uint64_t expected = kHeader + 8 * (d->documents_ + 1) + 4 * d->tokens_ +
                      (masked ? d->tokens_ : 0);
  if (size != expected)
    return bad(absl::StrCat("is ", size, " bytes; ", d->documents_,
                            " documents of ", d->tokens_, " tokens need ",
                            expected));
  d->offsets_ = reinterpret_cast<const uint64_t *>(d->map_ + kHeader);
  d->data_ = reinterpret_cast<const int32_t *>(d->map_ + kHeader +
                                               8 * (d->documents_ + 1));
  if (d->offsets_[0] != 0 || d->offsets_[d->documents_] != d->tokens_)
    return bad("document offsets must start at 0 and end at the token count");
  for (uint64_t i = 0; i < d->documents_; ++i)
    if (d->offsets_[i + 1] < d->offsets_[i])
      return bad(absl::StrCat("document ", i, " has a negative length"));
  for (uint64_t i = 0; i < d->tokens_; ++i)
    if (d->data_[i] < 0)
      return bad(absl::StrCat("token ", i, " is negative (", d->data_[i], ")"));
  if (masked) {
    d->trained_ = reinterpret_cast<const uint8_t *>(d->data_ + d->tokens_);
    for (uint64_t i = 0; i < d->tokens_; ++i)
      if (d->trained_[i] > 1)
        return bad(absl::StrCat("token ", i, "'s trained flag is ",
                                int(d->trained_[i]), ", not 0 or 1"));
  }
  return d;
}

absl::Span<const int32_t> TokenDataset::Document(uint64_t i) const {
  return {data_ + offsets_[i], offsets_[i + 1] - offsets_[i]};
}

absl::Span<const uint8_t> TokenDataset::Trained(uint64_t i) const {
  if (!trained_)
    return {};
  return {trained_ + offsets_[i], offsets_[i + 1] - offsets_[i]};
}

absl::Status
WriteTokenDataset(const std::string &path,
                  const std::vector<std::vector<int32_t>> &docs,
                  const std::vector<std::vector<uint8_t>> *trained) {
  if (trained) {
    if (trained->size() != docs.size())
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": a trained mask per document is needed"));
    for (size_t i = 0; i < docs.size(); ++i)
      if ((*trained)[i].size() != docs[i].size())
        return absl::InvalidArgumentError(absl::StrCat(
            path, ": document ", i, "'s trained mask has another length"));
  }
  std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  FILE *f = std::fopen(tmp.c_str(), "wb");
  if (!f)
    return absl::PermissionDeniedError(absl::StrCat(tmp, ": cannot create"));
  uint64_t documents = docs.size(), tokens = 0;
  std::vector<uint64_t> offsets = {0};
  for (const auto &d : docs) {
    tokens += d.size();
    offsets.push_back(tokens);
  }
  uint32_t version = trained ? 2 : 1, reserved = trained ? kTrainedMask : 0;
  bool ok = std::fwrite(kMagic, 1, 8, f) == 8 &&
            std::fwrite(&version, 4, 1, f) == 1 &&
            std::fwrite(&reserved, 4, 1, f) == 1 &&
            std::fwrite(&documents, 8, 1, f) == 1 &&
            std::fwrite(&tokens, 8, 1, f) == 1 &&
            std::fwrite(offsets.data(), 8, offsets.size(), f) == offsets.size();
  for (const auto &d : docs)
    ok = ok && std::fwrite(d.data(), 4, d.size(), f) == d.size();
  if (trained)
    for (const auto &m : *trained)
      ok = ok && std::fwrite(m.data(), 1, m.size(), f) == m.size();
  ok = ok && std::fflush(f) == 0 && fsync(fileno(f)) == 0;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return absl::DataLossError(absl::StrCat(path, ": write failed"));
  }
  return absl::OkStatus();
}

absl::StatusOr<PackedRows> Packer::Next(int64_t rows) {
  if (data_.tokens() == 0)
    return absl::InvalidArgumentError(
        absl::StrCat(data_.path(), ": the dataset has no tokens"));
  PackedRows out;
  size_t n = static_cast<size_t>(rows * seqLen_);
  out.ids.reserve(n);
  for (int64_t r = 0; r < rows; ++r) {
    int32_t segment = 0;
    int64_t filled = 0;
    while (filled < seqLen_) {
      absl::Span<const int32_t> doc = data_.Document(doc_);
      absl::Span<const uint8_t> trained = data_.Trained(doc_);
      if (at_ >= doc.size()) { // empty or finished: next document
        doc_ = (doc_ + 1) % data_.documents();
        at_ = 0;
        continue;
      }
      int64_t take = std::min<int64_t>(seqLen_ - filled, doc.size() - at_);
      for (int64_t j = 0; j < take; ++j) {
        uint64_t t = at_ + j;
        out.ids.push_back(doc[t]);
        out.positions.push_back(static_cast<int32_t>(j));
        out.segments.push_back(segment);
        bool next = t + 1 < doc.size() && (trained.empty() || trained[t + 1]);
        out.labels.push_back(next ? doc[t + 1] : -100);
      }
      filled += take;
      at_ += take;
      ++segment;
    }
  }
  return out;
}

absl::Status FillTextBatch(Executor &executor, Packer &packer) {
  const Program &p = executor.program();
  const ArgumentDesc *ids = p.FindArgument("input_ids");
  if (!ids)
    return absl::InvalidArgumentError("the program has no input_ids input");
  TensorView idv = executor.View(ids->buffer);
  idv.shape = executor.GlobalShape(ids->buffer); // every rank packs it all
  if (idv.rank() != 2)
    return absl::InvalidArgumentError("input_ids is not [batch, seq_len]");
  for (const ArgumentDesc &a : p.arguments) {
    static const char *text[] = {"input_ids", "position_ids", "segment_ids",
                                 "labels"};
    if (IsBatchInput(a) &&
        std::find(std::begin(text), std::end(text), a.name) == std::end(text))
      return absl::InvalidArgumentError(absl::StrCat(
          "the program needs input '", a.name,
          "', which token datasets do not carry (text models only)"));
  }
  int64_t rows = idv.dim(0), seq = idv.dim(1);
  Packer *pk = &packer;
  absl::StatusOr<PackedRows> batch = pk->Next(rows);
  if (!batch.ok())
    return batch.status();
  if (static_cast<int64_t>(batch->ids.size()) != rows * seq)
    return absl::InvalidArgumentError(
        "the packer's seq_len differs from the program's");
  for (size_t i = 0; i < batch->ids.size(); ++i)
    if (ids->bound > 0 && batch->ids[i] >= ids->bound)
      return absl::InvalidArgumentError(absl::StrCat("token ", batch->ids[i],
                                                     " is outside the model's "
                                                     "vocabulary of ",
                                                     ids->bound));
  auto fill = [&](absl::string_view name,
                  const std::vector<int32_t> &values) -> absl::Status {
    const ArgumentDesc *a = p.FindArgument(name);
    if (!a)
      return absl::OkStatus();
    return executor.FillGlobal(
        a->buffer, [&](const TensorView &v) -> absl::Status {
          if (v.numel() % static_cast<int64_t>(values.size()) != 0)
            return absl::InvalidArgumentError(
                absl::StrCat(name, " ", v.ToString(), " does not hold ",
                             values.size(), " values"));
          // [3, B, S] multimodal positions: text uses one position per section.
          for (int64_t i = 0; i < v.numel(); ++i)
            StoreI(v, i, values[i % values.size()]);
          return absl::OkStatus();
        });
  };
  for (auto [name, values] :
       {std::pair<absl::string_view, const std::vector<int32_t> *>{"input_ids",
                                                                   &batch->ids},
        {"position_ids", &batch->positions},
        {"segment_ids", &batch->segments},
        {"labels", &batch->labels}})
    VEOMNI_RETURN_IF_ERROR(fill(name, *values));
  return absl::OkStatus();
}

} // namespace veomni::rt
