//===- Optimizer.cpp - AdamW, clipping and the schedule, in the IR --------===//
//
// Turns the differentiated step (loss, ..., one gradient per parameter)
// into a training step. New arguments: `step` (the 1-based step number, an
// f32 scalar input) and, per parameter, its AdamW moments (f32) and, for a
// parameter that is not f32, an f32 master copy. New results: the loss,
// the gradient norm before clipping, the learning rate, then the next value
// of every parameter and state, each marked `veomni.update = "<argument>"`
// so the runtime writes it back.
//
// The update is torch.optim.AdamW's, with global-norm clipping as
// torch.nn.utils.clip_grad_norm_ and a linear warmup into a cosine decay:
//   g     = grad * min(1, max_norm / (||grad|| + 1e-6))
//   m     = b1 m + (1 - b1) g            v = b2 v + (1 - b2) g^2
//   p     = p (1 - lr wd)                 (matrices only: rank >= 2)
//   p     = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//   lr(t) = min(1, t / warmup) * (min_lr + (lr - min_lr) (1 + cos(pi q)) / 2)
//           with q = clamp((t - warmup) / (total - warmup), 0, 1)
//
// With router-bias-rate r > 0, the choice bias of every veomni.moe_group_topk
// (DeepSeek-V3's e_score_correction_bias, which no gradient reaches) follows
// the auxiliary-loss-free rule instead of AdamW:
//   load_e = tokens routed to e in the step (all micro-batches, all ranks)
//   bias_e = bias_e + r * sign(mean(load) - load_e)
//
//===----------------------------------------------------------------------===//

#include "dialects/VeOmni/VeOmniOps.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"

#include <cmath>

namespace mlir::veomni {
#define GEN_PASS_DEF_OPTIMIZER
#include "passes/Passes.h.inc"
} // namespace mlir::veomni

using namespace mlir;
using namespace mlir::veomni;

namespace {

/// Scalar and elementwise arithmetic on tensors, for the update rules.
struct Arith {
  OpBuilder &b;
  Location loc;

  /// A fresh splat at each use: shared constants would stay alive across
  /// the whole update and raise the planned peak (measured: +19% on the
  /// tiny omni model) to save a few fill kernels.
  Value splat(double v, Type like) {
    auto t = cast<RankedTensorType>(like);
    return ConstantOp::create(b, loc,
                              cast<ElementsAttr>(DenseElementsAttr::get(
                                  t, b.getFloatAttr(t.getElementType(), v))));
  }
  Value add(Value x, Value y) { return AddOp::create(b, loc, x, y); }
  Value sub(Value x, Value y) { return SubOp::create(b, loc, x, y); }
  Value mul(Value x, Value y) { return MulOp::create(b, loc, x, y); }
  Value div(Value x, Value y) { return DivOp::create(b, loc, x, y); }
  /// x * y, but 0 where y is 0 whatever x is (NaN * 0 is NaN).
  Value mulNoNan(Value x, Value y) { return MulNoNanOp::create(b, loc, x, y); }
  Value isFinite(Value x) { return IsFiniteOp::create(b, loc, x); }
  Value sqrt(Value x) { return SqrtOp::create(b, loc, x); }
  Value exp(Value x) { return ExpOp::create(b, loc, x); }
  Value cos(Value x) { return CosOp::create(b, loc, x); }
  Value scale(Value x, double s) { return mul(x, splat(s, x.getType())); }
  Value plus(Value x, double s) { return add(x, splat(s, x.getType())); }
  /// |x| = sqrt(x^2): the optimizer needs no derivative of it.
  Value abs(Value x) { return sqrt(mul(x, x)); }
  Value max(Value x, Value y) { // (x + y + |x - y|) / 2
    return scale(add(add(x, y), abs(sub(x, y))), 0.5);
  }
  Value min(Value x, Value y) { // (x + y - |x - y|) / 2
    return scale(sub(add(x, y), abs(sub(x, y))), 0.5);
  }
  /// A scalar broadcast to `like`'s shape.
  Value spread(Value scalar, Type like) {
    auto t = cast<RankedTensorType>(like);
    if (t.getRank() == 0)
      return scalar;
    return BroadcastOp::create(b, loc, t, scalar, b.getDenseI64ArrayAttr({}));
  }
  Value toF32(Value x) {
    auto t = cast<RankedTensorType>(x.getType());
    if (t.getElementType().isF32())
      return x;
    return CastOp::create(b, loc, t.clone(b.getF32Type()), x);
  }
  /// sum(x^2) over every element, as an f32 scalar.
  Value sumOfSquares(Value x) {
    Value f = toF32(x);
    Value sq = mul(f, f);
    auto t = cast<RankedTensorType>(sq.getType());
    if (t.getRank() == 0)
      return sq;
    SmallVector<int64_t> dims =
        llvm::to_vector(llvm::seq<int64_t>(0, t.getRank()));
    return ReduceOp::create(
        b, loc, ReduceKindAttr::get(b.getContext(), ReduceKind::Sum), sq,
        b.getDenseI64ArrayAttr(dims), UnitAttr());
  }
};

} // namespace

namespace {
struct OptimizerPass : veomni::impl::OptimizerBase<OptimizerPass> {
  using OptimizerBase::OptimizerBase;

  void runOnOperation() override {
    auto func = getOperation().lookupSymbol<func::FuncOp>(funcName);
    if (!func) {
      getOperation().emitError("veomni-optimizer: no function @") << funcName;
      return signalPassFailure();
    }
    if (failed(build(func)))
      signalPassFailure();
  }

  /// A choice bias's auxiliary-loss-free step: bias + rate * sign(mean
  /// load - load), the loads summed over the micro-batches in an f32
  /// accumulator; no moments, no weight decay, an f32 master for a
  /// low-precision bias.
  template <typename AddArgument, typename Blend>
  void updateRouterBias(Arith &a, BlockArgument arg, Value load,
                        AddArgument &addArgument, Blend &blend, Value apply,
                        SmallVectorImpl<Value> &results,
                        SmallVectorImpl<std::string> &updates) {
    OpBuilder &b = a.b;
    func::FuncOp func = cast<func::FuncOp>(arg.getOwner()->getParentOp());
    auto name = func.getArgAttrOfType<StringAttr>(
        arg.getArgNumber(), VeOmniDialect::kParamAttrName);
    std::string n = name.getValue().str();
    auto pt = cast<RankedTensorType>(arg.getType());
    auto ft = pt.clone(b.getF32Type());
    auto scalarType = RankedTensorType::get({}, b.getF32Type());
    Value sum = load;
    Value acc;
    if (apply) {
      acc = addArgument(ft, VeOmniDialect::kStateAttrName,
                        "optimizer.router_load." + n,
                        ArgumentRole::GradAccumulator, name);
      sum = a.add(acc, load);
    }
    Value master = arg;
    if (!pt.getElementType().isF32()) {
      master = addArgument(ft, VeOmniDialect::kStateAttrName,
                           "optimizer.master." + n, ArgumentRole::MasterWeight,
                           name, /*initFrom=*/name);
    }
    // sign(x) as clamp(x * 4E, -1, 1): a load is a whole number and the
    // mean a multiple of 1 / E, so a non-zero offset is at least 1 / E.
    const int64_t experts = pt.getNumElements();
    Value total = ReduceOp::create(
        b, a.loc, ReduceKindAttr::get(b.getContext(), ReduceKind::Sum), sum,
        b.getDenseI64ArrayAttr({0}), UnitAttr());
    Value mean = a.spread(a.scale(total, 1.0 / double(experts)), ft);
    Value offset = a.scale(a.sub(mean, sum), 4.0 * double(experts));
    Value sign = ClampOp::create(b, a.loc, ft, offset, b.getF64FloatAttr(-1),
                                 b.getF64FloatAttr(1));
    Value p2 = blend(a.add(master, a.scale(sign, routerBiasRate)), master);
    if (master != Value(arg)) {
      results.push_back(p2);
      updates.push_back("optimizer.master." + n);
      results.push_back(CastOp::create(b, a.loc, pt, p2));
    } else {
      results.push_back(p2);
    }
    updates.push_back(n);
    if (apply) {
      Value keep = a.spread(a.sub(a.splat(1, scalarType), apply), ft);
      results.push_back(a.mulNoNan(sum, keep));
      updates.push_back("optimizer.router_load." + n);
    }
  }

  LogicalResult build(func::FuncOp func) {
    Block &block = func.getBody().front();
    auto ret = cast<func::ReturnOp>(block.getTerminator());
    // The gradients, by the parameter they belong to.
    llvm::StringMap<Value> grads;
    for (unsigned i = 0; i < func.getNumResults(); ++i)
      if (auto name = func.getResultAttrOfType<StringAttr>(i, "veomni.grad"))
        grads[name.getValue()] = ret.getOperand(i);
    // (A pipeline stage whose parameters are all frozen updates none.)
    if (grads.empty() && !externalNorm)
      return func.emitError("veomni-optimizer: @")
             << func.getName()
             << " returns no gradients; run veomni-autodiff first";
    if (!(warmupSteps >= 0 && totalSteps > warmupSteps))
      return func.emitError("veomni-optimizer: total-steps (")
             << totalSteps << ") must exceed warmup-steps (" << warmupSteps
             << ")";

    OpBuilder b(ret);
    // The update is a module of its own (clipping, AdamW, the schedule).
    Location loc = withModule(
        ret.getLoc(), ModuleAttr::get(func.getContext(), ModuleKind::Optimizer,
                                      -1, /*backward=*/false));
    Arith a{b, loc};
    Type f32 = b.getF32Type();
    auto scalarType = RankedTensorType::get({}, f32);
    MLIRContext *ctx = func.getContext();

    // New arguments go at the end; their names are attributes. They join
    // the block at once and the function's type and attribute list at the
    // end (FuncOp::insertArgument rebuilds the whole list per call, memory
    // quadratic in arguments); meanwhile argAttr reads either kind.
    // `of`: the parameter a state belongs to; `initFrom`: the parameter a
    // master starts as.
    const unsigned originalArgs = func.getNumArguments();
    SmallVector<NamedAttrList> newArgAttrs;
    auto argAttr = [&](unsigned i, StringRef key) -> Attribute {
      return i < originalArgs ? func.getArgAttr(i, key)
                              : newArgAttrs[i - originalArgs].get(key);
    };
    auto argName = [&](unsigned i, StringRef key) {
      return dyn_cast_or_null<StringAttr>(argAttr(i, key));
    };
    auto addArgument = [&](Type type, StringRef kind, StringRef name,
                           ArgumentRole role, StringAttr of = {},
                           StringAttr initFrom = {}) -> Value {
      NamedAttrList list;
      list.append(kind, b.getStringAttr(name));
      list.append(VeOmniDialect::kRoleAttrName,
                  ArgumentRoleAttr::get(ctx, role));
      if (of)
        list.append(VeOmniDialect::kStateOfAttrName, of);
      if (initFrom)
        list.append(VeOmniDialect::kInitFromAttrName, initFrom);
      newArgAttrs.push_back(std::move(list));
      return block.addArgument(type, loc);
    };
    Value step = addArgument(scalarType, VeOmniDialect::kInputAttrName, "step",
                             ArgumentRole::Step);

    // The learning rate at this step.
    Value warm = warmupSteps > 0 ? a.min(a.scale(step, 1.0 / warmupSteps),
                                         a.splat(1, scalarType))
                                 : a.splat(1, scalarType);
    Value q = a.scale(a.plus(step, -double(warmupSteps)),
                      1.0 / double(totalSteps - warmupSteps));
    q = a.min(a.max(q, a.splat(0, scalarType)), a.splat(1, scalarType));
    Value cosine = a.scale(a.plus(a.cos(a.scale(q, M_PI)), 1.0), 0.5);
    double minLr = lr * minLrRatio;
    Value lrNow = a.mul(warm, a.plus(a.scale(cosine, lr - minLr), minLr));

    // Auxiliary-loss-free balancing: each group router's load, by the
    // parameter that is its choice bias (counted from the routing the
    // forward made; partitioning sums it over the ranks' tokens).
    llvm::StringMap<Value> loads;
    if (routerBiasRate > 0) {
      SmallVector<MoEGroupTopKOp> routers;
      func.walk([&](MoEGroupTopKOp op) { routers.push_back(op); });
      if (routers.empty() && !externalNorm)
        return func.emitError(
            "train.router_bias_update_rate is set, but the model has no "
            "group-limited router with a choice bias (DeepSeek-V3's "
            "e_score_correction_bias)");
      // A pipeline stage's update: the loads arrive as its choice biases'
      // gradients (veomni-pipeline router-loads, veomni-stage-update).
      if (routers.empty())
        for (BlockArgument arg : block.getArguments())
          if (argAttr(arg.getArgNumber(), VeOmniDialect::kRouterBiasAttrName))
            if (auto name =
                    argName(arg.getArgNumber(), VeOmniDialect::kParamAttrName);
                name && grads.count(name.getValue()))
              loads[name.getValue()] = a.toF32(grads[name.getValue()]);
      for (MoEGroupTopKOp op : routers) {
        auto arg = dyn_cast<BlockArgument>(op.getBias());
        StringAttr name =
            arg && arg.getOwner() == &block
                ? argName(arg.getArgNumber(), VeOmniDialect::kParamAttrName)
                : StringAttr();
        if (!name)
          return op.emitOpError("veomni-optimizer: router-bias-rate needs the "
                                "choice bias to be a parameter");
        auto idx = cast<RankedTensorType>(op.getIndices().getType());
        auto biasType = cast<RankedTensorType>(op.getBias().getType());
        int64_t n = idx.getNumElements();
        auto countsType = biasType.clone(f32);
        Value flat = ReshapeOp::create(
            b, loc, RankedTensorType::get({n}, idx.getElementType()),
            op.getIndices());
        Value counts = ScatterAddOp::create(
            b, loc, countsType, a.splat(0, countsType), flat,
            a.splat(1, RankedTensorType::get({n}, f32)),
            b.getI64IntegerAttr(0));
        Value &load = loads[name.getValue()];
        load = load ? a.add(load, counts) : counts;
      }
    }

    // Gradient accumulation: each micro-step adds its gradient into an f32
    // accumulator; the update uses the mean, and only counts on the last
    // micro-step (`apply` = 1), when the accumulators restart from zero.
    // Blending with apply in {0, 1} is exact: 1 * x + 0 * y == x.
    Value apply;
    llvm::StringMap<std::pair<Value, Value>> accumulators; // acc, acc + g
    if (accumulationSteps > 1) {
      apply = addArgument(scalarType, VeOmniDialect::kInputAttrName, "apply",
                          ArgumentRole::Apply);
      for (BlockArgument arg : llvm::to_vector(block.getArguments())) {
        auto name = argName(arg.getArgNumber(), VeOmniDialect::kParamAttrName);
        // (A choice bias under the balancing rule sums loads instead.)
        if (!name || !grads.count(name.getValue()) ||
            loads.count(name.getValue()))
          continue;
        auto ft = cast<RankedTensorType>(arg.getType()).clone(f32);
        Value acc = addArgument(ft, VeOmniDialect::kStateAttrName,
                                "optimizer.grad_accum." + name.getValue().str(),
                                ArgumentRole::GradAccumulator, name);
        Value sum = a.add(acc, a.toF32(grads[name.getValue()]));
        accumulators[name.getValue()] = {acc, sum};
        grads[name.getValue()] = a.scale(sum, 1.0 / accumulationSteps);
      }
    }
    // Global-norm clipping: over this function's gradients, or (a pipeline
    // stage's update) over every stage's, summed by the runtime.
    Value total = a.splat(0, scalarType);
    if (externalNorm)
      total = addArgument(scalarType, VeOmniDialect::kInputAttrName,
                          "grad_norm_sq", ArgumentRole::GradNormSquared);
    else
      for (auto &entry : grads)
        total = a.add(total, a.sumOfSquares(entry.second));
    Value norm = a.sqrt(total);
    Value factor = a.splat(1, scalarType);
    if (maxGradNorm > 0)
      factor = a.min(
          factor, a.div(a.splat(maxGradNorm, scalarType), a.plus(norm, 1e-6)));

    // A step whose loss or gradient norm is not finite changes nothing: every
    // update is blended with the old value by `on` (1: the update; 0: the old
    // value, exactly, whatever NaN the update holds), and the runtime stops
    // or skips (train.on_nonfinite). With accumulation, only the last
    // micro-step (`apply` = 1) updates.
    Value on = a.isFinite(norm);
    if (!externalNorm)
      on = a.mul(on, a.isFinite(a.toF32(ret.getOperand(0))));
    if (apply)
      on = a.mul(on, apply);
    Value off = a.sub(a.splat(1, scalarType), on);
    auto blend = [&](Value updated, Value old) {
      Type t = updated.getType();
      return a.add(a.mulNoNan(updated, a.spread(on, t)),
                   a.mulNoNan(old, a.spread(off, t)));
    };

    // Bias corrections: 1 - b^t = 1 - exp(t ln b).
    Value c1 =
        a.sub(a.splat(1, scalarType), a.exp(a.scale(step, std::log(beta1))));
    Value c2 =
        a.sub(a.splat(1, scalarType), a.exp(a.scale(step, std::log(beta2))));
    Value stepSize = a.div(lrNow, c1);
    Value c2sqrt = a.sqrt(c2);

    // The loss leads, unless the norm comes from outside (a stage's update
    // computes no loss).
    SmallVector<Value> results = {norm, lrNow};
    if (!externalNorm)
      results.insert(results.begin(), ret.getOperand(0));
    const unsigned lead = results.size();
    SmallVector<std::string> updates(lead, "");
    unsigned numParams = 0;
    for (BlockArgument arg : llvm::to_vector(block.getArguments())) {
      auto name = argName(arg.getArgNumber(), VeOmniDialect::kParamAttrName);
      // A frozen parameter keeps its value and has no state.
      if (!name || argAttr(arg.getArgNumber(), VeOmniDialect::kFrozenAttrName))
        continue;
      ++numParams;
      Value g = grads.lookup(name.getValue());
      if (!g)
        return func.emitError("veomni-optimizer: no gradient for parameter '")
               << name.getValue() << "'";
      auto pt = cast<RankedTensorType>(arg.getType());
      auto ft = pt.clone(f32);
      std::string n = name.getValue().str();
      if (Value load = loads.lookup(n)) {
        updateRouterBias(a, arg, load, addArgument, blend, apply, results,
                         updates);
        continue;
      }
      Value m = addArgument(ft, VeOmniDialect::kStateAttrName,
                            "optimizer.exp_avg." + n,
                            ArgumentRole::OptimizerState, name);
      Value v = addArgument(ft, VeOmniDialect::kStateAttrName,
                            "optimizer.exp_avg_sq." + n,
                            ArgumentRole::OptimizerState, name);
      Value master = arg;
      if (!pt.getElementType().isF32()) {
        master = addArgument(ft, VeOmniDialect::kStateAttrName,
                             "optimizer.master." + n,
                             ArgumentRole::MasterWeight, name,
                             /*initFrom=*/name);
      }

      Value gf = a.mul(a.toF32(g), a.spread(factor, ft));
      Value m2 = a.add(a.scale(m, beta1), a.scale(gf, 1 - beta1));
      Value v2 = a.add(a.scale(v, beta2), a.scale(a.mul(gf, gf), 1 - beta2));
      Value p = master;
      if (weightDecay > 0 && pt.getRank() >= 2)
        p = a.mul(p, a.spread(a.sub(a.splat(1, scalarType),
                                    a.scale(lrNow, weightDecay)),
                              ft));
      Value denom = a.plus(a.div(a.sqrt(v2), a.spread(c2sqrt, ft)), epsilon);
      Value p2 = a.sub(p, a.mul(a.spread(stepSize, ft), a.div(m2, denom)));

      results.append({blend(m2, m), blend(v2, v)});
      updates.push_back("optimizer.exp_avg." + n);
      updates.push_back("optimizer.exp_avg_sq." + n);
      p2 = blend(p2, master);
      if (master != Value(arg)) {
        results.push_back(p2);
        updates.push_back("optimizer.master." + n);
        results.push_back(CastOp::create(b, loc, pt, p2));
      } else {
        results.push_back(p2);
      }
      updates.push_back(n);
      if (apply) {
        auto [acc, sum] = accumulators.lookup(n);
        Value keep = a.spread(a.sub(a.splat(1, scalarType), apply), ft);
        results.push_back(a.mulNoNan(sum, keep));
        updates.push_back("optimizer.grad_accum." + n);
      }
    }
    if (numParams == 0 && !externalNorm)
      return func.emitError("veomni-optimizer: no parameters to train");

    func::ReturnOp::create(b, loc, results);
    ret.erase();
    SmallVector<DictionaryAttr> argDicts;
    for (unsigned i = 0; i < originalArgs; ++i) {
      DictionaryAttr d = func.getArgAttrDict(i);
      argDicts.push_back(d ? d : DictionaryAttr::get(ctx));
    }
    for (NamedAttrList &list : newArgAttrs)
      argDicts.push_back(list.getDictionary(ctx));
    func.setFunctionType(FunctionType::get(ctx, block.getArgumentTypes(),
                                           ValueRange(results).getTypes()));
    func.setAllArgAttrs(argDicts);
    // Every result's attributes at once (one by one is memory quadratic).
    SmallVector<NamedAttrList> attrs(results.size());
    auto role = [&](unsigned i, ResultRole r) {
      attrs[i].set(VeOmniDialect::kRoleAttrName, ResultRoleAttr::get(ctx, r));
    };
    for (auto [i, target] : llvm::enumerate(updates))
      if (!target.empty()) {
        attrs[i].set("veomni.update", b.getStringAttr(target));
        role(i, ResultRole::Update);
      }
    if (!externalNorm) {
      attrs[0].set("veomni.output", b.getStringAttr("loss"));
      role(0, ResultRole::Loss);
    }
    attrs[lead - 2].set("veomni.output", b.getStringAttr("grad_norm"));
    attrs[lead - 1].set("veomni.output", b.getStringAttr("lr"));
    role(lead - 2, ResultRole::GradNorm);
    role(lead - 1, ResultRole::LearningRate);
    SmallVector<DictionaryAttr> dicts;
    for (NamedAttrList &list : attrs)
      dicts.push_back(list.getDictionary(ctx));
    func.setAllResultAttrs(dicts);
    // A pipeline stage's update keeps its role.
    if (!externalNorm)
      func->setAttr(VeOmniDialect::kRoleAttrName,
                    FunctionRoleAttr::get(ctx, FunctionRole::TrainStep));
    return success();
  }
};
} // namespace
