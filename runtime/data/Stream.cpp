//===- Stream.cpp - training data read as a stream ------------------------===//

#include "runtime/data/Stream.h"

#include "runtime/data/Multimodal.h"
#include "runtime/executor/Executor.h"
#include "runtime/io/TokenDataset.h"
#include "runtime/support/Status.h"
#include "runtime/support/ThreadPool.h"

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <filesystem>
#include <fstream>
#include <future>

namespace veomni::rt {
namespace {

/// (Re)opens `in` on `path` at byte `offset`; an error names the file.
absl::Status OpenAt(std::ifstream &in, const std::string &path,
                    uint64_t offset) {
  in.close();
  in.clear();
  in.open(path, std::ios::binary);
  if (!in)
    return absl::NotFoundError(absl::StrCat(path, ": cannot read"));
  in.seekg(0, std::ios::end);
  const uint64_t size = static_cast<uint64_t>(in.tellg());
  if (offset > size)
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": position ", offset,
                     " lies past the end of the file (", size, " bytes)"));
  in.seekg(static_cast<std::streamoff>(offset));
  return absl::OkStatus();
}

/// Lines of a JSONL file, each encoded as it is read or ahead on worker
/// threads (DataOptions::threads), handed on in file order.
class JsonlSource final : public SampleSource {
public:
  JsonlSource(std::string path, const DataOptions &options)
      : SampleSource(std::move(path), options) {}

  absl::Status Init() {
    if (!options_.tokenizer)
      return absl::InvalidArgumentError(
          absl::StrCat(path_, ": a JSONL dataset needs a tokenizer "
                              "(data.tokenizer, --tokenizer)"));
    // Media files are named relative to the dataset's folder.
    size_t slash = path_.rfind('/');
    dir_ = slash == std::string::npos ? "" : path_.substr(0, slash);
    return Seek({});
  }

  absl::StatusOr<bool> Next(TokenizedSample &s) override {
    while (true) {
      VEOMNI_RETURN_IF_ERROR(ReadAhead());
      if (ahead_.empty())
        return false;
      Pending p = std::move(ahead_.front());
      ahead_.pop_front();
      std::pair<absl::Status, TokenizedSample> r = p.result.get();
      at_ = p.after;
      absl::Status status = r.first;
      if (status.ok())
        status = Check(r.second);
      if (status.ok()) {
        s = std::move(r.second);
        return true;
      }
      VEOMNI_RETURN_IF_ERROR(
          Bad(absl::Status(status.code(), absl::StrCat(path_, ":", p.line, ": ",
                                                       status.message()))));
    }
  }

  absl::Status Seek(const SourcePosition &at) override {
    ahead_.clear(); // what is still being encoded is dropped
    VEOMNI_RETURN_IF_ERROR(OpenAt(in_, path_, at.offset));
    at_ = read_ = at;
    return absl::OkStatus();
  }

private:
  /// A line read and being encoded (on the pool, or here).
  struct Pending {
    uint64_t line;
    SourcePosition after; ///< where the source stands once it is taken
    std::future<std::pair<absl::Status, TokenizedSample>> result;
  };

  /// Reads lines until `depth` of them are pending (one without a pool),
  /// each encoded on the pool as soon as it is read.
  absl::Status ReadAhead() {
    const size_t depth =
        options_.threads > 0 ? 2 * static_cast<size_t>(options_.threads) : 1;
    if (options_.threads > 0 && !pool_)
      pool_ = std::make_unique<ThreadPool>(options_.threads);
    std::string text;
    while (ahead_.size() < depth) {
      if (!std::getline(in_, text)) {
        if (in_.bad())
          return absl::DataLossError(absl::StrCat(path_, ": cannot read"));
        return absl::OkStatus();
      }
      const uint64_t line = read_.line;
      read_.offset += text.size() + (in_.eof() ? 0 : 1);
      ++read_.line;
      if (!text.empty() && text.back() == '\r')
        text.pop_back();
      if (text.find_first_not_of(" \t") == std::string::npos) {
        // Passed over; with nothing pending the source stands after it
        // (as when lines are read one at a time), else the next sample's
        // position covers it.
        if (ahead_.empty())
          at_ = read_;
        continue;
      }
      // The task owns what it reads: the source may seek or go first.
      auto task = std::make_shared<
          std::packaged_task<std::pair<absl::Status, TokenizedSample>()>>(
          [text = std::move(text), dir = dir_, options = options_] {
            std::pair<absl::Status, TokenizedSample> r;
            r.first =
                options.media
                    ? EncodeMediaSample(
                          text, dir, *options.tokenizer,
                          options.chat.value_or(ChatFormat::ChatML),
                          options.eos, *options.media, r.second)
                    : EncodeJsonlSample(text, *options.tokenizer, options.chat,
                                        options.eos, r.second);
            return r;
          });
      ahead_.push_back({line, read_, task->get_future()});
      if (pool_)
        pool_->Submit([task] { (*task)(); });
      else
        (*task)();
    }
    return absl::OkStatus();
  }

  std::ifstream in_;
  std::string dir_;
  SourcePosition read_; ///< where the next line read starts
  std::deque<Pending> ahead_;
  std::unique_ptr<ThreadPool> pool_; ///< last: joined first
};

/// Paragraphs of a text file: the pieces between "\n\n" separators.
class TextSource final : public SampleSource {
public:
  TextSource(std::string path, const DataOptions &options)
      : SampleSource(std::move(path), options) {}

  absl::StatusOr<bool> Next(TokenizedSample &s) override {
    while (true) {
      // Read until the buffer holds a separator or the file is done.
      size_t sep;
      while ((sep = buffer_.find("\n\n")) == std::string::npos && !done_) {
        char chunk[1 << 16];
        in_.read(chunk, sizeof(chunk));
        buffer_.append(chunk, static_cast<size_t>(in_.gcount()));
        if (in_.bad())
          return absl::DataLossError(absl::StrCat(path_, ": cannot read"));
        done_ = in_.eof();
      }
      if (buffer_.empty())
        return false;
      size_t length = sep == std::string::npos ? buffer_.size() : sep;
      std::string para = buffer_.substr(0, length);
      size_t used = sep == std::string::npos ? length : length + 2;
      buffer_.erase(0, used);
      at_.offset += used;
      if (para.empty()) // "\n\n\n\n": no piece between separators
        continue;
      const uint64_t index = at_.line++;
      absl::string_view trimmed = absl::StripAsciiWhitespace(para);
      if (trimmed.empty())
        continue;
      absl::Status status;
      if (options_.tokenizer) {
        absl::StatusOr<std::vector<int32_t>> ids =
            options_.tokenizer->Encode(para);
        if (ids.ok()) {
          s.ids = *std::move(ids);
          if (options_.eos >= 0)
            s.ids.push_back(options_.eos);
        }
        status = ids.status();
      } else {
        s.ids.assign(trimmed.begin(), trimmed.end());
        for (int32_t &id : s.ids)
          id = static_cast<unsigned char>(id);
      }
      s.trained.assign(s.ids.size(), 1);
      if (status.ok())
        status = Check(s);
      if (status.ok())
        return true;
      VEOMNI_RETURN_IF_ERROR(Bad(
          absl::Status(status.code(), absl::StrCat(path_, ": paragraph ", index,
                                                   ": ", status.message()))));
    }
  }

  absl::Status Seek(const SourcePosition &at) override {
    VEOMNI_RETURN_IF_ERROR(OpenAt(in_, path_, at.offset));
    buffer_.clear();
    done_ = false;
    at_ = at;
    return absl::OkStatus();
  }

private:
  std::ifstream in_;
  std::string buffer_; ///< read, not yet consumed; starts at at_.offset
  bool done_ = false;
};

/// Documents of a .vtd file.
class VtdSource final : public SampleSource {
public:
  VtdSource(std::string path, const DataOptions &options)
      : SampleSource(std::move(path), options) {}

  absl::Status Init() {
    VEOMNI_ASSIGN_OR_RETURN(data_, TokenDataset::Open(path_));
    return absl::OkStatus();
  }

  absl::StatusOr<bool> Next(TokenizedSample &s) override {
    while (at_.offset < data_->documents()) {
      const uint64_t doc = at_.offset++;
      at_.line = at_.offset + 1;
      absl::Span<const int32_t> ids = data_->Document(doc);
      absl::Span<const uint8_t> trained = data_->Trained(doc);
      s.ids.assign(ids.begin(), ids.end());
      if (trained.empty())
        s.trained.assign(ids.size(), 1);
      else
        s.trained.assign(trained.begin(), trained.end());
      absl::Status status = Check(s);
      if (status.ok())
        return true;
      VEOMNI_RETURN_IF_ERROR(Bad(
          absl::Status(status.code(), absl::StrCat(path_, ": document ", doc,
                                                   ": ", status.message()))));
    }
    return false;
  }

  absl::Status Seek(const SourcePosition &at) override {
    if (at.offset > data_->documents())
      return absl::InvalidArgumentError(
          absl::StrCat(path_, ": position ", at.offset, " lies past its ",
                       data_->documents(), " documents"));
    at_ = at;
    at_.line = at.offset + 1;
    return absl::OkStatus();
  }

private:
  std::unique_ptr<TokenDataset> data_;
};

/// splitmix64: a well-mixed 64-bit hash of a counter.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

} // namespace

absl::Status SampleSource::Check(const TokenizedSample &s) const {
  if (options_.vocab > 0)
    for (int32_t id : s.ids)
      if (id < 0 || id >= options_.vocab)
        return absl::InvalidArgumentError(
            absl::StrCat("token ", id, " is outside the model's vocabulary of ",
                         options_.vocab));
  return absl::OkStatus();
}

absl::Status SampleSource::Bad(absl::Status bad) {
  if (!options_.skipBad)
    return bad;
  std::lock_guard<std::mutex> lock(skipMu_);
  if (skipped_.count++ == 0)
    skipped_.first = std::string(bad.message());
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SampleSource>>
SampleSource::Open(const std::string &path, const DataOptions &options) {
  if (absl::EndsWith(path, ".jsonl")) {
    auto source = std::make_unique<JsonlSource>(path, options);
    VEOMNI_RETURN_IF_ERROR(source->Init());
    return std::unique_ptr<SampleSource>(std::move(source));
  }
  // A .vtd by its name or its magic (a damaged one named .vtd says so).
  char magic[8] = {};
  std::ifstream(path, std::ios::binary).read(magic, sizeof(magic));
  if (absl::EndsWith(path, ".vtd") ||
      absl::string_view(magic, sizeof(magic)) == "VEOMNITD") {
    auto source = std::make_unique<VtdSource>(path, options);
    VEOMNI_RETURN_IF_ERROR(source->Init());
    return std::unique_ptr<SampleSource>(std::move(source));
  }
  if (absl::EndsWith(path, ".safetensors"))
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": a batch file is a data source alone, not one of several"));
  if (!absl::EndsWith(path, ".txt") && !absl::EndsWith(path, ".md") &&
      !absl::EndsWith(path, ".text"))
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": not a data file (expected .jsonl samples, .txt or .md text, "
              "a .vtd token dataset, or a .safetensors batch file)"));
  auto source = std::make_unique<TextSource>(path, options);
  VEOMNI_RETURN_IF_ERROR(source->Seek({}));
  return std::unique_ptr<SampleSource>(std::move(source));
}

absl::Status ForEachSample(SampleSource &source,
                           const std::function<void(TokenizedSample &)> &each) {
  TokenizedSample s;
  while (true) {
    VEOMNI_ASSIGN_OR_RETURN(bool got, source.Next(s));
    if (!got)
      return absl::OkStatus();
    each(s);
  }
}

std::vector<std::string> SplitList(const std::string &list) {
  std::vector<std::string> out;
  absl::string_view items = absl::StripAsciiWhitespace(list);
  // "[a, b]" as a command line writes a YAML list.
  if (absl::ConsumePrefix(&items, "["))
    absl::ConsumeSuffix(&items, "]");
  for (absl::string_view item : absl::StrSplit(items, ','))
    if (!absl::StripAsciiWhitespace(item).empty())
      out.emplace_back(absl::StripAsciiWhitespace(item));
  return out;
}

absl::StatusOr<std::unique_ptr<DataStream>>
DataStream::Open(const std::vector<std::string> &paths,
                 std::vector<double> weights, const DataOptions &options,
                 uint64_t seed) {
  if (paths.empty())
    return absl::InvalidArgumentError("data.path names no file");
  if (weights.empty())
    weights.assign(paths.size(), 1.0);
  if (weights.size() != paths.size())
    return absl::InvalidArgumentError(
        absl::StrCat("data.weights has ", weights.size(), " numbers for ",
                     paths.size(), " sources in data.path"));
  std::unique_ptr<DataStream> stream(new DataStream());
  stream->seed_ = seed;
  // A folder stands for its data files, in name order, its weight shared
  // by their sizes (so its samples are drawn as if it were one file).
  std::vector<std::string> files;
  std::vector<double> shares;
  for (size_t i = 0; i < paths.size(); ++i) {
    if (!(weights[i] > 0) || !std::isfinite(weights[i]))
      return absl::InvalidArgumentError(
          absl::StrCat("data.weights: the weight of ", paths[i], " is ",
                       weights[i], "; weights are positive numbers"));
    std::error_code ec;
    if (!std::filesystem::is_directory(paths[i], ec)) {
      files.push_back(paths[i]);
      shares.push_back(weights[i]);
      continue;
    }
    std::vector<std::pair<std::string, double>> found;
    double bytes = 0;
    for (std::filesystem::directory_iterator it(paths[i], ec), end;
         it != end && !ec; it.increment(ec)) {
      std::string name = it->path().filename().string();
      if (!it->is_regular_file(ec) || name.empty() || name[0] == '.')
        continue;
      for (const char *ext : {".jsonl", ".txt", ".md", ".text", ".vtd"})
        if (absl::EndsWith(name, ext)) {
          double size = double(it->file_size(ec)) + 1;
          found.push_back({it->path().string(), size});
          bytes += size;
          break;
        }
    }
    if (ec)
      return absl::NotFoundError(
          absl::StrCat(paths[i], ": cannot list: ", ec.message()));
    if (found.empty())
      return absl::InvalidArgumentError(absl::StrCat(
          paths[i], ": a folder with no data files (.jsonl, .txt, .md, "
                    ".text, .vtd)"));
    std::sort(found.begin(), found.end());
    for (const auto &[file, size] : found) {
      files.push_back(file);
      shares.push_back(weights[i] * size / bytes);
    }
  }
  double total = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    total += shares[i];
    VEOMNI_ASSIGN_OR_RETURN(std::unique_ptr<SampleSource> source,
                            SampleSource::Open(files[i], options));
    stream->sources_.push_back(std::move(source));
  }
  weights = shares;
  stream->emptyPass_.assign(files.size(), false);
  double sum = 0;
  for (double w : weights)
    stream->cumulative_.push_back((sum += w) / total);
  stream->cumulative_.back() = 1.0;
  return stream;
}

size_t DataStream::Pick(uint64_t n) const {
  if (sources_.size() == 1)
    return 0;
  double u = static_cast<double>(Mix(seed_ * 0x2545f4914f6cdd1dull + n) >> 11) *
             0x1.0p-53;
  return std::upper_bound(cumulative_.begin(), cumulative_.end() - 1, u) -
         cumulative_.begin();
}

absl::Status DataStream::Next(TokenizedSample &s) {
  const size_t i = Pick(drawn_);
  SampleSource &source = *sources_[i];
  while (true) {
    VEOMNI_ASSIGN_OR_RETURN(bool got, source.Next(s));
    if (got) {
      if (!s.ids.empty())
        emptyPass_[i] = false;
      break;
    }
    // A whole pass without a token would loop forever.
    if (emptyPass_[i] || source.position().offset == 0)
      return absl::InvalidArgumentError(
          absl::StrCat(source.path(), ": no token to train on",
                       source.skipped().count
                           ? absl::StrCat(" (", source.skipped().count,
                                          " bad samples skipped, the first: ",
                                          source.skipped().first, ")")
                           : ""));
    VEOMNI_RETURN_IF_ERROR(source.Seek({0, 1, source.position().epoch + 1}));
    emptyPass_[i] = true;
  }
  ++drawn_;
  return absl::OkStatus();
}

std::string DataStream::Position() const {
  std::string out = std::to_string(drawn_);
  for (const auto &source : sources_) {
    const SourcePosition &p = source->position();
    absl::StrAppend(&out, " ", p.offset, ":", p.line, ":", p.epoch);
  }
  return out;
}

absl::Status DataStream::Restore(const std::string &position) {
  std::vector<std::string> parts = absl::StrSplit(position, ' ');
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("the data position '", position, "' ", why));
  };
  if (parts.size() != sources_.size() + 1)
    return bad(absl::StrCat("was saved for ", int64_t(parts.size()) - 1,
                            " sources, and data.path has ", sources_.size()));
  uint64_t drawn;
  if (!absl::SimpleAtoi(parts[0], &drawn))
    return bad("is damaged");
  std::vector<SourcePosition> at(sources_.size());
  for (size_t i = 0; i < sources_.size(); ++i) {
    std::vector<std::string> f = absl::StrSplit(parts[i + 1], ':');
    if (f.size() != 3 || !absl::SimpleAtoi(f[0], &at[i].offset) ||
        !absl::SimpleAtoi(f[1], &at[i].line) ||
        !absl::SimpleAtoi(f[2], &at[i].epoch))
      return bad("is damaged");
  }
  for (size_t i = 0; i < sources_.size(); ++i)
    VEOMNI_RETURN_IF_ERROR(sources_[i]->Seek(at[i]));
  drawn_ = drawn;
  return absl::OkStatus();
}

absl::StatusOr<PackedRows> Packer::Next(int64_t rows) {
  PackedRows out;
  const size_t n = static_cast<size_t>(rows * seqLen_);
  out.ids.reserve(n);
  out.positions.reserve(n);
  out.segments.reserve(n);
  out.labels.reserve(n);
  for (int64_t r = 0; r < rows; ++r) {
    int32_t segment = 0;
    int64_t filled = 0;
    while (filled < seqLen_) {
      if (!loaded_ || at_ >= sample_.ids.size()) { // the next sample
        start_ = stream_.Position();
        VEOMNI_RETURN_IF_ERROR(stream_.Next(sample_));
        loaded_ = true;
        at_ = 0;
        continue;
      }
      const std::vector<int32_t> &ids = sample_.ids;
      const std::vector<uint8_t> &trained = sample_.trained;
      int64_t take = std::min<int64_t>(seqLen_ - filled, ids.size() - at_);
      for (int64_t j = 0; j < take; ++j) {
        uint64_t t = at_ + j;
        out.ids.push_back(ids[t]);
        out.positions.push_back(static_cast<int32_t>(j));
        out.segments.push_back(segment);
        bool next = t + 1 < ids.size() && trained[t + 1];
        out.labels.push_back(next ? ids[t + 1] : -100);
      }
      filled += take;
      at_ += take;
      ++segment;
    }
  }
  return out;
}

std::string Packer::Position() const {
  return absl::StrCat(start_, "|", loaded_ ? at_ : 0);
}

absl::Status Packer::Restore(const std::string &position) {
  std::pair<std::string, std::string> parts = absl::StrSplit(position, '|');
  uint64_t at;
  if (!absl::SimpleAtoi(parts.second, &at))
    return absl::InvalidArgumentError(
        absl::StrCat("the data position '", position, "' is damaged"));
  VEOMNI_RETURN_IF_ERROR(stream_.Restore(parts.first));
  start_ = parts.first;
  loaded_ = false;
  at_ = 0;
  if (at == 0)
    return absl::OkStatus();
  VEOMNI_RETURN_IF_ERROR(stream_.Next(sample_));
  if (at > sample_.ids.size())
    return absl::InvalidArgumentError(absl::StrCat(
        "the data position '", position, "' lies past its sample's ",
        sample_.ids.size(), " tokens (did the data change?)"));
  loaded_ = true;
  at_ = at;
  return absl::OkStatus();
}

absl::StatusOr<int64_t> TextBatchRows(const Executor &executor) {
  const Program &p = executor.program();
  const ArgumentDesc *ids = p.FindArgument("input_ids");
  if (!ids)
    return absl::InvalidArgumentError("the program has no input_ids input");
  const Shape &shape = executor.GlobalShape(ids->buffer);
  if (shape.size() != 2)
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
  return shape[0];
}

absl::Status FillTextBatch(Executor &executor, Packer &packer) {
  VEOMNI_ASSIGN_OR_RETURN(int64_t rows, TextBatchRows(executor));
  VEOMNI_ASSIGN_OR_RETURN(PackedRows batch, packer.Next(rows));
  return FillTextBatch(executor, batch);
}

absl::Status FillTextBatch(Executor &executor, const PackedRows &rows) {
  const Program &p = executor.program();
  const ArgumentDesc *ids = p.FindArgument("input_ids");
  if (!ids)
    return absl::InvalidArgumentError("the program has no input_ids input");
  const Shape &shape = executor.GlobalShape(ids->buffer);
  if (shape.size() != 2 ||
      static_cast<int64_t>(rows.ids.size()) != shape[0] * shape[1])
    return absl::InvalidArgumentError(
        "the packer's rows differ from the program's input_ids");
  const PackedRows *batch = &rows;
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

int64_t DataStream::SkippedCount() const {
  int64_t n = 0;
  for (const auto &source : sources_)
    n += source->skipped().count;
  return n;
}

} // namespace veomni::rt
