//===- veomni-opt.cpp - the veomni optimizer driver -----------------------===//

#include "compiler/Registration.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "mlir/Transforms/Passes.h"

int main(int argc, char **argv) {
  mlir::DialectRegistry registry;
  mlir::veomni::registerAllVeOmni(registry);
  mlir::registerTransformsPasses(); // canonicalize, cse, ...
  return mlir::asMainReturnCode(
      mlir::MlirOptMain(argc, argv, "veomni optimizer driver\n", registry));
}
