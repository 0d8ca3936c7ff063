//===- Weights.cpp - model weights as Hugging Face stores them ------------===//

#include "runtime/io/Weights.h"
#include "runtime/support/Status.h"

#include "runtime/io/Json.h"
#include "runtime/io/MappedFile.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <set>

namespace veomni::rt {
namespace fs = std::filesystem;

namespace {

constexpr const char *kSingleFile = "model.safetensors";
constexpr const char *kIndexFile = "model.safetensors.index.json";

bool IsIndex(const std::string &path) {
  return absl::EndsWith(path, ".index.json");
}

/// The index's weight_map: tensor name -> shard file name. Shard names must
/// be plain file names in the index's folder.
absl::StatusOr<std::map<std::string, std::string>>
ReadIndex(const std::string &path) {
  auto file = MappedFile::Open(path, 0);
  if (!file.ok())
    return file.status();
  auto bad = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
  };
  absl::StatusOr<Json> json = ParseJson(absl::string_view(
      reinterpret_cast<const char *>((*file)->data()), (*file)->size()));
  if (!json.ok())
    return bad(json.status().message());
  const Json *map =
      json->kind == Json::Object ? FindField(*json, "weight_map") : nullptr;
  if (!map || map->kind != Json::Object)
    return bad("field 'weight_map': missing or not an object");
  std::map<std::string, std::string> out;
  for (auto &[name, shard] : map->fields) {
    if (shard.kind != Json::String || shard.text.empty() ||
        shard.text.find('/') != std::string::npos || shard.text == "." ||
        shard.text == "..")
      return bad(absl::StrCat("field 'weight_map.", name,
                              "': not a file name in the index's folder"));
    if (!out.emplace(name, shard.text).second)
      return bad(absl::StrCat("field 'weight_map.", name, "': appears twice"));
  }
  if (out.empty())
    return bad("field 'weight_map': lists no tensor");
  return out;
}

} // namespace

WeightSet WeightSet::Of(std::unique_ptr<SafetensorsFile> file) {
  WeightSet set;
  set.path_ = file->path();
  for (auto &[name, entry] : file->entries())
    set.tensors_[name] = {file.get(), &entry};
  for (auto &[name, entry] : file->rawEntries())
    set.raw_[name] = file.get();
  set.files_.push_back(std::move(file));
  return set;
}

absl::StatusOr<WeightSet> WeightSet::Open(const std::string &path) {
  std::error_code ec;
  std::string file = path;
  if (fs::is_directory(path, ec)) {
    fs::path dir(path);
    if (fs::exists(dir / kIndexFile, ec))
      file = (dir / kIndexFile).string();
    else if (fs::exists(dir / kSingleFile, ec))
      file = (dir / kSingleFile).string();
    else
      return absl::NotFoundError(absl::StrCat(
          path, ": holds neither ", kSingleFile, " nor ", kIndexFile));
  }
  if (!IsIndex(file)) {
    auto opened = SafetensorsFile::Open(file);
    if (!opened.ok())
      return opened.status();
    return Of(*std::move(opened));
  }

  absl::StatusOr<std::map<std::string, std::string>> map = ReadIndex(file);
  if (!map.ok())
    return map.status();
  WeightSet set;
  set.path_ = file;
  std::map<std::string, const SafetensorsFile *> shards;
  fs::path folder = fs::path(file).parent_path();
  for (auto &[name, shard] : *map) {
    auto it = shards.find(shard);
    if (it == shards.end()) {
      auto opened = SafetensorsFile::Open((folder / shard).string());
      if (!opened.ok())
        return absl::Status(opened.status().code(),
                            absl::StrCat(file, ": shard '", shard,
                                         "': ", opened.status().message()));
      it = shards.emplace(shard, opened->get()).first;
      set.files_.push_back(*std::move(opened));
    }
    const SafetensorsFile::Entry *e = it->second->Find(name);
    if (!e && it->second->FindRaw(name)) {
      set.raw_[name] = it->second;
      continue;
    }
    if (!e)
      return absl::InvalidArgumentError(absl::StrCat(file, ": tensor '", name,
                                                     "' is not in its shard ",
                                                     it->second->path()));
    set.tensors_[name] = {it->second, e};
  }
  return set;
}

std::optional<WeightSet::Found> WeightSet::Find(const std::string &name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end())
    return std::nullopt;
  return Found{it->second.first->View(*it->second.second),
               &it->second.first->path()};
}

std::optional<WeightSet::RawFound>
WeightSet::FindRaw(const std::string &name) const {
  auto it = raw_.find(name);
  if (it == raw_.end())
    return std::nullopt;
  const SafetensorsFile::RawEntry *e = it->second->FindRaw(name);
  return RawFound{e, it->second->RawData(*e), &it->second->path()};
}

absl::Status DequantizeMxfp4(const uint8_t *blocks, const Shape &blockShape,
                             const uint8_t *scales, const Shape &scaleShape,
                             const TensorView &out) {
  auto str = [](const Shape &s) {
    return absl::StrCat("[", absl::StrJoin(s, ", "), "]");
  };
  if (blockShape.size() != 4 || blockShape[3] != 16)
    return absl::InvalidArgumentError(absl::StrCat(
        "MXFP4 blocks are ", str(blockShape), ", not [E, R, G, 16]"));
  const int64_t E = blockShape[0], R = blockShape[1], G = blockShape[2];
  if (scaleShape != Shape{E, R, G})
    return absl::InvalidArgumentError(
        absl::StrCat("MXFP4 scales are ", str(scaleShape), ", the blocks ",
                     str(blockShape), " need [", E, ", ", R, ", ", G, "]"));
  if (out.shape != Shape{E, G * 32, R})
    return absl::InvalidArgumentError(absl::StrCat(
        "MXFP4 blocks ", str(blockShape), " dequantize to [", E, ", ", G * 32,
        ", ", R, "], the parameter is ", out.ToString()));
  if (!IsFloat(out.dtype))
    return absl::InvalidArgumentError("MXFP4 needs a float parameter");
  // e2m1: sign, two exponent bits, one mantissa bit.
  static const float kFp4[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,
                                 4.0f,  6.0f,  -0.0f, -0.5f, -1.0f, -1.5f,
                                 -2.0f, -3.0f, -4.0f, -6.0f};
  const int64_t C = G * 32;
  std::vector<float> row(C);
  for (int64_t e = 0; e < E; ++e)
    for (int64_t r = 0; r < R; ++r) {
      const uint8_t *b = blocks + (e * R + r) * G * 16;
      const uint8_t *s = scales + (e * R + r) * G;
      for (int64_t g = 0; g < G; ++g) {
        int exponent = int(s[g]) - 127;
        for (int64_t i = 0; i < 16; ++i) {
          uint8_t byte = b[g * 16 + i];
          row[g * 32 + 2 * i] = std::ldexp(kFp4[byte & 15], exponent);
          row[g * 32 + 2 * i + 1] = std::ldexp(kFp4[byte >> 4], exponent);
        }
      }
      // Column r of expert e's [C, R] matrix.
      for (int64_t c = 0; c < C; ++c)
        StoreF(out, (e * C + c) * R + r, row[c]);
    }
  return absl::OkStatus();
}

std::vector<std::string> WeightSet::Names() const {
  std::vector<std::string> names;
  for (auto &[name, where] : tensors_)
    names.push_back(name);
  return names;
}

std::vector<std::string> WeightSet::RawNames() const {
  std::vector<std::string> names;
  for (auto &[name, where] : raw_)
    names.push_back(name);
  return names;
}

std::vector<NamedTensor> SplitStacked(const std::string &name,
                                      const TensorView &view) {
  if (name.find('*') == std::string::npos || view.shape.empty())
    return {{name, view}};
  TensorView slice = view;
  slice.shape.erase(slice.shape.begin());
  size_t bytes = slice.bytes();
  std::vector<NamedTensor> out;
  for (int64_t i = 0; i < view.shape[0]; ++i) {
    slice.data = static_cast<uint8_t *>(view.data) + i * bytes;
    out.push_back(
        {absl::StrReplaceAll(name, {{"*", std::to_string(i)}}), slice});
  }
  return out;
}

namespace {

/// The tensor called `name` and the file it is in, or nullopt.
using Finder =
    std::function<std::optional<WeightSet::Found>(const std::string &)>;
using RawFinder =
    std::function<std::optional<WeightSet::RawFound>(const std::string &)>;

/// E4M3 (OCP's fn variant: no infinities, S.1111.111 is NaN) to float.
float DecodeE4M3(uint8_t byte) {
  int sign = byte >> 7, exponent = (byte >> 3) & 15, mantissa = byte & 7;
  float magnitude =
      exponent == 15 && mantissa == 7 ? std::numeric_limits<float>::quiet_NaN()
      : exponent == 0                 ? std::ldexp(mantissa / 8.0f, -6)
                      : std::ldexp(1.0f + mantissa / 8.0f, exponent - 7);
  return sign ? -magnitude : magnitude;
}

/// Fills `into` from DeepSeek's block-scaled FP8: `name` stored as
/// F8_E4M3 [R, C] and `<stem>_scale_inv` (float) [ceil(R / b), ceil(C / b)]
/// for a square block b (128 in the published checkpoints) that the
/// shapes determine; w = fp8 * scale_inv of its block (false when the file
/// has no such tensor).
absl::StatusOr<bool> LoadFp8(const std::string &name, const TensorView &into,
                             const RawFinder &findRaw, const Finder &find) {
  if (!findRaw)
    return false;
  std::optional<WeightSet::RawFound> raw = findRaw(name);
  if (!raw || raw->entry->type != "F8_E4M3")
    return false;
  std::optional<WeightSet::Found> scales = find(name + "_scale_inv");
  if (!scales)
    return absl::InvalidArgumentError(absl::StrCat(
        "is F8_E4M3 without its '", name, "_scale_inv' block scales"));
  const Shape &shape = raw->entry->shape;
  if (shape.size() != 2 || into.shape != shape)
    return absl::InvalidArgumentError(
        absl::StrCat("F8_E4M3 [", absl::StrJoin(shape, ", "),
                     "] for the parameter ", into.ToString()));
  const TensorView &sv = scales->view;
  if (sv.rank() != 2 || sv.dim(0) < 1 || sv.dim(1) < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("block scales ", sv.ToString(), " are not a matrix"));
  const int64_t rows = shape[0], cols = shape[1];
  const int64_t block = (rows + sv.dim(0) - 1) / sv.dim(0);
  if ((rows + block - 1) / block != sv.dim(0) ||
      (cols + block - 1) / block != sv.dim(1))
    return absl::InvalidArgumentError(
        absl::StrCat("block scales ", sv.ToString(), " do not tile [", rows,
                     ", ", cols, "] in square blocks"));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      float scale = LoadF(sv, (r / block) * sv.dim(1) + c / block);
      StoreF(into, r * cols + c, DecodeE4M3(raw->data[r * cols + c]) * scale);
    }
  return true;
}

/// Fills `into` from gpt-oss's MXFP4 `<name>_blocks` and `<name>_scales`
/// when the file has them (false when it has not).
absl::StatusOr<bool> LoadMxfp4(const std::string &name, const TensorView &into,
                               const RawFinder &findRaw) {
  if (!findRaw)
    return false;
  std::optional<WeightSet::RawFound> blocks = findRaw(name + "_blocks");
  std::optional<WeightSet::RawFound> scales = findRaw(name + "_scales");
  if (!blocks && !scales)
    return false;
  if (!blocks || !scales)
    return absl::InvalidArgumentError(
        absl::StrCat("has ", blocks ? "_blocks" : "_scales", " but not ",
                     blocks ? "_scales" : "_blocks", " (MXFP4 needs both)"));
  if (blocks->entry->type != "U8" || scales->entry->type != "U8")
    return absl::InvalidArgumentError(
        absl::StrCat("MXFP4 blocks and scales must be U8, not ",
                     blocks->entry->type, " and ", scales->entry->type));
  VEOMNI_RETURN_IF_ERROR(DequantizeMxfp4(blocks->data, blocks->entry->shape,
                                         scales->data, scales->entry->shape,
                                         into));
  return true;
}

/// Expert `e` of the stacked parameter `stacked`
/// (`...mlp.experts.*.gate_proj.weight`, slices shaped `slice`) in the fused
/// layout transformers 5 holds in memory, which checkpoints re-saved from
/// that layout keep: `...mlp.experts.gate_up_proj` [E, 2I, H] (gate rows,
/// then up rows) and `...mlp.experts.down_proj` [E, H, I]. Nullopt when
/// the file has no such tensor, an error when it has one of another shape.
absl::StatusOr<std::optional<WeightSet::Found>>
FusedExpert(const std::string &stacked, int64_t e, const Shape &slice,
            const Finder &find) {
  size_t at = stacked.find(".experts.*.");
  if (at == std::string::npos || slice.size() != 2)
    return std::nullopt;
  std::string stem = stacked.substr(0, at + 9); // "....experts."
  std::string leaf = stacked.substr(at + 11);
  bool down = leaf == "down_proj.weight";
  if (!down && leaf != "gate_proj.weight" && leaf != "up_proj.weight")
    return std::nullopt;
  std::string fused = stem + (down ? "down_proj" : "gate_up_proj");
  std::optional<WeightSet::Found> found = find(fused);
  if (!found)
    return std::nullopt;
  Shape want = {found->view.shape.empty() ? 0 : found->view.shape[0],
                down ? slice[0] : 2 * slice[0], slice[1]};
  if (found->view.shape != want || want[0] <= e)
    return absl::InvalidArgumentError(
        absl::StrCat("fused tensor '", fused, "' is ", found->view.ToString(),
                     "; experts of [", slice[0], ", ", slice[1], "] need [E, ",
                     want[1], ", ", want[2], "] with E > ", e));
  int64_t elements = slice[0] * slice[1];
  int64_t offset =
      e * want[1] * want[2] + (leaf == "up_proj.weight" ? elements : 0);
  found->view.data = static_cast<uint8_t *>(found->view.data) +
                     offset * SizeOf(found->view.dtype);
  found->view.shape = slice;
  return found;
}

/// Whether parameter `name` of a `modelType` program may be stored with
/// its last two dimensions swapped, as transformers' conversion mapping
/// says: Qwen3-VL-MoE's fused experts, published as gate_up_proj
/// [E, H, 2I] and down_proj [E, I, H] where transformers 5 holds (and
/// saves) [E, 2I, H] and [E, H, I]. Like transformers, a tensor of the
/// held shape is taken as it is.
bool MayBeTransposed(absl::string_view modelType, absl::string_view name) {
  return modelType == "qwen3_vl_moe" &&
         (absl::EndsWith(name, ".mlp.experts.gate_up_proj") ||
          absl::EndsWith(name, ".mlp.experts.down_proj"));
}

/// The name a published checkpoint gives parameter `name` where
/// transformers 5 saves another, or "": Gemma 3's SigLIP tower, published
/// under vision_tower.vision_model. (transformers 5 drops that level when
/// it loads the checkpoint, and saves without it).
std::string PublishedName(absl::string_view modelType, absl::string_view name) {
  constexpr absl::string_view kTower = "vision_tower.";
  if (modelType == "gemma3" && absl::StartsWith(name, kTower))
    return absl::StrCat(kTower, "vision_model.", name.substr(kTower.size()));
  return "";
}

/// Copies `from` [E, b, a] into `to` [E, a, b] (converting its dtype).
absl::Status CopyTransposed(const TensorView &from, const TensorView &to) {
  const int64_t e = from.shape[0], rows = from.shape[1], cols = from.shape[2];
  const size_t width = SizeOf(from.dtype);
  std::vector<uint8_t> swapped(static_cast<size_t>(from.numel()) * width);
  const auto *src = static_cast<const uint8_t *>(from.data);
  for (int64_t x = 0; x < e; ++x)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        std::memcpy(&swapped[((x * cols + c) * rows + r) * width],
                    src + ((x * rows + r) * cols + c) * width, width);
  TensorView view = from;
  view.data = swapped.data();
  view.shape = {e, cols, rows};
  return CopyConvert(view, to);
}

/// Loads parameter `a` into `into`, a host view of its buffer.
absl::Status LoadParameter(const ArgumentDesc &a, const TensorView &into,
                           const std::string &source, const Finder &find,
                           const RawFinder &findRaw,
                           absl::string_view modelType) {
  // A LoRA adapter the base weights lack keeps its seeded start (PEFT's:
  // A uniform, B zeros).
  if (a.adapter && !find(a.name))
    return absl::OkStatus();
  std::vector<NamedTensor> parts = SplitStacked(a.name, into);
  for (size_t e = 0; e < parts.size(); ++e) {
    const NamedTensor &t = parts[e];
    auto fail = [&](const std::string &file, absl::string_view what) {
      return absl::InvalidArgumentError(absl::StrCat(file, ": tensor '", t.name,
                                                     "' for parameter '",
                                                     a.name, "': ", what));
    };
    std::optional<WeightSet::Found> found = find(t.name);
    if (!found)
      if (std::string published = PublishedName(modelType, t.name);
          !published.empty())
        found = find(published);
    if (!found && t.name != a.name) {
      auto expert = FusedExpert(a.name, e, t.view.shape, find);
      if (!expert.ok())
        return fail(source, expert.status().message());
      found = *expert;
    }
    if (!found && t.name == a.name) {
      absl::StatusOr<bool> mxfp4 = LoadMxfp4(a.name, t.view, findRaw);
      if (!mxfp4.ok())
        return fail(source, mxfp4.status().message());
      if (*mxfp4)
        continue;
    }
    if (!found) {
      absl::StatusOr<bool> fp8 = LoadFp8(t.name, t.view, findRaw, find);
      if (!fp8.ok())
        return fail(source, fp8.status().message());
      if (*fp8)
        continue;
    }
    if (!found && findRaw)
      if (std::optional<WeightSet::RawFound> raw = findRaw(t.name))
        return fail(*raw->file,
                    absl::StrCat("is stored as ", raw->entry->type,
                                 " (a quantized checkpoint: veomni "
                                 "dequantizes gpt-oss's MXFP4 experts and "
                                 "DeepSeek's block-scaled F8_E4M3 only)"));
    if (!found)
      return fail(source, "missing");
    const Shape &held = found->view.shape;
    if (MayBeTransposed(modelType, t.name) && held.size() == 3 &&
        held != t.view.shape &&
        held == Shape{t.view.shape[0], t.view.shape[2], t.view.shape[1]}) {
      if (absl::Status s = CopyTransposed(found->view, t.view); !s.ok())
        return fail(*found->file, s.message());
      continue;
    }
    if (absl::Status s = CopyConvert(found->view, t.view); !s.ok())
      return fail(*found->file, s.message());
  }
  // Whichever way each part came (converted, transposed, dequantized).
  for (const NamedTensor &t : parts)
    if (absl::Status s = CheckFinite(source, t.name, t.view); !s.ok())
      return s;
  return absl::OkStatus();
}

/// Loads every parameter through `find`, which returns the tensor called
/// `name` and the file it is in, or nullopt.
absl::Status LoadParametersFrom(Executor &executor, const std::string &source,
                                const Finder &find, const RawFinder &findRaw) {
  for (const ArgumentDesc &a : executor.program().arguments) {
    if (!a.isParam)
      continue;
    absl::Status loaded =
        executor.FillGlobal(a.buffer, [&](const TensorView &v) {
          return LoadParameter(a, v, source, find, findRaw,
                               executor.program().modelType);
        });
    if (!loaded.ok())
      return loaded;
  }
  return absl::OkStatus();
}

} // namespace

absl::Status LoadParameters(Executor &executor, const WeightSet &weights) {
  return LoadParametersFrom(
      executor, weights.path(),
      [&](const std::string &name) { return weights.Find(name); },
      [&](const std::string &name) { return weights.FindRaw(name); });
}

absl::Status LoadParameters(Executor &executor, const SafetensorsFile &file) {
  return LoadParametersFrom(
      executor, file.path(),
      [&](const std::string &name) -> std::optional<WeightSet::Found> {
        const SafetensorsFile::Entry *e = file.Find(name);
        if (!e)
          return std::nullopt;
        return WeightSet::Found{file.View(*e), &file.path()};
      },
      [&](const std::string &name) -> std::optional<WeightSet::RawFound> {
        const SafetensorsFile::RawEntry *e = file.FindRaw(name);
        if (!e)
          return std::nullopt;
        return WeightSet::RawFound{e, file.RawData(*e), &file.path()};
      });
}

absl::Status LoadWeights(Executor &executor, const std::string &path) {
  VEOMNI_ASSIGN_OR_RETURN(WeightSet weights, WeightSet::Open(path));
  return LoadParameters(executor, weights);
}

absl::Status CheckFinite(const std::string &file, const std::string &tensor,
                         const TensorView &view) {
  if (view.dtype != DType::F32 && view.dtype != DType::BF16 &&
      view.dtype != DType::F16)
    return absl::OkStatus();
  for (int64_t i = 0, n = view.numel(); i < n; ++i) {
    const float v = LoadF(view, i);
    if (!std::isfinite(v))
      return absl::InvalidArgumentError(absl::StrCat(
          file, ": tensor '", tensor, "' holds ",
          std::isnan(v) ? "NaN" : "an infinity", " (element ", i, " of ", n,
          "): veomni refuses weights that are not finite (a damaged file, "
          "or a run that diverged)"));
  }
  return absl::OkStatus();
}

Shape PeftAdapterShape(const std::string &name, const Shape &held) {
  if (held.size() != 3)
    return held;
  if (absl::EndsWith(name, ".lora_B.weight"))
    return {held[1], held[2] * held[0]};
  return {held[0] * held[1], held[2]};
}

namespace {

/// B's element (o, k) of peft's [out, r E] is the held [E, out, r]'s
/// (k % E, o, k / E); A is a reshape.
absl::Status CopyAdapter(const std::string &name, const TensorView &held,
                         const TensorView &file, bool toFile) {
  const Shape expected = PeftAdapterShape(name, held.shape);
  if (file.shape != expected)
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", name, "' is ",
                     TensorView{nullptr, file.dtype, file.shape}.ToString(),
                     " where peft's layout of the program's adapter is ",
                     TensorView{nullptr, file.dtype, expected}.ToString(),
                     " (another train.lora.rank, or other targets?)"));
  const bool permuted =
      held.shape.size() == 3 && absl::EndsWith(name, ".lora_B.weight");
  if (!permuted) {
    TensorView from = toFile ? held : file, to = toFile ? file : held;
    from.shape = to.shape;
    return CopyConvert(from, to);
  }
  const int64_t e = held.shape[0], out = held.shape[1], r = held.shape[2];
  for (int64_t x = 0; x < e; ++x)
    for (int64_t o = 0; o < out; ++o)
      for (int64_t k = 0; k < r; ++k) {
        const int64_t h = (x * out + o) * r + k, f = o * (r * e) + k * e + x;
        if (toFile)
          StoreF(file, f, LoadF(held, h));
        else
          StoreF(held, h, LoadF(file, f));
      }
  return absl::OkStatus();
}

} // namespace

absl::Status AdapterToPeft(const std::string &name, const TensorView &held,
                           const TensorView &file) {
  return CopyAdapter(name, held, file, true);
}

absl::Status AdapterFromPeft(const std::string &name, const TensorView &file,
                             const TensorView &held) {
  return CopyAdapter(name, held, file, false);
}

absl::Status LoadAdapters(Executor &executor, const std::string &path) {
  std::error_code ec;
  const std::string file = std::filesystem::is_directory(path, ec)
                               ? path + "/adapter_model.safetensors"
                               : path;
  VEOMNI_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> adapters,
                          SafetensorsFile::Open(file));
  // Every tensor of the file is an adapter the program has: one it lacks
  // would be dropped without a word.
  std::set<std::string> used;
  for (const ArgumentDesc &a : executor.program().arguments)
    if (a.adapter) {
      used.insert("base_model.model." + a.name);
      used.insert(a.name);
    }
  for (const auto &[name, entry] : adapters->entries())
    if (!used.count(name))
      return absl::InvalidArgumentError(absl::StrCat(
          file, ": tensor '", name,
          "' adapts a module the recipe's train.lora.targets do not name "
          "(or is not a LoRA matrix)"));
  for (const ArgumentDesc &a : executor.program().arguments) {
    if (!a.adapter)
      continue;
    std::string name = "base_model.model." + a.name;
    const SafetensorsFile::Entry *e = adapters->Find(name);
    if (!e)
      e = adapters->Find(name = a.name);
    if (!e)
      return absl::InvalidArgumentError(absl::StrCat(
          file, ": no tensor 'base_model.model.", a.name,
          "' for the adapter the recipe's train.lora.targets make"));
    absl::Status s = executor.FillGlobal(a.buffer, [&](const TensorView &v) {
      absl::Status s = AdapterFromPeft(a.name, adapters->View(*e), v);
      if (!s.ok())
        return absl::InvalidArgumentError(
            absl::StrCat(file, ": ", s.message()));
      return CheckFinite(file, name, v);
    });
    if (!s.ok())
      return s;
  }
  return absl::OkStatus();
}

absl::Status WriteWeights(const std::string &dir,
                          const std::vector<NamedTensor> &tensors,
                          uint64_t maxShardBytes,
                          const std::map<std::string, std::string> &metadata) {
  // Shards fill in order; a tensor that would overflow the current shard
  // starts the next one (a tensor larger than the limit gets one alone).
  std::vector<std::vector<NamedTensor>> shards(1);
  uint64_t filled = 0, total = 0, elements = 0;
  for (const NamedTensor &t : tensors) {
    uint64_t bytes = t.view.bytes();
    if (filled > 0 && filled + bytes > maxShardBytes) {
      shards.emplace_back();
      filled = 0;
    }
    shards.back().push_back(t);
    filled += bytes;
    total += bytes;
    elements += t.view.numel();
  }
  std::map<std::string, std::string> meta = metadata;
  meta["format"] = "pt"; // what transformers' loader expects
  fs::path folder(dir);
  if (shards.size() == 1)
    return WriteSafetensors((folder / kSingleFile).string(), tensors, meta);

  std::string index = absl::StrFormat(
      "{\n  \"metadata\": {\n    \"total_parameters\": %d,\n    "
      "\"total_size\": %d\n  },\n  \"weight_map\": {",
      elements, total);
  std::map<std::string, std::string> weightMap;
  for (size_t k = 0; k < shards.size(); ++k) {
    std::string name =
        absl::StrFormat("model-%05d-of-%05d.safetensors", k + 1, shards.size());
    if (absl::Status s =
            WriteSafetensors((folder / name).string(), shards[k], meta);
        !s.ok())
      return s;
    for (const NamedTensor &t : shards[k])
      weightMap[t.name] = name;
  }
  bool first = true;
  for (auto &[tensor, shard] : weightMap) {
    absl::StrAppend(&index, first ? "\n" : ",\n", "    \"", tensor, "\": \"",
                    shard, "\"");
    first = false;
  }
  index += "\n  }\n}\n";
  return WriteTextFile((folder / kIndexFile).string(), index);
}

absl::Status SaveOutputs(const Executor &executor, const std::string &path) {
  const Program &p = executor.program();
  std::vector<NamedTensor> tensors;
  std::vector<HostTensor> host; // what the views point into
  for (size_t i = 0; i < p.outputs.size(); ++i) {
    if (p.outputNames[i].empty())
      continue;
    VEOMNI_ASSIGN_OR_RETURN(HostTensor h, executor.ReadGlobal(p.outputs[i]));
    host.push_back(std::move(h));
    for (NamedTensor &t : SplitStacked(p.outputNames[i], host.back().view))
      tensors.push_back(std::move(t));
  }
  if (tensors.empty())
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": the program has no named output to save"));
  return WriteSafetensors(path, tensors, {{"format", "pt"}});
}

} // namespace veomni::rt
