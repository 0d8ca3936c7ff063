//===- Safetensors.h - read and write .safetensors files --------*- C++ -*-===//
//
// The Hugging Face format: an 8-byte little-endian header length, a JSON
// header {name: {dtype, shape, data_offsets}}, then the raw data. Files are
// memory-mapped for reading; every header entry is checked against the file
// (offsets inside the data, sizes matching dtype x shape, no overlaps), so a
// lying header is an error, never an out-of-bounds read. Writing goes to a
// temporary file that is renamed into place, so a crash never leaves a
// half-written file under the real name.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_IO_SAFETENSORS_H
#define VEOMNI_RUNTIME_IO_SAFETENSORS_H

#include "runtime/executor/Executor.h"

#include "absl/status/statusor.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace veomni::rt {

class MappedFile;

class SafetensorsFile {
public:
  struct Entry {
    DType dtype;
    Shape shape;
    uint64_t begin, end; ///< byte range inside the data section
  };

  static absl::StatusOr<std::unique_ptr<SafetensorsFile>>
  Open(const std::string &path);
  ~SafetensorsFile();

  const std::string &path() const { return path_; }
  const std::map<std::string, Entry> &entries() const { return entries_; }
  /// The header's __metadata__ (string values).
  const std::map<std::string, std::string> &metadata() const {
    return metadata_;
  }
  const Entry *Find(const std::string &name) const;
  /// A read-only view of a tensor's bytes.
  TensorView View(const Entry &e) const;

  /// A tensor of a one-byte storage type veomni computes in only after
  /// converting it (U8, I8, F8_E4M3, F8_E5M2, BOOL): quantized checkpoints'
  /// blocks and scales. Find never returns these; importers that know the
  /// scheme read them here.
  struct RawEntry {
    std::string type; ///< the header's dtype
    Shape shape;
    uint64_t begin, end;
  };
  const RawEntry *FindRaw(const std::string &name) const;
  const uint8_t *RawData(const RawEntry &e) const { return data_ + e.begin; }
  const std::map<std::string, RawEntry> &rawEntries() const { return raw_; }

private:
  SafetensorsFile() = default;
  std::string path_;
  std::map<std::string, Entry> entries_;
  std::map<std::string, RawEntry> raw_;
  std::map<std::string, std::string> metadata_;
  std::unique_ptr<MappedFile> file_;
  const uint8_t *map_ = nullptr;
  const uint8_t *data_ = nullptr;
};

/// A named tensor to write.
struct NamedTensor {
  std::string name;
  TensorView view;
};

/// Writes `tensors` atomically (temporary file, fsync, rename).
absl::Status
WriteSafetensors(const std::string &path,
                 const std::vector<NamedTensor> &tensors,
                 const std::map<std::string, std::string> &metadata = {});

/// A batch file holds one tensor per batch input, named like the input,
/// shaped like it (one batch) or with a leading dimension of N batches.
/// Returns N, after checking that every input is there and fits.
absl::StatusOr<int64_t> CountBatches(const Executor &executor,
                                     const SafetensorsFile &file);
/// Fills every batch input with batch `index` (modulo N) of `file`.
absl::Status FillInputs(Executor &executor, const SafetensorsFile &file,
                        int64_t index);

/// Writes `chunks` one after another to `path` atomically: a temporary
/// file, fsync, rename. A failure leaves nothing under `path`.
absl::Status WriteAtomically(const std::string &path,
                             const std::vector<absl::string_view> &chunks);
absl::Status WriteTextFile(const std::string &path, absl::string_view text);

/// Copies `from` into `to` (same shape), converting the element type.
absl::Status CopyConvert(const TensorView &from, const TensorView &to);

} // namespace veomni::rt

#endif // VEOMNI_RUNTIME_IO_SAFETENSORS_H
