//===- mlir_fuzzer.cpp - .mlir through veomni's dialects and passes -------===//
//
// The input is .mlir text: parsed with veomni's dialects, verified, then
// run through each veomni pass on its own and through the training-step
// chain (autodiff, optimizer, fusion, lowering, memory planning). A pass
// may refuse the module with a diagnostic; it must not crash. A crash
// inside MLIR itself is reported upstream, not patched here.
//
//===----------------------------------------------------------------------===//

#include "compiler/Registration.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"

#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

namespace {
const char *const kPipelines[] = {
    "veomni-propagate-sharding",
    "veomni-partition",
    "veomni-autodiff",
    "veomni-optimizer",
    "veomni-fuse",
    "veomni-fuse-loss",
    "veomni-remat",
    "veomni-repeat-kv-heads",
    "veomni-freeze",
    "veomni-lora",
    "veomni-lower-to-vrt",
    "veomni-plan-memory",
    "veomni-prefetch",
    "veomni-autodiff,veomni-optimizer,veomni-fuse,veomni-lower-to-vrt,"
    "veomni-plan-memory",
};
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  mlir::DialectRegistry registry;
  mlir::veomni::registerAllVeOmni(registry);
  mlir::MLIRContext context(registry, mlir::MLIRContext::Threading::DISABLED);
  mlir::ScopedDiagnosticHandler quiet(
      &context, [](mlir::Diagnostic &) { return mlir::success(); });
  // MLIR's lexer reads up to a terminating NUL, as files give it
  // (veomni-opt reads them so): the input is copied into a buffer with one.
  llvm::SourceMgr sources;
  sources.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy(
          llvm::StringRef(reinterpret_cast<const char *>(data), size),
          "fuzz.mlir"),
      llvm::SMLoc());
  mlir::OwningOpRef<mlir::ModuleOp> module =
      mlir::parseSourceFile<mlir::ModuleOp>(sources, &context);
  if (!module || mlir::failed(mlir::verify(*module)))
    return 0;
  for (const char *pipeline : kPipelines) {
    mlir::OwningOpRef<mlir::ModuleOp> copy = module->clone();
    mlir::PassManager pm(&context);
    std::string err;
    llvm::raw_string_ostream os(err);
    if (mlir::failed(mlir::parsePassPipeline(pipeline, pm, os)))
      continue;
    (void)pm.run(*copy);
  }
  return 0;
}
