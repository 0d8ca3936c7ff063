//===- config_fuzzer.cpp - Hugging Face config.json, up to a verified module
//===//
//
// The input is a config.json; importHFConfig either refuses it with one
// error naming the field or builds a module, which must verify. Sizes are
// bounded before anything is built (docs/reliability.md), so every input
// answers quickly.
//
//===----------------------------------------------------------------------===//

#include "compiler/Registration.h"
#include "frontends/Importer.h"
#include "test/fuzz/FuzzUtil.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"

#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const std::string path = veomni::fuzz::ScratchPath("config.json");
  veomni::fuzz::WriteFile(path, data, size);
  mlir::DialectRegistry registry;
  mlir::veomni::registerAllVeOmni(registry);
  mlir::MLIRContext context(registry, mlir::MLIRContext::Threading::DISABLED);
  context.loadAllAvailableDialects();
  mlir::ScopedDiagnosticHandler quiet(
      &context, [](mlir::Diagnostic &) { return mlir::success(); });
  absl::StatusOr<mlir::veomni::ImportedModel> model =
      mlir::veomni::importHFConfig(context, path, {});
  if (model.ok() && mlir::failed(mlir::verify(*model->module)))
    std::abort(); // an accepted config must give a valid module
  return 0;
}
