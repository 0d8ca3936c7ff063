//===- Planner.cpp - what a plan costs, and the search for the best -------===//

#include "compiler/Planner.h"

#include "compiler/Compile.h"
#include "dialects/Dist/DistOps.h"
#include "dialects/VeOmni/VeOmniOps.h"
#include "frontends/Importer.h"
#include "passes/PipelineSchedule.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <set>
#include <tuple>

using namespace mlir;
using namespace mlir::veomni;

std::vector<std::pair<std::string, int64_t>>
mlir::veomni::meshAxesOf(const ParallelSection &p) {
  return {{"dp_replicate", p.dpReplicate},
          {"dp_shard", p.dpShard},
          {"tp", p.tp},
          {"sp", p.sp},
          {"ep", p.ep},
          {"pp", p.pp}};
}

sharding::LinkModel mlir::veomni::linkModelOf(const Recipe &r) {
  sharding::LinkModel link;
  link.intraBandwidth = r.cluster.intraNodeGBps * 1e9;
  link.interBandwidth = r.cluster.interNodeGBps * 1e9;
  link.intraLatency = r.cluster.intraNodeLatencyUs * 1e-6;
  link.interLatency = r.cluster.interNodeLatencyUs * 1e-6;
  sharding::placeAxes(link, meshAxesOf(r.parallel), r.cluster.devicesPerNode);
  return link;
}

CompileOptions mlir::veomni::trainingOptionsOf(const Recipe &r) {
  CompileOptions co;
  co.train = r.train;
  co.accumulationSteps = r.data.accumulationSteps();
  co.remat = r.train.remat;
  co.fusion = r.train.fusion == "on";
  co.fusedLoss = r.train.fusedLoss == "on";
  co.lossChunk = r.train.lossChunk;
  co.parallel = r.parallel;
  return co;
}

ImportOptions mlir::veomni::importOptionsOf(const Recipe &r) {
  return ImportOptions{r.model, r.data};
}

double mlir::veomni::sustainedFlops(const Recipe &r) {
  double peak =
      r.model.dtype == "f32" ? r.cluster.peakTflopsF32 : r.cluster.peakTflops;
  return peak * 1e12 * r.cluster.mfu;
}

FailureOr<StepFigures>
mlir::veomni::measureStep(ModuleOp module, const Recipe &r,
                          const sharding::LinkModel &link,
                          function_ref<LogicalResult(ModuleOp)> onPartitioned) {
  MLIRContext *context = module.getContext();
  {
    PassManager pm(context);
    addShardingPasses(pm, r.parallel);
    if (failed(pm.run(module)))
      return failure();
  }
  sharding::Mesh mesh((*module.getOps<dist::MeshOp>().begin()).getMesh());
  func::FuncOp func = *module.getOps<func::FuncOp>().begin();

  // Per-rank bytes of parameters (and their gradients) and optimizer state.
  StepFigures f;
  for (BlockArgument arg : func.getArguments()) {
    unsigned i = arg.getArgNumber();
    bool param = func.getArgAttr(i, VeOmniDialect::kParamAttrName) != nullptr;
    bool state = func.getArgAttr(i, VeOmniDialect::kStateAttrName) != nullptr;
    if (!param && !state)
      continue;
    auto type = cast<RankedTensorType>(arg.getType());
    auto sharding =
        func.getArgAttrOfType<dist::ShardingAttr>(i, "dist.sharding");
    auto local =
        sharding::localType(type, sharding::Layout::fromAttr(sharding), mesh);
    double bytes =
        double(local.getNumElements()) * type.getElementTypeBitWidth() / 8;
    if (state) {
      f.optimizer += bytes;
      continue;
    }
    f.params += bytes;
    if (func.getArgAttr(i, VeOmniDialect::kAdapterAttrName)) {
      f.adapterBytes += bytes;
      f.adapterCount += double(type.getNumElements());
    }
    if (func.getArgAttr(i, VeOmniDialect::kFrozenAttrName)) {
      f.frozenBytes += bytes;
      f.frozenCount += double(type.getNumElements());
      continue;
    }
    // f32 parameters are their own masters; the step updates them in place.
    f.grads += bytes;
  }
  FailureOr<sharding::StepTraffic> traffic =
      sharding::analyzeStep(func, mesh, link);
  if (failed(traffic))
    return failure();

  // The partitioned program and its memory plan (activations per rank).
  PassManager pm(context);
  pm.addPass(createPartition());
  PrefetchOptions prefetch;
  prefetch.distance = r.parallel.prefetch;
  pm.addPass(createPrefetch(prefetch));
  if (failed(pm.run(module)))
    return failure();
  if (onPartitioned && failed(onPartitioned(module)))
    return failure();
  // The fusions training compiles with: they change what memory holds, and
  // what is sent (a fused LM head gathers its weight once). The traffic is
  // that of the collectives of this program, the one every rank runs; the
  // FLOPs are the step's, which fusion leaves.
  PassManager fuse(context);
  addFusionPasses(fuse, trainingOptionsOf(r));
  if (failed(fuse.run(module)))
    return failure();
  func = *module.getOps<func::FuncOp>().begin();
  f.traffic = sharding::countCollectives(func, mesh, link);
  f.traffic.flops = traffic->flops;
  PassManager lower(context);
  lower.addPass(createLowerToVrt());
  lower.addPass(createPlanMemory());
  if (failed(lower.run(module)))
    return failure();
  func = *module.getOps<func::FuncOp>().begin();
  f.activations =
      func->getAttrOfType<IntegerAttr>("vrt.activation_bytes").getInt();
  return f;
}

StepTime mlir::veomni::timeOf(const sharding::StepTraffic &traffic,
                              const Recipe &r) {
  StepTime t;
  t.compute = traffic.flops / sustainedFlops(r);
  double beside = 0, inLine = 0;
  for (auto &[group, kinds] : traffic.byGroup)
    for (auto &[kind, k] : kinds)
      (llvm::StringRef(group).contains("dp_") ? beside : inLine) += k.seconds;
  t.hidden = std::min(beside, r.cluster.overlap * t.compute);
  t.exposed = inLine + beside - t.hidden;
  return t;
}

FailureOr<PipelineFigures> mlir::veomni::measurePipeline(ModuleOp module,
                                                         const Recipe &r) {
  MLIRContext &context = *module.getContext();
  int64_t micro =
      std::max<int64_t>(r.data.globalBatchSize / r.data.batchSize, 1);
  // The programs the runtime runs (compilePipeline's), before partitioning:
  // each chunk's forward and backward (ZB-H1's halves as they are), each
  // stage's update and norm.
  OwningOpRef<ModuleOp> copy(module.clone());
  {
    PassManager pm(&context);
    addPipelinePasses(pm, trainingOptionsOf(r));
    if (failed(pm.run(*copy)))
      return failure();
  }
  auto info = (*copy)->getAttrOfType<DictionaryAttr>(
      dist::DistDialect::kPipelineAttrName);

  sharding::Mesh mesh((*copy->getOps<dist::MeshOp>().begin()).getMesh());
  sharding::LinkModel link = linkModelOf(r);
  auto firstLayers = info.getAs<ArrayAttr>("first_layers");
  PipelineFigures out;
  std::vector<StageFigures> &stages = out.stages;
  stages.resize(r.parallel.pp);
  // Per stage: the parameters counted, the chunks whose kept inputs were.
  std::vector<llvm::StringSet<>> seen(r.parallel.pp);
  std::vector<std::set<int64_t>> keptChunks(r.parallel.pp);
  auto localBytes = [&](func::FuncOp func, unsigned i) {
    auto type = cast<RankedTensorType>(func.getArgument(i).getType());
    auto attr = func.getArgAttrOfType<dist::ShardingAttr>(i, "dist.sharding");
    auto local =
        sharding::localType(type, sharding::Layout::fromAttr(attr), mesh);
    return double(local.getNumElements()) * type.getElementTypeBitWidth() / 8;
  };
  for (auto func : copy->getOps<func::FuncOp>()) {
    auto chunk =
        func->getAttrOfType<IntegerAttr>(dist::DistDialect::kChunkAttrName);
    if (!chunk)
      continue; // a stage's update and norm
    int64_t s =
        func->getAttrOfType<IntegerAttr>(dist::DistDialect::kStageAttrName)
            .getInt();
    int64_t g = chunk.getInt();
    StageFigures &f = stages[s];
    for (unsigned i = 0; i < func.getNumArguments(); ++i) {
      auto name =
          func.getArgAttrOfType<StringAttr>(i, VeOmniDialect::kParamAttrName);
      if (!name || !seen[s].insert(name.getValue()).second)
        continue;
      double bytes = localBytes(func, i);
      auto type = cast<RankedTensorType>(func.getArgument(i).getType());
      f.params += bytes;
      f.optimizer += bytes / (type.getElementTypeBitWidth() / 8) *
                     (type.getElementType().isF32() ? 8 : 12);
    }
    if (auto keptFrom = func->getAttrOfType<IntegerAttr>(
            dist::DistDialect::kKeptFromAttrName))
      if (keptChunks[s].insert(g).second)
        for (unsigned i = keptFrom.getInt(); i < func.getNumArguments(); ++i)
          if (auto role = func.getArgAttrOfType<ArgumentRoleAttr>(
                  i, VeOmniDialect::kRoleAttrName);
              role && role.getValue() == ArgumentRole::Activation)
            f.kept += localBytes(func, i);
  }
  // Every program's collectives, the sends between stages, the tied
  // gradients and the step's scalars: what the runtime counts.
  FailureOr<std::vector<sharding::StageTraffic>> traffic =
      sharding::analyzePipeline(*copy, micro, link);
  if (failed(traffic))
    return failure();
  for (auto [s, t] : llvm::enumerate(*traffic)) {
    stages[s].bytes = t.bytes;
    stages[s].seconds = t.seconds;
    stages[s].flops = t.flops;
  }
  PassManager lower(&context);
  lower.addPass(createPartition());
  PrefetchOptions prefetch;
  prefetch.distance = r.parallel.prefetch;
  lower.addPass(createPrefetch(prefetch));
  lower.addPass(createLowerToVrt());
  lower.addPass(createPlanMemory());
  if (failed(lower.run(*copy)))
    return failure();
  for (auto func : copy->getOps<func::FuncOp>()) {
    int64_t s =
        func->getAttrOfType<IntegerAttr>(dist::DistDialect::kStageAttrName)
            .getInt();
    stages[s].activations = std::max(
        stages[s].activations,
        double(
            func->getAttrOfType<IntegerAttr>("vrt.activation_bytes").getInt()));
  }

  auto peaks = info.getAs<ArrayAttr>("peak_activations");
  out.bubble = info.getAs<FloatAttr>("bubble").getValueAsDouble();
  for (Attribute a : firstLayers)
    out.firstLayers.push_back(cast<IntegerAttr>(a).getInt());
  for (auto [s, f] : llvm::enumerate(stages))
    f.held = cast<IntegerAttr>(peaks[s]).getInt();
  return out;
}

double PipelineFigures::stepSeconds(const Recipe &r) const {
  double slowest = 0, flops = sustainedFlops(r);
  for (const StageFigures &f : stages)
    slowest = std::max(slowest, f.flops / flops + f.seconds);
  return slowest / std::max(1e-9, 1 - bubble);
}

std::string Candidate::meshText() const {
  const ParallelSection &p = recipe.parallel;
  std::string out;
  auto axis = [&](const char *name, int64_t n) {
    if (n > 1)
      out += (out.empty() ? "" : " ") + std::string(name) + "=" +
             std::to_string(n);
  };
  axis("dp_replicate", p.dpReplicate);
  axis("dp_shard", p.dpShard);
  axis("tp", p.tp);
  axis("sp", p.sp);
  axis("ep", p.ep);
  axis("pp", p.pp);
  if (out.empty())
    out = "one device";
  if (p.pp > 1)
    out += " (" + p.ppSchedule +
           (p.ppChunks > 1 ? " x" + std::to_string(p.ppChunks) : "") + ")";
  return out;
}

namespace {

/// Σ coefficient x figures, figure by figure: a plan's figures at one
/// depth from those at others.
StepFigures combine(const std::vector<std::pair<StepFigures, double>> &terms) {
  StepFigures f;
  for (auto &[x, k] : terms) {
    f.params += k * x.params;
    f.grads += k * x.grads;
    f.optimizer += k * x.optimizer;
    f.activations += k * x.activations;
    f.frozenBytes += k * x.frozenBytes;
    f.frozenCount += k * x.frozenCount;
    f.adapterBytes += k * x.adapterBytes;
    f.adapterCount += k * x.adapterCount;
    f.traffic.flops += k * x.traffic.flops;
    for (auto &[group, kinds] : x.traffic.byGroup)
      for (auto &[kind, t] : kinds) {
        sharding::Traffic &to = f.traffic.byGroup[group][kind];
        to.bytes += k * t.bytes;
        to.seconds += k * t.seconds;
        to.count += std::llround(k * double(t.count));
      }
  }
  return f;
}

/// How a plan's figures at the decoder's whole depth follow from a few
/// shallow builds of it. Layers differ by kind (dense or MoE, sliding or
/// full attention, with a DeepStack feature or not), and each layer adds
/// the figures of its kind: f(L) = f(B) + Σ_{j=B..L-1} Δ(kind j), where B
/// is the fewest layers the model imports with and Δ(k) = f(i+1) - f(i)
/// at the first layer i >= B of kind k. A uniform decoder takes two
/// builds, f(1) and f(2), whatever its depth.
struct DepthPlan {
  int64_t base = 1, layers = 1;
  /// kind -> its first layer at or after `base`, and how many there are.
  std::map<std::string, std::pair<int64_t, double>> kinds;

  /// depth -> the coefficient of its figures in those at `target` layers
  /// (a pipeline stage's share may be fractional).
  std::map<int64_t, double> terms(double target) const {
    std::map<int64_t, double> t;
    if (base >= layers) {
      t[layers] = 1;
      return t;
    }
    t[base] += 1;
    double scale = (target - base) / double(layers - base);
    for (auto &[kind, at] : kinds) {
      t[at.first + 1] += at.second * scale;
      t[at.first] -= at.second * scale;
    }
    return t;
  }
};

DepthPlan depthPlanOf(const ImportedModel &model) {
  DepthPlan d;
  d.layers = model.layerKinds.size();
  // Every build holds an MoE layer when the model has one: experts on ep
  // make the ep ranks take batches of their own, which changes the whole
  // program.
  d.base = std::max<int64_t>(1, model.fewestLayers);
  for (int64_t j = 0; j < d.layers; ++j)
    if (llvm::StringRef(model.layerKinds[j]).starts_with("moe")) {
      d.base = std::max(d.base, j + 1);
      break;
    }
  // Nor does the shallowest build end on a layer unlike the ones after it
  // (the last DeepStack layer changes what the final norm's backward
  // sends).
  if (d.base < d.layers &&
      model.layerKinds[d.base - 1] != model.layerKinds[d.base])
    ++d.base;
  for (int64_t j = d.base; j < d.layers; ++j) {
    auto [it, inserted] = d.kinds.try_emplace(model.layerKinds[j], j, 0.0);
    it->second.second += 1;
  }
  return d;
}

/// A parameter kind: so many parameters of one shape and placement.
struct ParamGroup {
  llvm::SmallVector<int64_t> shape;
  std::string placement;
  bool layer = false;     ///< of a decoder layer (split over pp)
  bool embedding = false; ///< gathered once (its backward is a scatter)
  bool frozen = false;
  double count = 0; ///< how many such tensors
};

/// What the closed-form estimates read off the model once.
struct ModelFacts {
  std::vector<ParamGroup> params;
  int64_t layers = 1, hidden = 0, moeLayers = 0, experts = 0, topK = 0;
  double moeWidth = 0; ///< an expert's intermediate size
  double heads = 1, kvHeads = 1;
  double dtype = 2; ///< bytes
};

ModelFacts factsOf(const ImportedModel &model, double dtype) {
  ModelFacts m;
  m.dtype = dtype;
  m.layers = std::max<int64_t>(model.numLayers, 1);
  m.experts = model.numExperts;
  m.topK = model.expertsPerToken;
  m.heads = std::max<int64_t>(model.numHeads, 1);
  m.kvHeads = std::max<int64_t>(model.numKVHeads, 1);
  for (const std::string &k : model.layerKinds)
    m.moeLayers += llvm::StringRef(k).starts_with("moe");
  ModuleOp module = model.module.get();
  auto func = *module.getOps<func::FuncOp>().begin();
  std::map<std::tuple<std::vector<int64_t>, std::string, bool, bool, bool>,
           double>
      groups;
  double expertElements = 0;
  for (unsigned i = 0; i < func.getNumArguments(); ++i) {
    auto name =
        func.getArgAttrOfType<StringAttr>(i, VeOmniDialect::kParamAttrName);
    if (!name)
      continue;
    auto type = cast<RankedTensorType>(func.getArgument(i).getType());
    auto placement =
        func.getArgAttrOfType<StringAttr>(i, VeOmniDialect::kPlacementAttrName);
    std::string p = placement ? placement.getValue().str() : "";
    llvm::StringRef n = name.getValue();
    bool encoder =
        n.contains("visual") || n.contains("vision") || n.contains("audio");
    bool layer = !encoder && n.contains("layers.");
    bool embedding = n.contains("embed_tokens");
    bool frozen = func.getArgAttr(i, VeOmniDialect::kFrozenAttrName) != nullptr;
    if (embedding && type.getRank() == 2)
      m.hidden = std::max(m.hidden, type.getDimSize(1));
    if (p == "ep:experts")
      expertElements += double(type.getNumElements());
    groups[{
        std::vector<int64_t>(type.getShape().begin(), type.getShape().end()), p,
        layer, embedding, frozen}] += 1;
  }
  for (auto &[key, count] : groups) {
    ParamGroup g;
    g.shape.assign(std::get<0>(key).begin(), std::get<0>(key).end());
    g.placement = std::get<1>(key);
    g.layer = std::get<2>(key);
    g.embedding = std::get<3>(key);
    g.frozen = std::get<4>(key);
    g.count = count;
    m.params.push_back(std::move(g));
  }
  // Gate, up and down per expert: 3 x hidden x width each.
  if (m.moeLayers > 0 && m.experts > 0 && m.hidden > 0)
    m.moeWidth = expertElements / (3.0 * m.experts * m.hidden * m.moeLayers);
  return m;
}

/// Per-rank parameter bytes and the FSDP traffic of one program run, for a
/// mesh: veomni-apply-recipe's split of every parameter.
struct MeshFacts {
  double params = 0;    ///< elements per rank (layers split over pp)
  double trainable = 0; ///< of them, with gradients and optimizer state
  double gatherSeconds = 0, scatterSeconds = 0, replicaSeconds = 0;
  double largestLayer = 0; ///< elements of one decoder layer, gathered
};

MeshFacts meshFactsOf(const ModelFacts &m, const Recipe &r,
                      const sharding::LinkModel &link) {
  const ParallelSection &p = r.parallel;
  llvm::StringMap<int64_t> size;
  for (auto &[name, n] : meshAxesOf(p))
    size[name] = n;
  bool expertParallel = p.ep > 1 && m.experts > 0;
  MeshFacts f;
  double layerElements = 0;
  auto seconds = [&](llvm::ArrayRef<llvm::StringRef> axes, double bytes,
                     sharding::Collective::Kind kind) {
    int64_t n = 1;
    bool intra = true;
    for (llvm::StringRef a : axes) {
      n *= size.lookup(a);
      intra &= link.isIntraNode(a);
    }
    if (n <= 1)
      return 0.0;
    double alpha = intra ? link.intraLatency : link.interLatency;
    double beta = 1 / (intra ? link.intraBandwidth : link.interBandwidth);
    double sent = double(n - 1) / n * bytes;
    double hops = std::ceil(std::log2(double(n)));
    if (kind == sharding::Collective::AllReduce)
      return 2 * hops * alpha + 2 * sent * beta;
    return hops * alpha + sent * beta;
  };
  for (const ParamGroup &g : m.params) {
    auto dims = parameterSplit(
        g.shape, g.placement, [&](llvm::StringRef a) { return size.lookup(a); },
        expertParallel);
    double elements = 1, fsdp = 1;
    llvm::SmallVector<llvm::StringRef> fsdpAxes;
    for (auto [d, axes] : llvm::enumerate(dims)) {
      elements *= double(g.shape[d]);
      for (llvm::StringRef a : axes) {
        elements /= double(size.lookup(a));
        bool placed =
            (a == "tp" && llvm::StringRef(g.placement).starts_with("tp:")) ||
            (a == "ep" && g.placement == "ep:experts");
        if (!placed) {
          fsdp *= size.lookup(a);
          fsdpAxes.push_back(a);
        }
      }
    }
    double share = g.layer ? 1.0 / p.pp : 1.0; // of the tensors, per stage
    double tensors = g.count * share;
    f.params += elements * tensors;
    if (!g.frozen)
      f.trainable += elements * tensors;
    if (g.layer)
      layerElements += elements * fsdp * g.count / m.layers;
    // ZeRO-3: gathered for the forward and again for the backward (the
    // embedding once), gradients reduce-scattered; HSDP's replicas
    // all-reduce the shards.
    double whole = elements * fsdp * m.dtype;
    double gathers = g.embedding ? 1 : 2;
    f.gatherSeconds +=
        tensors * gathers *
        seconds(fsdpAxes, whole, sharding::Collective::AllGather);
    if (!g.frozen) {
      f.scatterSeconds +=
          tensors *
          seconds(fsdpAxes, whole, sharding::Collective::ReduceScatter);
      f.replicaSeconds +=
          tensors * seconds({"dp_replicate"}, elements * m.dtype,
                            sharding::Collective::AllReduce);
    }
  }
  f.largestLayer = layerElements;
  return f;
}

/// Per-sequence figures of the model on one device, a layer's and the
/// rest's, for one remat policy: what the estimates scale.
struct Reference {
  double layerFlops = 0, baseFlops = 0;
  double layerActivations = 0, baseActivations = 0;
};

class Search {
public:
  Search(MLIRContext &context, const Recipe &r, const SearchOptions &options)
      : context(context), r(r), options(options) {}
  absl::StatusOr<SearchResult> run();

private:
  /// The training step of `v` with the decoder cut to `depth` layers,
  /// built once per distinct step (recomputation, batch, accumulation,
  /// sp), then cloned for every plan that shares it.
  FailureOr<OwningOpRef<ModuleOp>> stepAt(const Recipe &v, int64_t depth);
  /// `v`'s figures at the whole depth (`layers` decoder layers; a
  /// pipeline stage's share), extrapolated from two shallow builds.
  FailureOr<StepFigures> measureAt(const Recipe &v, double layers,
                                   const sharding::LinkModel &link);
  /// Measures `c` exactly (see Candidate::measured).
  bool measure(Candidate &c);
  /// Step time and memory of a pipeline plan from every stage at the
  /// whole depth (measurePipeline), in place of its stage model.
  bool measurePipelineExactly(Candidate &c);
  /// Whether `c` fits, its tokens/s and MFU per device.
  void rate(Candidate &c);
  /// The closed-form estimate of `c`.
  void estimate(Candidate &c, const MeshFacts &mesh);
  absl::StatusOr<pipeline::Simulation> simulated(const ParallelSection &p,
                                                 int64_t micro);

  MLIRContext &context;
  const Recipe &r;
  SearchOptions options;
  ImportedModel model;
  ModelFacts facts;
  DepthPlan depthPlan;
  std::map<std::string, Reference> references; // by remat
  std::map<std::tuple<std::string, int64_t, int64_t, int64_t, int64_t>,
           OwningOpRef<ModuleOp>>
      steps;
  std::map<std::tuple<std::string, int64_t, int64_t, int64_t>,
           pipeline::Simulation>
      schedules;
  std::map<std::tuple<std::vector<int64_t>, std::string, std::string>,
           StepFigures>
      measured;
  double capacity = 0;
};

FailureOr<OwningOpRef<ModuleOp>> Search::stepAt(const Recipe &v,
                                                int64_t depth) {
  auto key = std::make_tuple(v.train.remat, v.data.batchSize,
                             v.data.accumulationSteps(), v.parallel.sp, depth);
  auto it = steps.find(key);
  if (it == steps.end()) {
    ImportOptions o = importOptionsOf(v);
    o.model.numLayers = depth;
    absl::StatusOr<ImportedModel> imported =
        importHFConfig(context, v.model.config, o);
    if (!imported.ok()) {
      emitError(UnknownLoc::get(&context))
          << std::string(imported.status().message());
      return failure();
    }
    PassManager pm(&context);
    addTrainingStepPasses(pm, trainingOptionsOf(v));
    if (failed(pm.run(*imported->module)))
      return failure();
    it = steps.emplace(key, std::move(imported->module)).first;
  }
  return OwningOpRef<ModuleOp>(it->second->clone());
}

FailureOr<StepFigures> Search::measureAt(const Recipe &v, double layers,
                                         const sharding::LinkModel &link) {
  std::vector<std::pair<StepFigures, double>> parts;
  for (auto [depth, k] : depthPlan.terms(layers)) {
    if (k == 0)
      continue;
    // Measured once per plan and depth (the link model follows the plan).
    const ParallelSection &p = v.parallel;
    auto key = std::make_tuple(
        std::vector<int64_t>{p.dpReplicate, p.dpShard, p.tp, p.sp, p.ep, p.pp,
                             v.data.batchSize, v.data.accumulationSteps(),
                             depth, int64_t(link.intraAxes.size())},
        v.train.remat, llvm::join(link.intraAxes, ","));
    auto it = measured.find(key);
    if (it == measured.end()) {
      FailureOr<OwningOpRef<ModuleOp>> step = stepAt(v, depth);
      if (failed(step))
        return failure();
      FailureOr<StepFigures> f = measureStep(**step, v, link);
      if (failed(f))
        return failure();
      it = measured.emplace(key, std::move(*f)).first;
    }
    parts.push_back({it->second, k});
  }
  return combine(parts);
}

absl::StatusOr<pipeline::Simulation> Search::simulated(const ParallelSection &p,
                                                       int64_t micro) {
  auto key = std::make_tuple(p.ppSchedule, p.pp, p.ppChunks, micro);
  if (auto it = schedules.find(key); it != schedules.end())
    return it->second;
  pipeline::Kind kind = p.ppSchedule == "zb-h1" ? pipeline::Kind::ZeroBubbleH1
                        : p.ppSchedule == "interleaved"
                            ? pipeline::Kind::Interleaved
                            : pipeline::Kind::OneFOneB;
  absl::StatusOr<pipeline::Schedule> s =
      pipeline::makeSchedule(kind, p.pp, micro, p.ppChunks);
  if (!s.ok())
    return s.status();
  absl::StatusOr<pipeline::Simulation> sim =
      pipeline::simulate(*s, pipeline::Costs{});
  if (sim.ok())
    schedules[key] = *sim;
  return sim;
}

void Search::estimate(Candidate &c, const MeshFacts &mesh) {
  const Recipe &v = c.recipe;
  const ParallelSection &p = v.parallel;
  const Reference &ref = references[v.train.remat];
  double world = p.meshSize();
  bool expertParallel = p.ep > 1 && facts.experts > 0;
  double dataRanks = p.dpReplicate * p.dpShard * (expertParallel ? p.ep : 1);
  double sequences = double(v.data.batchSize) / dataRanks; // per rank
  double tokens = sequences * v.data.seqLen / p.sp;
  double stageLayers = double(facts.layers) / p.pp;
  sharding::LinkModel link = linkModelOf(v);
  auto seconds = [&](const char *axis, double bytes, double steps) {
    int64_t n = axis == llvm::StringRef("tp")   ? p.tp
                : axis == llvm::StringRef("sp") ? p.sp
                : axis == llvm::StringRef("ep") ? p.ep
                                                : p.pp;
    if (n <= 1)
      return 0.0;
    bool intra = link.isIntraNode(axis);
    return steps * (intra ? link.intraLatency : link.interLatency) +
           double(n - 1) / n * bytes /
               (intra ? link.intraBandwidth : link.interBandwidth);
  };
  double h = facts.hidden, dt = facts.dtype;
  double full = v.train.remat == "full" ? 1.5 : 1.0; // forwards again
  // Megatron TP: two all-reduces a layer forward, two backward.
  double inLine =
      stageLayers * 4 * full *
      seconds("tp", 2 * tokens * h * dt, 2 * std::ceil(std::log2(p.tp)));
  // Ulysses: q, k, v and the output moved forward and back.
  inLine +=
      stageLayers * 2 * full *
      seconds("sp",
              (2 + 2 * facts.kvHeads / facts.heads) * tokens * h * dt / p.tp,
              4.0 * (p.sp - 1));
  // Expert parallelism: rows to the experts' ranks and back, nine grouped
  // matmuls a layer (forward, input and weight gradients).
  inLine += facts.moeLayers / double(p.pp) * full *
            seconds("ep",
                    9 * (h + facts.moeWidth) * tokens * facts.topK * dt /
                        std::max<int64_t>(p.tp, 1),
                    9.0 * (p.ep - 1));
  // The stage boundary, each way.
  inLine += 2 * seconds("pp", tokens * h * dt, 1);
  double flops = sequences * dataRanks / world *
                 (ref.baseFlops + ref.layerFlops * facts.layers);
  double compute = flops / sustainedFlops(v);
  double beside = mesh.gatherSeconds * (v.train.remat == "full" ? 1.5 : 1) +
                  mesh.scatterSeconds + mesh.replicaSeconds;
  double exposed =
      inLine + beside - std::min(beside, v.cluster.overlap * compute);
  double micro = v.data.accumulationSteps();
  double perMicro = compute + exposed;
  double inFlight = 1;
  if (p.pp > 1) {
    absl::StatusOr<pipeline::Simulation> sim = simulated(p, micro);
    double bubble = sim.ok() ? sim->bubble : 0.5;
    c.estimatedSeconds = micro * perMicro / std::max(1e-3, 1 - bubble);
    if (sim.ok())
      inFlight = double(*std::max_element(sim->peakActivations.begin(),
                                          sim->peakActivations.end())) /
                 p.ppChunks;
  } else {
    c.estimatedSeconds = micro * perMicro;
  }
  // Memory: parameters, gradients, masters and moments; the activations
  // of the micro-batches in flight; a layer gathered whole, twice over
  // (the one in use and the one prefetched).
  double optimizer = dt == 4 ? 8 : 12;
  // (tp ranks hold the same tokens, and most of a layer's activations
  // whole: measured, tp barely divides them.)
  double activations =
      sequences / p.sp *
      (ref.baseActivations + ref.layerActivations * stageLayers * inFlight);
  c.estimatedBytes = mesh.params * dt + mesh.trainable * (dt + optimizer) +
                     activations + 2 * mesh.largestLayer / p.tp * dt;
}

bool Search::measure(Candidate &c) {
  const Recipe &v = c.recipe;
  const ParallelSection &p = v.parallel;
  sharding::LinkModel link = linkModelOf(v);
  double micro = v.data.accumulationSteps();
  FailureOr<StepFigures> f;
  double inFlight = 1;
  c.bubble = 0;
  if (p.pp == 1) {
    f = measureAt(v, facts.layers, link);
  } else {
    // A stage: the mesh without pp over its share of the layers (the
    // embedding and the head counted on every stage: an upper bound), the
    // activations of as many micro-batches as the schedule holds at once,
    // the sends between stages, and the schedule's bubble.
    Recipe stage = v;
    stage.parallel.pp = 1;
    stage.parallel.ppChunks = 1;
    stage.parallel.ppSchedule = "1f1b";
    stage.parallel.worldSize = stage.parallel.meshSize();
    f = measureAt(stage, double(facts.layers) / p.pp, link);
    absl::StatusOr<pipeline::Simulation> sim = simulated(p, micro);
    if (failed(f) || !sim.ok())
      return false;
    c.stageModel = true;
    c.bubble = sim->bubble;
    inFlight = double(*std::max_element(sim->peakActivations.begin(),
                                        sim->peakActivations.end())) /
               p.ppChunks;
    bool expertParallel = p.ep > 1 && facts.experts > 0;
    double tokens =
        double(v.data.batchSize) * v.data.seqLen /
        (p.dpReplicate * p.dpShard * (expertParallel ? p.ep : 1) * p.sp);
    double bytes = tokens * facts.hidden * facts.dtype;
    bool intra = link.isIntraNode("pp");
    sharding::Traffic &send = f->traffic.byGroup["pp"]["send"];
    send.count += 2 * p.ppChunks;
    send.bytes += 2 * p.ppChunks * bytes;
    send.seconds +=
        2 * p.ppChunks *
        ((intra ? link.intraLatency : link.interLatency) +
         bytes / (intra ? link.intraBandwidth : link.interBandwidth));
  }
  if (failed(f))
    return false;
  c.measured = true;
  c.figures = *f;
  StepTime t = timeOf(f->traffic, v);
  c.stepSeconds = micro * t.total() / std::max(1e-3, 1 - c.bubble);
  // In flight beside the micro-batch being computed: what a micro-batch
  // keeps for its backward; all of its activations unless full remat
  // keeps only each layer's input.
  double kept = f->activations;
  if (p.pp > 1 && v.train.remat == "full") {
    bool expertParallel = p.ep > 1 && facts.experts > 0;
    double tokens =
        double(v.data.batchSize) * v.data.seqLen /
        (p.dpReplicate * p.dpShard * (expertParallel ? p.ep : 1) * p.sp);
    kept = tokens * facts.hidden * facts.dtype * facts.layers / p.pp;
  }
  c.bytes = f->params + f->grads + f->optimizer + f->activations +
            kept * std::max(0.0, inFlight - 1);
  rate(c);
  double longest = -1;
  for (auto &[group, kinds] : f->traffic.byGroup)
    for (auto &[kind, k] : kinds)
      if (k.seconds > longest) {
        longest = k.seconds;
        c.dominant = group + " " + kind;
      }
  return true;
}

void Search::rate(Candidate &c) {
  const Recipe &v = c.recipe;
  c.fits = c.bytes <= capacity;
  double world = v.parallel.meshSize();
  double tokens = double(v.data.globalBatchSize) * v.data.seqLen;
  c.tokensPerSecond = tokens / c.stepSeconds / world;
  const Reference &none = references["none"];
  double modelFlops = double(v.data.globalBatchSize) *
                      (none.baseFlops + none.layerFlops * facts.layers);
  double peak = (v.model.dtype == "f32" ? v.cluster.peakTflopsF32
                                        : v.cluster.peakTflops) *
                1e12;
  c.mfu = modelFlops / world / c.stepSeconds / peak;
}

bool Search::measurePipelineExactly(Candidate &c) {
  absl::StatusOr<ImportedModel> forward =
      importHFConfig(context, c.recipe.model.config, importOptionsOf(c.recipe));
  if (!forward.ok())
    return false;
  FailureOr<PipelineFigures> pipeline =
      measurePipeline(*forward->module, c.recipe);
  if (failed(pipeline))
    return false;
  // The stage that holds the most.
  int64_t chunks = c.recipe.parallel.ppChunks;
  const StageFigures *largest = &pipeline->stages.front();
  for (const StageFigures &f : pipeline->stages)
    if (f.total(chunks) > largest->total(chunks))
      largest = &f;
  c.stageModel = false;
  c.figures.params = c.figures.grads = largest->params;
  c.figures.optimizer = largest->optimizer;
  c.figures.activations = largest->peakActivations(chunks);
  c.bytes = largest->total(chunks);
  c.bubble = pipeline->bubble;
  c.stepSeconds = pipeline->stepSeconds(c.recipe);
  rate(c);
  return true;
}

/// The divisors of n, ascending.
std::vector<int64_t> divisors(int64_t n) {
  std::vector<int64_t> out;
  for (int64_t d = 1; d * d <= n; ++d)
    if (n % d == 0) {
      out.push_back(d);
      if (d * d != n)
        out.push_back(n / d);
    }
  std::sort(out.begin(), out.end());
  return out;
}

absl::StatusOr<SearchResult> Search::run() {
  auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                         start)
        .count();
  };
  absl::StatusOr<ImportedModel> imported =
      importHFConfig(context, r.model.config, importOptionsOf(r));
  if (!imported.ok())
    return imported.status();
  model = std::move(*imported);
  facts = factsOf(model, r.model.dtype == "f32"    ? 4
                         : r.model.dtype == "bf16" ? 2
                                                   : 2);
  depthPlan = depthPlanOf(model);
  capacity = (r.cluster.memoryGib - r.cluster.reservedGib) * 1073741824.0;
  if (capacity <= 0)
    return absl::InvalidArgumentError(
        r.path + ": field 'cluster.reserved_gib': leaves no memory of "
                 "cluster.memory_gib");

  std::string diagnostic;
  ScopedDiagnosticHandler handler(&context, [&](Diagnostic &diag) {
    if (diagnostic.empty())
      diagnostic = diag.str();
    return success();
  });

  // The references: one sequence on one device, per remat policy.
  for (const char *remat : {"none", "selective", "full"}) {
    Recipe one = r;
    one.parallel = ParallelSection();
    one.parallel.worldSize = 1;
    one.data.batchSize = 1;
    one.data.globalBatchSize = 1;
    one.train.remat = remat;
    FailureOr<StepFigures> whole =
        measureAt(one, facts.layers, linkModelOf(one));
    if (failed(whole))
      return absl::InvalidArgumentError(
          r.path +
          ": building the training step on one device failed: " + diagnostic);
    // Per layer, the average over the decoder's kinds; the rest (embedding,
    // head, loss, encoders) as the shallowest build has it beyond that.
    Reference ref;
    int64_t base = std::min(depthPlan.base, facts.layers);
    FailureOr<StepFigures> shallow = measureAt(one, base, linkModelOf(one));
    if (failed(shallow))
      return absl::InvalidArgumentError(
          r.path +
          ": building the training step on one device failed: " + diagnostic);
    double per = facts.layers > base ? 1.0 / (facts.layers - base) : 0;
    ref.layerFlops = (whole->traffic.flops - shallow->traffic.flops) * per;
    ref.layerActivations = (whole->activations - shallow->activations) * per;
    if (per == 0) { // one build: all of it counts as the layers'
      ref.layerFlops = whole->traffic.flops / facts.layers;
      ref.layerActivations = whole->activations / facts.layers;
    }
    ref.baseFlops =
        std::max(0.0, whole->traffic.flops - ref.layerFlops * facts.layers);
    ref.baseActivations =
        std::max(0.0, whole->activations - ref.layerActivations * facts.layers);
    references[remat] = ref;
  }

  SearchResult result;
  result.modelType = model.modelType;
  result.parameters = double(summarizeParameters(model).total);
  int64_t world = r.parallel.worldSize;
  int64_t global = r.data.globalBatchSize;
  std::vector<int64_t> sizes = divisors(world);
  std::vector<Candidate> plans;
  for (int64_t dpr : sizes)
    for (int64_t dps : divisors(world / dpr))
      for (int64_t tp : divisors(world / dpr / dps))
        for (int64_t sp : divisors(world / dpr / dps / tp))
          for (int64_t ep : divisors(world / dpr / dps / tp / sp)) {
            int64_t pp = world / dpr / dps / tp / sp / ep;
            if (options.maxPipelineStages > 0 && pp > options.maxPipelineStages)
              continue;
            ++result.meshes;
            Recipe v = r;
            v.parallel.dpReplicate = dpr;
            v.parallel.dpShard = dps;
            v.parallel.tp = tp;
            v.parallel.sp = sp;
            v.parallel.ep = ep;
            v.parallel.pp = pp;
            v.parallel.worldSize = world;
            MeshFacts mesh = meshFactsOf(facts, v, linkModelOf(v));
            struct Schedule {
              const char *name;
              int64_t chunks;
            };
            std::vector<Schedule> schedules = {{"1f1b", 1}};
            if (pp > 1)
              schedules = {{"1f1b", 1}, {"zb-h1", 1}, {"interleaved", 2}};
            for (int64_t batch : divisors(global)) {
              v.data.batchSize = batch;
              v.data.globalBatchSize = global;
              for (Schedule s : schedules) {
                v.parallel.ppSchedule = s.name;
                v.parallel.ppChunks = s.chunks;
                if (!checkMeshFits(v, model).ok())
                  continue;
                int64_t micro = global / batch;
                if (s.chunks > 1 && micro % pp)
                  continue;
                for (const char *remat : {"none", "selective", "full"}) {
                  Candidate c;
                  c.recipe = v;
                  c.recipe.train.remat = remat;
                  estimate(c, mesh);
                  ++result.plans;
                  plans.push_back(std::move(c));
                }
              }
            }
          }
  // The recipe's own plan, measured whatever its estimate.
  std::optional<Candidate> given;
  if (checkMeshFits(r, model).ok()) {
    Candidate c;
    c.recipe = r;
    given = std::move(c);
  }
  // Those estimated to fit (with a margin for the estimate's error), best
  // estimated time first.
  std::vector<Candidate *> order;
  for (Candidate &c : plans)
    if (c.estimatedBytes <= 1.25 * capacity)
      order.push_back(&c);
  result.estimatedFit = order.size();
  if (order.empty())
    for (Candidate &c : plans)
      order.push_back(&c); // none fits: rank them all, say so
  std::stable_sort(order.begin(), order.end(), [](Candidate *a, Candidate *b) {
    return a->estimatedSeconds < b->estimatedSeconds;
  });
  double measureStart = elapsed();
  if (given && !measure(*given))
    given.reset();
  // When the estimates keep choosing plans that do not fit (half the
  // measurements or half the time spent, none fitting), the rest go to
  // the plans estimated smallest instead.
  bool smallestFirst = false;
  for (size_t i = 0; i < order.size(); ++i) {
    if (result.measured >= options.measure ||
        (result.measured >= options.top &&
         elapsed() - measureStart > options.budgetSeconds))
      break;
    if (!smallestFirst &&
        (2 * result.measured >= options.measure ||
         2 * (elapsed() - measureStart) > options.budgetSeconds) &&
        llvm::none_of(result.ranked,
                      [](const Candidate &c) { return c.fits; })) {
      smallestFirst = true;
      std::stable_sort(order.begin() + i, order.end(),
                       [](Candidate *a, Candidate *b) {
                         return a->estimatedBytes < b->estimatedBytes;
                       });
    }
    Candidate *c = order[i];
    diagnostic.clear();
    if (measure(*c)) {
      ++result.measured;
      result.ranked.push_back(*c);
    }
  }
  // The best pipeline as well, so that a report can show its schedule.
  if (llvm::none_of(result.ranked, [](const Candidate &c) {
        return c.recipe.parallel.pp > 1;
      }))
    for (Candidate *c : order)
      if (c->recipe.parallel.pp > 1) {
        if (measure(*c)) {
          ++result.measured;
          result.ranked.push_back(*c);
        }
        break;
      }
  auto before = [](const Candidate &a, const Candidate &b) {
    if (a.fits != b.fits)
      return a.fits;
    return a.fits ? a.stepSeconds < b.stepSeconds : a.bytes < b.bytes;
  };
  std::stable_sort(result.ranked.begin(), result.ranked.end(), before);
  // Pipelines among the first `top`: measured exactly at the whole depth,
  // then ranked again, until the first `top` hold no stage model or the
  // time is spent.
  for (bool again = true; again;) {
    again = false;
    for (size_t i = 0; i < result.ranked.size() && int(i) < options.top; ++i) {
      Candidate &c = result.ranked[i];
      if (!c.stageModel || elapsed() - measureStart > 2 * options.budgetSeconds)
        continue;
      if (!measurePipelineExactly(c)) {
        c.fits = false; // it could not be planned: last
        c.stageModel = false;
      }
      again = true;
    }
    std::stable_sort(result.ranked.begin(), result.ranked.end(), before);
  }
  if (given && given->stageModel)
    measurePipelineExactly(*given);
  if (given) {
    // Its place among the measured plans (itself included when measured).
    auto same = [&](const Candidate &c) {
      return c.meshText() == given->meshText() &&
             c.recipe.data.batchSize == given->recipe.data.batchSize &&
             c.recipe.train.remat == given->recipe.train.remat;
    };
    auto it = llvm::find_if(result.ranked, same);
    if (it == result.ranked.end()) {
      result.ranked.push_back(*given);
      std::stable_sort(result.ranked.begin(), result.ranked.end(), before);
      it = llvm::find_if(result.ranked, same);
    }
    result.givenRank = int(it - result.ranked.begin()) + 1;
    result.given = *given;
  }
  result.seconds = elapsed();
  return result;
}

} // namespace

absl::StatusOr<SearchResult>
mlir::veomni::searchPlans(MLIRContext &context, const Recipe &r,
                          const SearchOptions &options) {
  return Search(context, r, options).run();
}
