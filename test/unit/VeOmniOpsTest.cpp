//===- VeOmniOpsTest.cpp - the veomni dialect's C++ API -------------------===//

#include "dialects/VeOmni/VeOmniOps.h"
#include "compiler/Registration.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Parser/Parser.h"

#include <gtest/gtest.h>

using namespace mlir;
using namespace mlir::veomni;

namespace {

class VeOmniOpsTest : public ::testing::Test {
protected:
  VeOmniOpsTest() : builder(&context) {
    DialectRegistry registry;
    registerAllVeOmni(registry);
    context.appendDialectRegistry(registry);
    context.loadAllAvailableDialects();
  }

  OwningOpRef<ModuleOp> parse(StringRef ir) {
    return parseSourceString<ModuleOp>(ir, ParserConfig(&context));
  }

  MLIRContext context;
  OpBuilder builder;
};

TEST_F(VeOmniOpsTest, ParsedOpsExposeTheirAttributes) {
  auto module = parse(R"mlir(
    func.func @f(%x: tensor<2x16x64xbf16>, %w: tensor<128x64xbf16>) -> tensor<2x16x128xbf16> {
      %y = veomni.matmul %x, %w {transpose_rhs} : tensor<2x16x64xbf16>, tensor<128x64xbf16>
      %s = veomni.reduce mean %y dims = [0, 2] : tensor<2x16x128xbf16>
      return %y : tensor<2x16x128xbf16>
    })mlir");
  ASSERT_TRUE(module);
  MatmulOp mm;
  ReduceOp red;
  module->walk([&](Operation *op) {
    if (auto m = dyn_cast<MatmulOp>(op))
      mm = m;
    if (auto r = dyn_cast<ReduceOp>(op))
      red = r;
  });
  ASSERT_TRUE(mm && red);
  EXPECT_FALSE(mm.getTransposeLhs());
  EXPECT_TRUE(mm.getTransposeRhs());
  EXPECT_EQ(red.getKind(), ReduceKind::Mean);
  EXPECT_EQ(llvm::to_vector(red.getDims()), (SmallVector<int64_t>{0, 2}));
  EXPECT_EQ(red.getType(),
            RankedTensorType::get({16}, BFloat16Type::get(&context)));
}

TEST_F(VeOmniOpsTest, CreateOrFoldUsesFoldersAndTheConstantMaterializer) {
  auto module = parse(R"mlir(
    func.func @f(%x: tensor<4x8xf32>) -> tensor<4x8xf32> {
      return %x : tensor<4x8xf32>
    })mlir");
  ASSERT_TRUE(module);
  auto f = module->lookupSymbol<func::FuncOp>("f");
  Value x = f.getArgument(0);
  builder.setInsertionPointToStart(&f.getBody().front());
  Location loc = builder.getUnknownLoc();
  auto type = cast<RankedTensorType>(x.getType());

  Value zero = ConstantOp::create(builder, loc,
                                  cast<ElementsAttr>(DenseElementsAttr::get(
                                      type, builder.getF32FloatAttr(0))));
  EXPECT_EQ(builder.createOrFold<AddOp>(loc, x, zero), x);
  Value two = ConstantOp::create(builder, loc,
                                 cast<ElementsAttr>(DenseElementsAttr::get(
                                     type, builder.getF32FloatAttr(2))));
  Value product = builder.createOrFold<MulOp>(loc, x, two);
  EXPECT_NE(product, x);
  EXPECT_TRUE(product.getDefiningOp<MulOp>());

  // A reshape of a constant folds into a new constant of the new shape.
  auto flat = RankedTensorType::get({32}, builder.getF32Type());
  Value reshaped = builder.createOrFold<ReshapeOp>(loc, flat, two);
  auto folded = reshaped.getDefiningOp<ConstantOp>();
  ASSERT_TRUE(folded);
  EXPECT_EQ(folded.getType(), flat);
  EXPECT_TRUE(succeeded(verify(*module)));
}

TEST_F(VeOmniOpsTest, InferenceRejectsBadShapesWithANamedOperand) {
  std::string message;
  ScopedDiagnosticHandler handler(&context, [&](Diagnostic &diag) {
    message = diag.str();
    return success();
  });
  auto f32 = builder.getF32Type();
  auto q = RankedTensorType::get({2, 16, 6, 8}, f32);
  auto kv = RankedTensorType::get({2, 16, 4, 8}, f32);
  OperationState state(builder.getUnknownLoc(),
                       AttentionOp::getOperationName());
  state.addAttribute("scale", builder.getF64FloatAttr(0.5));
  SmallVector<Type> types;
  // Operands are only inspected for their types: build a throwaway function.
  auto fn = func::FuncOp::create(builder, builder.getUnknownLoc(), "g",
                                 builder.getFunctionType({q, kv, kv}, {}));
  Block *body = fn.addEntryBlock();
  LogicalResult r = AttentionOp::inferReturnTypes(
      &context, builder.getUnknownLoc(), body->getArguments(),
      state.attributes.getDictionary(&context), OpaqueProperties(nullptr),
      RegionRange(), types);
  EXPECT_TRUE(failed(r));
  EXPECT_NE(message.find("key/value head count 4 of key 'tensor<2x16x4x8xf32>' "
                         "does not divide the query head count 6"),
            std::string::npos)
      << message;
  fn.erase();
}

} // namespace
