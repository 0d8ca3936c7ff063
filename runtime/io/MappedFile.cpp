//===- MappedFile.cpp - read-only memory maps of whole files --------------===//

#include "runtime/io/MappedFile.h"

#include "absl/strings/str_cat.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace veomni::rt {

absl::StatusOr<std::unique_ptr<MappedFile>>
MappedFile::Open(const std::string &path, size_t minBytes) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0)
    return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a regular file"));
  }
  size_t size = static_cast<size_t>(st.st_size);
  if (size < minBytes || size == 0) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": truncated: ", size, " bytes"));
  }
  void *m = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED)
    return absl::InvalidArgumentError(absl::StrCat(path, ": cannot map"));
  return std::unique_ptr<MappedFile>(
      new MappedFile(static_cast<const uint8_t *>(m), size));
}

MappedFile::~MappedFile() { munmap(const_cast<uint8_t *>(data_), size_); }

} // namespace veomni::rt
