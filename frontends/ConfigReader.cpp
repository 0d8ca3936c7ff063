//===- ConfigReader.cpp - typed access to a Hugging Face config -----------===//

#include "frontends/ConfigReader.h"

#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <cmath>
#include <functional>

using namespace mlir::veomni;
using llvm::json::Value;

ConfigReader ConfigReader::load(llvm::StringRef path) {
  auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/true);
  if (!buffer) {
    auto state = std::make_shared<State>();
    state->path = path.str();
    state->error =
        (path + ": cannot read: " + buffer.getError().message()).str();
    return ConfigReader(std::move(state), nullptr, "");
  }
  return fromText((*buffer)->getBuffer(), path);
}

ConfigReader ConfigReader::fromText(llvm::StringRef text,
                                    llvm::StringRef path) {
  auto state = std::make_shared<State>();
  state->path = path.str();
  llvm::Expected<Value> parsed = llvm::json::parse(text);
  if (!parsed) {
    state->error =
        (path + ": not valid JSON: " + llvm::toString(parsed.takeError()))
            .str();
    return ConfigReader(std::move(state), nullptr, "");
  }
  state->root = std::move(*parsed);
  const llvm::json::Object *object = state->root.getAsObject();
  if (!object)
    state->error = (path + ": the top level must be a JSON object").str();
  return ConfigReader(std::move(state), object, "");
}

std::string ConfigReader::fieldName(llvm::StringRef key) const {
  return prefix.empty() ? key.str() : prefix + "." + key.str();
}

void ConfigReader::fail(llvm::StringRef key, const llvm::Twine &message) {
  if (failed())
    return;
  state->error =
      (state->path + ": field '" + fieldName(key) + "': " + message).str();
}

void ConfigReader::failType(llvm::StringRef key, llvm::StringRef expected,
                            const Value &got) {
  std::string shown;
  llvm::raw_string_ostream os(shown);
  os << got;
  if (shown.size() > 40)
    shown = shown.substr(0, 37) + "...";
  fail(key, "expected " + expected + ", got " + shown);
}

const Value *ConfigReader::lookup(llvm::StringRef key) const {
  if (!object)
    return nullptr;
  state->known.insert(fieldName(key));
  const Value *v = object->get(key);
  if (!v || v->kind() == Value::Null)
    return nullptr;
  return v;
}

bool ConfigReader::has(llvm::StringRef key) const {
  return lookup(key) != nullptr;
}

bool ConfigReader::isNull(llvm::StringRef key) const {
  lookup(key); // known
  const Value *v = object ? object->get(key) : nullptr;
  return v && v->kind() == Value::Null;
}

int64_t ConfigReader::getInt(llvm::StringRef key) {
  if (!failed() && !lookup(key))
    fail(key, "missing (required)");
  return getInt(key, 0);
}

int64_t ConfigReader::getInt(llvm::StringRef key, int64_t otherwise) {
  const Value *v = lookup(key);
  if (!v || failed())
    return otherwise;
  if (std::optional<int64_t> i = v->getAsInteger())
    return *i;
  failType(key, "an integer", *v);
  return otherwise;
}

double ConfigReader::getFloat(llvm::StringRef key) {
  if (!failed() && !lookup(key))
    fail(key, "missing (required)");
  return getFloat(key, 0.0);
}

double ConfigReader::getFloat(llvm::StringRef key, double otherwise) {
  const Value *v = lookup(key);
  if (!v || failed())
    return otherwise;
  if (std::optional<double> d = v->getAsNumber())
    if (std::isfinite(*d))
      return *d;
  failType(key, "a finite number", *v);
  return otherwise;
}

bool ConfigReader::getBool(llvm::StringRef key, bool otherwise) {
  const Value *v = lookup(key);
  if (!v || failed())
    return otherwise;
  if (std::optional<bool> b = v->getAsBoolean())
    return *b;
  failType(key, "true or false", *v);
  return otherwise;
}

std::string ConfigReader::getString(llvm::StringRef key) {
  if (!failed() && !lookup(key))
    fail(key, "missing (required)");
  return getString(key, "");
}

std::string ConfigReader::getString(llvm::StringRef key,
                                    llvm::StringRef otherwise) {
  const Value *v = lookup(key);
  if (!v || failed())
    return otherwise.str();
  if (std::optional<llvm::StringRef> s = v->getAsString())
    return s->str();
  failType(key, "a string", *v);
  return otherwise.str();
}

std::vector<int64_t> ConfigReader::getIntList(llvm::StringRef key,
                                              std::vector<int64_t> otherwise) {
  const Value *v = lookup(key);
  if (!v || failed())
    return otherwise;
  const llvm::json::Array *array = v->getAsArray();
  if (!array) {
    failType(key, "a list of integers", *v);
    return otherwise;
  }
  std::vector<int64_t> result;
  for (const Value &e : *array) {
    std::optional<int64_t> i = e.getAsInteger();
    if (!i) {
      failType(key, "a list of integers", *v);
      return otherwise;
    }
    result.push_back(*i);
  }
  return result;
}

std::optional<ConfigReader> ConfigReader::getObject(llvm::StringRef key) {
  const Value *v = lookup(key);
  if (!v || failed())
    return std::nullopt;
  const llvm::json::Object *nested = v->getAsObject();
  if (!nested) {
    failType(key, "an object", *v);
    return std::nullopt;
  }
  state->opened.insert(fieldName(key));
  return ConfigReader(state, nested, fieldName(key));
}

void ConfigReader::ignore(llvm::ArrayRef<llvm::StringRef> keys) {
  for (llvm::StringRef key : keys)
    state->known.insert(fieldName(key));
}

std::vector<std::string> ConfigReader::unknownKeys() const {
  std::vector<std::string> out;
  std::function<void(const llvm::json::Object &, const std::string &)> walk =
      [&](const llvm::json::Object &o, const std::string &prefix) {
        for (const auto &kv : o) {
          std::string name = prefix + kv.first.str();
          const llvm::json::Object *nested = kv.second.getAsObject();
          if (nested && state->opened.count(name))
            walk(*nested, name + ".");
          else if (!state->known.count(name))
            out.push_back(name);
        }
      };
  if (const llvm::json::Object *root = state->root.getAsObject())
    walk(*root, "");
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<std::vector<std::string>>
ConfigReader::getStringList(llvm::StringRef key) {
  const Value *v = lookup(key);
  if (!v || failed())
    return std::nullopt;
  std::vector<std::string> result;
  if (const llvm::json::Array *array = v->getAsArray())
    for (const Value &e : *array)
      if (std::optional<llvm::StringRef> s = e.getAsString())
        result.push_back(s->str());
  if (!v->getAsArray() || result.size() != v->getAsArray()->size()) {
    failType(key, "a list of strings", *v);
    return std::nullopt;
  }
  return result;
}

void ConfigReader::ignoreGenericKeys() {
  // PretrainedConfig's own fields in transformers 4.x and 5.x, the token
  // ids and cache flag that 5.x moved into each model, and 4.x's
  // generation defaults: none changes the forward pass or the loss.
  static const llvm::StringRef keys[] = {"_name_or_path",
                                         "architectures",
                                         "transformers_version",
                                         "model_type",
                                         "dtype",
                                         "torch_dtype",
                                         "use_cache",
                                         "bos_token_id",
                                         "eos_token_id",
                                         "pad_token_id",
                                         "sep_token_id",
                                         "decoder_start_token_id",
                                         "initializer_range",
                                         "chunk_size_feed_forward",
                                         "id2label",
                                         "label2id",
                                         "is_encoder_decoder",
                                         "is_decoder",
                                         "output_attentions",
                                         "output_hidden_states",
                                         "problem_type",
                                         "return_dict",
                                         "add_cross_attention",
                                         "cross_attention_hidden_size",
                                         "finetuning_task",
                                         "prefix",
                                         "pruned_heads",
                                         "task_specific_params",
                                         "tf_legacy_loss",
                                         "tie_encoder_decoder",
                                         "tokenizer_class",
                                         "torchscript",
                                         "use_bfloat16",
                                         "_attn_implementation_autoset",
                                         "_commit_hash",
                                         "bad_words_ids",
                                         "begin_suppress_tokens",
                                         "diversity_penalty",
                                         "do_sample",
                                         "early_stopping",
                                         "encoder_no_repeat_ngram_size",
                                         "exponential_decay_length_penalty",
                                         "forced_bos_token_id",
                                         "forced_eos_token_id",
                                         "length_penalty",
                                         "max_length",
                                         "min_length",
                                         "no_repeat_ngram_size",
                                         "num_beam_groups",
                                         "num_beams",
                                         "num_return_sequences",
                                         "output_scores",
                                         "remove_invalid_values",
                                         "repetition_penalty",
                                         "return_dict_in_generate",
                                         "suppress_tokens",
                                         "temperature",
                                         "top_k",
                                         "top_p",
                                         "typical_p"};
  ignore(keys);
}

void ConfigReader::ignoreKeysOf(const ConfigReader &other) {
  if (!other.object)
    return;
  for (const auto &kv : *other.object)
    state->known.insert(fieldName(kv.first));
}
