//===- SubCommunicator.cpp - a communicator over some ranks of another ----===//

#include "runtime/comm/SubCommunicator.h"

#include "absl/strings/str_cat.h"

#include <algorithm>

namespace veomni::rt {

absl::StatusOr<std::unique_ptr<SubCommunicator>>
SubCommunicator::Create(Communicator &parent, std::vector<uint32_t> ranks) {
  auto it = std::find(ranks.begin(), ranks.end(),
                      static_cast<uint32_t>(parent.Rank()));
  if (it == ranks.end())
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", parent.Rank(), " is not among the ", ranks.size(),
                     " ranks of its sub-communicator"));
  for (uint32_t r : ranks)
    if (r >= static_cast<uint32_t>(parent.WorldSize()))
      return absl::InvalidArgumentError(absl::StrCat(
          "sub-communicator rank ", r, " in a world of ", parent.WorldSize()));
  int rank = static_cast<int>(it - ranks.begin());
  return std::unique_ptr<SubCommunicator>(
      new SubCommunicator(parent, std::move(ranks), rank));
}

absl::StatusOr<uint32_t>
SubCommunicator::AddGroup(absl::string_view name,
                          absl::Span<const uint32_t> ranks) {
  std::vector<uint32_t> mapped;
  mapped.reserve(ranks.size());
  for (uint32_t r : ranks) {
    if (r >= ranks_.size())
      return absl::InvalidArgumentError(absl::StrCat(
          "group ", name, " names rank ", r, " of a world of ", ranks_.size()));
    mapped.push_back(ranks_[r]);
  }
  return parent_->AddGroup(name, mapped);
}

} // namespace veomni::rt
