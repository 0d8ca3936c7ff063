//===- Train.cpp - veomni train recipe.yaml, veomni compile recipe.yaml ---===//
//
// `veomni train` compiles the recipe's training step (forward, autodiff,
// AdamW, partitioned for its mesh) once and runs the runtime's training
// loop on it (runtime/train/Loop.h): in this process on one rank; on N
// ranks it writes the job folder `veomni compile RECIPE.yaml -o DIR` would
// write and starts `mpirun -np N veomni-run DIR`. Started by mpirun or srun
// itself, each rank compiles and trains with the launcher's rank and size.
//
//===----------------------------------------------------------------------===//

#include "passes/NameMatch.h"
#include "tools/veomni/Commands.h"

#include "compiler/Compile.h"
#include "compiler/Recipe.h"
#include "compiler/Registration.h"
#include "frontends/Importer.h"
#include "runtime/support/Status.h"
#include "runtime/train/Job.h"
#include "runtime/train/Launch.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <chrono>
#include <sstream>

using namespace mlir;
using namespace mlir::veomni;
namespace rt = ::veomni::rt;

namespace {

int fail(const llvm::Twine &message) {
  llvm::errs() << "veomni: error: " << message << "\n";
  return 1;
}

/// The recipe's training step, compiled: one program, or with pipeline
/// stages one per chunk and part of the step (job.pipeline lists them);
/// `job` gets the settings to run them with. Errors name the file.
/// PEFT's target_modules for the recipe's targets: "all-linear", a list of
/// names (each matching a module or its part after a dot, as PEFT matches
/// a list), or, with globs, one regular expression over the full module
/// name, which PEFT matches whole.
std::string PeftTargets(const std::string &targets) {
  llvm::SmallVector<llvm::StringRef> list;
  for (llvm::StringRef t : llvm::split(targets, ','))
    if (!t.trim().empty())
      list.push_back(t.trim());
  if (list.size() == 1 && list[0] == "all-linear")
    return "\"all-linear\"";
  bool globs = llvm::any_of(list, [](llvm::StringRef t) {
    return t.find_first_of("*?[") != llvm::StringRef::npos;
  });
  std::string out;
  llvm::raw_string_ostream os(out);
  if (!globs) {
    os << "[";
    for (size_t i = 0; i < list.size(); ++i)
      os << (i ? ", " : "") << "\"" << list[i] << "\"";
    os << "]";
    return out;
  }
  // (.*\.)?(a|b...): the whole name or its part after a dot.
  std::string regex = "(.*\\\\.)?(";
  for (size_t i = 0; i < list.size(); ++i) {
    if (i)
      regex += "|";
    for (char c : list[i])
      regex += c == '*'   ? std::string(".*")
               : c == '?' ? std::string(".")
               : c == '.' ? std::string("\\\\.")
                          : std::string(1, c);
  }
  return "\"" + regex + ")\"";
}

/// The adapter_config.json a LoRA run's checkpoints carry (PEFT's), after
/// checking the adapters it starts from were made with the recipe's rank
/// and alpha; "" without LoRA.
absl::StatusOr<std::string> AdapterConfig(const Recipe &r,
                                          llvm::StringRef modelType) {
  const TrainSection &t = r.train;
  if (t.loraTargets.empty() && t.loraTargetParameters.empty()) {
    if (!t.loraAdapter.empty())
      return absl::InvalidArgumentError(
          r.path + ": field 'train.lora.adapter' is set, but "
                   "train.lora.targets is empty");
    return std::string();
  }
  auto listOf = [](const std::string &text) {
    std::vector<std::string> list;
    for (llvm::StringRef v : llvm::split(text, ','))
      if (!v.trim().empty())
        list.push_back(v.trim().str());
    return list;
  };
  // gate_up_proj's rank and alpha where PEFT doubles them (NameMatch.h).
  // (The parameters written are the converted ones, as peft writes them.)
  const mlir::veomni::LoraTargets converted = mlir::veomni::convertLoraTargets(
      listOf(t.loraTargets), listOf(t.loraTargetParameters),
      mlir::veomni::peftFusesExperts(modelType));
  const bool doubled = converted.doubledGateUp;
  std::string alphaText, doubledAlpha;
  llvm::raw_string_ostream(alphaText) << llvm::format("%.17g", t.loraAlpha);
  llvm::raw_string_ostream(doubledAlpha)
      << llvm::format("%.17g", 2 * t.loraAlpha);
  const std::string rankPattern =
      doubled
          ? "{\".*\\\\.gate_up_proj\": " + std::to_string(2 * t.loraRank) + "}"
          : "{}";
  const std::string alphaPattern =
      doubled ? "{\".*\\\\.gate_up_proj\": " + doubledAlpha + "}" : "{}";
  if (!t.loraAdapter.empty()) {
    std::string dir = llvm::sys::fs::is_directory(t.loraAdapter)
                          ? t.loraAdapter
                          : llvm::sys::path::parent_path(t.loraAdapter).str();
    std::string path = dir + "/adapter_config.json";
    auto file = llvm::MemoryBuffer::getFile(path);
    if (!file)
      return absl::NotFoundError(path + ": cannot read (train.lora.adapter)");
    llvm::Expected<llvm::json::Value> json =
        llvm::json::parse((*file)->getBuffer());
    if (!json)
      return absl::InvalidArgumentError(path + ": " +
                                        llvm::toString(json.takeError()));
    const llvm::json::Object *o = json->getAsObject();
    auto field = [&](llvm::StringRef key) -> const llvm::json::Value * {
      return o ? o->get(key) : nullptr;
    };
    auto bad = [&](llvm::StringRef key, const std::string &why) {
      return absl::InvalidArgumentError(path + ": field '" + key.str() +
                                        "': " + why);
    };
    if (auto *type = field("peft_type");
        !type || type->getAsString() != std::optional<llvm::StringRef>("LORA"))
      return bad("peft_type", "expected \"LORA\"");
    std::optional<int64_t> rank =
        field("r") ? field("r")->getAsInteger() : std::nullopt;
    if (!rank || *rank != t.loraRank)
      return bad("r", "the adapters' rank, which must be train.lora.rank (" +
                          std::to_string(t.loraRank) + ")");
    std::optional<double> alpha =
        field("lora_alpha") ? field("lora_alpha")->getAsNumber() : std::nullopt;
    if (!alpha || *alpha != t.loraAlpha)
      return bad("lora_alpha", "must be train.lora.alpha (" +
                                   std::to_string(t.loraAlpha) + ")");
    const bool rslora = t.loraRslora == "true";
    if (auto *v = field("use_rslora");
        (v && v->getAsBoolean().value_or(false)) != rslora)
      return bad("use_rslora", std::string("must be train.lora.rslora (") +
                                   (rslora ? "true" : "false") + ")");
    for (const char *flag : {"fan_in_fan_out", "use_dora", "lora_bias"})
      if (auto *v = field(flag); v && v->getAsBoolean().value_or(false))
        return bad(flag, "true is not supported");
    // Per-module ranks and alphas: only PEFT's doubled gate_up_proj, as
    // the recipe's targets make it.
    for (auto [pattern, expected] :
         {std::pair<const char *, llvm::json::Value>{
              "rank_pattern", llvm::json::Value(2 * t.loraRank)},
          {"alpha_pattern", llvm::json::Value(2 * t.loraAlpha)}}) {
      const llvm::json::Object *v =
          field(pattern) ? field(pattern)->getAsObject() : nullptr;
      if (!v || v->empty()) {
        if (doubled)
          return bad(pattern, "expected {\".*\\\\.gate_up_proj\": ...} (PEFT "
                              "doubles gate_up_proj's where the recipe's "
                              "targets name gate_proj and up_proj)");
        continue;
      }
      const llvm::json::Value *g = v->get(".*\\.gate_up_proj");
      if (!doubled || v->size() != 1 || !g ||
          g->getAsNumber() != expected.getAsNumber())
        return bad(pattern,
                   doubled
                       ? "must be {\".*\\\\.gate_up_proj\": " +
                             std::string(pattern[0] == 'r'
                                             ? std::to_string(2 * t.loraRank)
                                             : doubledAlpha) +
                             "}, as PEFT makes it for the recipe's "
                             "targets"
                       : "per-module ranks or alphas are not "
                         "supported");
    }
    if (auto *v = field("modules_to_save");
        v && v->getAsArray() && !v->getAsArray()->empty())
      return bad("modules_to_save",
                 "fully trained modules beside the adapters are not "
                 "supported (train.freeze leaves modules trainable without "
                 "LoRA)");
  }
  std::string parameters = "[";
  for (const std::string &p : converted.parameters)
    parameters += (parameters.size() > 1 ? ", \"" : "\"") + p + "\"";
  parameters += "]";
  return "{\n  \"peft_type\": \"LORA\",\n  \"task_type\": \"CAUSAL_LM\",\n"
         "  \"base_model_name_or_path\": null,\n  \"r\": " +
         std::to_string(t.loraRank) + ",\n  \"lora_alpha\": " + alphaText +
         ",\n  \"lora_dropout\": 0.0,\n  \"target_modules\": " +
         PeftTargets(t.loraTargets) +
         ",\n  \"target_parameters\": " + parameters +
         ",\n  \"rank_pattern\": " + rankPattern +
         ",\n  \"alpha_pattern\": " + alphaPattern +
         ",\n  \"bias\": \"none\",\n  \"fan_in_fan_out\": false,\n"
         "  \"use_rslora\": " +
         t.loraRslora +
         ",\n  \"init_lora_weights\": true,\n"
         "  \"modules_to_save\": null,\n  \"inference_mode\": true\n}\n";
}

absl::Status compileJob(const Recipe &r, bool printWarningsToo,
                        std::vector<std::string> &programs,
                        rt::JobSettings &job) {
  DialectRegistry registry;
  registerAllVeOmni(registry);
  MLIRContext context(registry);
  context.loadAllAvailableDialects();
  absl::StatusOr<ImportedModel> model =
      importHFConfig(context, r.model.config, importOptionsOf(r));
  if (!model.ok())
    return model.status();
  if (printWarningsToo)
    printWarnings(*model);
  VEOMNI_RETURN_IF_ERROR(checkMeshFits(r, *model));
  std::string diagnostic;
  ScopedDiagnosticHandler handler(&context, [&](Diagnostic &diag) {
    if (diagnostic.empty())
      diagnostic = diag.str();
    return success();
  });
  CompileOptions co = trainingOptionsOf(r);
  CompileReport report;
  auto start = std::chrono::steady_clock::now();
  programs.clear();
  std::string pipelineSummary;
  if (r.parallel.pp > 1 && !r.data.evalPath.empty())
    return absl::InvalidArgumentError(
        r.path + ": field 'data.eval_path': held-out losses with pipeline "
                 "stages (parallel.pp > 1) are not supported yet");
  if (r.parallel.pp > 1) {
    std::map<std::string, std::string> placements;
    for (const ArgumentInfo &arg : model->arguments)
      if (arg.isParam)
        if (std::optional<Placement> p = placementOf(model->plan, arg.name))
          placements[arg.name] = placementName(*p).str();
    FailureOr<PipelinePrograms> compiled =
        compilePipeline(*model->module, placements, co);
    if (failed(compiled))
      return absl::InvalidArgumentError(
          r.model.config +
          ": compiling the pipeline's programs failed: " + diagnostic);
    rt::JobSettings::Pipeline &pipe = job.pipeline;
    pipe.schedule = compiled->schedule;
    pipe.stages = compiled->stages;
    pipe.microBatches = compiled->microBatches;
    pipe.actions = compiled->actions;
    pipe.tiedParams = compiled->tiedParams;
    for (StageProgram &p : compiled->programs) {
      pipe.programs.push_back({p.name, p.name + ".vmb", p.stage, p.chunk});
      programs.push_back(std::move(p.bytes));
    }
    pipelineSummary = compiled->summary;
  } else {
    // The held-out loss: the forward and loss alone, partitioned for the
    // same mesh, so the step's parameter slices fit it as they are.
    const bool evaluate = !r.data.evalPath.empty();
    OwningOpRef<ModuleOp> forward;
    std::map<std::string, std::string> placements;
    if (evaluate) {
      forward = model->module->clone();
      for (const ArgumentInfo &arg : model->arguments)
        if (arg.isParam)
          if (std::optional<Placement> p = placementOf(model->plan, arg.name))
            placements[arg.name] = placementName(*p).str();
    }
    FailureOr<std::string> bytes = compileToProgram(*model, report, co);
    if (failed(bytes))
      return absl::InvalidArgumentError(
          r.model.config +
          ": compiling the training step failed: " + diagnostic);
    programs.push_back(*std::move(bytes));
    if (evaluate) {
      CompileOptions eo = co;
      eo.gradients = false;
      eo.train.reset();
      eo.accumulationSteps = 1;
      eo.remat = "none";
      CompileReport evalReport;
      FailureOr<std::string> eval =
          compileModule(*forward, placements, eo, evalReport);
      if (failed(eval))
        return absl::InvalidArgumentError(
            r.model.config +
            ": compiling the evaluation program failed: " + diagnostic);
      programs.push_back(*std::move(eval));
      job.evalProgram = rt::kJobEvalProgram;
    }
  }
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();

  const ParallelSection &p = r.parallel;
  job.modelType = model->modelType;
  job.worldSize = p.meshSize();
  job.mesh = "dp_replicate=" + std::to_string(p.dpReplicate) +
             " dp_shard=" + std::to_string(p.dpShard) +
             " tp=" + std::to_string(p.tp) + " sp=" + std::to_string(p.sp) +
             " ep=" + std::to_string(p.ep) +
             (p.pp > 1 ? " pp=" + std::to_string(p.pp) : "");
  std::string summary;
  llvm::raw_string_ostream os(summary);
  if (p.pp > 1)
    os << "model " << model->modelType << ", " << pipelineSummary
       << ", compiled in " << llvm::format("%.2f", seconds) << " s";
  else
    os << "model " << model->modelType << ", " << report.kernels
       << " kernels, arena " << report.arenaBytes / (1 << 20)
       << " MiB (activations " << report.activationBytes / (1 << 10)
       << " KiB, remat " << r.train.remat << "), compiled in "
       << llvm::format("%.2f", seconds) << " s";
  job.summary = summary;
  job.seqLen = r.data.seqLen;
  job.batchSize = r.data.batchSize;
  job.accumulationSteps = co.accumulationSteps;
  job.steps = r.train.steps;
  job.seed = r.model.seed;
  job.config = r.model.config;
  job.weights = r.model.weights;
  job.dataPath = r.data.path;
  job.dataWeights = r.data.weights;
  job.tokenizer = r.data.tokenizer;
  job.chat = r.data.chat;
  job.chatDate = r.data.chatDate;
  job.eos = r.data.eos;
  job.onBadSample = r.data.onBadSample;
  job.evalPath = r.data.evalPath;
  job.minPixels = r.data.minPixels;
  job.maxPixels = r.data.maxPixels;
  job.onLongSample = r.data.onLongSample;
  job.dataWorkers = r.data.workers;
  {
    std::ostringstream fps;
    fps.precision(17);
    fps << r.data.videoFps;
    job.videoFps = fps.str();
  }
  job.videoMaxFrames = r.data.videoMaxFrames;
  job.videoMinPixels = r.data.videoMinPixels;
  job.videoMaxPixels = r.data.videoMaxPixels;
  job.videoTotalPixels = r.data.videoTotalPixels;
  job.audioInVideo = r.data.audioInVideo;
  job.panAndScan = r.data.panAndScan;
  job.loraAdapter = r.train.loraAdapter;
  VEOMNI_ASSIGN_OR_RETURN(job.adapterConfig,
                          AdapterConfig(r, model->modelType));
  job.evalInterval = r.train.evalInterval;
  job.evalBatches = r.train.evalBatches;
  job.outputDir = r.train.outputDir;
  job.resume = r.train.resume;
  job.onNonfinite = r.train.onNonfinite;
  job.profile = r.train.profile;
  job.device = r.train.device;
  job.logInterval = r.train.logInterval;
  job.checkpointInterval = r.train.checkpointInterval;
  job.maxShardBytes = static_cast<int64_t>(r.train.maxShardBytes);
  return absl::OkStatus();
}

/// Trains the compiled `program` in this process (one rank of `comm`'s job,
/// or alone); `name` labels errors.
int trainHere(std::vector<std::string> &programs, const rt::JobSettings &job,
              rt::Communicator *comm, const std::string &name) {
  if (job.pipeline.stages > 1) {
    rt::PipelineSpec spec;
    spec.schedule = job.pipeline.schedule;
    spec.stages = job.pipeline.stages;
    spec.microBatches = job.pipeline.microBatches;
    spec.actions = job.pipeline.actions;
    spec.tiedParams = job.pipeline.tiedParams;
    for (size_t i = 0; i < programs.size(); ++i) {
      const rt::JobSettings::StageFile &f = job.pipeline.programs[i];
      auto parsed = rt::ParseProgram(programs[i], f.name);
      if (!parsed.ok())
        return fail(std::string(parsed.status().message()));
      spec.parts.push_back({f.name, f.stage, f.chunk, *std::move(parsed)});
    }
    return rt::TrainOnThisRank(std::move(spec), job, comm, "veomni");
  }
  auto parsed = rt::ParseProgram(programs.front(), name);
  if (!parsed.ok())
    return fail(std::string(parsed.status().message()));
  std::optional<rt::Program> eval;
  if (!job.evalProgram.empty()) {
    auto e = rt::ParseProgram(programs.back(), name);
    if (!e.ok())
      return fail(std::string(e.status().message()));
    eval = *std::move(e);
  }
  return rt::TrainOnThisRank(*std::move(parsed), job, comm, "veomni",
                             std::move(eval));
}

/// Splits `--nproc N` off a command line; -1 after an error.
int64_t takeNproc(llvm::ArrayRef<const char *> args,
                  std::vector<std::string> &rest) {
  int64_t nproc = 0;
  for (size_t i = 0; i < args.size(); ++i) {
    // --profile FILE is --train.profile FILE.
    if (llvm::StringRef(args[i]) == "--profile") {
      rest.push_back("--train.profile");
      continue;
    }
    // --device cpu|cuda[:N] is --train.device.
    if (llvm::StringRef(args[i]) == "--device") {
      rest.push_back("--train.device");
      continue;
    }
    if (llvm::StringRef(args[i]) != "--nproc") {
      rest.push_back(args[i]);
      continue;
    }
    if (i + 1 >= args.size() ||
        llvm::StringRef(args[i + 1]).getAsInteger(10, nproc) || nproc < 1) {
      fail("--nproc needs a positive number of ranks");
      return -1;
    }
    ++i;
  }
  return nproc;
}

/// The mesh of a job of `ranks`: dp_shard takes them all when the recipe
/// names no mesh; otherwise the mesh must have exactly that many (an error
/// that `say`s why).
int fitMesh(Recipe &r, int64_t ranks, bool say = true) {
  if (r.parallel.meshSize() == 1 && ranks > 1)
    r.parallel.dpShard = ranks;
  if (r.parallel.meshSize() != ranks && !say)
    return 1;
  if (r.parallel.meshSize() != ranks)
    return fail(r.path + ": parallel: the mesh has " +
                llvm::Twine(r.parallel.meshSize()) + " ranks, the job " +
                llvm::Twine(ranks));
  return 0;
}

} // namespace

int runTrain(llvm::ArrayRef<const char *> args) {
  if (wantsHelp(args)) {
    llvm::outs()
        << "usage: veomni train RECIPE.yaml [--nproc N] [--profile FILE.json] "
           "[--device cpu|cuda[:N]] "
           "[--section.key VALUE ...]\n\n"
           "Compiles the training step of the recipe's model and runs it: a\n"
           "progress line per log interval, metrics.jsonl, Hugging Face\n"
           "checkpoints (checkpoint-N/) and loss_curve.svg in the output\n"
           "directory (docs/training.md). Any setting can be overridden on\n"
           "the command line with its dotted name (--train.lr 3e-4).\n\n"
           "--nproc N (or a parallel section whose mesh has N ranks) trains\n"
           "on N ranks: the program is compiled once, written with the run\n"
           "settings to OUTPUT_DIR/job/, and `mpirun -np N veomni-run` runs\n"
           "it; dp_shard takes the ranks when the recipe names no mesh.\n"
           "Started by mpirun or srun itself, each rank compiles and trains\n"
           "with the launcher's rank and size. Every plan trains on the same\n"
           "global batches and writes the same plan-independent "
           "checkpoints.\n\n"
           "--profile FILE.json (train.profile) writes the second step's\n"
           "kernels as a Chrome trace (Perfetto, chrome://tracing) and\n"
           "prints the kernels that took the most time; on N ranks each\n"
           "rank r > 0 writes FILE.rank<r>.json.\n\n"
           "settings:\n"
        << Recipe::settingsHelp();
    return 0;
  }
  std::vector<std::string> rest;
  int64_t nproc = takeNproc(args, rest);
  if (nproc < 0)
    return 1;
  absl::StatusOr<Recipe> recipe = Recipe::fromCommandLine(rest, {});
  if (!recipe.ok()) {
    // Every rank of a launched job reads the same recipe: one says why.
    if (!rt::LaunchedAsRank() || rt::LauncherRank() == 0)
      fail(std::string(recipe.status().message()));
    return 1;
  }
  Recipe &r = *recipe;

  // One rank of a job someone else launched: every rank compiles.
  if (rt::LaunchedAsRank()) {
    absl::StatusOr<std::unique_ptr<rt::Communicator>> comm = rt::JoinJob();
    if (!comm.ok())
      return fail(std::string(comm.status().message()));
    int rank = (*comm)->Rank();
    if (int code = fitMesh(r, (*comm)->WorldSize(), rank == 0))
      return code;
    std::vector<std::string> program;
    rt::JobSettings job;
    if (absl::Status s = compileJob(r, rank == 0, program, job); !s.ok()) {
      llvm::errs() << "veomni: error: rank " << rank << ": "
                   << std::string(s.message()) << "\n";
      llvm::errs().flush();
      (*comm)->Abort(1);
    }
    return trainHere(program, job, comm->get(), r.model.config);
  }

  // Compiled once, here: a bad mesh or model is one error before any rank
  // starts.
  const int64_t ranks = nproc ? nproc : r.parallel.meshSize();
  if (int code = fitMesh(r, ranks))
    return code;
  std::vector<std::string> program;
  rt::JobSettings job;
  if (absl::Status s = compileJob(r, true, program, job); !s.ok())
    return fail(std::string(s.message()));
  if (ranks == 1) {
    return trainHere(program, job, nullptr, r.model.config);
  }
  std::string dir = r.train.outputDir + "/job";
  if (absl::Status s = rt::WriteJob(dir, job, program); !s.ok())
    return fail(std::string(s.message()));
  llvm::SmallString<256> runner(rt::SelfExecutable());
  llvm::sys::path::remove_filename(runner);
  llvm::sys::path::append(runner, "veomni-run");
  absl::StatusOr<int> code = rt::LaunchRanks(ranks, {std::string(runner), dir});
  if (!code.ok())
    return fail(std::string(code.status().message()));
  if (*code != 0)
    fail("the job failed (mpirun exited with " + llvm::Twine(*code) +
         "); the message above names the rank and the cause");
  return *code;
}

int runCompileRecipe(llvm::ArrayRef<const char *> args) {
  std::string output;
  std::vector<std::string> rest;
  for (size_t i = 0; i < args.size(); ++i) {
    if (llvm::StringRef(args[i]) == "-o") {
      if (i + 1 >= args.size())
        return fail("-o needs a folder");
      output = args[++i];
      continue;
    }
    rest.push_back(args[i]);
  }
  if (output.empty())
    return fail("compiling a recipe needs -o JOB_DIR");
  absl::StatusOr<Recipe> recipe = Recipe::fromCommandLine(rest, {});
  if (!recipe.ok())
    return fail(std::string(recipe.status().message()));
  std::vector<std::string> program;
  rt::JobSettings job;
  if (absl::Status s = compileJob(*recipe, true, program, job); !s.ok())
    return fail(std::string(s.message()));
  if (absl::Status s = rt::WriteJob(output, job, program); !s.ok())
    return fail(std::string(s.message()));
  size_t bytes = 0;
  for (const std::string &p : program)
    bytes += p.size();
  std::string files = job.pipeline.stages > 1
                          ? std::to_string(program.size()) + " stage programs"
                          : std::string(rt::kJobProgram);
  llvm::outs() << job.summary << "\n"
               << "job for " << job.worldSize << " rank"
               << (job.worldSize > 1 ? "s (" + job.mesh + ")" : "") << " in "
               << output << ": " << files << " (" << bytes << " bytes), "
               << rt::kJobManifest
               << (job.config.empty() ? "" : ", config.json") << "\n"
               << "run it with: "
               << (job.worldSize > 1
                       ? "mpirun -np " + std::to_string(job.worldSize) + " "
                       : "")
               << "veomni-run " << output << "\n";
  return 0;
}
