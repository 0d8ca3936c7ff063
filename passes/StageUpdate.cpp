//===- StageUpdate.cpp - each pipeline stage's update ---------------------===//
//
// A pipeline stage's backwards give one gradient per parameter and
// micro-batch; the runtime sums them. Per stage s this pass adds:
//
//  - @stage<s>_update(params..., grads...) -> (0, grad_0 / M, ...): the
//    mean gradients, each marked `veomni.grad`, which veomni-optimizer
//    (external-norm) turns into the stage's AdamW step, clipped by the norm
//    over all stages that the runtime hands it;
//  - @stage<s>_grad_norm(grads...) -> sum (grad / M)^2 over the parameters
//    whose first stage is s: a parameter several stages read (an LM head
//    tied to the embedding) has its summed gradient on each of them, and
//    counts once.
//
// A choice bias marked veomni.router_bias (veomni-pipeline router-loads)
// "gradient" is its routers' token counts over the step: passed on whole
// (not a mean: the balancing rule compares counts) and left out of the
// norm.
//
// The gradient arguments are f32 (role `gradient`, named grad.<param>,
// `veomni.state_of` their parameter) and take their parameter's layout,
// so that with FSDP a stage's update and norm run on its own shards.
//
//===----------------------------------------------------------------------===//

#include "dialects/Dist/DistOps.h"
#include "dialects/VeOmni/VeOmniOps.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"

#include <map>

namespace mlir::veomni {
#define GEN_PASS_DEF_STAGEUPDATE
#include "passes/Passes.h.inc"
} // namespace mlir::veomni

using namespace mlir;
using namespace mlir::veomni;

namespace {

struct Param {
  std::string name;
  RankedTensorType type;
  DictionaryAttr attrs;
  int64_t firstStage;
  bool routerBias() const {
    return attrs && attrs.get(VeOmniDialect::kRouterBiasAttrName);
  }
  /// Frozen (train.freeze, a LoRA base weight): no gradient.
  bool frozen() const {
    return attrs && attrs.get(VeOmniDialect::kFrozenAttrName);
  }
  RankedTensorType f32() const {
    return RankedTensorType::get(type.getShape(),
                                 Float32Type::get(type.getContext()));
  }
};

struct StageUpdatePass : veomni::impl::StageUpdateBase<StageUpdatePass> {
  using StageUpdateBase::StageUpdateBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    MLIRContext *ctx = &getContext();
    if (microBatches < 1) {
      module.emitError("veomni-stage-update: micro-batches must be >= 1");
      return signalPassFailure();
    }
    // The forward chunks, in chunk order: their parameters, by stage.
    std::map<int64_t, func::FuncOp> chunks;
    for (auto func : module.getOps<func::FuncOp>()) {
      auto role =
          func->getAttrOfType<FunctionRoleAttr>(VeOmniDialect::kRoleAttrName);
      auto chunk =
          func->getAttrOfType<IntegerAttr>(dist::DistDialect::kChunkAttrName);
      if (role && role.getValue() == FunctionRole::ForwardChunk && chunk)
        chunks[chunk.getInt()] = func;
    }
    if (chunks.empty()) {
      module.emitError("veomni-stage-update: no pipeline chunks (run "
                       "veomni-pipeline first)");
      return signalPassFailure();
    }
    std::map<int64_t, std::vector<Param>> byStage;
    std::map<std::string, int64_t> firstStage;
    for (auto &[g, func] : chunks) {
      int64_t s =
          func->getAttrOfType<IntegerAttr>(dist::DistDialect::kStageAttrName)
              .getInt();
      std::vector<Param> &list = byStage[s];
      for (unsigned i = 0; i < func.getNumArguments(); ++i) {
        auto name =
            func.getArgAttrOfType<StringAttr>(i, VeOmniDialect::kParamAttrName);
        if (!name)
          continue;
        std::string n = name.getValue().str();
        auto [it, fresh] = firstStage.insert({n, s});
        if (!fresh)
          it->second = std::min(it->second, s);
        if (llvm::any_of(list, [&](const Param &p) { return p.name == n; }))
          continue;
        list.push_back({n, cast<RankedTensorType>(func.getArgumentTypes()[i]),
                        func.getArgAttrDict(i), 0});
      }
    }

    OpBuilder b = OpBuilder::atBlockEnd(module.getBody());
    Location loc =
        withModule(module.getLoc(), ModuleAttr::get(ctx, ModuleKind::Optimizer,
                                                    -1, /*backward=*/false));
    auto f32 = b.getF32Type();
    auto scalar = RankedTensorType::get({}, f32);
    auto splat = [&](OpBuilder &bb, double v, Type like) -> Value {
      auto t = cast<RankedTensorType>(like);
      return ConstantOp::create(bb, loc,
                                cast<ElementsAttr>(DenseElementsAttr::get(
                                    t, bb.getFloatAttr(f32, v))));
    };
    const double inv = 1.0 / double(microBatches);
    for (auto &[s, params] : byStage) {
      for (Param &p : params)
        p.firstStage = firstStage[p.name];
      // A gradient argument: f32, its parameter's layout.
      auto gradAttrs = [&](const Param &p) {
        SmallVector<NamedAttribute> list = {
            b.getNamedAttr(VeOmniDialect::kStateAttrName,
                           b.getStringAttr("grad." + p.name)),
            b.getNamedAttr(VeOmniDialect::kStateOfAttrName,
                           b.getStringAttr(p.name)),
            b.getNamedAttr(VeOmniDialect::kRoleAttrName,
                           ArgumentRoleAttr::get(ctx, ArgumentRole::Gradient))};
        if (Attribute layout =
                p.attrs.get(dist::DistDialect::kShardingAttrName))
          list.push_back(
              b.getNamedAttr(dist::DistDialect::kShardingAttrName, layout));
        return b.getDictionaryAttr(list);
      };
      auto mark = [&](func::FuncOp f, FunctionRole role) {
        f->setAttr(dist::DistDialect::kStageAttrName, b.getI64IntegerAttr(s));
        f->setAttr(VeOmniDialect::kRoleAttrName,
                   FunctionRoleAttr::get(ctx, role));
      };

      // @stage<s>_update: the mean gradients, for veomni-optimizer (every
      // parameter of the stage an argument, the trained ones' gradients
      // after them).
      {
        SmallVector<const Param *> trained;
        for (const Param &p : params)
          if (!p.frozen())
            trained.push_back(&p);
        SmallVector<Type> args, results = {scalar};
        for (const Param &p : params)
          args.push_back(p.type);
        for (const Param *p : trained)
          args.push_back(p->f32());
        for (const Param *p : trained)
          results.push_back(p->f32());
        auto f = func::FuncOp::create(b, loc,
                                      "stage" + std::to_string(s) + "_update",
                                      FunctionType::get(ctx, args, results));
        mark(f, FunctionRole::StageUpdate);
        for (auto [i, p] : llvm::enumerate(params))
          f.setArgAttrs(i, p.attrs);
        for (auto [i, p] : llvm::enumerate(trained)) {
          f.setArgAttrs(params.size() + i, gradAttrs(*p));
          f.setResultAttr(1 + i, "veomni.grad", b.getStringAttr(p->name));
        }
        Block *entry = f.addEntryBlock();
        OpBuilder fb = OpBuilder::atBlockEnd(entry);
        SmallVector<Value> out = {splat(fb, 0, scalar)};
        for (size_t i = 0; i < trained.size(); ++i) {
          Value g = entry->getArgument(params.size() + i);
          out.push_back(
              trained[i]->routerBias()
                  ? g
                  : MulOp::create(fb, loc, g, splat(fb, inv, g.getType())));
        }
        func::ReturnOp::create(fb, loc, out);
      }

      // @stage<s>_grad_norm: this stage's share of the squared norm.
      {
        SmallVector<const Param *> counted;
        for (const Param &p : params)
          if (p.firstStage == s && !p.routerBias() && !p.frozen())
            counted.push_back(&p);
        SmallVector<Type> args;
        for (const Param *p : counted)
          args.push_back(p->f32());
        auto f = func::FuncOp::create(
            b, loc, "stage" + std::to_string(s) + "_grad_norm",
            FunctionType::get(ctx, args, {scalar}));
        mark(f, FunctionRole::StageGradNorm);
        for (auto [i, p] : llvm::enumerate(counted))
          f.setArgAttrs(i, gradAttrs(*p));
        f.setResultAttr(0, "veomni.output", b.getStringAttr("grad_norm_sq"));
        f.setResultAttr(0, VeOmniDialect::kRoleAttrName,
                        ResultRoleAttr::get(ctx, ResultRole::GradNormSquared));
        Block *entry = f.addEntryBlock();
        OpBuilder fb = OpBuilder::atBlockEnd(entry);
        Value total = splat(fb, 0, scalar);
        for (BlockArgument g : entry->getArguments()) {
          auto t = cast<RankedTensorType>(g.getType());
          Value mean = MulOp::create(fb, loc, g, splat(fb, inv, t));
          Value sq = MulOp::create(fb, loc, mean, mean);
          if (t.getRank() > 0)
            sq = ReduceOp::create(fb, loc,
                                  ReduceKindAttr::get(ctx, ReduceKind::Sum), sq,
                                  fb.getDenseI64ArrayAttr(llvm::to_vector(
                                      llvm::seq<int64_t>(0, t.getRank()))),
                                  UnitAttr());
          total = AddOp::create(fb, loc, total, sq);
        }
        func::ReturnOp::create(fb, loc, total);
      }
    }
  }
};

} // namespace
