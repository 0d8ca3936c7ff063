//===- Pipeline.cpp - pipeline stages and their schedule ------------------===//
//
// Splits the forward function into pipeline chunks and schedules them:
//
//  - Decoder layer i is the ops whose #veomni.module (set by the
//    importer) is a module of decoder layer i; what comes before the first
//    layer (embeddings, vision and audio towers) joins the first chunk,
//    what comes after (final norm, LM head, loss) the last.
//  - Chunks are contiguous runs of layers balanced by FLOPs: the split
//    that minimises the most expensive chunk (dynamic programming), the
//    embedding's and the LM head's cost counted in their chunks.
//  - Chunk g becomes @forward_chunk<g> on stage g % stages (interleaved
//    schedules give a stage several chunks). It receives with `dist.recv`
//    what earlier chunks computed and later ones use, computes its ops, and
//    sends on with `dist.send` what later chunks need; its arguments are
//    the parameters and batch inputs it reads; the last chunk returns the
//    loss.
//  - The module gets `dist.pipeline`: the schedule (1F1B, interleaved 1F1B
//    or ZB-H1 with the backward split into input and weight parts) as one
//    action list per stage, with the bubble and the activations each stage
//    holds, from simulating it (the chunks being balanced, each costs the
//    same; the backward twice the forward, split evenly for ZB-H1).
//
//===----------------------------------------------------------------------===//

#include "dialects/Dist/DistOps.h"
#include "dialects/VeOmni/VeOmniOps.h"
#include "passes/Autodiff.h"
#include "passes/Communication.h"
#include "passes/Passes.h"
#include "passes/PipelineSchedule.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "llvm/ADT/SetVector.h"

#include <cmath>
#include <limits>
#include <map>
#include <set>

namespace mlir::veomni {
#define GEN_PASS_DEF_PIPELINE
#include "passes/Passes.h.inc"
} // namespace mlir::veomni

using namespace mlir;
using namespace mlir::veomni;

namespace {

/// The decoder layer an op belongs to, or -1.
int64_t decoderLayer(Location loc) {
  ModuleAttr m = getModule(loc);
  return m && m.isDecoderLayer() ? m.getLayer() : -1;
}

/// Splits `costs` (one per layer; `first` and `last` added to the first and
/// last chunk) into `chunks` contiguous runs minimising the largest run;
/// returns each run's first layer.
std::vector<int64_t> balance(const std::vector<double> &costs, double first,
                             double last, int64_t chunks) {
  int64_t n = costs.size();
  std::vector<double> prefix(n + 1, 0);
  for (int64_t i = 0; i < n; ++i)
    prefix[i + 1] = prefix[i] + costs[i];
  auto cost = [&](int64_t from, int64_t to, int64_t chunk) { // [from, to)
    return prefix[to] - prefix[from] + (chunk == 0 ? first : 0) +
           (chunk == chunks - 1 ? last : 0);
  };
  const double inf = std::numeric_limits<double>::infinity();
  // best[c][i]: the largest run splitting layers [0, i) into c + 1 runs.
  std::vector<std::vector<double>> best(chunks,
                                        std::vector<double>(n + 1, inf));
  std::vector<std::vector<int64_t>> from(chunks,
                                         std::vector<int64_t>(n + 1, 0));
  for (int64_t i = 1; i <= n; ++i)
    best[0][i] = cost(0, i, 0);
  for (int64_t c = 1; c < chunks; ++c)
    for (int64_t i = c + 1; i <= n; ++i)
      for (int64_t j = c; j < i; ++j) {
        double worst = std::max(best[c - 1][j], cost(j, i, c));
        if (worst < best[c][i]) {
          best[c][i] = worst;
          from[c][i] = j;
        }
      }
  std::vector<int64_t> starts(chunks);
  for (int64_t c = chunks - 1, i = n; c >= 0; --c) {
    starts[c] = c == 0 ? 0 : from[c][i];
    i = starts[c];
  }
  return starts;
}

/// Values of `body` that `roots` need, as ops in program order.
llvm::SetVector<Operation *> sliceOf(Block &body, ArrayRef<Operation *> roots) {
  llvm::DenseSet<Operation *> needed;
  SmallVector<Operation *> work(roots.begin(), roots.end());
  while (!work.empty()) {
    Operation *op = work.pop_back_val();
    if (!needed.insert(op).second)
      continue;
    for (Value v : op->getOperands())
      if (Operation *def = v.getDefiningOp())
        work.push_back(def);
  }
  llvm::SetVector<Operation *> ordered;
  for (Operation &op : body)
    if (needed.contains(&op))
      ordered.insert(&op);
  return ordered;
}

/// The backward of chunk g as @<func>_chunk<g>_backward: it recomputes the
/// chunk's forward from the activations the stage received and kept (its
/// arguments after the parameters and inputs), receives the cotangents of
/// what the chunk sent (the last chunk seeds its loss with one), and sends
/// back those of what it received; it returns every parameter's gradient.
/// With `split`, the function is cut in two for zero-bubble schedules:
/// _backward_input holds what the cotangents sent back need (and every
/// receive), _backward_weight the rest, taking what it needs of the first
/// as arguments.
LogicalResult buildBackward(OpBuilder &b, func::FuncOp func, int64_t g,
                            int64_t chunks,
                            const llvm::SetVector<BlockArgument> &args,
                            ArrayRef<llvm::SetVector<Value>> crossing,
                            llvm::DenseMap<Operation *, int64_t> &chunkOf,
                            FlatSymbolRefAttr meshRef, int64_t stages,
                            bool split, bool routerLoads) {
  MLIRContext *ctx = b.getContext();
  Location loc = func.getLoc();
  Block &body = func.getBody().front();
  ArrayRef<Value> received =
      g > 0 ? crossing[g - 1].getArrayRef() : ArrayRef<Value>();
  SmallVector<Type> argTypes;
  for (BlockArgument arg : args)
    argTypes.push_back(arg.getType());
  for (Value v : received)
    argTypes.push_back(v.getType());
  // (A frozen parameter gets no gradient.)
  SmallVector<BlockArgument> params;
  for (BlockArgument arg : args)
    if (func.getArgAttr(arg.getArgNumber(), VeOmniDialect::kParamAttrName) &&
        !func.getArgAttr(arg.getArgNumber(), VeOmniDialect::kFrozenAttrName))
      params.push_back(arg);
  // (A choice bias's counts stay f32 whatever the model's type: exact.)
  SmallVector<Type> gradTypes;
  for (BlockArgument p : params)
    gradTypes.push_back(
        routerLoads && func.getArgAttr(p.getArgNumber(),
                                       VeOmniDialect::kRouterBiasAttrName)
            ? cast<RankedTensorType>(p.getType()).clone(b.getF32Type())
            : p.getType());

  std::string name = (func.getName() + "_chunk" + Twine(g) + "_backward").str();
  auto backward = func::FuncOp::create(
      b, loc, name, FunctionType::get(ctx, argTypes, gradTypes));
  backward->setAttr(dist::DistDialect::kStageAttrName,
                    b.getI64IntegerAttr(g % stages));
  backward->setAttr(dist::DistDialect::kChunkAttrName, b.getI64IntegerAttr(g));
  backward->setAttr(VeOmniDialect::kRoleAttrName,
                    FunctionRoleAttr::get(ctx, FunctionRole::BackwardChunk));
  // The activations the stage kept start at this argument.
  backward->setAttr(dist::DistDialect::kKeptFromAttrName,
                    b.getI64IntegerAttr(args.size()));
  for (auto [i, arg] : llvm::enumerate(args))
    backward.setArgAttrs(i, func.getArgAttrDict(arg.getArgNumber()));
  for (size_t k = 0; k < received.size(); ++k) {
    backward.setArgAttr(args.size() + k, VeOmniDialect::kInputAttrName,
                        b.getStringAttr("activation." + Twine(k)));
    backward.setArgAttr(args.size() + k, VeOmniDialect::kRoleAttrName,
                        ArgumentRoleAttr::get(ctx, ArgumentRole::Activation));
  }
  for (auto [i, p] : llvm::enumerate(params)) {
    backward.setResultAttr(
        i, "veomni.grad",
        func.getArgAttr(p.getArgNumber(), VeOmniDialect::kParamAttrName));
    backward.setResultAttr(i, VeOmniDialect::kRoleAttrName,
                           ResultRoleAttr::get(ctx, ResultRole::Gradient));
  }
  Block *entry = backward.addEntryBlock();
  OpBuilder bb = OpBuilder::atBlockEnd(entry);
  IRMapping map;
  for (auto [i, arg] : llvm::enumerate(args))
    map.map(arg, entry->getArgument(i));
  for (auto [i, v] : llvm::enumerate(received))
    map.map(v, entry->getArgument(args.size() + i));
  // What depends on a trained parameter, in the chunk's copy: its
  // trained parameters, the activations that carry one from an earlier
  // chunk, and what they reach (activity over the whole step).
  llvm::DenseSet<Value> stepActive = activeValues(func, body);
  llvm::DenseSet<Value> active;
  for (BlockArgument p : params)
    active.insert(map.lookup(p));
  for (Value v : received)
    if (stepActive.contains(v))
      active.insert(map.lookup(v));
  SmallVector<Operation *> forward;
  for (Operation &op : body.without_terminator())
    if (chunkOf[&op] == g) {
      Operation *copy = bb.clone(op, map);
      forward.push_back(copy);
      if (llvm::any_of(copy->getOperands(),
                       [&](Value v) { return active.contains(v); }))
        active.insert(copy->getResults().begin(), copy->getResults().end());
    }

  llvm::DenseMap<Value, Value> cotangent;
  if (g == chunks - 1) {
    Value loss = map.lookup(body.getTerminator()->getOperand(0));
    auto type = cast<RankedTensorType>(loss.getType());
    cotangent[loss] = ConstantOp::create(
        bb, loc,
        cast<ElementsAttr>(DenseElementsAttr::get(
            type, bb.getFloatAttr(type.getElementType(), 1.0))));
  } else {
    for (Value v : crossing[g])
      cotangent[map.lookup(v)] = dist::RecvOp::create(
          bb, loc, v.getType(), meshRef, bb.getStringAttr("pp"),
          bb.getI64IntegerAttr((g + 1) % stages));
  }
  if (failed(backpropagate(bb, forward, cotangent, &active)))
    return failure();
  for (Value v : received) {
    Value grad = cotangent.lookup(map.lookup(v));
    if (!grad &&
        isa<FloatType>(cast<RankedTensorType>(v.getType()).getElementType()))
      grad = zerosLike(bb, loc, v.getType());
    if (grad)
      dist::SendOp::create(bb, loc, grad, meshRef, bb.getStringAttr("pp"),
                           bb.getI64IntegerAttr((g - 1) % stages));
  }
  // A choice bias under the auxiliary-loss-free rule "returns" its routers'
  // token counts in this micro-batch instead of a gradient (none reaches
  // it): the runtime sums them over micro-batches as gradients, and
  // partitioning over the data-parallel ranks.
  llvm::DenseMap<Value, Value> loads;
  if (routerLoads)
    for (Operation *op : forward)
      if (auto router = dyn_cast<MoEGroupTopKOp>(op)) {
        auto biasType = cast<RankedTensorType>(router.getBias().getType());
        auto idx = cast<RankedTensorType>(router.getIndices().getType());
        auto f32 = bb.getF32Type();
        int64_t n = idx.getNumElements();
        auto ones = RankedTensorType::get({n}, f32);
        Value flat = ReshapeOp::create(
            bb, loc, RankedTensorType::get({n}, idx.getElementType()),
            router.getIndices());
        Value counts = ScatterAddOp::create(
            bb, loc, biasType.clone(f32),
            zerosLike(bb, loc, biasType.clone(f32)), flat,
            ConstantOp::create(bb, loc,
                               cast<ElementsAttr>(DenseElementsAttr::get(
                                   ones, bb.getFloatAttr(f32, 1.0)))),
            bb.getI64IntegerAttr(0));
        Value &load = loads[router.getBias()];
        load = load ? AddOp::create(bb, loc, load, counts).getResult() : counts;
      }
  SmallVector<Value> grads;
  for (BlockArgument p : params) {
    Value grad = loads.lookup(map.lookup(p));
    if (!grad)
      grad = cotangent.lookup(map.lookup(p));
    grads.push_back(grad ? grad : zerosLike(bb, loc, p.getType()));
  }
  auto ret = func::ReturnOp::create(bb, loc, grads);
  // The recomputed forward's values no cotangent needs (the loss itself,
  // say) go.
  for (Operation &op : llvm::make_early_inc_range(llvm::reverse(*entry)))
    if (isOpTriviallyDead(&op))
      op.erase();
  if (!split)
    return success();

  // B: the receives and what the sends need; W: the rest of the gradients.
  SmallVector<Operation *> roots;
  for (Operation &op : *entry)
    if (isa<dist::SendOp, dist::RecvOp>(op))
      roots.push_back(&op);
  llvm::SetVector<Operation *> input = sliceOf(*entry, roots);
  llvm::SetVector<Operation *> weight;
  for (Operation *op : sliceOf(*entry, {ret.getOperation()}))
    if (!input.contains(op) && op != ret)
      weight.insert(op);
  llvm::SetVector<Value> stash; // made by B, read by W
  SmallVector<Operation *> readers(weight.begin(), weight.end());
  readers.push_back(ret);
  for (Operation *op : readers)
    for (Value v : op->getOperands())
      if (Operation *def = v.getDefiningOp(); def && input.contains(def))
        stash.insert(v);

  auto makeHalf = [&](StringRef suffix, FunctionRole role,
                      ArrayRef<Type> extraArgs, ArrayRef<Type> results) {
    SmallVector<Type> types(argTypes);
    types.append(extraArgs.begin(), extraArgs.end());
    auto half = func::FuncOp::create(b, loc, (name + suffix).str(),
                                     FunctionType::get(ctx, types, results));
    half->setAttr(dist::DistDialect::kStageAttrName,
                  b.getI64IntegerAttr(g % stages));
    half->setAttr(VeOmniDialect::kRoleAttrName,
                  FunctionRoleAttr::get(ctx, role));
    half->setAttr(dist::DistDialect::kChunkAttrName, b.getI64IntegerAttr(g));
    half->setAttr(dist::DistDialect::kKeptFromAttrName,
                  b.getI64IntegerAttr(args.size()));
    for (unsigned i = 0; i < argTypes.size(); ++i)
      half.setArgAttrs(i, backward.getArgAttrDict(i));
    half.addEntryBlock();
    return half;
  };
  SmallVector<Type> stashTypes;
  for (Value v : stash)
    stashTypes.push_back(v.getType());
  func::FuncOp inputHalf =
      makeHalf("_input", FunctionRole::BackwardInput, {}, stashTypes);
  func::FuncOp weightHalf =
      makeHalf("_weight", FunctionRole::BackwardWeight, stashTypes, gradTypes);
  // What the input half hands over starts at this argument.
  weightHalf->setAttr(dist::DistDialect::kStashFromAttrName,
                      b.getI64IntegerAttr(argTypes.size()));
  for (unsigned i = 0; i < grads.size(); ++i)
    weightHalf.setResultAttrs(i, backward.getResultAttrDict(i));
  // What B hands W, by its position.
  for (size_t k = 0; k < stash.size(); ++k) {
    StringAttr name = b.getStringAttr("stash." + Twine(k));
    inputHalf.setResultAttr(k, "veomni.output", name);
    inputHalf.setResultAttr(k, VeOmniDialect::kRoleAttrName,
                            ResultRoleAttr::get(ctx, ResultRole::Stash));
    weightHalf.setArgAttr(argTypes.size() + k, VeOmniDialect::kInputAttrName,
                          name);
    weightHalf.setArgAttr(argTypes.size() + k, VeOmniDialect::kRoleAttrName,
                          ArgumentRoleAttr::get(ctx, ArgumentRole::Stash));
  }
  {
    IRMapping m;
    m.map(entry->getArguments(), inputHalf.getArguments());
    OpBuilder hb = OpBuilder::atBlockEnd(&inputHalf.getBody().front());
    for (Operation *op : input)
      hb.clone(*op, m);
    SmallVector<Value> out;
    for (Value v : stash)
      out.push_back(m.lookup(v));
    func::ReturnOp::create(hb, loc, out);
  }
  {
    IRMapping m;
    Block &wEntry = weightHalf.getBody().front();
    m.map(entry->getArguments(),
          wEntry.getArguments().take_front(argTypes.size()));
    for (auto [i, v] : llvm::enumerate(stash))
      m.map(v, wEntry.getArgument(argTypes.size() + i));
    OpBuilder hb = OpBuilder::atBlockEnd(&wEntry);
    for (Operation *op : weight)
      hb.clone(*op, m);
    SmallVector<Value> out;
    for (Value v : ret.getOperands())
      out.push_back(m.lookupOrDefault(v));
    func::ReturnOp::create(hb, loc, out);
  }
  backward.erase();
  return success();
}

struct PipelinePass : veomni::impl::PipelineBase<PipelinePass> {
  using PipelineBase::PipelineBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    auto fail = [&](const Twine &message) {
      module.emitError("veomni-pipeline: ") << message;
      signalPassFailure();
    };
    pipeline::Kind kind;
    if (schedule == "1f1b")
      kind = pipeline::Kind::OneFOneB;
    else if (schedule == "interleaved")
      kind = pipeline::Kind::Interleaved;
    else if (schedule == "zb-h1")
      kind = pipeline::Kind::ZeroBubbleH1;
    else
      return fail("schedule must be 1f1b, interleaved or zb-h1, got '" +
                  schedule + "'");
    auto meshes = llvm::to_vector(module.getOps<dist::MeshOp>());
    dist::MeshAxisAttr ppAxis =
        meshes.size() == 1 ? meshes.front().getMesh().getAxis("pp") : nullptr;
    if (!ppAxis || ppAxis.getSize() != stages)
      return fail("needs one dist.mesh with a \"pp\" axis of size " +
                  Twine(stages) + " (veomni-apply-recipe declares it)");
    auto func = module.lookupSymbol<func::FuncOp>(funcName);
    if (!func)
      return fail("no function @" + funcName);

    // Choice biases under the auxiliary-loss-free rule: marked for the
    // stage updates (their chunks' and updates' arguments copy the mark).
    if (routerLoads) {
      bool any = false;
      func.walk([&](MoEGroupTopKOp router) {
        if (auto arg = dyn_cast<BlockArgument>(router.getBias()))
          if (func.getArgAttr(arg.getArgNumber(),
                              VeOmniDialect::kParamAttrName)) {
            func.setArgAttr(arg.getArgNumber(),
                            VeOmniDialect::kRouterBiasAttrName,
                            UnitAttr::get(func.getContext()));
            any = true;
          }
      });
      if (!any)
        return fail("train.router_bias_update_rate is set, but the model has "
                    "no group-limited router with a choice bias (DeepSeek-V3's "
                    "e_score_correction_bias)");
    }
    // Layers, their costs, and the ops before and after them.
    Block &body = func.getBody().front();
    llvm::DenseMap<Operation *, int64_t> layerOf;
    int64_t layers = 0;
    for (Operation &op : body.without_terminator()) {
      int64_t l = decoderLayer(op.getLoc());
      layerOf[&op] = l;
      layers = std::max(layers, l + 1);
    }
    int64_t chunks = stages * chunksPerStage;
    if (layers < chunks)
      return fail("cannot split " + Twine(layers) + " decoder layers into " +
                  Twine(chunks) + " chunks (" + Twine(stages) + " stages x " +
                  Twine(chunksPerStage) + ")");
    std::vector<double> cost(layers, 0);
    double before = 0, after = 0;
    bool seenLayer = false;
    for (Operation &op : body.without_terminator()) {
      double flops = sharding::opFlops(&op);
      int64_t l = layerOf[&op];
      if (l >= 0) {
        cost[l] += flops;
        seenLayer = true;
      } else {
        (seenLayer ? after : before) += flops;
        layerOf[&op] = seenLayer ? layers : -1; // last or first chunk
      }
    }
    std::vector<int64_t> starts = balance(cost, before, after, chunks);
    auto chunkOfLayer = [&](int64_t l) {
      if (l < 0)
        return int64_t(0);
      if (l >= layers)
        return chunks - 1;
      return int64_t(std::upper_bound(starts.begin(), starts.end(), l) -
                     starts.begin()) -
             1;
    };
    llvm::DenseMap<Operation *, int64_t> chunkOf;
    for (Operation &op : body.without_terminator()) {
      int64_t c = chunkOfLayer(layerOf[&op]);
      for (Value v : op.getOperands())
        if (Operation *def = v.getDefiningOp())
          if (chunkOf.lookup(def) > c) {
            op.emitError("veomni-pipeline: uses a value computed in a later "
                         "chunk (")
                << chunkOf.lookup(def) << " > " << c << ")";
            return signalPassFailure();
          }
      chunkOf[&op] = c;
    }

    // What crosses each cut: values of chunks <= g used by chunks > g.
    std::vector<llvm::SetVector<Value>> crossing(chunks);
    for (Operation &op : body) {
      int64_t user = isa<func::ReturnOp>(op) ? chunks - 1 : chunkOf[&op];
      for (Value v : op.getOperands()) {
        Operation *def = v.getDefiningOp();
        if (!def)
          continue;
        for (int64_t g = chunkOf[def]; g < user; ++g)
          crossing[g].insert(v);
      }
    }

    // One function per chunk.
    OpBuilder b(func);
    auto meshRef = FlatSymbolRefAttr::get(meshes.front().getSymNameAttr());
    MLIRContext *ctx = &getContext();
    std::vector<double> chunkCost(chunks, 0);
    for (int64_t g = 0; g < chunks; ++g) {
      llvm::SetVector<BlockArgument> args;
      for (Operation &op : body)
        if (isa<func::ReturnOp>(op) ? g == chunks - 1 : chunkOf[&op] == g)
          for (Value v : op.getOperands())
            if (auto arg = dyn_cast<BlockArgument>(v))
              args.insert(arg);
      // A parameter nothing reads (an unused token embedding) still trains
      // (its weight decay) and is saved: the first chunk takes it.
      if (g == 0)
        for (BlockArgument arg : body.getArguments())
          if (arg.use_empty() && func.getArgAttr(arg.getArgNumber(),
                                                 VeOmniDialect::kParamAttrName))
            args.insert(arg);
      SmallVector<Type> argTypes, resultTypes;
      for (BlockArgument arg : args)
        argTypes.push_back(arg.getType());
      auto ret = cast<func::ReturnOp>(body.getTerminator());
      if (g == chunks - 1)
        resultTypes = llvm::to_vector(ret.getOperandTypes());
      auto chunk = func::FuncOp::create(
          b, func.getLoc(), (funcName + "_chunk" + Twine(g)).str(),
          FunctionType::get(ctx, argTypes, resultTypes));
      chunk->setAttr(dist::DistDialect::kStageAttrName,
                     b.getI64IntegerAttr(g % stages));
      chunk->setAttr(VeOmniDialect::kRoleAttrName,
                     FunctionRoleAttr::get(ctx, FunctionRole::ForwardChunk));
      chunk->setAttr(dist::DistDialect::kChunkAttrName, b.getI64IntegerAttr(g));
      for (auto [i, arg] : llvm::enumerate(args))
        chunk.setArgAttrs(i, func.getArgAttrDict(arg.getArgNumber()));
      if (g == chunks - 1)
        for (unsigned i = 0; i < ret.getNumOperands(); ++i)
          chunk.setResultAttrs(i, func.getResultAttrDict(i));
      Block *entry = chunk.addEntryBlock();
      OpBuilder cb = OpBuilder::atBlockEnd(entry);
      IRMapping map;
      for (auto [i, arg] : llvm::enumerate(args))
        map.map(arg, entry->getArgument(i));
      if (g > 0)
        for (Value v : crossing[g - 1])
          map.map(v,
                  dist::RecvOp::create(cb, func.getLoc(), v.getType(), meshRef,
                                       cb.getStringAttr("pp"),
                                       cb.getI64IntegerAttr((g - 1) % stages))
                      .getResult());
      for (Operation &op : body.without_terminator())
        if (chunkOf[&op] == g) {
          cb.clone(op, map);
          chunkCost[g] += sharding::opFlops(&op);
        }
      if (g < chunks - 1) {
        for (Value v : crossing[g])
          dist::SendOp::create(cb, func.getLoc(), map.lookup(v), meshRef,
                               cb.getStringAttr("pp"),
                               cb.getI64IntegerAttr((g + 1) % stages));
        func::ReturnOp::create(cb, func.getLoc());
      } else {
        SmallVector<Value> results;
        for (Value v : ret.getOperands())
          results.push_back(map.lookupOrDefault(v));
        func::ReturnOp::create(cb, func.getLoc(), results);
      }
      if (failed(buildBackward(
              b, func, g, chunks, args, crossing, chunkOf, meshRef, stages,
              kind == pipeline::Kind::ZeroBubbleH1, routerLoads)))
        return signalPassFailure();
    }

    // The schedule, simulated with the chunks' costs.
    absl::StatusOr<pipeline::Schedule> plan =
        pipeline::makeSchedule(kind, stages, microBatches, chunksPerStage);
    if (!plan.ok())
      return fail(std::string(plan.status().message()));
    // The chunks are balanced: one cost for every chunk, the backward
    // twice the forward.
    absl::StatusOr<pipeline::Simulation> sim =
        pipeline::simulate(*plan, pipeline::Costs{});
    if (!sim.ok())
      return fail(std::string(sim.status().message()));
    // Parameters read on several stages (an LM head tied to the
    // embedding): each stage's backward gives part of the gradient; the
    // parts are summed across those stages after the last backward.
    std::map<std::string, std::set<int64_t>> stagesOf;
    for (auto chunk : module.getOps<func::FuncOp>())
      if (auto stage = chunk->getAttrOfType<IntegerAttr>(
              dist::DistDialect::kStageAttrName))
        for (unsigned i = 0; i < chunk.getNumArguments(); ++i)
          if (auto name = chunk.getArgAttrOfType<StringAttr>(
                  i, VeOmniDialect::kParamAttrName);
              name && !chunk.getArgAttr(i, VeOmniDialect::kFrozenAttrName))
            stagesOf[name.getValue().str()].insert(stage.getInt());
    SmallVector<Attribute> tied;
    std::vector<std::vector<std::string>> sums(stages);
    for (auto &[name, where] : stagesOf) {
      if (where.size() < 2)
        continue;
      tied.push_back(b.getStringAttr(name));
      std::string list;
      for (int64_t st : where)
        list += (list.empty() ? "" : ", ") + std::to_string(st);
      for (int64_t st : where)
        sums[st].push_back("sum_grad(" + name + ", stages " + list + ")");
    }
    SmallVector<Attribute> perStage;
    for (auto [stage, actions] : llvm::enumerate(plan->perStage)) {
      SmallVector<Attribute> list;
      for (const pipeline::Action &a : actions)
        list.push_back(StringAttr::get(ctx, pipeline::toString(a)));
      for (const std::string &sum : sums[stage])
        list.push_back(StringAttr::get(ctx, sum));
      perStage.push_back(ArrayAttr::get(ctx, list));
    }
    SmallVector<Attribute> peaks;
    for (int peak : sim->peakActivations)
      peaks.push_back(b.getI64IntegerAttr(peak));
    SmallVector<Attribute> firstLayers, flops;
    for (int64_t s : starts)
      firstLayers.push_back(b.getI64IntegerAttr(s));
    for (double f : chunkCost)
      flops.push_back(b.getF64FloatAttr(f));
    module->setAttr(
        dist::DistDialect::kPipelineAttrName,
        b.getDictionaryAttr({
            b.getNamedAttr("schedule", b.getStringAttr(schedule)),
            b.getNamedAttr("stages", b.getI64IntegerAttr(stages)),
            b.getNamedAttr("micro_batches", b.getI64IntegerAttr(microBatches)),
            b.getNamedAttr("chunks_per_stage",
                           b.getI64IntegerAttr(chunksPerStage)),
            b.getNamedAttr("first_layers", b.getArrayAttr(firstLayers)),
            b.getNamedAttr("chunk_flops", b.getArrayAttr(flops)),
            b.getNamedAttr("bubble", b.getF64FloatAttr(
                                         std::round(sim->bubble * 1e6) / 1e6)),
            b.getNamedAttr("peak_activations", b.getArrayAttr(peaks)),
            b.getNamedAttr("actions", b.getArrayAttr(perStage)),
            b.getNamedAttr("tied_params", b.getArrayAttr(tied)),
        }));
    func.erase();
  }
};

} // namespace
