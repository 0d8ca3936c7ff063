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
  // (An empty document writes nothing: its data() may be null.)
  for (const auto &d : docs)
    ok = ok && (d.empty() || std::fwrite(d.data(), 4, d.size(), f) == d.size());
  if (trained)
    for (const auto &m : *trained)
      ok = ok &&
           (m.empty() || std::fwrite(m.data(), 1, m.size(), f) == m.size());
  ok = ok && std::fflush(f) == 0 && fsync(fileno(f)) == 0;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return absl::DataLossError(absl::StrCat(path, ": write failed"));
  }
  return absl::OkStatus();
}

} // namespace veomni::rt
