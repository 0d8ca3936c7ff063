//===- veomni.cpp - the veomni command line -------------------------------===//
//
//   veomni import config.json [-o model.mlir] [--summary] [--plan] ...
//
// Later subcommands (compile, run, train, plan) join here. Every error is
// one line on stderr and exit status 1.
//
//===----------------------------------------------------------------------===//

#include "compiler/Registration.h"
#include "frontends/Importer.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/raw_ostream.h"

#include <chrono>
#include <cstdlib>

using namespace mlir;
using namespace mlir::veomni;

namespace {

constexpr const char *kUsage = R"(usage: veomni import CONFIG.json [options]

Imports a Hugging Face config.json into the veomni dialect: a function
@forward(params..., inputs...) -> loss with global shapes.

options:
  -o FILE              write the module to FILE (default: stdout)
  --num-layers N       keep the first N decoder layers
  --dtype bf16|f32|f16 parameter and activation type (default bf16)
  --batch B            micro-batch size (default 1)
  --seq-len S          tokens per sequence (default 2048)
  --image-patches N    vision patches per batch, VL and omni (default 256)
  --audio-frames N     mel frames per batch, omni (default 400)
  --summary            print total and active parameters per module
  --plan               print each parameter's tp/ep placement
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

int runImport(llvm::ArrayRef<const char *> args) {
  ImportOptions options;
  std::string config, output;
  bool summary = false, plan = false;
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
      llvm::outs() << kUsage;
      return 0;
    } else if (arg == "-o") {
      if (!value(text))
        return fail("-o needs a file name");
      output = text.str();
    } else if (arg == "--dtype") {
      if (!value(text))
        return fail("--dtype needs a value");
      options.dtype = text.str();
    } else if (arg == "--num-layers") {
      if (!integer(options.numLayers))
        return 1;
      if (options.numLayers < 1)
        return fail("--num-layers " + std::to_string(options.numLayers) +
                    ": must be >= 1");
    } else if (arg == "--batch") {
      if (!integer(options.batch))
        return 1;
    } else if (arg == "--seq-len") {
      if (!integer(options.seqLen))
        return 1;
    } else if (arg == "--image-patches") {
      if (!integer(options.imagePatches))
        return 1;
    } else if (arg == "--audio-frames") {
      if (!integer(options.audioFrames))
        return 1;
    } else if (arg == "--summary") {
      summary = true;
    } else if (arg == "--plan") {
      plan = true;
    } else if (arg.starts_with("-")) {
      return fail("unknown option '" + arg + "' (see veomni import --help)");
    } else if (config.empty()) {
      config = arg.str();
    } else {
      return fail("more than one config given: '" + config + "' and '" + arg +
                  "'");
    }
  }
  if (config.empty())
    return fail("no config.json given (see veomni import --help)");

  DialectRegistry registry;
  registerAllVeOmni(registry);
  MLIRContext context(registry);
  context.loadAllAvailableDialects();
  std::string error;
  auto start = std::chrono::steady_clock::now();
  FailureOr<ImportedModel> model =
      importHFConfig(context, config, options, error);
  if (failed(model))
    return fail(error);
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();

  if (summary)
    printSummary(*model, llvm::outs());
  if (plan)
    printPlan(*model, llvm::outs());
  if (!output.empty()) {
    std::error_code ec;
    llvm::ToolOutputFile file(output, ec, llvm::sys::fs::OF_Text);
    if (ec)
      return fail("cannot write '" + output + "': " + ec.message());
    model->module->print(file.os());
    file.os().flush();
    if (file.os().has_error())
      return fail("cannot write '" + output + "'");
    file.keep();
  } else if (!summary && !plan) {
    model->module->print(llvm::outs());
    llvm::outs() << "\n";
  }
  if (summary)
    llvm::outs() << llvm::format("imported in %.2f s\n", seconds);
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
    return runImport(rest);
  return fail("unknown command '" + command + "' (commands: import)");
}
