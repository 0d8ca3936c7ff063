//===- MappedFile.h - read-only memory maps of whole files ------*- C++ -*-===//

#ifndef VEOMNI_RUNTIME_IO_MAPPEDFILE_H
#define VEOMNI_RUNTIME_IO_MAPPEDFILE_H

#include "absl/status/statusor.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace veomni::rt {

/// A whole file mapped read-only. Opening fails with NotFound when the file
/// cannot be opened and InvalidArgument ("<path>: truncated: N bytes") when
/// it is shorter than `minBytes`.
class MappedFile {
public:
  static absl::StatusOr<std::unique_ptr<MappedFile>>
  Open(const std::string &path, size_t minBytes);
  ~MappedFile();
  MappedFile(const MappedFile &) = delete;
  MappedFile &operator=(const MappedFile &) = delete;

  const uint8_t *data() const { return data_; }
  size_t size() const { return size_; }

private:
  MappedFile(const uint8_t *data, size_t size) : data_(data), size_(size) {}
  const uint8_t *data_;
  size_t size_;
};

} // namespace veomni::rt

#endif // VEOMNI_RUNTIME_IO_MAPPEDFILE_H
