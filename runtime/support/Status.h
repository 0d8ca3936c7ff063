//===- Status.h - status plumbing for the runtime ---------------*- C++ -*-===//
//
// Every call into CUDA, cuBLASLt, NCCL or MPI goes through one of these
// macros, which turn a failing code into an absl::Status carrying the call,
// the file and the line. Nothing in the runtime exits the process.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_SUPPORT_STATUS_H
#define VEOMNI_RUNTIME_SUPPORT_STATUS_H

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

#define VEOMNI_RETURN_IF_ERROR(expr)                                           \
  do {                                                                         \
    ::absl::Status _veomni_status = (expr);                                    \
    if (!_veomni_status.ok())                                                  \
      return _veomni_status;                                                   \
  } while (0)

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
