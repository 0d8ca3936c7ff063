//===- Sharding.h - layouts, factor resolution, resharding ------*- C++ -*-===//
//
// What veomni-propagate-sharding, veomni-partition and the plan report
// share: a tensor's layout over the mesh, how an op's sharding rule turns
// its operands' and results' layouts into one split per factor, and the
// collectives that take a tensor from one layout to another, with their
// cost under an alpha-beta model per mesh axis.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_PASSES_SHARDING_H
#define VEOMNI_PASSES_SHARDING_H

#include "dialects/Dist/DistOps.h"
#include "dialects/VeOmni/ShardingRule.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Interfaces/FunctionInterfaces.h"

#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/ADT/SmallVector.h"
#include <limits>
#include <optional>
#include <string>

namespace mlir::veomni::sharding {

using Axes = llvm::SmallVector<StringAttr, 2>;
constexpr int64_t kNoPriority = std::numeric_limits<int64_t>::max();

/// How one global tensor lies over the mesh: per dimension the axes that
/// split it (major to minor), the axes over which it is a partial sum, and
/// for propagation each dimension's priority and whether it may still grow.
struct Layout {
  llvm::SmallVector<Axes> dims;
  Axes partial;
  llvm::SmallVector<int64_t> priority;
  llvm::SmallVector<bool> closed;

  static Layout open(int64_t rank);
  static Layout fromAttr(dist::ShardingAttr attr);
  dist::ShardingAttr toAttr(MLIRContext *ctx, FlatSymbolRefAttr mesh) const;
  /// Same split and partial axes (priorities and openness aside).
  bool sameDistribution(const Layout &other) const;
  bool isReplicated() const;
};

/// The one `dist.mesh` of `module`; null, after an error naming `pass`,
/// when there is not exactly one.
dist::MeshOp onlyMesh(ModuleOp module, StringRef pass);

/// The `dist.sharding` of argument `i` of `func` as a layout; failure,
/// after an error naming `pass`, when propagation has not given it one.
FailureOr<struct Layout> argumentLayout(FunctionOpInterface func, unsigned i,
                                        StringRef pass);

/// Axis sizes of a mesh, by name.
class Mesh {
public:
  explicit Mesh(dist::MeshAttr attr) : attr(attr) {}
  int64_t size(StringAttr axis) const;
  int64_t size(llvm::ArrayRef<StringAttr> axes) const;
  dist::MeshAttr getAttr() const { return attr; }

private:
  dist::MeshAttr attr;
};

/// The local shape of `type` under `layout`; the split of each dimension
/// must divide it.
RankedTensorType localType(RankedTensorType type, const Layout &layout,
                           const Mesh &mesh);

/// The rule of `op` for propagation and partitioning: its
/// ShardingRuleOpInterface; for a sharding constraint, input and result as
/// one; for a pipeline receive, free dimensions of its result. nullopt for
/// ops that take no part (sends, returns).
std::optional<ShardingRule> ruleOf(Operation *op);

/// One split per factor of an op's rule, and the priority it came from.
struct FactorSplit {
  llvm::SmallVector<Axes> axes;
  llvm::SmallVector<int64_t> priority;
};

/// Resolves each factor's split from the tensors' layouts (operands, then
/// results, in rule order), using only dimensions of priority <= `upTo`:
/// among the best-priority sources, the split the most tensor elements
/// agree with wins (ties to the longer, then the first); a compatible
/// longer split refines it; need-replication factors stay whole (or, in
/// the last round, hand their split to the rule's relocation target); an
/// axis is given to at most one factor (best priority first; expert
/// factors share theirs), every split dividing its factor.
FactorSplit resolveFactors(const ShardingRule &rule,
                           llvm::ArrayRef<const Layout *> operands,
                           llvm::ArrayRef<const Layout *> results,
                           const Mesh &mesh, int64_t upTo = kNoPriority);

/// The split of a tensor whose dimensions are `dims` under `split`: a
/// dimension of several factors takes a minor factor's axes only when the
/// major ones are split completely.
llvm::SmallVector<Axes> projectDims(const ShardingRule &rule,
                                    const ShardingRule::Dims &dims,
                                    const FactorSplit &split, const Mesh &mesh);

/// Result `index`'s layout as the op computes it: projected dims, and
/// partial sums over the axes of the factors it lacks (none for per-shard
/// results and expert factors).
Layout naturalResultLayout(const ShardingRule &rule, unsigned index,
                           const FactorSplit &split, const Mesh &mesh);

/// What an op needs and gives under the layouts of its tensors: the split
/// per factor, each operand's required layout and each result's layout as
/// the op computes it (partial sums included).
struct OpPlan {
  FactorSplit split;
  llvm::SmallVector<Layout> operandNeeds;
  llvm::SmallVector<Layout> naturals;
};
OpPlan planOp(const ShardingRule &rule, llvm::ArrayRef<const Layout *> operands,
              llvm::ArrayRef<const Layout *> results, const Mesh &mesh);

/// One step of a reshard, on local tensors.
struct Collective {
  enum Kind { AllReduce, ReduceScatter, AllGather, AllToAll, LocalSplit };
  Kind kind;
  Axes axes;
  int64_t dim = -1;      ///< gather / scatter / split dim; a2a concat dim
  int64_t splitDim = -1; ///< all-to-all: the dim that gets the axes
};

/// Which moves a reshard may use.
struct ReshardStyle {
  bool scatter = true;  ///< reduce-scatter partial sums where wanted
  bool allToAll = true; ///< move an axis between dimensions directly
};

/// The collectives that turn a tensor laid out as `from` into `to`
/// (which has no partial axes): partial sums are reduce-scattered onto a
/// dimension that wants the axis next, else all-reduced (over all their
/// axes at once); an axis that leaves a dimension
/// moves by all-to-all to a dimension that wants it, else is all-gathered;
/// what `to` splits further is split locally.
llvm::SmallVector<Collective> planReshard(const Layout &from, const Layout &to,
                                          const ReshardStyle &style = {});

struct LinkModel;

/// Of planReshard's sequences (every style), the one `link` says takes
/// least time for a tensor whose local type under `from` is `local`; ties
/// to the greediest.
llvm::SmallVector<Collective>
cheapestReshard(RankedTensorType local, const Layout &from, const Layout &to,
                const Mesh &mesh, const LinkModel &link);

/// The cheapest reshard (under the default LinkModel, so that partitioning
/// and the report agree) of a tensor whose local type under `from` is
/// `local`: calls `step` with each collective and its local input and
/// output types.
void walkReshard(RankedTensorType local, const Layout &from, const Layout &to,
                 const Mesh &mesh,
                 llvm::function_ref<void(const Collective &, RankedTensorType,
                                         RankedTensorType)>
                     step);

/// Alpha-beta cost of collectives per mesh axis: latency (s) and the
/// bandwidth (bytes/s) one device sends at; a group over several axes runs
/// at its slowest axis. Latency counts log2 n steps for reduce-scatter and
/// all-gather, 2 log2 n for all-reduce, n - 1 for all-to-all.
struct LinkModel {
  double intraLatency = 5e-6, intraBandwidth = 150e9; // NVLink class
  double interLatency = 20e-6, interBandwidth = 25e9; // one 200 Gb/s NIC
  /// Whether placeAxes has said which axes stay inside a node; until then
  /// tp, sp and ep do (what partitioning assumes) and the rest cross nodes.
  bool placed = false;
  llvm::SmallVector<std::string, 6> intraAxes;
  bool isIntraNode(StringRef axis) const {
    if (placed)
      return llvm::is_contained(intraAxes, axis);
    return axis == "tp" || axis == "sp" || axis == "ep";
  }
};

/// Which axes of a mesh (`axes`: name and size, major to minor, ranks
/// numbered row-major as the runtime numbers them) keep each of their
/// groups inside a node of `devicesPerNode` consecutive ranks: an axis
/// whose stride (the product of the sizes minor to it) times its size
/// divides the node. A group over several such axes stays in a node too.
void placeAxes(LinkModel &link,
               llvm::ArrayRef<std::pair<std::string, int64_t>> axes,
               int64_t devicesPerNode);

/// Bytes one device sends for `c` on a local tensor of `bytes` (the input
/// for reductions and splits, the output for gathers) over a group of `n`.
double bytesSent(const Collective &c, double bytes, int64_t n);
double seconds(const Collective &c, double bytes, const Mesh &mesh,
               const LinkModel &link);
/// "tp", or "dp_shard+ep" for a group over several axes.
std::string groupName(llvm::ArrayRef<StringAttr> axes);

} // namespace mlir::veomni::sharding

#endif // VEOMNI_PASSES_SHARDING_H
