//===- Lora.cpp - LoRA adapters beside the frozen base weights ------------===//
//
// PEFT's LoRA as IR: every HF Linear (a matmul of an activation with a
// rank-2 parameter `<module>.weight` [out, in], transpose_rhs) whose module
// a target names gets two parameters of its own,
//   <module>.lora_A.weight [r, in]   (init "lora_a": PEFT's kaiming uniform)
//   <module>.lora_B.weight [out, r]  (init "zeros")
// and its output becomes  x W^T + (x A^T) B^T * alpha / r,  as PEFT's
// lora.Linear computes it (dropout 0). The adapters are f32 whatever the
// model's type, as get_peft_model's autocast_adapter_dtype makes them: in
// a bf16 model x is cast to f32 for them and the sum, taken in f32, cast
// back. Every other parameter is frozen
// (veomni.frozen), as PEFT freezes the base model. The adapters take their
// base weight's place in the parallel plan: a column-parallel weight's B is
// split as it is (its A replicated), a row-parallel weight's A (its B
// replicated).
//
// MoE experts, which transformers 5 holds fused ([E, out, in]
// gate_up_proj and down_proj; gpt-oss's [E, in, out]), are adapted as
// PEFT's ParamWrapper adapts such a parameter through target_parameters:
// per expert e a rank-r pair, W_e + B_e A_e alpha / r, held here as
//   <experts>.lora_A.weight [E, r, in], <experts>.lora_B.weight [E, out, r]
// (peft's files hold A as [E r, in] and B as [out, r E], expert index
// minor; runtime/io converts), computed as grouped matmuls over the same
// rows as the experts' (x A_e^T) B_e^T, placed on ep as the experts are.
// The importer marks which grouped matmul computes which expert parameter
// (veomni.experts); routers are marked weights (veomni.router) that no
// target_modules name reaches, as in transformers 5 they are no Linear.
// Where PEFT converts a transformers-4 style config for the model
// (veomni.peft_fused_experts: Qwen3-MoE, Qwen3-Omni-MoE, DeepSeek-V3),
// target_modules gate/gate_proj/up_proj/down_proj (all-linear included)
// become target_parameters gate.weight/gate_up_proj/down_proj, and
// gate_up_proj then has rank 2r and alpha 2 alpha, as peft 0.21 does it.
//
//===----------------------------------------------------------------------===//

#include "dialects/VeOmni/VeOmniOps.h"
#include "passes/NameMatch.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/GlobPattern.h"

#include <cmath>

namespace mlir::veomni {
#define GEN_PASS_DEF_LORA
#include "passes/Passes.h.inc"
} // namespace mlir::veomni

using namespace mlir;
using namespace mlir::veomni;

namespace {

/// PEFT's target_modules: a name matches a target equal to it or to its
/// part after a dot ("q_proj"); a target with glob characters is a glob
/// over the whole name or any part after a dot; "all-linear" is every
/// Linear but the output layer.
struct Target {
  std::string text;
  std::optional<llvm::GlobPattern> glob;
  bool used = false;

  bool matches(StringRef module) const {
    if (text == "all-linear")
      return module != "lm_head" && !module.ends_with(".lm_head");
    return matchesNameOrPart(module, [&](StringRef part) {
      return glob ? glob->match(part) : part == text;
    });
  }
};

/// The grouped matmuls that compute one fused expert parameter.
struct ExpertParam {
  std::string name; // the HF parameter, `...mlp.experts.gate_up_proj`
  int64_t order = 0, in = 0, out = 0, experts = 0;
  Value input, groups;
  SmallVector<std::pair<GroupedMatmulOp, int64_t>> sites; // op, column
  bool targeted = false;
};

struct LoraPass : veomni::impl::LoraBase<LoraPass> {
  using LoraBase::LoraBase;

  void runOnOperation() override {
    ModuleOp moduleOp = getOperation();
    auto func = moduleOp.lookupSymbol<func::FuncOp>(funcName);
    if (!func) {
      moduleOp.emitError("veomni-lora: no function @") << funcName;
      return signalPassFailure();
    }
    MLIRContext *ctx = &getContext();
    if (rank < 1) {
      func.emitError("train.lora.rank must be >= 1, got ") << rank;
      return signalPassFailure();
    }

    // PEFT's conversion of transformers-4 names on the models whose
    // experts transformers 5 fused (see the file comment).
    LoraTargets converted = convertLoraTargets(
        SmallVector<std::string>(targets.begin(), targets.end()),
        SmallVector<std::string>(targetParameters.begin(),
                                 targetParameters.end()),
        moduleOp->hasAttr("veomni.peft_fused_experts"));
    if (!converted.error.empty()) {
      func.emitError("train.lora.targets: ") << converted.error;
      return signalPassFailure();
    }
    std::vector<std::string> &moduleTargets = converted.modules;
    std::vector<std::string> &paramTargets = converted.parameters;
    const bool doubledGateUp = converted.doubledGateUp;

    SmallVector<Target> list;
    for (const std::string &t : moduleTargets) {
      if (t.empty())
        continue;
      Target target{t, std::nullopt, false};
      if (StringRef(t).find_first_of("*?[") != StringRef::npos) {
        llvm::Expected<llvm::GlobPattern> g = llvm::GlobPattern::create(t);
        if (!g) {
          func.emitError("train.lora.targets: '")
              << t << "' is not a glob: " << llvm::toString(g.takeError());
          return signalPassFailure();
        }
        target.glob = std::move(*g);
      }
      list.push_back(std::move(target));
    }
    llvm::erase_if(paramTargets,
                   [](const std::string &t) { return t.empty(); });
    if (list.empty() && paramTargets.empty()) {
      func.emitError("train.lora.targets is empty: name the modules to "
                     "adapt (q_proj, v_proj, all-linear, ...)");
      return signalPassFailure();
    }
    SmallVector<bool> paramTargetUsed(paramTargets.size(), false);
    auto matchParamTargets = [&](StringRef name) {
      bool hit = false;
      for (auto [i, t] : llvm::enumerate(paramTargets))
        if (matchesParameter(name, t))
          hit = paramTargetUsed[i] = true;
      return hit;
    };

    // The Linears: matmuls of an activation with a rank-2 weight argument;
    // a router's weight is reached by target_parameters only.
    Block &block = func.getBody().front();
    llvm::MapVector<BlockArgument, SmallVector<MatmulOp>> linears;
    std::string example;
    func.walk([&](MatmulOp m) {
      auto w = dyn_cast<BlockArgument>(m.getRhs());
      if (!w || w.getOwner() != &block || !m.getTransposeRhs() ||
          m.getTransposeLhs() ||
          cast<RankedTensorType>(w.getType()).getRank() != 2)
        return;
      // A weight read otherwise too is not a Linear's (a tied LM head's
      // embedding table, which its gather reads).
      if (llvm::any_of(w.getUsers(), [&](Operation *user) {
            auto other = dyn_cast<MatmulOp>(user);
            return !other || other.getRhs() != w || !other.getTransposeRhs() ||
                   other.getTransposeLhs();
          }))
        return;
      auto name = func.getArgAttrOfType<StringAttr>(
          w.getArgNumber(), VeOmniDialect::kParamAttrName);
      if (!name || !name.getValue().ends_with(".weight"))
        return;
      StringRef module = name.getValue().drop_back(strlen(".weight"));
      const bool router =
          func.getArgAttr(w.getArgNumber(), VeOmniDialect::kRouterAttrName) !=
          nullptr;
      bool hit = matchParamTargets(name.getValue());
      if (!router) {
        if (example.empty())
          example = module.str();
        StringRef leaf = module.rsplit('.').second;
        if (leaf.empty())
          leaf = module;
        if (!converted.convertedLeaves.contains(leaf))
          for (Target &t : list)
            if (t.matches(module))
              hit = t.used = true;
      }
      if (hit)
        linears[w].push_back(m);
    });
    for (const Target &t : list)
      if (!t.used) {
        func.emitError("train.lora.targets: '")
            << t.text << "' names no Linear layer (modules are Hugging "
            << "Face's, such as '" << example << "')";
        return signalPassFailure();
      }

    // The experts, by the fused parameter each grouped matmul computes.
    llvm::MapVector<StringRef, ExpertParam> experts;
    bool badExperts = false;
    func.walk([&](GroupedMatmulOp g) {
      auto info =
          g->getAttrOfType<DictionaryAttr>(VeOmniDialect::kExpertsAttrName);
      if (!info)
        return;
      auto name = info.getAs<StringAttr>("param");
      auto order = info.getAs<IntegerAttr>("order");
      auto column = info.getAs<IntegerAttr>("column");
      auto in = info.getAs<IntegerAttr>("in");
      if (!name || !order || !column || !in) {
        g.emitError("veomni.experts needs param, order, column and in");
        badExperts = true;
        return;
      }
      ExpertParam &e = experts[name.getValue()];
      const int64_t width = cast<RankedTensorType>(g.getType()).getDimSize(1);
      if (e.sites.empty()) {
        e.name = name.getValue().str();
        e.order = order.getInt();
        e.in = in.getInt();
        e.input = g.getInput();
        e.groups = g.getGroupSizes();
        e.experts =
            cast<RankedTensorType>(g.getWeight().getType()).getDimSize(0);
      } else if (e.input != g.getInput() || e.groups != g.getGroupSizes() ||
                 e.in != in.getInt()) {
        g.emitError("the grouped matmuls of expert parameter '")
            << e.name << "' read different rows";
        badExperts = true;
        return;
      }
      e.out = std::max(e.out, column.getInt() + width);
      e.sites.push_back({g, column.getInt()});
    });
    if (badExperts)
      return signalPassFailure();
    for (auto &[name, e] : experts)
      e.targeted = matchParamTargets(name);
    for (auto [i, t] : llvm::enumerate(paramTargets))
      if (!paramTargetUsed[i]) {
        auto diag = func.emitError("train.lora.target_parameters: '")
                    << t << "' names no parameter LoRA can adapt";
        if (!experts.empty())
          diag << " (the experts are Hugging Face's fused parameters, such "
                  "as '"
               << experts.front().second.name << "')";
        else
          diag << " (this model has no MoE experts)";
        return signalPassFailure();
      }

    // Every base parameter is frozen; the adapters are new parameters.
    for (unsigned i = 0; i < func.getNumArguments(); ++i)
      if (func.getArgAttr(i, VeOmniDialect::kParamAttrName))
        func.setArgAttr(i, VeOmniDialect::kFrozenAttrName, UnitAttr::get(ctx));
    auto scalingOf = [&](int64_t r, double a) {
      return a / (rslora ? std::sqrt(double(r)) : double(r));
    };
    OpBuilder b(ctx);
    auto addAdapter = [&](const std::string &name, ArrayRef<int64_t> shape,
                          StringRef init, StringRef place) {
      unsigned index = func.getNumArguments();
      SmallVector<NamedAttribute> attrs = {
          b.getNamedAttr(VeOmniDialect::kParamAttrName, b.getStringAttr(name)),
          b.getNamedAttr(VeOmniDialect::kInitAttrName, b.getStringAttr(init)),
          b.getNamedAttr(VeOmniDialect::kAdapterAttrName, b.getUnitAttr()),
          b.getNamedAttr(VeOmniDialect::kPlacementAttrName,
                         b.getStringAttr(place))};
      (void)func.insertArgument(index,
                                RankedTensorType::get(shape, b.getF32Type()),
                                b.getDictionaryAttr(attrs), func.getLoc());
      return func.getArgument(index);
    };
    auto toF32 = [&](Location loc, Value v) -> Value {
      auto t = cast<RankedTensorType>(v.getType());
      return t.getElementType().isF32()
                 ? v
                 : CastOp::create(b, loc, t.clone(b.getF32Type()), v)
                       .getResult();
    };
    // y + scale * delta, in f32, cast back to y's type; y's readers then
    // read the sum.
    auto addToOutput = [&](Location loc, Value y, Value delta, double scale) {
      SmallVector<OpOperand *> readers;
      for (OpOperand &use : y.getUses())
        readers.push_back(&use);
      auto yt = cast<RankedTensorType>(y.getType());
      auto dt = cast<RankedTensorType>(delta.getType());
      Value factor =
          ConstantOp::create(b, loc,
                             cast<ElementsAttr>(DenseElementsAttr::get(
                                 dt, b.getFloatAttr(b.getF32Type(), scale))));
      Value sum = AddOp::create(b, loc, toF32(loc, y),
                                MulOp::create(b, loc, delta, factor));
      if (!yt.getElementType().isF32())
        sum = CastOp::create(b, loc, yt, sum);
      for (OpOperand *use : readers)
        use->set(sum);
    };

    const double scaling = scalingOf(rank, alpha);
    for (auto &[w, uses] : linears) {
      auto wt = cast<RankedTensorType>(w.getType());
      const int64_t out = wt.getDimSize(0), in = wt.getDimSize(1);
      std::string name =
          func.getArgAttrOfType<StringAttr>(w.getArgNumber(),
                                            VeOmniDialect::kParamAttrName)
              .getValue()
              .drop_back(strlen(".weight"))
              .str();
      auto placement = func.getArgAttrOfType<StringAttr>(
          w.getArgNumber(), VeOmniDialect::kPlacementAttrName);
      StringRef p = placement ? placement.getValue() : "";
      // Column (and vocab) parallel: the output dimension is split, so B's
      // rows are; row parallel: the input dimension, so A's columns are.
      StringRef placeA = p == "tp:row" ? "tp:row" : "replicated";
      StringRef placeB =
          p == "tp:column" || p == "tp:vocab" ? StringRef(p) : "replicated";
      Value a =
          addAdapter(name + ".lora_A.weight", {rank, in}, "lora_a", placeA);
      Value bm =
          addAdapter(name + ".lora_B.weight", {out, rank}, "zeros", placeB);
      for (MatmulOp m : uses) {
        b.setInsertionPointAfter(m);
        Location loc = m.getLoc();
        Value down =
            MatmulOp::create(b, loc, toF32(loc, m.getLhs()), a, false, true);
        Value up = MatmulOp::create(b, loc, down, bm, false, true);
        addToOutput(loc, m.getResult(), up, scaling);
      }
    }

    // The experts' adapters, named as peft nests its ParamWrappers: the
    // module's targeted parameters wrap one another in the order torch
    // registers them, the first innermost (`experts.base_layer.lora_A`).
    for (auto &[key, e] : experts) {
      if (!e.targeted)
        continue;
      StringRef module = StringRef(e.name).rsplit('.').first;
      std::string name = module.str();
      for (auto &[otherKey, other] : experts)
        if (other.targeted && other.order > e.order &&
            StringRef(other.name).rsplit('.').first == module)
          name += ".base_layer";
      const bool doubled =
          doubledGateUp && StringRef(e.name).ends_with(".gate_up_proj");
      const int64_t r = doubled ? 2 * rank : rank;
      Value a = addAdapter(name + ".lora_A.weight", {e.experts, r, e.in},
                           "lora_a", "ep:experts");
      Value bm = addAdapter(name + ".lora_B.weight", {e.experts, e.out, r},
                            "zeros", "ep:experts");
      // After every site's matmul (the walk met them in order), with the
      // rows they read.
      Operation *last = e.sites.back().first;
      b.setInsertionPointAfter(last);
      Location loc = last->getLoc();
      Value x = e.input;
      auto xt = cast<RankedTensorType>(x.getType());
      const int64_t rows = xt.getDimSize(0);
      if (xt.getDimSize(1) != e.in)
        x = SliceOp::create(b, loc, x, ArrayRef<int64_t>{0, 0},
                            ArrayRef<int64_t>{rows, e.in},
                            ArrayRef<int64_t>{1, 1});
      Value down = GroupedMatmulOp::create(b, loc, toF32(loc, x), a, e.groups,
                                           /*transpose_weight=*/true);
      Value up = GroupedMatmulOp::create(b, loc, down, bm, e.groups, true);
      for (auto &[op, column] : e.sites) {
        const int64_t width =
            cast<RankedTensorType>(op.getType()).getDimSize(1);
        Value delta =
            width == e.out
                ? up
                : SliceOp::create(b, loc, up, ArrayRef<int64_t>{0, column},
                                  ArrayRef<int64_t>{rows, column + width},
                                  ArrayRef<int64_t>{1, 1})
                      .getResult();
        addToOutput(loc, op.getResult(), delta,
                    scalingOf(r, doubled ? 2 * alpha : alpha));
      }
    }
  }
};

} // namespace
