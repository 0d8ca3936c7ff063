//===- VrtOps.td - the vrt dialect: what the runtime executes -*- tablegen -*-===//
//
// After veomni-lower-to-vrt every tensor is a buffer (a builtin memref with
// a static shape) and every op a kernel call writing into buffers it is
// given. veomni-plan-memory then gives each buffer its byte offset in the
// one arena of the device. Translation to a .vmb program is a walk.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_VRT_OPS_TD
#define VEOMNI_VRT_OPS_TD

include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/OpBase.td"
include "mlir/IR/BuiltinAttributeInterfaces.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

def Vrt_Dialect : Dialect {
  let name = "vrt";
  let cppNamespace = "::mlir::vrt";
  let summary = "Arena buffers and kernel calls, the runtime's view";
  let extraClassDeclaration = [{
    /// Function attribute: total bytes of the arena (set by plan-memory).
    static constexpr ::llvm::StringLiteral kArenaBytesAttrName =
        "vrt.arena_bytes";
    /// Argument attribute: the argument's offset in the arena.
    static constexpr ::llvm::StringLiteral kOffsetAttrName = "vrt.offset";
    /// Module attribute: the comm groups collective kernels name by index,
    /// each the list of mesh axes it spans (veomni-lower-to-vrt).
    static constexpr ::llvm::StringLiteral kCommGroupsAttrName =
        "vrt.comm_groups";
    /// Function attribute (plan-memory): every collective's inputs live
    /// until the first kernel reading its result, so the runtime may run
    /// collectives on a thread of their own until then.
    static constexpr ::llvm::StringLiteral kAsyncCollectivesAttrName =
        "vrt.async_collectives";
  }];
  let useDefaultAttributePrinterParser = 1;
}

class Vrt_Op<string mnemonic, list<Trait> traits = []>
    : Op<Vrt_Dialect, mnemonic, traits>;

def Vrt_KernelKindAttr : AttrDef<Vrt_Dialect, "KernelKind"> {
  let mnemonic = "kernel";
  let summary = "A row of the kernel table (runtime/program/KernelTable.def)";
  let description = [{
    Printed and parsed by the row's mnemonic: `#vrt.kernel<matmul>`, and
    just `matmul` as vrt.kernel's first word.
  }];
  let parameters = (ins "::kernel_table::KernelKind":$kind);
  let hasCustomAssemblyFormat = 1;
  let extraClassDeclaration = [{
    const ::kernel_table::KernelInfo &getInfo() const {
      return ::kernel_table::Info(getKind());
    }
    ::llvm::StringRef getMnemonicName() const { return getInfo().mnemonic; }
  }];
}

def Vrt_Buffer : StaticShapeMemRefOf<[F32, BF16, F16, I32, I64]>;

def Vrt_AllocOp : Vrt_Op<"alloc"> {
  let summary = "A buffer in the arena";
  let description = [{
    Before memory planning `offset` is absent; veomni-plan-memory sets it,
    and two allocs may share bytes when their lifetimes do not overlap.
  }];
  let arguments = (ins OptionalAttr<I64Attr>:$offset);
  let results = (outs Vrt_Buffer:$buffer);
  let assemblyFormat = "attr-dict `:` type($buffer)";
}

def Vrt_ConstantOp : Vrt_Op<"constant"> {
  let summary = "A buffer filled with constant data when the program loads";
  let arguments = (ins ElementsAttr:$value, OptionalAttr<I64Attr>:$offset);
  let results = (outs Vrt_Buffer:$buffer);
  let assemblyFormat = "$value attr-dict `:` type($buffer)";
  let hasVerifier = 1;
}

def Vrt_ViewOp : Vrt_Op<"view", [Pure]> {
  let summary = "The same bytes seen with another shape (a reshape)";
  let arguments = (ins Vrt_Buffer:$source);
  let results = (outs Vrt_Buffer:$result);
  let assemblyFormat = "$source attr-dict `:` type($source) `to` type($result)";
  let hasVerifier = 1;
}

def Vrt_KernelOp : Vrt_Op<"kernel", [AttrSizedOperandSegments]> {
  let summary = "One kernel call: reads `ins`, writes `outs`";
  let description = [{
    `kind` is a row of the kernel table, which also fixes the operand
    counts and the attributes: each of the row's attributes is present with
    its type (a Bool as a unit attribute, present or not), and no other
    attribute is, except discardable ones (with a dialect prefix).
    Destination-passing: the kernel writes its results into the `outs`
    buffers.

    ```mlir
    vrt.kernel matmul ins(%x, %w : memref<2x64xf32>, memref<128x64xf32>)
        outs(%y : memref<2x128xf32>) {transpose_rhs}
    ```
  }];
  let arguments = (ins Vrt_KernelKindAttr:$kind, Variadic<Vrt_Buffer>:$ins,
                       Variadic<Vrt_Buffer>:$outs);
  let assemblyFormat = [{
    custom<KernelKind>($kind) (`ins` `(` $ins^ `:` type($ins) `)`)?
    (`outs` `(` $outs^ `:` type($outs) `)`)? attr-dict
  }];
  let hasVerifier = 1;
}

def Vrt_CollectiveOp : Vrt_Op<"collective", [AttrSizedOperandSegments]> {
  let summary = "A dist collective on buffers, for memory planning";
  let description = [{
    What a `dist` collective of a partitioned step lowers to until the
    runtime has a communicator: memory planning sees its buffers like a
    kernel's, and translation to a program refuses it. `op` is the
    collective's name ("dist.all_gather"); its attributes are kept.
  }];
  let arguments = (ins StrAttr:$op, Variadic<Vrt_Buffer>:$ins,
                       Variadic<Vrt_Buffer>:$outs);
  let assemblyFormat = [{
    $op (`ins` `(` $ins^ `:` type($ins) `)`)?
    (`outs` `(` $outs^ `:` type($outs) `)`)? attr-dict
  }];
}

#endif // VEOMNI_VRT_OPS_TD
