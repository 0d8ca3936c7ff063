//===- Commands.h - the veomni subcommands ----------------------*- C++ -*-===//

#ifndef VEOMNI_TOOLS_VEOMNI_COMMANDS_H
#define VEOMNI_TOOLS_VEOMNI_COMMANDS_H

#include "compiler/Compile.h"
#include "compiler/Planner.h"
#include "compiler/Recipe.h"
#include "frontends/Importer.h"
#include "passes/Passes.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/Support/raw_ostream.h"

/// Whether `-h` or `--help` is among a subcommand's arguments: every
/// subcommand then prints its options and exits 0.
inline bool wantsHelp(llvm::ArrayRef<const char *> args) {
  for (llvm::StringRef a : args)
    if (a == "-h" || a == "--help")
      return true;
  return false;
}

/// Prints the importer's warnings (config keys veomni does not know), one
/// line each, on stderr.
inline void printWarnings(const mlir::veomni::ImportedModel &model) {
  for (const std::string &w : model.warnings)
    llvm::errs() << "veomni: warning: " << w << "\n";
}

/// veomni train recipe.yaml [--section.key value ...]
int runTrain(llvm::ArrayRef<const char *> args);
/// veomni compile recipe.yaml -o JOB/ [--section.key value ...]
int runCompileRecipe(llvm::ArrayRef<const char *> args);
/// veomni plan recipe.yaml [--report] [--section.key value ...]
int runPlan(llvm::ArrayRef<const char *> args);
/// veomni plan recipe.yaml --search [--top K] [--max-pp N]
/// [--write-recipe DIR] [--report-html FILE]
int runPlanSearch(const mlir::veomni::Recipe &r, int top, int64_t maxPP,
                  const std::string &writeDir, const std::string &html);
/// The search's page (PlanHtml.cpp): self-contained HTML.
std::string planSearchHtml(const mlir::veomni::SearchResult &s,
                           const mlir::veomni::Recipe &r, int top);
/// veomni merge BASE ADAPTERS -o OUT: LoRA adapters merged into their base
/// weights (Merge.cpp).
int runMerge(llvm::ArrayRef<const char *> args);

#endif // VEOMNI_TOOLS_VEOMNI_COMMANDS_H
