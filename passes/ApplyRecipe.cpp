//===- ApplyRecipe.cpp - the mesh and the family's plan as shardings ------===//
//
// The first step of parallel planning: declare the recipe's mesh and give
// every parameter and batch input a sharding (a `dist.sharding` argument
// attribute on global shapes) from the family's plan (`veomni.placement`)
// and the parallel recipe:
//   tp:column / tp:vocab  dim 0 on tp      tp:row      dim 1 on tp
//   ep:experts            dim 0 on ep      replicated  -
// then FSDP: parameters additionally split over the axes whose ranks hold
// different tokens of a replica (dp_shard, sp, and ep for non-experts), on
// the first dimension that divides (ZeRO-3); HSDP's dp_replicate keeps
// replicas. Text batch inputs [B, S]: B on (dp_replicate, dp_shard), S on
// sp (Ulysses); encoder inputs packed across the batch (veomni.pack_dim)
// over all of those axes that divide the pack, so each rank runs the
// encoders on its share; with experts split on ep, the ep ranks take
// different batches too, as in VeOmni. Optimizer states
// (veomni-optimizer) take their parameter's sharding. Batch dimensions get
// priority p0 and parameters p1, so that in propagation the data-parallel axes
// go to the batch and a parameter's FSDP split is undone (all-gathered) before
// use. Everything else follows by propagation (veomni-propagate-sharding).
//
//===----------------------------------------------------------------------===//

#include "dialects/Dist/DistOps.h"
#include "dialects/VeOmni/VeOmniOps.h"
#include "passes/FuncAttrs.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"

namespace mlir::veomni {
#define GEN_PASS_DEF_APPLYRECIPE
#include "passes/Passes.h.inc"
} // namespace mlir::veomni

using namespace mlir;
using namespace mlir::veomni;

SmallVector<SmallVector<StringRef>>
mlir::veomni::parameterSplit(ArrayRef<int64_t> shape, StringRef placement,
                             function_ref<int64_t(StringRef)> size,
                             bool expertParallel) {
  SmallVector<SmallVector<StringRef>> dims(shape.size());
  int64_t rank = shape.size();
  if ((placement == "tp:column" || placement == "tp:vocab") && rank >= 1)
    dims[0].push_back("tp");
  else if (placement == "tp:row" && rank >= 2)
    dims[1].push_back("tp");
  else if (placement == "ep:experts" && rank >= 1)
    dims[0].push_back("ep");
  // ZeRO-3: split once more over every axis whose ranks hold different
  // tokens of one replica: dp_shard, sp (Ulysses ranks) and, for
  // parameters other than the experts, ep, as VeOmni does; on the first
  // dimension the whole group divides, else the largest leading part of it
  // that does. Stacked experts keep ep alone on their expert dimension, at
  // the batch's priority, so that the experts win ep where tokens meet them.
  bool experts = placement == "ep:experts";
  SmallVector<StringRef> group;
  for (StringRef a : {"dp_shard", "sp", "ep"})
    if (size(a) > 1 && !(a == "ep" && (experts || !expertParallel)))
      group.push_back(a);
  for (size_t n = group.size(); n > 0; --n) {
    int64_t split = 1;
    for (StringRef a : ArrayRef<StringRef>(group).take_front(n))
      split *= size(a);
    for (int64_t d = experts ? 1 : 0; d < rank; ++d) {
      int64_t have = 1;
      for (StringRef a : dims[d])
        have *= size(a);
      if (shape[d] % (have * split) == 0) {
        dims[d].append(group.begin(), group.begin() + n);
        return dims;
      }
    }
  }
  return dims;
}

namespace {

struct ApplyRecipePass : veomni::impl::ApplyRecipeBase<ApplyRecipePass> {
  using ApplyRecipeBase::ApplyRecipeBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    MLIRContext *ctx = &getContext();
    std::pair<const char *, int64_t> sizes[] = {{"dp_replicate", dpReplicate},
                                                {"dp_shard", dpShard},
                                                {"tp", tp},
                                                {"sp", sp},
                                                {"ep", ep},
                                                {"pp", pp}};
    llvm::StringMap<int64_t> size;
    SmallVector<dist::MeshAxisAttr> axes;
    for (auto [name, n] : sizes) {
      if (n < 1) {
        module.emitError("veomni-apply-recipe: mesh axis ")
            << name << " must be >= 1, got " << n;
        return signalPassFailure();
      }
      size[name] = n;
      axes.push_back(dist::MeshAxisAttr::get(ctx, name, n));
    }
    OpBuilder b(module.getBodyRegion());
    b.setInsertionPointToStart(module.getBody());
    dist::MeshOp::create(b, module.getLoc(), "mesh",
                         dist::MeshAttr::get(ctx, axes));
    auto meshRef = FlatSymbolRefAttr::get(ctx, "mesh");
    // Experts split on ep: some parameter is placed on the experts.
    bool expertParallel = false;
    if (ep > 1)
      module.walk([&](func::FuncOp func) {
        for (unsigned i = 0; i < func.getNumArguments(); ++i)
          if (auto p = func.getArgAttrOfType<StringAttr>(
                  i, VeOmniDialect::kPlacementAttrName))
            expertParallel |= p.getValue() == "ep:experts";
      });

    for (auto func : module.getOps<func::FuncOp>()) {
      llvm::StringMap<dist::ShardingAttr> byParam;
      DenseMap<unsigned, dist::ShardingAttr> chosen; // set all at once
      for (BlockArgument arg : func.getArguments()) {
        auto type = dyn_cast<RankedTensorType>(arg.getType());
        if (!type)
          continue;
        unsigned i = arg.getArgNumber();
        SmallVector<SmallVector<StringRef>> dims(type.getRank());
        auto placement = func.getArgAttrOfType<StringAttr>(
            i, VeOmniDialect::kPlacementAttrName);
        auto input =
            func.getArgAttrOfType<StringAttr>(i, VeOmniDialect::kInputAttrName);
        if (placement) {
          for (auto [d, axes] : llvm::enumerate(parameterSplit(
                   type.getShape(), placement.getValue(),
                   [&](StringRef a) { return size.lookup(a); },
                   expertParallel)))
            dims[d] = axes;
        } else if (auto tokenDims = func.getArgAttrOfType<DenseI64ArrayAttr>(
                       i, VeOmniDialect::kTokenDimsAttrName)) {
          // [B, S] batches, or [3, B, S] multimodal positions, as the
          // importer declared.
          int64_t batchDim = tokenDims[0];
          dims[batchDim] = {"dp_replicate", "dp_shard"};
          if (expertParallel)
            dims[batchDim].push_back("ep");
          dims[batchDim + 1].push_back("sp");
        } else if (auto packDim = func.getArgAttrOfType<IntegerAttr>(
                       i, VeOmniDialect::kPackDimAttrName)) {
          // Encoder inputs (patches, mel frames, their positions and
          // segments) are packed across the batch: the ranks that hold
          // different tokens split the pack, so each runs the encoders on
          // its share (attention moves the split onto the heads, as
          // Ulysses does, or gathers where they do not divide), and the
          // embeddings are gathered where the tokens take them. Equal
          // shares of patches are equal shares of the work. As many of the
          // axes as divide the pack.
          SmallVector<StringRef> group;
          for (StringRef a : {"dp_replicate", "dp_shard", "ep", "sp"})
            if (size[a] > 1 && (a != "ep" || expertParallel))
              group.push_back(a);
          int64_t d = packDim.getInt();
          for (size_t n = group.size(); n > 0; --n) {
            int64_t split = 1;
            for (StringRef a : ArrayRef<StringRef>(group).take_front(n))
              split *= size[a];
            if (type.getDimSize(d) % split == 0) {
              dims[d].append(group.begin(), group.begin() + n);
              break;
            }
          }
        }
        auto state =
            func.getArgAttrOfType<StringAttr>(i, VeOmniDialect::kStateAttrName);
        dist::ShardingAttr sharding;
        if (state) {
          // An optimizer state takes its parameter's layout.
          auto of = func.getArgAttrOfType<StringAttr>(
              i, VeOmniDialect::kStateOfAttrName);
          sharding = of ? byParam.lookup(of.getValue()) : nullptr;
          if (!sharding)
            continue;
        } else {
          std::optional<int64_t> priority;
          if (placement)
            priority = 1;
          else if (input)
            priority = 0;
          SmallVector<dist::DimShardingAttr> perDim;
          for (auto [d, axes] : llvm::enumerate(dims)) {
            SmallVector<StringAttr> names;
            for (StringRef a : axes)
              if (size[a] > 1)
                names.push_back(StringAttr::get(ctx, a));
            std::optional<int64_t> p = priority;
            if (placement && placement.getValue() == "ep:experts" && d == 0)
              p = 0;
            perDim.push_back(
                dist::DimShardingAttr::get(ctx, names, /*isClosed=*/true,
                                           names.empty() ? std::nullopt : p));
          }
          sharding = dist::ShardingAttr::get(ctx, meshRef, perDim, {});
        }
        std::string error;
        auto emit = [&]() {
          return func.emitError()
                 << "argument #" << i << " ("
                 << (placement ? "parameter" : "input") << "): ";
        };
        if (failed(dist::verifyShardingFor(
                type, sharding, dist::lookupMesh(func, meshRef), emit)))
          return signalPassFailure();
        chosen[i] = sharding;
        if (auto name = func.getArgAttrOfType<StringAttr>(
                i, VeOmniDialect::kParamAttrName))
          byParam[name.getValue()] = sharding;
      }
      editArgAttrs(func, [&](unsigned i, NamedAttrList &attrs) {
        if (dist::ShardingAttr s = chosen.lookup(i))
          attrs.set("dist.sharding", s);
      });
    }
  }
};

} // namespace
