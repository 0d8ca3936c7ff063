//===- ModelBuilderTest.cpp - the frontends' op builder -------------------===//

#include "frontends/ModelBuilder.h"
#include "compiler/Registration.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"

#include <gtest/gtest.h>

using namespace mlir;
using namespace mlir::veomni;

namespace {

class ModelBuilderTest : public ::testing::Test {
protected:
  ModelBuilderTest() {
    DialectRegistry registry;
    registerAllVeOmni(registry);
    context.appendDialectRegistry(registry);
    context.loadAllAvailableDialects();
    handler.emplace(&context, [this](Diagnostic &diag) {
      std::string text;
      llvm::raw_string_ostream os(text);
      os << diag.getLocation() << ": " << diag;
      diagnostics.push_back(text);
      return success();
    });
  }

  Location loc(StringRef name) {
    return NameLoc::get(StringAttr::get(&context, name));
  }

  MLIRContext context;
  std::optional<ScopedDiagnosticHandler> handler;
  std::vector<std::string> diagnostics;
};

std::string print(Operation *op) {
  std::string text;
  llvm::raw_string_ostream os(text);
  op->print(os);
  return text;
}

// A one-layer Llama-style decoder with tied embeddings: every building block
// the dense importers use, built and verified through the C++ API.
TEST_F(ModelBuilderTest, BuildsADecoderLayerThatVerifiesAndRoundTrips) {
  const int64_t B = 2, S = 8, H = 32, heads = 4, kv = 2, hd = 8, I = 64,
                V = 100;
  ModelBuilder b(context, Float32Type::get(&context), loc("tiny"));
  Type i32 = IntegerType::get(&context, 32);

  Value embed = b.param("model.embed_tokens.weight", {V, H});
  Value ids = b.input("input_ids", {B, S}, i32);
  Value positions = b.input("position_ids", {B, S}, i32);
  Value x = b.gather(embed, ids);

  b.setLocation(loc("model.layers.0.self_attn"));
  Value h =
      b.rmsNorm(x, b.param("model.layers.0.input_layernorm.weight", {H}), 1e-6);
  auto proj = [&](StringRef name, int64_t out, int64_t n) {
    Value y = b.linear(
        h, b.param(("model.layers.0.self_attn." + name + ".weight").str(),
                   {out, H}));
    return b.reshape(y, {B, S, n, hd});
  };
  Value q = b.rope(proj("q_proj", heads * hd, heads), positions, 10000.0);
  Value k = b.rope(proj("k_proj", kv * hd, kv), positions, 10000.0);
  Value v = proj("v_proj", kv * hd, kv);
  Value attn = b.attention(q, k, v, Value(), /*causal=*/true, 1.0 / 8);
  Value o = b.linear(
      b.reshape(attn, {B, S, heads * hd}),
      b.param("model.layers.0.self_attn.o_proj.weight", {H, heads * hd}));
  x = b.add(x, o);

  b.setLocation(loc("model.layers.0.mlp"));
  h = b.rmsNorm(
      x, b.param("model.layers.0.post_attention_layernorm.weight", {H}), 1e-6);
  Value gate =
      b.linear(h, b.param("model.layers.0.mlp.gate_proj.weight", {I, H}));
  Value up = b.linear(h, b.param("model.layers.0.mlp.up_proj.weight", {I, H}));
  Value down = b.linear(b.mul(b.silu(gate), up),
                        b.param("model.layers.0.mlp.down_proj.weight", {H, I}));
  x = b.add(x, down);

  b.setLocation(loc("lm_head"));
  x = b.rmsNorm(x, b.param("model.norm.weight", {H}), 1e-6);
  Value logits = b.linear(x, embed);
  Value loss = b.crossEntropy(logits, b.input("labels", {B, S}, i32));

  auto module = b.finish(loss);
  ASSERT_TRUE(succeeded(module)) << ::testing::PrintToString(diagnostics);
  EXPECT_TRUE(diagnostics.empty());

  auto forward = (*module)->lookupSymbol<func::FuncOp>("forward");
  ASSERT_TRUE(forward);
  // Parameters first, then inputs, each in declaration order.
  std::vector<std::string> names;
  for (unsigned i = 0; i < forward.getNumArguments(); ++i) {
    auto p =
        forward.getArgAttrOfType<StringAttr>(i, VeOmniDialect::kParamAttrName);
    auto in =
        forward.getArgAttrOfType<StringAttr>(i, VeOmniDialect::kInputAttrName);
    ASSERT_TRUE(bool(p) != bool(in)) << "argument " << i;
    names.push_back((p ? "param:" : "input:") + (p ? p : in).getValue().str());
  }
  ASSERT_EQ(names.size(), 14u);
  EXPECT_EQ(names.front(), "param:model.embed_tokens.weight");
  EXPECT_EQ(names[10], "param:model.norm.weight");
  EXPECT_EQ(names[11], "input:input_ids");
  EXPECT_EQ(names[12], "input:position_ids");
  EXPECT_EQ(names[13], "input:labels");
  EXPECT_EQ(forward.getArgument(0).getType(),
            RankedTensorType::get({V, H}, Float32Type::get(&context)));
  EXPECT_EQ(forward.getResultTypes()[0],
            RankedTensorType::get({}, Float32Type::get(&context)));
  ASSERT_EQ(b.arguments().size(), 14u);
  EXPECT_TRUE(b.arguments()[10].isParam);
  EXPECT_FALSE(b.arguments()[11].isParam);

  // The printed module parses back to the same text.
  std::string text = print(module->get());
  OwningOpRef<ModuleOp> reparsed =
      parseSourceString<ModuleOp>(text, ParserConfig(&context));
  ASSERT_TRUE(reparsed) << ::testing::PrintToString(diagnostics);
  EXPECT_EQ(print(reparsed.get()), text);
}

TEST_F(ModelBuilderTest, ShapeErrorNamesOperandAndLocationAndFailsOnce) {
  ModelBuilder b(context, BFloat16Type::get(&context), loc("tiny"));
  Value x = b.input("hidden", {2, 8, 32}, BFloat16Type::get(&context));
  b.setLocation(loc("model.layers.3.mlp"));
  // [out, in] = [64, 16]: in does not match the hidden size 32.
  Value y = b.linear(x, b.param("model.layers.3.mlp.up_proj.weight", {64, 16}));
  EXPECT_FALSE(y);
  EXPECT_TRUE(b.failed());
  // Later calls do not crash and do not pile up diagnostics.
  Value z = b.silu(b.add(y, y));
  EXPECT_FALSE(z);
  EXPECT_TRUE(failed(b.finish(z)));
  ASSERT_EQ(diagnostics.size(), 1u);
  EXPECT_NE(diagnostics[0].find("model.layers.3.mlp"), std::string::npos)
      << diagnostics[0];
  EXPECT_NE(diagnostics[0].find("'veomni.matmul' op contracting dimension "
                                "differs: lhs 'tensor<2x8x32xbf16>' has 32 "
                                "but rhs 'tensor<64x16xbf16>' has 16"),
            std::string::npos)
      << diagnostics[0];
}

TEST_F(ModelBuilderTest, RejectsDuplicateNamesAndBadShapesAndDtypes) {
  {
    ModelBuilder b(context, Float32Type::get(&context), loc("dup"));
    EXPECT_TRUE(b.param("w", {4}));
    EXPECT_FALSE(b.param("w", {4}));
    EXPECT_TRUE(b.failed());
  }
  {
    ModelBuilder b(context, Float32Type::get(&context), loc("zero"));
    EXPECT_FALSE(b.param("w", {4, 0}));
  }
  {
    ModelBuilder b(context, IntegerType::get(&context, 8), loc("int8"));
    EXPECT_TRUE(b.failed());
  }
  ASSERT_EQ(diagnostics.size(), 3u);
  EXPECT_NE(diagnostics[0].find("parameter 'w' is declared twice"),
            std::string::npos);
  EXPECT_NE(diagnostics[1].find("every dimension must be positive"),
            std::string::npos);
  EXPECT_NE(diagnostics[2].find("model dtype must be f32, bf16 or f16"),
            std::string::npos);
}

TEST_F(ModelBuilderTest, MixtureOfExpertsBlockHasTheDocumentedShapes) {
  const int64_t T = 12, H = 16, E = 4, K = 2, I = 8;
  ModelBuilder b(context, Float32Type::get(&context), loc("moe"));
  Value x = b.input("hidden", {T, H}, Float32Type::get(&context));
  Value logits = b.linear(x, b.param("mlp.gate.weight", {E, H}));
  auto [weights, indices] = b.moeTopK(logits, K, /*normalize=*/true);
  auto [sorted, groups] = b.moeDispatch(x, indices, E);
  Value up = b.groupedMatmul(sorted, b.param("mlp.experts.up_proj", {E, I, H}),
                             groups, /*transposeWeight=*/true);
  Value down = b.groupedMatmul(
      b.silu(up), b.param("mlp.experts.down_proj", {E, H, I}), groups, true);
  Value out = b.moeCombine(down, weights, indices);
  ASSERT_TRUE(out) << ::testing::PrintToString(diagnostics);

  auto shape = [](Value v) {
    return llvm::to_vector(cast<RankedTensorType>(v.getType()).getShape());
  };
  EXPECT_EQ(shape(weights), (SmallVector<int64_t>{T, K}));
  EXPECT_TRUE(
      cast<RankedTensorType>(indices.getType()).getElementType().isInteger(32));
  EXPECT_EQ(shape(sorted), (SmallVector<int64_t>{T * K, H}));
  EXPECT_EQ(shape(groups), (SmallVector<int64_t>{E}));
  EXPECT_EQ(shape(up), (SmallVector<int64_t>{T * K, I}));
  EXPECT_EQ(shape(out), (SmallVector<int64_t>{T, H}));
  EXPECT_TRUE(succeeded(b.finish(out)));
}

TEST_F(ModelBuilderTest, UseAfterFinishIsAnErrorNotACrash) {
  ModelBuilder b(context, Float32Type::get(&context), loc("once"));
  Value x = b.input("x", {4}, Float32Type::get(&context));
  ASSERT_TRUE(succeeded(b.finish(b.exp(x))));
  EXPECT_FALSE(b.exp(x));
  EXPECT_TRUE(b.failed());
  ASSERT_EQ(diagnostics.size(), 1u);
  EXPECT_NE(diagnostics[0].find("used after finish"), std::string::npos);
}

} // namespace
