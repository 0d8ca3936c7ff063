//===- Freeze.cpp - the parameters a recipe does not train ----------------===//

#include "dialects/VeOmni/VeOmniOps.h"
#include "passes/NameMatch.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/Support/GlobPattern.h"

namespace mlir::veomni {
#define GEN_PASS_DEF_FREEZE
#include "passes/Passes.h.inc"
} // namespace mlir::veomni

using namespace mlir;
using namespace mlir::veomni;

namespace {

struct FreezePass : veomni::impl::FreezeBase<FreezePass> {
  using FreezeBase::FreezeBase;

  void runOnOperation() override {
    auto func = getOperation().lookupSymbol<func::FuncOp>(funcName);
    if (!func) {
      getOperation().emitError("veomni-freeze: no function @") << funcName;
      return signalPassFailure();
    }
    SmallVector<std::pair<std::string, llvm::GlobPattern>> globs;
    for (const std::string &p : patterns) {
      if (p.empty())
        continue;
      llvm::Expected<llvm::GlobPattern> glob = llvm::GlobPattern::create(p);
      if (!glob) {
        func.emitError("train.freeze: '")
            << p << "' is not a glob: " << llvm::toString(glob.takeError());
        return signalPassFailure();
      }
      globs.push_back({p, std::move(*glob)});
    }
    SmallVector<bool> used(globs.size(), false);
    unsigned params = 0, frozen = 0;
    std::string example;
    for (unsigned i = 0; i < func.getNumArguments(); ++i) {
      auto name =
          func.getArgAttrOfType<StringAttr>(i, VeOmniDialect::kParamAttrName);
      if (!name)
        continue;
      ++params;
      if (example.empty())
        example = name.getValue().str();
      bool hit = false;
      for (auto [k, g] : llvm::enumerate(globs))
        if (matchesNameOrPart(name.getValue(), [&](StringRef part) {
              return g.second.match(part);
            }))
          hit = used[k] = true;
      if (hit) {
        func.setArgAttr(i, VeOmniDialect::kFrozenAttrName,
                        UnitAttr::get(func.getContext()));
        ++frozen;
      }
    }
    for (auto [k, g] : llvm::enumerate(globs))
      if (!used[k]) {
        func.emitError("train.freeze: '")
            << g.first << "' matches no parameter (names are Hugging Face's, "
            << "such as '" << example << "')";
        return signalPassFailure();
      }
    if (params > 0 && frozen == params) {
      func.emitError("train.freeze freezes every parameter: nothing is left "
                     "to train");
      return signalPassFailure();
    }
  }
};

} // namespace
