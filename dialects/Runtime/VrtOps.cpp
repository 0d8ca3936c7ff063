//===- VrtOps.cpp - the vrt dialect ---------------------------------------===//

#include "dialects/Runtime/VrtOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::vrt;

#include "dialects/Runtime/VrtDialect.cpp.inc"

namespace {
ParseResult parseKernelKindName(AsmParser &parser,
                                ::kernel_table::KernelKind &kind) {
  SMLoc loc = parser.getCurrentLocation();
  std::string name;
  if (parser.parseKeywordOrString(&name))
    return failure();
  auto k = ::kernel_table::KindOfMnemonic(name);
  if (!k)
    return parser.emitError(loc, "no kernel '")
           << name << "' in the kernel table";
  kind = *k;
  return success();
}
} // namespace

/// `matmul` as vrt.kernel's first word.
static ParseResult parseKernelKind(OpAsmParser &parser, KernelKindAttr &attr) {
  ::kernel_table::KernelKind kind;
  if (parseKernelKindName(parser, kind))
    return failure();
  attr = KernelKindAttr::get(parser.getContext(), kind);
  return success();
}

static void printKernelKind(OpAsmPrinter &printer, Operation *,
                            KernelKindAttr attr) {
  printer << attr.getMnemonicName();
}

Attribute KernelKindAttr::parse(AsmParser &parser, Type) {
  ::kernel_table::KernelKind kind;
  if (parser.parseLess() || parseKernelKindName(parser, kind) ||
      parser.parseGreater())
    return {};
  return KernelKindAttr::get(parser.getContext(), kind);
}

void KernelKindAttr::print(AsmPrinter &printer) const {
  printer << "<" << getMnemonicName() << ">";
}

#define GET_ATTRDEF_CLASSES
#include "dialects/Runtime/VrtAttrs.cpp.inc"

void VrtDialect::initialize() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "dialects/Runtime/VrtAttrs.cpp.inc"
      >();
  addOperations<
#define GET_OP_LIST
#include "dialects/Runtime/VrtOps.cpp.inc"
      >();
}

#define GET_OP_CLASSES
#include "dialects/Runtime/VrtOps.cpp.inc"

static int64_t byteSize(MemRefType type) {
  return type.getNumElements() * type.getElementTypeBitWidth() / 8;
}

LogicalResult ConstantOp::verify() {
  auto type = cast<MemRefType>(getBuffer().getType());
  auto value = cast<ShapedType>(getValue().getType());
  if (value.getShape() != type.getShape() ||
      value.getElementType() != type.getElementType())
    return emitOpError("value of type ")
           << value << " does not fill buffer " << type;
  return success();
}

LogicalResult ViewOp::verify() {
  auto in = cast<MemRefType>(getSource().getType());
  auto out = cast<MemRefType>(getResult().getType());
  if (byteSize(in) != byteSize(out))
    return emitOpError("views ") << in << " (" << byteSize(in) << " bytes) as "
                                 << out << " (" << byteSize(out) << " bytes)";
  return success();
}

LogicalResult KernelOp::verify() {
  using ::kernel_table::AttrType;
  const ::kernel_table::KernelInfo &info = getKind().getInfo();
  auto count = [&](StringRef what, size_t n, uint32_t min,
                   uint32_t max) -> LogicalResult {
    if (n >= min && n <= max)
      return success();
    InFlightDiagnostic d = emitOpError("'")
                           << info.mnemonic << "' takes " << min;
    if (max != min)
      d << " to " << max;
    return d << " " << what << ", not " << n;
  };
  if (failed(count("inputs", getIns().size(), info.minIns, info.maxIns)) ||
      failed(count("outputs", getOuts().size(), info.minOuts, info.maxOuts)))
    return failure();
  for (uint32_t i = 0; i < info.numAttrs; ++i) {
    const ::kernel_table::AttrSpec &spec = info.attrs[i];
    Attribute a = (*this)->getAttr(spec.name);
    bool ok = false;
    StringRef want;
    switch (spec.type) {
    case AttrType::Bool:
      ok = !a || isa<UnitAttr, BoolAttr>(a);
      want = "a unit attribute";
      break;
    case AttrType::Int:
      ok = isa_and_nonnull<IntegerAttr>(a);
      want = "an integer";
      break;
    case AttrType::Float:
      ok = isa_and_nonnull<FloatAttr>(a);
      want = "a float";
      break;
    case AttrType::Ints:
      ok = isa_and_nonnull<DenseI64ArrayAttr>(a);
      want = "an array<i64>";
      break;
    case AttrType::Floats:
      ok = isa_and_nonnull<DenseF32ArrayAttr, DenseF64ArrayAttr>(a);
      want = "an array<f32> or array<f64>";
      break;
    }
    if (!ok)
      return emitOpError("'")
             << info.mnemonic << "' needs '" << spec.name << "' as " << want;
  }
  for (NamedAttribute attr : (*this)->getAttrs()) {
    StringRef name = attr.getName().getValue();
    if (name == getKindAttrName() || name == getOperandSegmentSizesAttrName() ||
        name.contains('.'))
      continue;
    bool known = false;
    for (uint32_t i = 0; i < info.numAttrs; ++i)
      known |= name == info.attrs[i].name;
    if (!known)
      return emitOpError("'")
             << info.mnemonic << "' has no attribute '" << name << "'";
  }
  return success();
}
