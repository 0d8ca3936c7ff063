//===- Search.cpp - veomni plan recipe.yaml --search ----------------------===//
//
// Prints the plans searchPlans ranks (compiler/Planner.h): the best K by
// predicted step time among those that fit, each with its mesh,
// micro-batching, recomputation, step time, tokens/s and MFU per device,
// memory per device and the communication that takes longest; where the
// recipe's own plan ranks and what the best one gains over it; and writes
// the top plans out as recipes on request.
//
//===----------------------------------------------------------------------===//

#include "tools/veomni/Commands.h"

#include "compiler/Registration.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

using namespace mlir;
using namespace mlir::veomni;

namespace {

std::string gibText(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f GiB", bytes / 1073741824.0);
  return buf;
}

std::string secondsText(double s) {
  char buf[32];
  if (s < 1e-3)
    std::snprintf(buf, sizeof(buf), "%.1f us", s * 1e6);
  else if (s < 1)
    std::snprintf(buf, sizeof(buf), "%.1f ms", s * 1e3);
  else
    std::snprintf(buf, sizeof(buf), "%.3f s", s);
  return buf;
}

/// "4 x 32": micro-batches a step x sequences in each.
std::string batchText(const Recipe &r) {
  return std::to_string(r.data.accumulationSteps()) + " x " +
         std::to_string(r.data.batchSize);
}

std::string row(int rank, const Candidate &c) {
  std::string memory = gibText(c.bytes) + (c.fits ? "" : " over");
  return llvm::formatv("{0,-4}  {1,-40}  {2,-9}  {3,-9}  {4,9}  {5,9:F0}  "
                       "{6,5:F1}%  {7,-15}  {8}{9}",
                       rank, c.meshText(), batchText(c.recipe),
                       c.recipe.train.remat, secondsText(c.stepSeconds),
                       c.tokensPerSecond, 100 * c.mfu, memory, c.dominant,
                       c.stageModel ? " (stage model)" : "")
      .str();
}

} // namespace

int runPlanSearch(const Recipe &r, int top, int64_t maxPP,
                  const std::string &writeDir, const std::string &html) {
  DialectRegistry registry;
  registerAllVeOmni(registry);
  MLIRContext context(registry);
  context.loadAllAvailableDialects();
  SearchOptions options;
  options.top = top;
  options.maxPipelineStages = maxPP;
  options.measure = std::max(options.measure, 2 * top);
  absl::StatusOr<SearchResult> found = searchPlans(context, r, options);
  if (!found.ok()) {
    llvm::errs() << "veomni: error: " << std::string(found.status().message())
                 << "\n";
    return 1;
  }
  const SearchResult &s = *found;
  double capacity =
      (r.cluster.memoryGib - r.cluster.reservedGib) * 1073741824.0;
  llvm::outs() << "search: " << s.modelType << ", "
               << llvm::format("%.0f", s.parameters) << " parameters, on "
               << r.parallel.worldSize << " devices"
               << (r.cluster.name.empty() ? "" : " of " + r.cluster.name)
               << " (" << gibText(capacity) << " usable of "
               << llvm::format("%g", r.cluster.memoryGib) << " GiB, "
               << r.cluster.devicesPerNode
               << " a node); a step: " << r.data.globalBatchSize
               << " sequences of " << r.data.seqLen << " tokens, "
               << r.model.dtype << "\n"
               << "plans: " << s.meshes << " meshes, " << s.plans
               << " with batch, remat and schedule that the model divides, "
               << s.estimatedFit << " estimated to fit, " << s.measured
               << " measured exactly; " << llvm::format("%.2f", s.seconds)
               << " s\n";
  llvm::outs() << llvm::formatv("{0,-4}  {1,-40}  {2,-9}  {3,-9}  {4,9}  "
                                "{5,9}  {6,6}  {7,-15}  {8}\n",
                                "rank", "mesh", "micro x b", "remat", "step",
                                "tok/s/dev", "MFU", "memory/dev",
                                "longest communication");
  // The plans that fit; when none does, the smallest.
  bool anyFits = !s.ranked.empty() && s.ranked.front().fits;
  int shown = 0;
  for (const Candidate &c : s.ranked) {
    if (shown == top || (anyFits && !c.fits))
      break;
    llvm::outs() << row(++shown, c) << "\n";
  }
  if (!anyFits)
    llvm::outs() << "no plan measured fits in " << gibText(capacity)
                 << " a device: the smallest are listed\n";
  if (s.given)
    llvm::outs() << "the recipe's plan: " << row(s.givenRank, *s.given) << "\n";
  else
    llvm::outs() << "the recipe's plan: its mesh does not fit the model or "
                    "the batch\n";
  if (anyFits) {
    const Candidate &best = s.ranked.front();
    llvm::outs() << "best that fits: " << best.meshText() << ", "
                 << batchText(best.recipe) << ", remat "
                 << best.recipe.train.remat << ": "
                 << secondsText(best.stepSeconds) << " a step, "
                 << gibText(capacity - best.bytes) << " to spare";
    if (s.given && s.given->fits)
      llvm::outs() << llvm::format(
          "; %.1f%% more tokens/s than the recipe's plan",
          100 * (best.tokensPerSecond / s.given->tokensPerSecond - 1));
    else if (s.given)
      llvm::outs() << "; the recipe's plan does not fit ("
                   << gibText(s.given->bytes) << ")";
    llvm::outs() << "\n";
  }
  if (!html.empty()) {
    std::error_code ec;
    llvm::raw_fd_ostream os(html, ec);
    if (ec) {
      llvm::errs() << "veomni: error: " << html << ": " << ec.message() << "\n";
      return 1;
    }
    os << planSearchHtml(s, r, top);
    llvm::outs() << "wrote " << html << "\n";
  }
  if (!writeDir.empty()) {
    if (std::error_code ec = llvm::sys::fs::create_directories(writeDir)) {
      llvm::errs() << "veomni: error: " << writeDir << ": " << ec.message()
                   << "\n";
      return 1;
    }
    int n = 0;
    for (const Candidate &c : s.ranked) {
      if (n == top)
        break;
      ++n;
      llvm::SmallString<128> path(writeDir);
      llvm::sys::path::append(path, "plan-" + std::to_string(n) + ".yaml");
      std::error_code ec;
      llvm::raw_fd_ostream os(path, ec);
      if (ec) {
        llvm::errs() << "veomni: error: " << path << ": " << ec.message()
                     << "\n";
        return 1;
      }
      os << "# veomni plan --search, plan " << n << " of " << s.measured
         << " measured: " << c.meshText() << ", " << batchText(c.recipe)
         << " sequences, remat " << c.recipe.train.remat << "\n"
         << "# predicted: " << llvm::format("%.2f ms", c.stepSeconds * 1e3)
         << " a step, " << llvm::format("%.0f", c.tokensPerSecond)
         << " tokens/s a device, " << gibText(c.bytes) << " a device\n"
         << c.recipe.toYaml();
      llvm::outs() << "wrote " << path << "\n";
    }
  }
  return 0;
}
