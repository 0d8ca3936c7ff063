//===- Status.h - status plumbing for the runtime ---------------*- C++ -*-===//
//
// The one error style of the runtime and the frontends: absl::Status and
// absl::StatusOr, propagated with VEOMNI_RETURN_IF_ERROR and
// VEOMNI_ASSIGN_OR_RETURN. Every call into CUDA, cuBLASLt, NCCL or MPI goes
// through a macro that turns a failing code into an absl::Status carrying
// the call, the file and the line. Nothing in the runtime exits the process.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_SUPPORT_STATUS_H
#define VEOMNI_RUNTIME_SUPPORT_STATUS_H

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

#include <utility>

#define VEOMNI_RETURN_IF_ERROR(expr)                                           \
  do {                                                                         \
    ::absl::Status _veomni_status = (expr);                                    \
    if (!_veomni_status.ok())                                                  \
      return _veomni_status;                                                   \
  } while (0)

#define VEOMNI_STATUS_CONCAT_(a, b) a##b
#define VEOMNI_STATUS_CONCAT(a, b) VEOMNI_STATUS_CONCAT_(a, b)

/// `VEOMNI_ASSIGN_OR_RETURN(auto x, MakeX());` (or `x = ...` for a declared
/// x): the value of an absl::StatusOr, or return its status.
#define VEOMNI_ASSIGN_OR_RETURN(lhs, expr)                                     \
  VEOMNI_ASSIGN_OR_RETURN_IMPL(                                                \
      VEOMNI_STATUS_CONCAT(_veomni_statusor_, __LINE__), lhs, expr)
#define VEOMNI_ASSIGN_OR_RETURN_IMPL(var, lhs, expr)                           \
  auto var = (expr);                                                           \
  if (!var.ok())                                                               \
    return std::move(var).status();                                            \
  lhs = *std::move(var)

namespace veomni::rt {
/// "<call> failed at <file>:<line>: <what>", the message of a failed call.
inline absl::Status CallError(absl::StatusCode code, const char *call,
                              const char *file, int line,
                              absl::string_view what) {
  return absl::Status(
      code, absl::StrCat(call, " failed at ", file, ":", line, ": ", what));
}
} // namespace veomni::rt

#endif // VEOMNI_RUNTIME_SUPPORT_STATUS_H
