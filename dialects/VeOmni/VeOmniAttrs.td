//===- VeOmniAttrs.td - veomni enums and attributes --------*- tablegen -*-===//

#ifndef VEOMNI_ATTRS_TD
#define VEOMNI_ATTRS_TD

include "VeOmniDialect.td"
include "mlir/IR/EnumAttr.td"

def VeOmni_ReduceKind : I32EnumAttr<"ReduceKind", "reduction", [
    I32EnumAttrCase<"Sum", 0, "sum">,
    I32EnumAttrCase<"Max", 1, "max">,
    I32EnumAttrCase<"Mean", 2, "mean">]> {
  // A specialised attribute so that it prints as a bare keyword in
  // `veomni.reduce sum ...`.
  let cppNamespace = "::mlir::veomni";
}

def VeOmni_LossReduction : I32EnumAttr<"LossReduction", "loss reduction", [
    I32EnumAttrCase<"Mean", 0, "mean">,
    I32EnumAttrCase<"Sum", 1, "sum">,
    I32EnumAttrCase<"None", 2, "none">]> {
  let cppNamespace = "::mlir::veomni";
  let genSpecializedAttr = 0;
}
def VeOmni_LossReductionAttr
    : EnumAttr<VeOmni_Dialect, VeOmni_LossReduction, "loss_reduction">;

def VeOmni_GeluApprox : I32EnumAttr<"GeluApproximation", "gelu approximation", [
    I32EnumAttrCase<"None", 0, "none">,
    I32EnumAttrCase<"Tanh", 1, "tanh">]> {
  let cppNamespace = "::mlir::veomni";
  let genSpecializedAttr = 0;
}
def VeOmni_GeluApproxAttr
    : EnumAttr<VeOmni_Dialect, VeOmni_GeluApprox, "gelu_approximation">;

#endif // VEOMNI_ATTRS_TD
