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
//===----------------------------------------------------------------------===//

#include "dialects/VeOmni/VeOmniOps.h"
#include "passes/NameMatch.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
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
    SmallVector<Target> list;
    for (const std::string &t : targets) {
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
    if (list.empty()) {
      func.emitError("train.lora.targets is empty: name the modules to "
                     "adapt (q_proj, v_proj, all-linear, ...)");
      return signalPassFailure();
    }

    // The Linears: matmuls of an activation with a rank-2 weight argument.
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
      if (example.empty())
        example = module.str();
      bool hit = false;
      for (Target &t : list)
        if (t.matches(module))
          hit = t.used = true;
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

    // Every base parameter is frozen; the adapters are new parameters.
    for (unsigned i = 0; i < func.getNumArguments(); ++i)
      if (func.getArgAttr(i, VeOmniDialect::kParamAttrName))
        func.setArgAttr(i, VeOmniDialect::kFrozenAttrName, UnitAttr::get(ctx));
    const double scaling =
        alpha / (rslora ? std::sqrt(double(rank)) : double(rank));
    OpBuilder b(ctx);
    for (auto &[w, uses] : linears) {
      auto wt = cast<RankedTensorType>(w.getType());
      const int64_t out = wt.getDimSize(0), in = wt.getDimSize(1);
      StringRef name = func.getArgAttrOfType<StringAttr>(
                               w.getArgNumber(), VeOmniDialect::kParamAttrName)
                           .getValue()
                           .drop_back(strlen(".weight"));
      auto placement = func.getArgAttrOfType<StringAttr>(
          w.getArgNumber(), VeOmniDialect::kPlacementAttrName);
      StringRef p = placement ? placement.getValue() : "";
      // Column (and vocab) parallel: the output dimension is split, so B's
      // rows are; row parallel: the input dimension, so A's columns are.
      StringRef placeA = p == "tp:row" ? "tp:row" : "replicated";
      StringRef placeB =
          p == "tp:column" || p == "tp:vocab" ? StringRef(p) : "replicated";
      auto add = [&](StringRef suffix, ArrayRef<int64_t> shape, StringRef init,
                     StringRef place) {
        unsigned index = func.getNumArguments();
        SmallVector<NamedAttribute> attrs = {
            b.getNamedAttr(VeOmniDialect::kParamAttrName,
                           b.getStringAttr(name + suffix)),
            b.getNamedAttr(VeOmniDialect::kInitAttrName, b.getStringAttr(init)),
            b.getNamedAttr(VeOmniDialect::kAdapterAttrName, b.getUnitAttr()),
            b.getNamedAttr(VeOmniDialect::kPlacementAttrName,
                           b.getStringAttr(place))};
        (void)func.insertArgument(index,
                                  RankedTensorType::get(shape, b.getF32Type()),
                                  b.getDictionaryAttr(attrs), func.getLoc());
        return func.getArgument(index);
      };
      Value a = add(".lora_A.weight", {rank, in}, "lora_a", placeA);
      Value bm = add(".lora_B.weight", {out, rank}, "zeros", placeB);
      for (MatmulOp m : uses) {
        b.setInsertionPointAfter(m);
        Location loc = m.getLoc();
        Value x = m.getLhs(), y = m.getResult();
        // (Its readers, before the adapter's ops read it too.)
        SmallVector<OpOperand *> readers;
        for (OpOperand &use : y.getUses())
          readers.push_back(&use);
        auto yt = cast<RankedTensorType>(y.getType());
        const bool f32 = yt.getElementType().isF32();
        auto toF32 = [&](Value v) -> Value {
          auto t = cast<RankedTensorType>(v.getType());
          return f32 ? v
                     : CastOp::create(b, loc, t.clone(b.getF32Type()), v)
                           .getResult();
        };
        Value down = MatmulOp::create(b, loc, toF32(x), a, false, true);
        Value up = MatmulOp::create(b, loc, down, bm, false, true);
        auto upType = cast<RankedTensorType>(up.getType());
        Value scale = ConstantOp::create(
            b, loc,
            cast<ElementsAttr>(DenseElementsAttr::get(
                upType, b.getFloatAttr(b.getF32Type(), scaling))));
        Value sum =
            AddOp::create(b, loc, toF32(y), MulOp::create(b, loc, up, scale));
        if (!f32)
          sum = CastOp::create(b, loc, yt, sum);
        for (OpOperand *use : readers)
          use->set(sum);
      }
    }
  }
};

} // namespace
