//===- Safetensors.cpp - read and write .safetensors files ----------------===//

#include "runtime/io/Safetensors.h"
#include "runtime/support/Status.h"

#include "runtime/io/Json.h"
#include "runtime/io/MappedFile.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <unistd.h>

namespace veomni::rt {
namespace {

absl::StatusOr<DType> ParseDType(absl::string_view s) {
  if (s == "F32")
    return DType::F32;
  if (s == "BF16")
    return DType::BF16;
  if (s == "F16")
    return DType::F16;
  if (s == "I32")
    return DType::I32;
  if (s == "I64")
    return DType::I64;
  return absl::InvalidArgumentError(absl::StrCat("unsupported dtype ", s));
}

absl::string_view DTypeName(DType t) {
  switch (t) {
  case DType::F32:
    return "F32";
  case DType::BF16:
    return "BF16";
  case DType::F16:
    return "F16";
  case DType::I32:
    return "I32";
  case DType::I64:
    return "I64";
  }
  return "?";
}

} // namespace

SafetensorsFile::~SafetensorsFile() = default;

absl::StatusOr<std::unique_ptr<SafetensorsFile>>
SafetensorsFile::Open(const std::string &path) {
  auto bad = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
  };
  absl::StatusOr<std::unique_ptr<MappedFile>> mapped =
      MappedFile::Open(path, 8);
  if (!mapped.ok())
    return mapped.status();
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  f->file_ = *std::move(mapped);
  f->map_ = f->file_->data();
  size_t size = f->file_->size();

  uint64_t headerBytes = 0;
  for (int i = 7; i >= 0; --i)
    headerBytes = (headerBytes << 8) | f->map_[i];
  if (headerBytes > size - 8 || headerBytes > (uint64_t{1} << 30))
    return bad(absl::StrCat("header length ", headerBytes,
                            " exceeds the file (", size, " bytes)"));
  absl::string_view header(reinterpret_cast<const char *>(f->map_ + 8),
                           headerBytes);
  absl::StatusOr<Json> json = ParseJson(header);
  if (!json.ok())
    return bad(absl::StrCat("header ", json.status().message()));
  if (json->kind != Json::Object)
    return bad("the header is not a JSON object");
  f->data_ = f->map_ + 8 + headerBytes;
  uint64_t dataBytes = size - 8 - headerBytes;

  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (auto &[name, value] : json->fields) {
    if (name == "__metadata__") {
      for (auto &[k, v] : value.fields)
        if (v.kind == Json::String)
          f->metadata_[k] = v.text;
      continue;
    }
    auto field = [&](absl::string_view key) { return FindField(value, key); };
    const Json *dtype = field("dtype"), *shape = field("shape"),
               *offsets = field("data_offsets");
    if (value.kind != Json::Object || !dtype || dtype->kind != Json::String ||
        !shape || shape->kind != Json::Array || !offsets ||
        offsets->kind != Json::Array || offsets->items.size() != 2)
      return bad(absl::StrCat("tensor '", name,
                              "': needs dtype, shape and data_offsets"));
    Entry e;
    static const char *kRawTypes[] = {"U8", "I8", "F8_E4M3", "F8_E5M2", "BOOL"};
    bool raw = std::find(std::begin(kRawTypes), std::end(kRawTypes),
                         dtype->text) != std::end(kRawTypes);
    absl::StatusOr<DType> dt =
        raw ? absl::StatusOr<DType>(DType::F32) : ParseDType(dtype->text);
    if (!dt.ok())
      return bad(absl::StrCat("tensor '", name, "': ", dt.status().message()));
    e.dtype = *dt;
    uint64_t elements = 1;
    for (const Json &d : shape->items) {
      if (d.kind != Json::Number || !d.integral || d.number < 0 ||
          d.number > (int64_t{1} << 40))
        return bad(absl::StrCat("tensor '", name, "': bad shape"));
      e.shape.push_back(d.number);
      elements *= static_cast<uint64_t>(d.number);
      if (elements > (uint64_t{1} << 44))
        return bad(absl::StrCat("tensor '", name, "': too large"));
    }
    const Json &b = offsets->items[0], &end = offsets->items[1];
    if (b.kind != Json::Number || end.kind != Json::Number || b.number < 0 ||
        end.number < b.number || uint64_t(end.number) > dataBytes)
      return bad(absl::StrCat("tensor '", name, "': data_offsets [", b.number,
                              ", ", end.number, ") outside the ", dataBytes,
                              " data bytes"));
    e.begin = b.number;
    e.end = end.number;
    if (raw) {
      if (e.end - e.begin != elements)
        return bad(absl::StrCat("tensor '", name, "': ", e.end - e.begin,
                                " bytes for ", dtype->text, " shape [",
                                absl::StrJoin(e.shape, ", "), "]"));
      ranges.emplace_back(e.begin, e.end);
      if (f->entries_.count(name) ||
          !f->raw_.emplace(name, RawEntry{dtype->text, e.shape, e.begin, e.end})
               .second)
        return bad(absl::StrCat("tensor '", name, "' appears twice"));
      continue;
    }
    if (e.end - e.begin != elements * SizeOf(e.dtype))
      return bad(absl::StrCat("tensor '", name, "': ", e.end - e.begin,
                              " bytes for ", DTypeName(e.dtype), " shape [",
                              absl::StrJoin(e.shape, ", "), "]"));
    ranges.emplace_back(e.begin, e.end);
    if (f->raw_.count(name) || !f->entries_.emplace(name, std::move(e)).second)
      return bad(absl::StrCat("tensor '", name, "' appears twice"));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second)
      return bad("tensors overlap in the data section");
  return f;
}

const SafetensorsFile::Entry *
SafetensorsFile::Find(const std::string &name) const {
  auto it = entries_.find(name);
  return it == entries_.end() ? nullptr : &it->second;
}

const SafetensorsFile::RawEntry *
SafetensorsFile::FindRaw(const std::string &name) const {
  auto it = raw_.find(name);
  return it == raw_.end() ? nullptr : &it->second;
}

TensorView SafetensorsFile::View(const Entry &e) const {
  return TensorView{const_cast<uint8_t *>(data_ + e.begin), e.dtype, e.shape};
}

absl::Status CopyConvert(const TensorView &from, const TensorView &to) {
  if (from.shape != to.shape)
    return absl::InvalidArgumentError(absl::StrCat(
        "shape ", from.ToString(), " does not match ", to.ToString()));
  if (from.dtype == to.dtype) {
    std::memcpy(to.data, from.data, from.bytes());
    return absl::OkStatus();
  }
  if (IsFloat(from.dtype) != IsFloat(to.dtype))
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot convert ", from.ToString(), " to ", to.ToString()));
  for (int64_t i = 0, n = from.numel(); i < n; ++i) {
    if (IsFloat(to.dtype))
      StoreF(to, i, LoadF(from, i));
    else
      StoreI(to, i, LoadI(from, i));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> CountBatches(const Executor &executor,
                                     const SafetensorsFile &file) {
  int64_t batches = -1;
  for (const ArgumentDesc &a : executor.program().arguments) {
    if (!IsBatchInput(a))
      continue;
    TensorView in = executor.View(a.buffer);
    in.shape = executor.GlobalShape(a.buffer); // the global batch
    const SafetensorsFile::Entry *e = file.Find(a.name);
    auto bad = [&](absl::string_view what) {
      return absl::InvalidArgumentError(
          absl::StrCat(file.path(), ": input '", a.name, "' ", what));
    };
    if (!e)
      return bad("is missing");
    if (IsFloat(e->dtype) != IsFloat(in.dtype))
      return bad(absl::StrCat("is ", Name(e->dtype), ", the program takes ",
                              Name(in.dtype)));
    int64_t n;
    if (e->shape == in.shape) {
      n = 1;
    } else if (e->shape.size() == in.shape.size() + 1 &&
               std::equal(in.shape.begin(), in.shape.end(),
                          e->shape.begin() + 1) &&
               e->shape[0] > 0) {
      n = e->shape[0];
    } else {
      return bad(absl::StrCat("has shape [", absl::StrJoin(e->shape, ", "),
                              "]; the program takes [",
                              absl::StrJoin(in.shape, ", "),
                              "], or N batches of it"));
    }
    if (batches >= 0 && n != batches)
      return bad(absl::StrCat("holds ", n, " batches, other inputs ", batches));
    batches = n;
  }
  return batches < 0 ? 1 : batches;
}

absl::Status FillInputs(Executor &executor, const SafetensorsFile &file,
                        int64_t index) {
  VEOMNI_ASSIGN_OR_RETURN(int64_t batches, CountBatches(executor, file));
  int64_t i = index % batches;
  for (const ArgumentDesc &a : executor.program().arguments) {
    if (!IsBatchInput(a))
      continue;
    TensorView from = file.View(*file.Find(a.name));
    if (from.shape != executor.GlobalShape(a.buffer)) {
      from.shape.erase(from.shape.begin()); // batch i of N
      from.data = static_cast<uint8_t *>(from.data) + i * from.bytes();
    }
    absl::Status s = executor.FillGlobal(a.buffer, [&](const TensorView &to) {
      if (absl::Status s = CopyConvert(from, to); !s.ok())
        return absl::InvalidArgumentError(
            absl::StrCat(file.path(), ": input '", a.name, "': ", s.message()));
      if (a.bound > 0)
        for (int64_t j = 0, n = to.numel(); j < n; ++j)
          if (int64_t v = LoadI(to, j); v < 0 || v >= a.bound)
            return absl::InvalidArgumentError(
                absl::StrCat(file.path(), ": input '", a.name, "' holds ", v,
                             ", outside [0, ", a.bound, ")"));
      return absl::OkStatus();
    });
    if (!s.ok())
      return s;
  }
  return absl::OkStatus();
}

absl::Status WriteSafetensors(const std::string &path,
                              const std::vector<NamedTensor> &tensors,
                              const std::map<std::string, std::string> &meta) {
  std::string header = "{";
  uint64_t offset = 0;
  auto quote = [](const std::string &s) {
    return absl::StrCat(
        "\"", absl::StrReplaceAll(s, {{"\\", "\\\\"}, {"\"", "\\\""}}), "\"");
  };
  if (!meta.empty()) {
    std::vector<std::string> kv;
    for (auto &[k, v] : meta)
      kv.push_back(absl::StrCat(quote(k), ":", quote(v)));
    absl::StrAppend(&header, "\"__metadata__\":{", absl::StrJoin(kv, ","), "}");
  }
  for (const NamedTensor &t : tensors) {
    if (header.size() > 1)
      header += ",";
    absl::StrAppend(&header, quote(t.name), ":{\"dtype\":\"",
                    DTypeName(t.view.dtype), "\",\"shape\":[",
                    absl::StrJoin(t.view.shape, ","), "],\"data_offsets\":[",
                    offset, ",", offset + t.view.bytes(), "]}");
    offset += t.view.bytes();
  }
  header += "}";
  while (header.size() % 8)
    header += ' ';

  uint8_t len[8];
  for (int i = 0; i < 8; ++i)
    len[i] = static_cast<uint8_t>(uint64_t(header.size()) >> (8 * i));
  std::vector<absl::string_view> chunks = {
      absl::string_view(reinterpret_cast<const char *>(len), 8), header};
  for (const NamedTensor &t : tensors)
    chunks.emplace_back(static_cast<const char *>(t.view.data), t.view.bytes());
  return WriteAtomically(path, chunks);
}

absl::Status WriteTextFile(const std::string &path, absl::string_view text) {
  return WriteAtomically(path, {text});
}

absl::Status WriteAtomically(const std::string &path,
                             const std::vector<absl::string_view> &chunks) {
  std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  FILE *f = std::fopen(tmp.c_str(), "wb");
  if (!f)
    return absl::PermissionDeniedError(absl::StrCat(tmp, ": cannot create"));
  // The first failure's cause (a full disk, a file-size limit) is what
  // the message gives.
  bool ok = true;
  int cause = 0;
  auto check = [&](bool done) {
    if (ok && !done) {
      ok = false;
      cause = errno;
    }
  };
  for (absl::string_view c : chunks)
    if (ok)
      check(std::fwrite(c.data(), 1, c.size(), f) == c.size());
  if (ok)
    check(std::fflush(f) == 0 && fsync(fileno(f)) == 0);
  check(std::fclose(f) == 0);
  if (ok)
    check(std::rename(tmp.c_str(), path.c_str()) == 0);
  if (!ok) {
    std::remove(tmp.c_str());
    return absl::DataLossError(absl::StrCat(path, ": write failed",
                                            cause ? ": " : "",
                                            cause ? std::strerror(cause) : ""));
  }
  return absl::OkStatus();
}

} // namespace veomni::rt
