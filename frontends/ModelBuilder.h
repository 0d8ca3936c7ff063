//===- ModelBuilder.h - build veomni models from C++ ------------*- C++ -*-===//
//
// The op builder the frontends share. It builds one function,
//
//   func.func @forward(%params..., %inputs...) -> (results...)
//
// whose arguments appear as parameters and batch inputs are declared, each
// named by a `veomni.param` (its Hugging Face tensor name) or `veomni.input`
// argument attribute. Every op goes through the op's own shape inference and
// verifier. The first failure is reported as an MLIR diagnostic and makes the
// builder fail: from then on every call returns a null Value and `finish`
// fails, so importers are straight-line code that checks once, at the end.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_FRONTENDS_MODELBUILDER_H
#define VEOMNI_FRONTENDS_MODELBUILDER_H

#include "dialects/VeOmni/VeOmniOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace mlir::veomni {

/// A declared function argument: a parameter or a batch input.
struct ArgumentInfo {
  std::string name;
  RankedTensorType type;
  bool isParam;
  /// How a parameter starts without weights: "ones", "zeros", or "" for
  /// normal (declared where the builder sees it used as a norm weight or a
  /// bias).
  std::string init = {};
  /// A token-aligned input's batch dimension (then the sequence), or -1.
  int64_t tokenBatchDim = -1;
  /// An encoder input's packed-rows dimension (patches, frames), or -1.
  int64_t packDim = -1;
  /// A persistent buffer transformers keeps out of its parameters
  /// (DeepSeek's e_score_correction_bias): loaded and saved like a
  /// parameter, reached by no gradient, not counted among the parameters.
  bool buffer = false;
  /// A MoE router's weight (VeOmniDialect::kRouterAttrName).
  bool router = false;
};

class ModelBuilder {
public:
  /// `dtype` is the element type of parameters and activations (f32, bf16
  /// or f16). Ops are located at `loc` until setLocation says otherwise.
  ModelBuilder(MLIRContext &context, Type dtype, Location loc,
               StringRef funcName = "forward");
  ~ModelBuilder();

  MLIRContext *getContext() const { return context; }
  Type dtype() const { return modelType; }
  OpBuilder &builder() { return opBuilder; }
  /// True once an op or declaration failed; see the file comment.
  bool failed() const { return hasFailed; }
  /// Locates the following ops (name them after the HF module they build,
  /// so that a diagnostic says where in the model it arose).
  void setLocation(Location loc) { location = loc; }
  /// Locates the following ops in the HF module `name` (for people) of
  /// kind `kind`, in repeated block `layer` (-1: none); passes read the
  /// kind and layer (#veomni.module), never the name.
  void setModule(StringRef name, ModuleKind kind, int64_t layer = -1);
  Location getLocation() const { return location; }

  //===--------------------------------------------------------------------===//
  // Arguments
  //===--------------------------------------------------------------------===//

  /// A parameter of the model dtype, named by its Hugging Face tensor name.
  Value param(StringRef hfName, ArrayRef<int64_t> shape);
  /// A batch input (token ids, labels, positions, pixel patches, ...).
  Value input(StringRef name, ArrayRef<int64_t> shape, Type elementType);
  /// A token-aligned batch input (ids, labels, positions): dimensions
  /// `batchDim` and `batchDim + 1` are the batch and the sequence.
  /// An encoder input packed across the batch: dimension `packDim`
  /// enumerates its patches or frames (veomni.pack_dim).
  Value packedInput(StringRef name, ArrayRef<int64_t> shape, Type elementType,
                    int64_t packDim);
  Value tokenInput(StringRef name, ArrayRef<int64_t> shape, Type elementType,
                   int64_t batchDim = 0);
  const std::vector<ArgumentInfo> &arguments() const { return args; }
  /// Declares how parameter `v` starts without weights ("ones" for norm
  /// weights, "zeros" for biases and Gemma's (1 + w) norms); no-op for
  /// other values. Ops that take norm weights and biases declare theirs.
  void initAs(Value v, StringRef init);
  /// Marks parameter `v` a buffer (ArgumentInfo::buffer).
  void markBuffer(Value v);
  /// Marks parameter `v` a MoE router's weight (ArgumentInfo::router).
  void markRouter(Value v);
  /// Marks the grouped matmul whose result is `product` as computing the
  /// expert parameter `hfParam` (VeOmniDialect::kExpertsAttrName).
  void markExperts(Value product, StringRef hfParam, int64_t order,
                   int64_t column, int64_t in);

  //===--------------------------------------------------------------------===//
  // Ops
  //===--------------------------------------------------------------------===//

  /// An f32 constant of the given values and shape.
  Value constant(ArrayRef<float> values, ArrayRef<int64_t> shape);
  /// A splat constant; `elementType` defaults to the model dtype.
  Value splat(double value, ArrayRef<int64_t> shape, Type elementType = {});
  Value matmul(Value lhs, Value rhs, bool transposeLhs = false,
               bool transposeRhs = false);
  /// `x @ weight^T (+ bias)` for an HF Linear with weight [out, in].
  Value linear(Value x, Value weight, Value bias = {});
  Value groupedMatmul(Value input, Value weight, Value groupSizes,
                      bool transposeWeight);
  Value conv1d(Value input, Value weight, Value bias, int64_t stride,
               int64_t padding);

  Value add(Value lhs, Value rhs);
  Value sub(Value lhs, Value rhs);
  Value mul(Value lhs, Value rhs);
  Value div(Value lhs, Value rhs);
  /// `x * factor`, the factor a splat of x's type.
  Value scale(Value x, double factor);
  Value neg(Value x);
  Value exp(Value x);
  Value log(Value x);
  Value sqrt(Value x);
  Value rsqrt(Value x);
  Value sin(Value x);
  Value cos(Value x);
  Value tanh(Value x);
  Value sigmoid(Value x);
  Value silu(Value x);
  Value gelu(Value x, bool tanhApproximation = false);
  Value cast(Value x, Type elementType);
  /// min(max(x, lo), hi); a missing bound is no limit.
  Value clamp(Value x, std::optional<double> lo, std::optional<double> hi);

  Value reduce(ReduceKind kind, Value x, ArrayRef<int64_t> dims,
               bool keepDims = false);
  Value softmax(Value x, int64_t dim);
  Value rmsNorm(Value x, Value weight, double epsilon);
  Value layerNorm(Value x, Value weight, Value bias, double epsilon);

  /// Broadcasts `x` to `shape`, operand dim i going to result dim dims[i].
  Value broadcast(Value x, ArrayRef<int64_t> shape, ArrayRef<int64_t> dims);
  /// Broadcasts `x` to `shape` aligning trailing dimensions (NumPy rule).
  Value broadcastTrailing(Value x, ArrayRef<int64_t> shape);
  Value reshape(Value x, ArrayRef<int64_t> shape);
  Value transpose(Value x, ArrayRef<int64_t> perm);
  Value slice(Value x, ArrayRef<int64_t> start, ArrayRef<int64_t> limit,
              ArrayRef<int64_t> step = {});
  Value concat(ValueRange inputs, int64_t dim);
  Value gather(Value source, Value indices, int64_t axis = 0);
  Value scatterAdd(Value dest, Value indices, Value updates, int64_t axis = 0);

  /// `mropeSection` empty: 1-D rope over positions [B, S]; else positions
  /// are [N, B, S] (`interleaved`: Qwen3-VL's round-robin sections).
  /// `invFreq` empty: theta^(-2j/D).
  Value rope(Value x, Value positions, double theta,
             ArrayRef<int64_t> mropeSection = {}, ArrayRef<float> invFreq = {},
             double attentionScaling = 1.0, bool interleaved = false);
  /// `window` > 0: a causal sliding window; `sinks` [Hq]: gpt-oss's sink
  /// logits (null: none).
  Value attention(Value query, Value key, Value value, Value segmentIds,
                  bool causal, double scale, int64_t window = 0,
                  Value sinks = {});
  Value crossEntropy(Value logits, Value labels, int64_t ignoreIndex = -100);

  /// Router weights [T, k] and expert indices [T, k].
  std::pair<Value, Value> moeTopK(Value logits, int64_t k, bool normalize);
  /// Tokens in expert order [T*k, H] and group sizes [E].
  std::pair<Value, Value> moeDispatch(Value input, Value indices,
                                      int64_t numExperts);
  Value moeCombine(Value input, Value weights, Value indices);
  /// DeepSeek-V3's router over `scores` [T, E] with a selection `bias` [E]:
  /// weights [T, k] and indices [T, k].
  std::pair<Value, Value> moeGroupTopK(Value scores, Value bias, int64_t k,
                                       int64_t groups, int64_t topkGroups,
                                       bool normalize, double scale);

  //===--------------------------------------------------------------------===//
  // Finishing
  //===--------------------------------------------------------------------===//

  /// Returns `results` from the function, verifies the module and hands it
  /// over. Fails (the diagnostics already emitted) if anything failed.
  FailureOr<OwningOpRef<ModuleOp>> finish(ValueRange results);

private:
  /// Creates an op whose result types its shape inference computes.
  template <typename OpTy, typename... Args>
  Operation *createInferred(ValueRange operands, Args &&...args);
  /// Creates an op with the given result type, then verifies it.
  template <typename OpTy, typename... Args>
  Value createTyped(ValueRange operands, Type resultType, Args &&...args);
  Value result(Operation *op, unsigned i = 0) {
    return op ? op->getResult(i) : Value();
  }
  /// Records a failure unless every value is non-null; returns success.
  bool operandsUsable(ValueRange operands);
  Value declare(StringRef name, RankedTensorType type, bool isParam);
  UnitAttr unit(bool set) { return set ? opBuilder.getUnitAttr() : UnitAttr(); }

  MLIRContext *context;
  Type modelType;
  Location location;
  OpBuilder opBuilder;
  OwningOpRef<ModuleOp> module;
  func::FuncOp func;
  std::vector<ArgumentInfo> args;
  bool hasFailed = false;
};

} // namespace mlir::veomni

#endif // VEOMNI_FRONTENDS_MODELBUILDER_H
