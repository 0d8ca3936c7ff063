//===- veomni.cpp - the veomni command line -------------------------------===//
//
//   veomni import config.json [-o model.mlir] [--summary] [--plan] ...
//   veomni compile config.json -o model.vmb [--report] ...
//   veomni run model.vmb [--weights PATH] [--seed N] --eval [--save F]
//
// Every error is one line on stderr and exit status 1.
//
//===----------------------------------------------------------------------===//

#include "tools/veomni/Commands.h"

#include "compiler/Compile.h"
#include "compiler/Registration.h"
#include "frontends/Importer.h"
#include "runtime/data/Multimodal.h"
#include "runtime/data/Stream.h"
#include "runtime/data/Tokenizer.h"
#include "runtime/executor/Executor.h"
#include "runtime/io/Init.h"
#include "runtime/io/Safetensors.h"
#include "runtime/io/TokenDataset.h"
#include "runtime/io/Weights.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <optional>

using namespace mlir;
using namespace mlir::veomni;

namespace {

constexpr const char *kUsage = R"(usage:
  veomni import CONFIG.json [options]     the model in the veomni dialect
  veomni compile CONFIG.json -o FILE.vmb  a runtime program (--report: memory)
  veomni compile RECIPE.yaml -o JOB/      the recipe's training job, for
                                          [mpirun -np N] veomni-run JOB/
  veomni run FILE.vmb --eval              the loss of one batch
  veomni train RECIPE.yaml [--nproc N]     train (docs/training.md)
  veomni plan RECIPE.yaml --report         the parallel plan: per-rank memory,
                                          traffic per mesh axis, step time
                                          (-o FILE: the per-rank step;
                                          docs/parallel.md)
  veomni merge BASE ADAPTERS -o OUT       LoRA adapters (PEFT's layout)
                                          merged into a Hugging Face model
  veomni data pack TEXT... -o FILE.vtd     a token dataset (--tokenizer
                                          tokenizer.json, or bytes)

veomni COMMAND --help lists the options of each command.
)";

constexpr const char *kImportHelp = R"(usage:
  veomni import CONFIG.json [options]     the model in the veomni dialect
  veomni compile CONFIG.json -o FILE.vmb  a runtime program

import reads a Hugging Face config.json (transformers 4.x or 5.x form) into
the veomni dialect: a function @forward(params..., inputs...) -> loss with
global shapes. compile lowers it to a program for veomni run.

options:
  -o FILE              write the module or program to FILE (import: default
                       stdout)
  --num-layers N       keep the first N decoder layers
  --dtype bf16|f32|f16 parameter and activation type (default bf16)
  --batch B            micro-batch size (default 1)
  --seq-len S          tokens per sequence (default 2048)
  --image-patches N    vision patches per batch, VL and omni (default 256)
  --images N           whole images per batch, Gemma 3 (default 1)
  --audio-frames N     mel frames per batch, omni (default 400)
  --logits             also return the logits [B, S, V] after the loss
  --gradients          compile: also return every parameter's gradient
  --remat POLICY       compile with --gradients: none, selective or full
                       activation recomputation (see --report)
  --report             compile: kernels and the memory plan
  --summary            import: total and active parameters per module
  --plan               import: each parameter's tp/ep placement
)";

constexpr const char *kRunHelp = R"(usage: veomni run FILE.vmb --eval [options]

Runs a compiled program once and prints the loss (and, for a program
compiled with --gradients, the gradient norm) with 9 significant digits.

options:
  --weights PATH       the parameters by Hugging Face name: a .safetensors
                       file, a sharded model.safetensors.index.json, or a
                       folder holding either (a Hugging Face model, a veomni
                       checkpoint-N/); default: seeded random init
  --data FILE          a token dataset (.vtd) packed into the batch, or a
                       batch file (.safetensors, inputs by name;
                       docs/data.md); default: a seeded synthetic batch
  --seed N             seed of the init and of the synthetic batch (default 0)
  --save FILE          write the loss, the logits (compiled with --logits)
                       and every gradient (compiled with --gradients) as
                       grad.<HF name> to FILE.safetensors
)";

constexpr const char *kDataHelp =
    R"(usage: veomni data pack TEXT... -o FILE.vtd [--tokenizer tokenizer.json [--chat FORMAT] [--eos [TOKEN]]]
       veomni data inspect DATASET [--tokenizer tokenizer.json] [--config config.json] [--doc N]

inspect prints a dataset's counts (a .vtd, .jsonl or text file) and one
document (the first, or N), decoded with the tokenizer when given, its
targets between [[ and ]]. With a model's --config, conversations' images
and audio are read as training reads them (--min-pixels, --max-pixels;
--workers N threads, 2 by default) and each placeholder run shows as
<image xN>, <video xN> or <audio xN>.

Packs text files into a token dataset, one document per paragraph
(paragraphs end at blank lines).

  --tokenizer FILE  the model's Hugging Face tokenizer.json (byte-level
                    BPE, as Qwen2/2.5/3 and Llama 3 ship it) or SentencePiece
                    .model; each paragraph
                    is tokenized exactly as it stands, no special tokens
                    added. Without it a token is a byte (values 0-255) and
                    paragraphs are trimmed.
  --chat FORMAT     chatml, llama3, gemma, deepseek or harmony: how the
                    conversations of .jsonl inputs are rendered; their
                    assistant turns (and end tokens) are the only targets,
                    kept in the dataset's
                    trained mask. A .jsonl line is {"text": ...} or
                    {"messages": [{"role": ..., "content": ...}, ...]}.
  --on-bad-sample skip|stop
                    a .jsonl sample that cannot be read (malformed JSON, an
                    unsupported part, invalid UTF-8): stop with its error
                    (the default), or leave it out and count it.
  --eos [TOKEN]     an end-of-text token after each document: TOKEN, or
                    the first of <|endoftext|>, <|end_of_text|>, </s> that
                    the tokenizer has.
)";

int fail(const llvm::Twine &message) {
  llvm::errs() << "veomni: error: " << message << "\n";
  return 1;
}

std::string withCommas(int64_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0)
      out += ',';
    out += digits[i];
  }
  return out;
}

void printSummary(const ImportedModel &m, llvm::raw_ostream &os) {
  ParameterSummary s = summarizeParameters(m);
  size_t width = 8;
  for (const ParameterSummary::Row &row : s.rows)
    width = std::max(width, row.module.size() + 2);
  os << "model_type: " << m.modelType << "\n";
  os << llvm::left_justify("module", width)
     << llvm::right_justify("parameters", 18)
     << llvm::right_justify("active", 18) << "\n";
  for (const ParameterSummary::Row &row : s.rows)
    os << llvm::left_justify(row.module, width)
       << llvm::right_justify(withCommas(row.total), 18)
       << llvm::right_justify(withCommas(row.active), 18) << "\n";
  os << llvm::left_justify("total", width)
     << llvm::right_justify(withCommas(s.total), 18)
     << llvm::right_justify(withCommas(s.active), 18) << "\n";
}

void printPlan(const ImportedModel &m, llvm::raw_ostream &os) {
  for (const ArgumentInfo &arg : m.arguments) {
    if (!arg.isParam)
      continue;
    std::optional<Placement> p = placementOf(m.plan, arg.name);
    os << llvm::left_justify(p ? placementName(*p) : "unplanned", 12) << " "
       << arg.name << " " << arg.type << "\n";
  }
}

/// Options shared by import and compile.
struct ImportCommand {
  ImportOptions options;
  std::string config, output;
  bool summary = false, plan = false, report = false, gradients = false;
  std::string remat = "none";
};

/// Parses import/compile arguments; returns an exit code on error or help.
std::optional<int> parseImportArgs(llvm::ArrayRef<const char *> args,
                                   ImportCommand &cmd) {
  ImportOptions &options = cmd.options;
  // The flags' defaults: a full-size step of a real model (a recipe's
  // defaults are for the tiny shipped examples).
  options.model.dtype = "bf16";
  options.data.seqLen = 2048;
  options.data.imagePatches = 256;
  options.data.audioFrames = 400;
  for (size_t i = 0; i < args.size(); ++i) {
    llvm::StringRef arg = args[i];
    auto value = [&](llvm::StringRef &out) {
      if (i + 1 >= args.size())
        return false;
      out = args[++i];
      return true;
    };
    auto integer = [&](int64_t &out) {
      llvm::StringRef text;
      if (!value(text))
        return fail(arg + " needs a value") == 0;
      if (text.getAsInteger(10, out))
        return fail(arg + " " + text + ": not an integer") == 0;
      return true;
    };
    llvm::StringRef text;
    if (arg == "-h" || arg == "--help") {
      llvm::outs() << kImportHelp;
      return 0;
    } else if (arg == "-o") {
      if (!value(text))
        return fail("-o needs a file name");
      cmd.output = text.str();
    } else if (arg == "--dtype") {
      if (!value(text))
        return fail("--dtype needs a value");
      options.model.dtype = text.str();
    } else if (arg == "--num-layers") {
      if (!integer(options.model.numLayers))
        return 1;
      if (options.model.numLayers < 1)
        return fail("--num-layers " + std::to_string(options.model.numLayers) +
                    ": must be >= 1");
    } else if (arg == "--batch") {
      if (!integer(options.data.batchSize))
        return 1;
    } else if (arg == "--seq-len") {
      if (!integer(options.data.seqLen))
        return 1;
    } else if (arg == "--image-patches") {
      if (!integer(options.data.imagePatches))
        return 1;
    } else if (arg == "--images") {
      if (!integer(options.data.images))
        return 1;
    } else if (arg == "--audio-frames") {
      if (!integer(options.data.audioFrames))
        return 1;
    } else if (arg == "--summary") {
      cmd.summary = true;
    } else if (arg == "--plan") {
      cmd.plan = true;
    } else if (arg == "--logits") {
      options.returnLogits = true;
    } else if (arg == "--gradients") {
      cmd.gradients = true;
    } else if (arg == "--remat") {
      if (!value(text))
        return fail("--remat needs none, selective or full");
      cmd.remat = text.str();
      if (cmd.remat != "none" && cmd.remat != "selective" &&
          cmd.remat != "full")
        return fail("--remat " + text + ": must be none, selective or full");
    } else if (arg == "--report") {
      cmd.report = true;
    } else if (arg.starts_with("-")) {
      return fail("unknown option '" + arg + "' (see veomni --help)");
    } else if (cmd.config.empty()) {
      cmd.config = arg.str();
    } else {
      return fail("more than one config given: '" + cmd.config + "' and '" +
                  arg + "'");
    }
  }
  if (cmd.config.empty())
    return fail("no config.json given (see veomni --help)");
  return std::nullopt;
}

/// Writes `bytes` to `path` through a temporary file, so that a failure
/// never leaves a partial file under the real name.
int writeFile(const std::string &path, llvm::StringRef bytes) {
  std::error_code ec;
  llvm::ToolOutputFile file(path, ec, llvm::sys::fs::OF_None);
  if (ec)
    return fail("cannot write '" + path + "': " + ec.message());
  file.os() << bytes;
  file.os().flush();
  if (file.os().has_error())
    return fail("cannot write '" + path + "'");
  file.keep();
  return 0;
}

int runImport(llvm::ArrayRef<const char *> args, bool compile) {
  ImportCommand cmd;
  if (std::optional<int> code = parseImportArgs(args, cmd))
    return *code;
  if (compile && cmd.output.empty())
    return fail("compile needs -o FILE.vmb");

  DialectRegistry registry;
  registerAllVeOmni(registry);
  MLIRContext context(registry);
  context.loadAllAvailableDialects();
  auto start = std::chrono::steady_clock::now();
  absl::StatusOr<ImportedModel> model =
      importHFConfig(context, cmd.config, cmd.options);
  if (!model.ok())
    return fail(std::string(model.status().message()));
  printWarnings(*model);
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();

  if (cmd.summary)
    printSummary(*model, llvm::outs());
  if (cmd.plan)
    printPlan(*model, llvm::outs());
  if (cmd.summary)
    llvm::outs() << llvm::format("imported in %.2f s\n", seconds);

  if (compile) {
    std::string diagnostic;
    ScopedDiagnosticHandler handler(&context, [&](Diagnostic &diag) {
      if (diagnostic.empty())
        diagnostic = diag.str();
      return success();
    });
    CompileReport report;
    CompileOptions options;
    options.gradients = cmd.gradients;
    options.remat = cmd.remat;
    FailureOr<std::string> program = compileToProgram(*model, report, options);
    if (failed(program))
      return fail(cmd.config + ": compilation failed: " + diagnostic);
    if (int code = writeFile(cmd.output, *program))
      return code;
    if (cmd.report) {
      llvm::outs() << "kernels:            " << report.kernels << "\n"
                   << "arena bytes:        " << report.arenaBytes << "\n"
                   << "  arguments:        " << report.argumentBytes << "\n"
                   << "  constants:        " << report.constantBytes << "\n"
                   << "  activations peak: " << report.activationBytes << "\n"
                   << "program bytes:      " << program->size() << "\n";
    }
    return 0;
  }
  if (!cmd.output.empty()) {
    std::string text;
    llvm::raw_string_ostream os(text);
    model->module->print(os);
    return writeFile(cmd.output, text);
  }
  if (!cmd.summary && !cmd.plan) {
    model->module->print(llvm::outs());
    llvm::outs() << "\n";
  }
  return 0;
}

/// The sum of squares of every gradient output, for the gradient norm.
double gradientSquares(const ::veomni::rt::Executor &ex) {
  double sum = 0;
  const auto &roles = ex.program().outputRoles;
  for (size_t i = 0; i < roles.size(); ++i) {
    if (roles[i] != ::veomni::rt::OutputRole::Gradient)
      continue;
    auto g = ex.ReadHost(ex.program().outputs[i]);
    if (!g.ok())
      return std::nan("");
    for (int64_t j = 0, n = g->view.numel(); j < n; ++j) {
      double v = ::veomni::rt::LoadF(g->view, j);
      sum += v * v;
    }
  }
  return sum;
}

int runProgram(llvm::ArrayRef<const char *> args) {
  if (wantsHelp(args)) {
    llvm::outs() << kRunHelp;
    return 0;
  }
  std::string programPath, weights, data, save;
  uint64_t seed = 0;
  bool eval = false;
  for (size_t i = 0; i < args.size(); ++i) {
    llvm::StringRef arg = args[i];
    if (arg == "--eval") {
      eval = true;
    } else if (arg == "--weights" || arg == "--seed" || arg == "--data" ||
               arg == "--save") {
      if (i + 1 >= args.size())
        return fail(arg + " needs a value");
      llvm::StringRef v = args[++i];
      if (arg == "--weights")
        weights = v.str();
      else if (arg == "--data")
        data = v.str();
      else if (arg == "--save")
        save = v.str();
      else if (v.getAsInteger(10, seed))
        return fail("--seed " + v + ": not a non-negative integer");
    } else if (arg.starts_with("-")) {
      return fail("unknown option '" + arg + "' (see veomni run --help)");
    } else if (programPath.empty()) {
      programPath = arg.str();
    } else {
      return fail("more than one program given");
    }
  }
  if (programPath.empty())
    return fail("no program given (see veomni run --help)");
  if (!eval)
    return fail("run needs --eval (training is veomni train)");
  if (!save.empty() && !llvm::StringRef(save).ends_with(".safetensors"))
    return fail("--save " + save + ": the file must end in .safetensors");

  using namespace ::veomni::rt;
  absl::StatusOr<Program> program = LoadProgram(programPath);
  if (!program.ok())
    return fail(std::string(program.status().message()));
  absl::StatusOr<std::unique_ptr<Executor>> executor =
      Executor::Create(*std::move(program));
  if (!executor.ok())
    return fail(std::string(executor.status().message()));
  Executor &ex = **executor;
  absl::Status status =
      weights.empty() ? InitParameters(ex, seed) : LoadWeights(ex, weights);
  std::unique_ptr<::veomni::rt::DataStream> stream;
  std::unique_ptr<SafetensorsFile> batchFile;
  if (status.ok() && llvm::StringRef(data).ends_with(".safetensors")) {
    auto opened = SafetensorsFile::Open(data);
    status = opened.status();
    if (status.ok()) {
      batchFile = *std::move(opened);
      status = FillInputs(ex, *batchFile, 0);
    }
  } else if (status.ok() && !data.empty()) {
    auto opened = ::veomni::rt::DataStream::Open({data}, {}, {}, 0);
    status = opened.status();
    if (status.ok()) {
      stream = *std::move(opened);
      auto ids = ex.Argument("input_ids");
      status = ids.status();
      if (status.ok()) {
        ::veomni::rt::Packer packer(*stream, ids->dim(ids->rank() - 1));
        status = FillTextBatch(ex, packer);
      }
    }
  } else if (status.ok()) {
    status = SyntheticBatch(ex, seed);
  }
  auto start = std::chrono::steady_clock::now();
  if (status.ok())
    status = ex.Run();
  if (!status.ok())
    return fail(std::string(status.message()));
  double ms = std::chrono::duration<double, std::milli>(
                  std::chrono::steady_clock::now() - start)
                  .count();
  auto lossHost = ex.ReadHost(ex.program().outputs[0]);
  if (!lossHost.ok())
    return fail(std::string(lossHost.status().message()));
  TensorView loss = lossHost->view;
  if (loss.numel() != 1)
    return fail("the program's first output is not a scalar loss");
  llvm::outs() << llvm::format("loss: %#.9g\n", LoadF(loss, 0));
  bool hasGradients =
      ex.program().FindOutput(::veomni::rt::OutputRole::Gradient) >= 0;
  if (hasGradients)
    llvm::outs() << llvm::format("grad_norm: %#.9g\n",
                                 std::sqrt(gradientSquares(ex)));
  llvm::outs().flush(); // the figures first, then the timing on stderr
  if (!save.empty()) {
    if (absl::Status s = SaveOutputs(ex, save); !s.ok())
      return fail(std::string(s.message()));
  }
  llvm::errs() << llvm::format("forward: %.1f ms, arena %llu bytes\n", ms,
                               (unsigned long long)ex.ArenaBytes());
  return 0;
}

/// veomni data pack TEXT... -o OUT.vtd: byte-level tokens (id = byte value),
/// one document per paragraph (paragraphs end at blank lines).
/// veomni data inspect FILE.vtd [--tokenizer T] [--doc N]: the dataset's
/// counts and one document, its targets marked.
int inspectData(llvm::ArrayRef<const char *> args) {
  std::string path, tokenizerPath, configPath, chatName;
  int64_t doc = 0, minPixels = 56 * 56, maxPixels = 28 * 28 * 1280, workers = 2;
  for (size_t i = 0; i < args.size(); ++i) {
    llvm::StringRef arg = args[i];
    auto number = [&](int64_t &to) {
      return i + 1 < args.size() &&
             !llvm::StringRef(args[++i]).getAsInteger(10, to) && to >= 0;
    };
    if (arg == "--tokenizer" && i + 1 < args.size()) {
      tokenizerPath = args[++i];
    } else if (arg == "--config" && i + 1 < args.size()) {
      configPath = args[++i];
    } else if (arg == "--chat" && i + 1 < args.size()) {
      chatName = args[++i];
    } else if (arg == "--doc") {
      if (!number(doc))
        return fail("--doc needs a document number >= 0");
    } else if (arg == "--workers") {
      if (!number(workers))
        return fail("--workers needs a thread count");
    } else if (arg == "--min-pixels" || arg == "--max-pixels") {
      if (!number(arg == "--min-pixels" ? minPixels : maxPixels))
        return fail(arg + " needs a pixel count");
    } else if (arg.starts_with("-")) {
      return fail("unknown option '" + arg + "'");
    } else {
      path = arg.str();
    }
  }
  if (path.empty())
    return fail("usage: veomni data inspect DATASET [--tokenizer "
                "tokenizer.json] [--config config.json] [--doc N]");
  namespace rt = ::veomni::rt;
  rt::DataOptions options;
  options.threads = static_cast<int>(std::min<int64_t>(workers, 64));
  std::unique_ptr<rt::Tokenizer> tok;
  if (!tokenizerPath.empty()) {
    auto t = rt::Tokenizer::Load(tokenizerPath);
    if (!t.ok())
      return fail(std::string(t.status().message()));
    tok = *std::move(t);
    options.tokenizer = tok.get();
  }
  if (!chatName.empty()) {
    auto f = rt::ParseChatFormat(chatName);
    if (!f.ok())
      return fail(std::string(f.status().message()));
    options.chat = *f;
  }
  // A model's config: conversations may hold its images and audio.
  std::optional<rt::MediaModel> media;
  if (!configPath.empty()) {
    auto m = rt::ReadMediaModel(configPath);
    if (!m.ok())
      return fail(std::string(m.status().message()));
    media = *m;
    media->image.minPixels = minPixels;
    media->image.maxPixels = maxPixels;
    if (media->vision || media->audio)
      options.media = &*media;
    // Without --chat, the family's format, as training picks it.
    if (!options.chat)
      options.chat = rt::ChatFormatOf(media->modelType);
  }
  auto source = rt::SampleSource::Open(path, options);
  if (!source.ok())
    return fail(std::string(source.status().message()));
  // One pass: the counts, and the sample asked for.
  uint64_t samples = 0, tokens = 0, targets = 0, longest = 0, images = 0,
           patches = 0, clips = 0, frames = 0;
  bool masked = false;
  rt::TokenizedSample shown;
  absl::Status read = rt::ForEachSample(**source, [&](rt::TokenizedSample &s) {
    if (samples == static_cast<uint64_t>(doc))
      shown = s;
    ++samples;
    tokens += s.ids.size();
    longest = std::max<uint64_t>(longest, s.ids.size());
    for (uint8_t t : s.trained) {
      masked |= t == 0;
      targets += t;
    }
    images += s.images.size();
    for (const rt::VisionPatches &p : s.images)
      patches += p.t * p.h * p.w;
    clips += s.audios.size();
    for (const rt::LogMel &m : s.audios)
      frames += m.frames;
  });
  if (!read.ok())
    return fail(std::string(read.message()));
  llvm::outs() << path << ": " << samples << " documents, " << tokens
               << " tokens, "
               << (masked ? "targets marked: " + std::to_string(targets) +
                                " tokens"
                          : std::string("every token a target"));
  if ((images || clips) && media->wholeImages)
    llvm::outs() << ", " << images << " images (" << media->imageSize << "x"
                 << media->imageSize << " pixels each)";
  else if (images || clips)
    llvm::outs() << ", " << images << " images (" << patches << " patches), "
                 << clips << " audio clips (" << frames << " frames)";
  llvm::outs() << "; the longest document " << longest << " tokens\n";
  if (static_cast<uint64_t>(doc) >= samples)
    return samples == 0
               ? 0
               : fail("--doc " + llvm::Twine(doc) + ": the dataset has " +
                      llvm::Twine(samples) + " documents");
  uint64_t docTargets = 0;
  for (uint8_t t : shown.trained)
    docTargets += t;
  llvm::outs() << "document " << doc << ": " << shown.ids.size() << " tokens, "
               << docTargets << " targets (between [[ and ]])";
  for (const rt::VisionPatches &p : shown.images)
    if (media->wholeImages)
      llvm::outs() << "; an image of " << media->imageSize << "x"
                   << media->imageSize << " pixels";
    else
      llvm::outs() << "; " << (p.secondsPerGrid > 0 ? "a video" : "an image")
                   << " of " << p.t << "x" << p.h << "x" << p.w
                   << " patches (t x h x w)";
  for (const rt::LogMel &m : shown.audios)
    llvm::outs() << "; a clip of " << m.frames << " frames";
  llvm::outs() << "\n";
  // Runs of targets and non-targets, decoded (or as ids); a placeholder
  // run is one marker.
  const std::vector<int32_t> &ids = shown.ids;
  auto placeholder = [&](int32_t id) -> const char * {
    if (!options.media)
      return nullptr;
    if (id == media->imageToken)
      return "image";
    if (media->videoToken >= 0 && id == media->videoToken)
      return "video";
    if (id == media->audioToken)
      return "audio";
    if (id == media->visionStart)
      return media->wholeImages ? "start_of_image" : "vision_start";
    if (id == media->visionEnd)
      return media->wholeImages ? "end_of_image" : "vision_end";
    if (id == media->audioStart)
      return "audio_start";
    if (id == media->audioEnd)
      return "audio_end";
    return nullptr;
  };
  for (size_t i = 0; i < ids.size();) {
    if (const char *kind = placeholder(ids[i])) {
      size_t j = i;
      while (j < ids.size() && ids[j] == ids[i])
        ++j;
      llvm::outs() << "<" << kind;
      if (j - i > 1)
        llvm::outs() << " x" << (j - i);
      llvm::outs() << ">";
      i = j;
      continue;
    }
    bool target = shown.trained[i];
    size_t j = i;
    while (j < ids.size() && shown.trained[j] == target && !placeholder(ids[j]))
      ++j;
    std::string text;
    if (tok) {
      std::vector<int32_t> run(ids.begin() + i, ids.begin() + j);
      auto t = tok->Decode(run);
      if (!t.ok()) { // ids the tokenizer lacks (a config's special ids)
        text.clear();
        for (size_t k = i; k < j; ++k)
          text += (k > i ? " " : "") + std::to_string(ids[k]);
      } else {
        text = *t;
      }
    } else {
      for (size_t k = i; k < j; ++k)
        text += (k > i ? " " : "") + std::to_string(ids[k]);
      text = (i ? " " : "") + text;
    }
    llvm::outs() << (target ? "[[" : "") << text << (target ? "]]" : "");
    i = j;
  }
  llvm::outs() << "\n";
  return 0;
}

int runData(llvm::ArrayRef<const char *> args) {
  if (wantsHelp(args)) {
    llvm::outs() << kDataHelp;
    return 0;
  }
  if (!args.empty() && llvm::StringRef(args[0]) == "inspect")
    return inspectData(args.drop_front());
  if (args.empty() || llvm::StringRef(args[0]) != "pack")
    return fail("usage: veomni data pack TEXT... -o OUT.vtd, or veomni data "
                "inspect FILE.vtd");
  std::vector<std::string> inputs;
  std::string output, tokenizerPath, eosToken, chatName;
  bool eos = false, skipBad = false;
  for (size_t i = 1; i < args.size(); ++i) {
    llvm::StringRef arg = args[i];
    if (arg == "-o") {
      if (i + 1 >= args.size())
        return fail("-o needs a file name");
      output = args[++i];
    } else if (arg == "--tokenizer") {
      if (i + 1 >= args.size())
        return fail("--tokenizer needs a tokenizer.json");
      tokenizerPath = args[++i];
    } else if (arg == "--on-bad-sample") {
      llvm::StringRef v = i + 1 < args.size() ? args[++i] : "";
      if (v != "skip" && v != "stop")
        return fail("--on-bad-sample needs skip or stop");
      skipBad = v == "skip";
    } else if (arg == "--chat") {
      if (i + 1 >= args.size())
        return fail("--chat needs a format: chatml, llama3, gemma, deepseek or "
                    "harmony");
      chatName = args[++i];
    } else if (arg == "--eos") {
      eos = true;
      if (i + 1 < args.size() && llvm::StringRef(args[i + 1]).starts_with("<"))
        eosToken = args[++i];
    } else if (arg.starts_with("-")) {
      return fail("unknown option '" + arg + "'");
    } else {
      inputs.push_back(arg.str());
    }
  }
  if (inputs.empty() || output.empty())
    return fail("usage: veomni data pack TEXT... -o OUT.vtd");
  if (eos && tokenizerPath.empty())
    return fail("--eos needs --tokenizer (a byte-level dataset has no "
                "end-of-text token)");
  std::optional<::veomni::rt::ChatFormat> chat;
  if (!chatName.empty()) {
    auto f = ::veomni::rt::ParseChatFormat(chatName);
    if (!f.ok())
      return fail(std::string(f.status().message()));
    chat = *f;
  }
  std::vector<std::vector<int32_t>> docs;
  std::vector<std::vector<uint8_t>> trained; // one per document
  bool masked = false;
  uint64_t tokens = 0;
  ::veomni::rt::DataOptions options;
  options.chat = chat;
  options.skipBad = skipBad;
  std::unique_ptr<::veomni::rt::Tokenizer> tokenizer;
  if (!tokenizerPath.empty()) {
    auto tok = ::veomni::rt::Tokenizer::Load(tokenizerPath);
    if (!tok.ok())
      return fail(std::string(tok.status().message()));
    tokenizer = *std::move(tok);
    options.tokenizer = tokenizer.get();
    if (eos) {
      for (const char *name : {"<|endoftext|>", "<|end_of_text|>", "</s>"})
        if (eosToken.empty() && tokenizer->TokenId(name) >= 0)
          eosToken = name;
      options.eos = eosToken.empty() ? -1 : tokenizer->TokenId(eosToken);
      if (options.eos < 0)
        return fail(tokenizerPath + ": no end-of-text token " +
                    (eosToken.empty() ? std::string("found; name one: --eos "
                                                    "TOKEN")
                                      : "'" + eosToken + "'"));
    }
  }
  // Each input once, a sample at a time (runtime/data/Stream.h).
  for (const std::string &path : inputs) {
    auto source = ::veomni::rt::SampleSource::Open(path, options);
    if (!source.ok())
      return fail(std::string(source.status().message()));
    absl::Status read = ::veomni::rt::ForEachSample(
        **source, [&](::veomni::rt::TokenizedSample &s) {
          masked |= std::find(s.trained.begin(), s.trained.end(), 0) !=
                    s.trained.end();
          tokens += s.ids.size();
          docs.push_back(std::move(s.ids));
          trained.push_back(std::move(s.trained));
        });
    if (!read.ok())
      return fail(std::string(read.message()));
    const ::veomni::rt::SkippedSamples &skipped = (*source)->skipped();
    if (skipped.count)
      llvm::errs() << "veomni: warning: " << path << ": skipped "
                   << skipped.count << " bad sample"
                   << (skipped.count == 1 ? "" : "s")
                   << " (the first: " << skipped.first << ")\n";
  }
  // Version 2 (a trained mask) only where some token is not a target.
  if (absl::Status s = ::veomni::rt::WriteTokenDataset(
          output, docs, masked ? &trained : nullptr);
      !s.ok())
    return fail(std::string(s.message()));
  llvm::outs() << output << ": " << docs.size() << " documents, " << tokens
               << " tokens\n";
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  if (argc < 2 || llvm::StringRef(argv[1]) == "--help" ||
      llvm::StringRef(argv[1]) == "-h") {
    llvm::outs() << kUsage;
    return argc < 2 ? 1 : 0;
  }
  llvm::StringRef command = argv[1];
  llvm::ArrayRef<const char *> rest(argv + 2, argv + argc);
  if (command == "import")
    return runImport(rest, /*compile=*/false);
  if (command == "compile") {
    // A recipe compiles to a job folder; a config.json to one program.
    for (llvm::StringRef a : rest)
      if (a.ends_with(".yaml") || a.ends_with(".yml"))
        return runCompileRecipe(rest);
    return runImport(rest, /*compile=*/true);
  }
  if (command == "run")
    return runProgram(rest);
  if (command == "data")
    return runData(rest);
  if (command == "train")
    return runTrain(rest);
  if (command == "plan")
    return runPlan(rest);
  if (command == "merge")
    return runMerge(rest);
  return fail("unknown command '" + command +
              "' (commands: import, compile, run, train, plan, merge, data)");
}
