//===- VeOmniInterfaces.td - autodiff and sharding hooks ---*- tablegen -*-===//
//
// Two op interfaces: each veomni op gains its backward (VJP) rule and its
// sharding rule by implementing these. Passes (veomni-autodiff,
// veomni-propagate-sharding) only ever talk to the interfaces.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_INTERFACES_TD
#define VEOMNI_INTERFACES_TD

include "mlir/IR/OpBase.td"

def VeOmni_VJPOpInterface : OpInterface<"VJPOpInterface"> {
  let cppNamespace = "::mlir::veomni";
  let description = [{
    The reverse-mode rule of an op. Given the cotangent of each result (a
    null Value where a result does not reach the loss), build with `builder`
    the cotangent of each operand and append one Value per operand to
    `operandGrads` (null where the operand is not differentiable, such as
    token ids). The builder's insertion point is after the op.
  }];
  let methods = [
    InterfaceMethod<
      "Builds the cotangents of the operands from those of the results.",
      "::llvm::LogicalResult", "buildVJP",
      (ins "::mlir::OpBuilder &":$builder,
           "::mlir::ValueRange":$resultGrads,
           "::llvm::SmallVectorImpl<::mlir::Value> &":$operandGrads)>,
  ];
}

def VeOmni_ShardingRuleOpInterface : OpInterface<"ShardingRuleOpInterface"> {
  let cppNamespace = "::mlir::veomni";
  let description = [{
    The sharding rule of an op, in the factor form of OpenXLA Shardy: every
    dimension of every operand and result is a product of named factors;
    a factor that appears in the operands and results alike can be sharded
    freely (pass-through), one that appears only in operands is a reduction
    (sharding it leaves partial sums in the results), and one marked
    need-replication must stay whole.
  }];
  let methods = [
    InterfaceMethod<
      "Returns the factor-based sharding rule of this op.",
      "::mlir::veomni::ShardingRule", "getShardingRule">,
  ];
}

#endif // VEOMNI_INTERFACES_TD
