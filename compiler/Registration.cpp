//===- Registration.cpp - what every veomni tool registers ----------------===//

#include "compiler/Registration.h"

#include "dialects/Dist/DistOps.h"
#include "dialects/Runtime/VrtOps.h"
#include "dialects/VeOmni/VeOmniDialect.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/DialectRegistry.h"
#include "passes/Passes.h"

void mlir::veomni::registerAllVeOmni(DialectRegistry &registry) {
  registry
      .insert<VeOmniDialect, vrt::VrtDialect, dist::DistDialect,
              func::FuncDialect, arith::ArithDialect, tensor::TensorDialect>();
  registerVeOmniPasses();
}
