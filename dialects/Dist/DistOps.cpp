//===- DistOps.cpp - the dist dialect -------------------------------------===//

#include "dialects/Dist/DistOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "mlir/Interfaces/FunctionInterfaces.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::dist;

#include "dialects/Dist/DistDialect.cpp.inc"
#define GET_ATTRDEF_CLASSES
#include "dialects/Dist/DistAttrs.cpp.inc"

void DistDialect::initialize() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "dialects/Dist/DistAttrs.cpp.inc"
      >();
  addOperations<
#define GET_OP_LIST
#include "dialects/Dist/DistOps.cpp.inc"
      >();
}

//===----------------------------------------------------------------------===//
// Attributes
//===----------------------------------------------------------------------===//

LogicalResult MeshAxisAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                                   StringRef name, int64_t size) {
  if (name.empty())
    return emitError() << "mesh axis name must not be empty";
  if (size < 1)
    return emitError() << "mesh axis \"" << name << "\" has size " << size
                       << "; sizes must be at least 1";
  return success();
}

LogicalResult MeshAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                               ArrayRef<MeshAxisAttr> axes) {
  llvm::StringSet<> seen;
  for (MeshAxisAttr axis : axes)
    if (!seen.insert(axis.getName()).second)
      return emitError() << "mesh axis \"" << axis.getName()
                         << "\" appears more than once";
  return success();
}

MeshAxisAttr MeshAttr::getAxis(StringRef name) const {
  for (MeshAxisAttr axis : getAxes())
    if (axis.getName() == name)
      return axis;
  return {};
}

int64_t MeshAttr::getNumDevices() const {
  int64_t n = 1;
  for (MeshAxisAttr axis : getAxes())
    n *= axis.getSize();
  return n;
}

Attribute MeshAttr::parse(AsmParser &parser, Type) {
  MLIRContext *ctx = parser.getContext();
  SMLoc loc = parser.getCurrentLocation();
  SmallVector<MeshAxisAttr> axes;
  auto parseAxis = [&]() -> ParseResult {
    SMLoc axisLoc = parser.getCurrentLocation();
    std::string name;
    int64_t size;
    if (parser.parseString(&name) || parser.parseEqual() ||
        parser.parseInteger(size))
      return failure();
    auto axis = MeshAxisAttr::getChecked(
        [&] { return parser.emitError(axisLoc); }, ctx, name, size);
    if (!axis)
      return failure();
    axes.push_back(axis);
    return success();
  };
  if (parser.parseLess() ||
      parser.parseCommaSeparatedList(AsmParser::Delimiter::Square, parseAxis) ||
      parser.parseGreater())
    return {};
  return getChecked([&] { return parser.emitError(loc); }, ctx, axes);
}

void MeshAttr::print(AsmPrinter &printer) const {
  printer << "<[";
  llvm::interleaveComma(getAxes(), printer, [&](MeshAxisAttr axis) {
    printer.printString(axis.getName());
    printer << " = " << axis.getSize();
  });
  printer << "]>";
}

LogicalResult
DimShardingAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                        ArrayRef<StringAttr> axes, bool isClosed,
                        std::optional<int64_t> priority) {
  if (priority && *priority < 0)
    return emitError() << "dimension sharding priority must not be negative, "
                       << "got p" << *priority;
  return success();
}

/// `{"a", "b"}`, `{"a", ?}` (open) or `{}`, then an optional `p<N>`.
static DimShardingAttr parseDimSharding(AsmParser &parser) {
  MLIRContext *ctx = parser.getContext();
  SMLoc loc = parser.getCurrentLocation();
  SmallVector<StringAttr> axes;
  bool isClosed = true;
  if (parser.parseLBrace())
    return {};
  if (failed(parser.parseOptionalRBrace())) {
    do {
      if (succeeded(parser.parseOptionalQuestion())) {
        isClosed = false;
        break;
      }
      std::string name;
      if (parser.parseString(&name))
        return {};
      axes.push_back(StringAttr::get(ctx, name));
    } while (succeeded(parser.parseOptionalComma()));
    if (parser.parseRBrace())
      return {};
  }
  // The priority lexes as one bare identifier, `p2`.
  std::optional<int64_t> priority;
  SMLoc priorityLoc = parser.getCurrentLocation();
  StringRef keyword;
  if (succeeded(parser.parseOptionalKeyword(&keyword))) {
    int64_t value;
    if (!keyword.consume_front("p") || keyword.getAsInteger(10, value)) {
      parser.emitError(priorityLoc, "expected a priority `p<N>` after a "
                                    "dimension sharding");
      return {};
    }
    priority = value;
  }
  return DimShardingAttr::getChecked([&] { return parser.emitError(loc); }, ctx,
                                     axes, isClosed, priority);
}

static void printDimSharding(AsmPrinter &printer, DimShardingAttr dim) {
  printer << '{';
  llvm::interleaveComma(dim.getAxes(), printer, [&](StringAttr axis) {
    printer.printString(axis.getValue());
  });
  if (!dim.getIsClosed())
    printer << (dim.getAxes().empty() ? "?" : ", ?");
  printer << '}';
  if (dim.getPriority())
    printer << 'p' << *dim.getPriority();
}

Attribute DimShardingAttr::parse(AsmParser &parser, Type) {
  if (parser.parseLess())
    return {};
  DimShardingAttr dim = parseDimSharding(parser);
  if (!dim || parser.parseGreater())
    return {};
  return dim;
}

void DimShardingAttr::print(AsmPrinter &printer) const {
  printer << '<';
  printDimSharding(printer, *this);
  printer << '>';
}

static ParseResult parseAxisList(AsmParser &parser,
                                 SmallVectorImpl<StringAttr> &axes) {
  return parser.parseCommaSeparatedList(
      AsmParser::Delimiter::Square, [&]() -> ParseResult {
        std::string name;
        if (parser.parseString(&name))
          return failure();
        axes.push_back(StringAttr::get(parser.getContext(), name));
        return success();
      });
}

static void printAxisList(AsmPrinter &printer, ArrayRef<StringAttr> axes) {
  printer << '[';
  llvm::interleaveComma(axes, printer, [&](StringAttr axis) {
    printer.printString(axis.getValue());
  });
  printer << ']';
}

/// `<@mesh, [dim, ...]>` or `<@mesh, [dim, ...], partial = ["a", ...]>`.
Attribute ShardingAttr::parse(AsmParser &parser, Type) {
  MLIRContext *ctx = parser.getContext();
  StringAttr meshName;
  SmallVector<DimShardingAttr> dims;
  SmallVector<StringAttr> partial;
  if (parser.parseLess() || parser.parseSymbolName(meshName) ||
      parser.parseComma() ||
      parser.parseCommaSeparatedList(
          AsmParser::Delimiter::Square, [&]() -> ParseResult {
            DimShardingAttr dim = parseDimSharding(parser);
            if (!dim)
              return failure();
            dims.push_back(dim);
            return success();
          }))
    return {};
  if (succeeded(parser.parseOptionalComma()) &&
      (parser.parseKeyword("partial") || parser.parseEqual() ||
       parseAxisList(parser, partial)))
    return {};
  if (parser.parseGreater())
    return {};
  return ShardingAttr::get(ctx, FlatSymbolRefAttr::get(meshName), dims,
                           partial);
}

void ShardingAttr::print(AsmPrinter &printer) const {
  printer << '<';
  printer.printAttributeWithoutType(getMeshName());
  printer << ", [";
  llvm::interleaveComma(getDims(), printer, [&](DimShardingAttr dim) {
    printDimSharding(printer, dim);
  });
  printer << ']';
  if (!getPartial().empty()) {
    printer << ", partial = ";
    printAxisList(printer, getPartial());
  }
  printer << '>';
}

//===----------------------------------------------------------------------===//
// Sharding verification
//===----------------------------------------------------------------------===//

MeshOp mlir::dist::lookupMesh(Operation *from, FlatSymbolRefAttr name) {
  return SymbolTable::lookupNearestSymbolFrom<MeshOp>(from, name);
}

static std::string formatAxes(ArrayRef<StringAttr> axes) {
  std::string text = "[";
  llvm::raw_string_ostream os(text);
  llvm::interleaveComma(
      axes, os, [&](StringAttr axis) { os << '"' << axis.getValue() << '"'; });
  os << ']';
  return text;
}

LogicalResult
mlir::dist::verifyShardingFor(RankedTensorType type, ShardingAttr sharding,
                              MeshOp mesh,
                              function_ref<InFlightDiagnostic()> emitError) {
  if (!mesh)
    return emitError() << "sharding for " << type << " refers to unknown mesh "
                       << sharding.getMeshName();
  MeshAttr meshAttr = mesh.getMesh();
  if (static_cast<int64_t>(sharding.getDims().size()) != type.getRank())
    return emitError() << "sharding has " << sharding.getDims().size()
                       << " dimension shardings but " << type << " has rank "
                       << type.getRank();

  llvm::DenseSet<StringAttr> used;
  auto useAxis = [&](StringAttr axis, StringRef where) -> FailureOr<int64_t> {
    MeshAxisAttr meshAxis = meshAttr.getAxis(axis.getValue());
    if (!meshAxis)
      return emitError() << "axis \"" << axis.getValue() << "\" in " << where
                         << " of the sharding for " << type
                         << " is not an axis of mesh "
                         << sharding.getMeshName();
    if (!used.insert(axis).second)
      return emitError() << "axis \"" << axis.getValue() << "\" is used more "
                         << "than once in the sharding for " << type;
    return meshAxis.getSize();
  };

  for (auto [dimIndex, dim] : llvm::enumerate(sharding.getDims())) {
    std::string where = "dimension " + std::to_string(dimIndex);
    int64_t product = 1;
    for (StringAttr axis : dim.getAxes()) {
      FailureOr<int64_t> size = useAxis(axis, where);
      if (failed(size))
        return failure();
      product *= *size;
    }
    int64_t extent = type.getDimSize(dimIndex);
    if (!ShapedType::isDynamic(extent) && extent % product != 0)
      return emitError() << "dimension " << dimIndex << " of " << type
                         << " (size " << extent << ") is not divisible by "
                         << product << ", the product of the sizes of axes "
                         << formatAxes(dim.getAxes());
  }
  for (StringAttr axis : sharding.getPartial())
    if (failed(useAxis(axis, "partial")))
      return failure();
  return success();
}

/// `dist.slice` on a partitioned function's argument or result: a
/// sharding of a mesh that exists, with no partial axes (a slice is of a
/// whole tensor). Its type is the local one, so shapes are not checked.
static LogicalResult verifySlice(Operation *op, NamedAttribute attr,
                                 const std::string &what) {
  auto sharding = dyn_cast<ShardingAttr>(attr.getValue());
  if (!sharding)
    return op->emitError("'")
           << DistDialect::kSliceAttrName << "' on " << what
           << " must be a #dist.sharding, got " << attr.getValue();
  if (!lookupMesh(op, sharding.getMeshName()))
    return op->emitError("'")
           << DistDialect::kSliceAttrName << "' on " << what
           << " names an unknown mesh @" << sharding.getMeshName();
  if (!sharding.getPartial().empty())
    return op->emitError("'") << DistDialect::kSliceAttrName << "' on " << what
                              << " has partial axes";
  return success();
}

LogicalResult DistDialect::verifyRegionArgAttribute(Operation *op,
                                                    unsigned regionIndex,
                                                    unsigned argIndex,
                                                    NamedAttribute attr) {
  std::string what = "argument #" + std::to_string(argIndex);
  if (attr.getName() == kSliceAttrName)
    return verifySlice(op, attr, what);
  if (attr.getName() != kShardingAttrName)
    return op->emitError("unknown dist argument attribute '")
           << attr.getName().getValue() << "' on " << what;
  auto sharding = dyn_cast<ShardingAttr>(attr.getValue());
  if (!sharding)
    return op->emitError("'")
           << kShardingAttrName << "' on " << what
           << " must be a #dist.sharding, got " << attr.getValue();
  Region &region = op->getRegion(regionIndex);
  if (region.empty() || argIndex >= region.getNumArguments())
    return success();
  Type type = region.getArgument(argIndex).getType();
  auto tensorType = dyn_cast<RankedTensorType>(type);
  if (!tensorType)
    return op->emitError("'") << kShardingAttrName << "' is on " << what
                              << " of type " << type << ", not a ranked tensor";
  return verifyShardingFor(tensorType, sharding,
                           lookupMesh(op, sharding.getMeshName()),
                           [&] { return op->emitError() << what << ": "; });
}

LogicalResult DistDialect::verifyRegionResultAttribute(Operation *op,
                                                       unsigned regionIndex,
                                                       unsigned resultIndex,
                                                       NamedAttribute attr) {
  std::string what = "result #" + std::to_string(resultIndex);
  if (attr.getName() == kSliceAttrName)
    return verifySlice(op, attr, what);
  if (attr.getName() != kShardingAttrName)
    return op->emitError("unknown dist result attribute '")
           << attr.getName().getValue() << "' on " << what;
  auto sharding = dyn_cast<ShardingAttr>(attr.getValue());
  if (!sharding)
    return op->emitError("'")
           << kShardingAttrName << "' on " << what
           << " must be a #dist.sharding, got " << attr.getValue();
  // Result types are the function type's, which the region does not carry.
  auto fn = dyn_cast<FunctionOpInterface>(op);
  if (!fn || resultIndex >= fn.getNumResults())
    return success();
  Type type = fn.getResultTypes()[resultIndex];
  auto tensorType = dyn_cast<RankedTensorType>(type);
  if (!tensorType)
    return op->emitError("'") << kShardingAttrName << "' is on " << what
                              << " of type " << type << ", not a ranked tensor";
  return verifyShardingFor(tensorType, sharding,
                           lookupMesh(op, sharding.getMeshName()),
                           [&] { return op->emitError() << what << ": "; });
}

/// Attributes the passes put on ops: `dist.sharding` (one layout per
/// result, veomni-propagate-sharding), the axes a partitioned op
/// communicates over (veomni-partition), and the pipeline's bookkeeping
/// (veomni-pipeline).
LogicalResult DistDialect::verifyOperationAttribute(Operation *op,
                                                    NamedAttribute attr) {
  StringRef name = attr.getName().getValue();
  Attribute value = attr.getValue();
  if (name == kShardingAttrName) {
    auto perResult = dyn_cast<ArrayAttr>(value);
    if (!perResult || perResult.size() != op->getNumResults())
      return op->emitOpError("'")
             << name << "' must list one #dist.sharding per result ("
             << op->getNumResults() << "), got " << value;
    for (auto [i, entry] : llvm::enumerate(perResult)) {
      auto sharding = dyn_cast<ShardingAttr>(entry);
      auto type = dyn_cast<RankedTensorType>(op->getResult(i).getType());
      if (!sharding || !type)
        return op->emitOpError("'")
               << name << "' entry " << i << " must be a #dist.sharding of "
               << "a ranked tensor result, got " << entry;
      if (failed(verifyShardingFor(
              type, sharding, lookupMesh(op, sharding.getMeshName()), [&] {
                return op->emitOpError("'")
                       << name << "' of result #" << i << ": ";
              })))
        return failure();
    }
    return success();
  }
  if (name == DistDialect::kVocabAxesAttrName ||
      name == DistDialect::kTokenAxesAttrName ||
      name == DistDialect::kIndexAxesAttrName ||
      name == DistDialect::kExpertAxesAttrName) {
    auto axes = dyn_cast<ArrayAttr>(value);
    if (!axes || axes.empty() ||
        !llvm::all_of(axes, [](Attribute a) { return isa<StringAttr>(a); }))
      return op->emitOpError("'")
             << name << "' must be a non-empty list of mesh axis names, got "
             << value;
    return success();
  }
  if (name == DistDialect::kStageAttrName ||
      name == DistDialect::kChunkAttrName ||
      name == DistDialect::kKeptFromAttrName ||
      name == DistDialect::kStashFromAttrName) {
    auto index = dyn_cast<IntegerAttr>(value);
    if (!index || index.getInt() < 0)
      return op->emitOpError("'")
             << name << "' must be a non-negative integer, got " << value;
    return success();
  }
  if (name == DistDialect::kReplicatedAttrName) {
    if (!isa<UnitAttr>(value))
      return op->emitOpError("'")
             << name << "' is a unit attribute, got " << value;
    return success();
  }
  if (name == DistDialect::kPipelineAttrName) {
    if (!isa<DictionaryAttr>(value))
      return op->emitOpError("'")
             << name << "' must be a dictionary, got " << value;
    return success();
  }
  return op->emitOpError("unknown dist attribute '") << name << "'";
}

//===----------------------------------------------------------------------===//
// Ops
//===----------------------------------------------------------------------===//

LogicalResult
ShardingConstraintOp::verifySymbolUses(SymbolTableCollection &tables) {
  ShardingAttr sharding = getSharding();
  auto mesh =
      tables.lookupNearestSymbolFrom<MeshOp>(*this, sharding.getMeshName());
  return verifyShardingFor(getInput().getType(), sharding, mesh,
                           [&] { return emitOpError(); });
}

/// The pieces every collective over a group of mesh axes checks.
namespace {
struct Group {
  MeshAttr mesh;
  int64_t size = 1;
  std::string axes; // for messages: ["a", "b"]
};
} // namespace

/// Checks what needs no symbol lookup: `axes` is non-empty and unique.
static LogicalResult verifyAxesList(Operation *op, ArrayAttr axes) {
  if (axes.empty())
    return op->emitOpError("needs at least one mesh axis in 'axes'");
  llvm::DenseSet<Attribute> seen;
  for (Attribute axis : axes)
    if (!seen.insert(axis).second)
      return op->emitOpError("axis ")
             << axis << " appears more than once in 'axes'";
  return success();
}

static FailureOr<MeshAttr> resolveMesh(Operation *op,
                                       SymbolTableCollection &tables,
                                       FlatSymbolRefAttr name) {
  auto mesh = tables.lookupNearestSymbolFrom<MeshOp>(op, name);
  if (!mesh)
    return op->emitOpError("refers to unknown mesh ") << name;
  return mesh.getMesh();
}

static FailureOr<Group> resolveGroup(Operation *op,
                                     SymbolTableCollection &tables,
                                     FlatSymbolRefAttr meshName,
                                     ArrayAttr axes) {
  FailureOr<MeshAttr> mesh = resolveMesh(op, tables, meshName);
  if (failed(mesh))
    return failure();
  Group group;
  group.mesh = *mesh;
  SmallVector<StringAttr> names;
  for (auto axis : axes.getAsRange<StringAttr>()) {
    MeshAxisAttr meshAxis = mesh->getAxis(axis.getValue());
    if (!meshAxis)
      return op->emitOpError("axis \"")
             << axis.getValue() << "\" is not an axis of mesh " << meshName;
    group.size *= meshAxis.getSize();
    names.push_back(axis);
  }
  group.axes = formatAxes(names);
  return group;
}

/// Element types and ranks agree, and `dims` are valid dimensions.
static LogicalResult
verifyLocalTypes(Operation *op, RankedTensorType input, RankedTensorType result,
                 ArrayRef<std::pair<StringRef, int64_t>> dims) {
  if (input.getElementType() != result.getElementType())
    return op->emitOpError("result ")
           << result << " must have the element type of input " << input;
  if (input.getRank() != result.getRank())
    return op->emitOpError("result ")
           << result << " must have the rank of input " << input;
  for (auto [name, dim] : dims)
    if (dim < 0 || dim >= input.getRank())
      return op->emitOpError("'") << name << "' = " << dim
                                  << " is not a dimension of input " << input;
  return success();
}

/// The result must be `expected`; `why` says how it follows from the input.
static LogicalResult verifyResultShape(Operation *op, RankedTensorType input,
                                       RankedTensorType result,
                                       ArrayRef<int64_t> expected,
                                       const Twine &why) {
  if (result.getShape() == expected)
    return success();
  return op->emitOpError("result ")
         << result << " must be "
         << RankedTensorType::get(expected, input.getElementType())
         << ": input " << input << " with " << why;
}

static LogicalResult verifyDivisible(Operation *op, RankedTensorType input,
                                     int64_t dim, const Group &group) {
  if (input.getDimSize(dim) % group.size == 0)
    return success();
  return op->emitOpError("dimension ")
         << dim << " of input " << input << " (size " << input.getDimSize(dim)
         << ") is not divisible by " << group.size
         << ", the size of the group over axes " << group.axes;
}

LogicalResult AllGatherOp::verify() {
  if (failed(verifyAxesList(*this, getAxes())))
    return failure();
  return verifyLocalTypes(*this, getInput().getType(), getResult().getType(),
                          {{"dim", getDim()}});
}

LogicalResult AllGatherOp::verifySymbolUses(SymbolTableCollection &tables) {
  FailureOr<Group> group =
      resolveGroup(*this, tables, getMeshAttr(), getAxes());
  if (failed(group))
    return failure();
  RankedTensorType input = getInput().getType();
  SmallVector<int64_t> expected(input.getShape());
  expected[getDim()] *= group->size;
  return verifyResultShape(
      *this, input, getResult().getType(), expected,
      "dimension " + Twine(getDim()) + " multiplied by " + Twine(group->size) +
          ", the size of the group over axes " + group->axes);
}

/// reduce_scatter and local_split: `dim` divided by the group size.
template <typename OpT>
static LogicalResult verifySplit(OpT op, SymbolTableCollection &tables) {
  FailureOr<Group> group =
      resolveGroup(op, tables, op.getMeshAttr(), op.getAxes());
  if (failed(group))
    return failure();
  RankedTensorType input = op.getInput().getType();
  if (failed(verifyDivisible(op, input, op.getDim(), *group)))
    return failure();
  SmallVector<int64_t> expected(input.getShape());
  expected[op.getDim()] /= group->size;
  return verifyResultShape(
      op, input, op.getResult().getType(), expected,
      "dimension " + Twine(op.getDim()) + " divided by " + Twine(group->size) +
          ", the size of the group over axes " + group->axes);
}

LogicalResult ReduceScatterOp::verify() {
  if (failed(verifyAxesList(*this, getAxes())))
    return failure();
  return verifyLocalTypes(*this, getInput().getType(), getResult().getType(),
                          {{"dim", getDim()}});
}

LogicalResult ReduceScatterOp::verifySymbolUses(SymbolTableCollection &tables) {
  return verifySplit(*this, tables);
}

LogicalResult LocalSplitOp::verify() {
  if (failed(verifyAxesList(*this, getAxes())))
    return failure();
  return verifyLocalTypes(*this, getInput().getType(), getResult().getType(),
                          {{"dim", getDim()}});
}

LogicalResult LocalSplitOp::verifySymbolUses(SymbolTableCollection &tables) {
  return verifySplit(*this, tables);
}

LogicalResult AllReduceOp::verify() { return verifyAxesList(*this, getAxes()); }

LogicalResult AllReduceOp::verifySymbolUses(SymbolTableCollection &tables) {
  return resolveGroup(*this, tables, getMeshAttr(), getAxes());
}

LogicalResult AllToAllOp::verify() {
  if (failed(verifyAxesList(*this, getAxes())))
    return failure();
  return verifyLocalTypes(
      *this, getInput().getType(), getResult().getType(),
      {{"split_dim", getSplitDim()}, {"concat_dim", getConcatDim()}});
}

LogicalResult AllToAllOp::verifySymbolUses(SymbolTableCollection &tables) {
  FailureOr<Group> group =
      resolveGroup(*this, tables, getMeshAttr(), getAxes());
  if (failed(group))
    return failure();
  RankedTensorType input = getInput().getType();
  if (failed(verifyDivisible(*this, input, getSplitDim(), *group)))
    return failure();
  SmallVector<int64_t> expected(input.getShape());
  expected[getSplitDim()] /= group->size;
  expected[getConcatDim()] *= group->size;
  return verifyResultShape(
      *this, input, getResult().getType(), expected,
      "split_dim " + Twine(getSplitDim()) + " divided and concat_dim " +
          Twine(getConcatDim()) + " multiplied by " + Twine(group->size) +
          ", the size of the group over axes " + group->axes);
}

static ParseResult parsePairs(OpAsmParser &parser, DenseI64ArrayAttr &pairs) {
  SmallVector<int64_t> flat;
  if (parser.parseCommaSeparatedList(
          AsmParser::Delimiter::Square, [&]() -> ParseResult {
            int64_t source, target;
            if (parser.parseInteger(source) || parser.parseArrow() ||
                parser.parseInteger(target))
              return failure();
            flat.append({source, target});
            return success();
          }))
    return failure();
  pairs = DenseI64ArrayAttr::get(parser.getContext(), flat);
  return success();
}

static void printPairs(OpAsmPrinter &printer, Operation *,
                       DenseI64ArrayAttr pairs) {
  ArrayRef<int64_t> flat = pairs.asArrayRef();
  printer << '[';
  for (size_t i = 0; i + 1 < flat.size(); i += 2)
    printer << (i ? ", " : "") << flat[i] << " -> " << flat[i + 1];
  printer << ']';
}

LogicalResult PermuteOp::verify() {
  if (getPairs().size() % 2 != 0)
    return emitOpError("'pairs' must hold source, target pairs, got ")
           << getPairs().size() << " numbers";
  return verifyAxesList(*this, getAxes());
}

LogicalResult PermuteOp::verifySymbolUses(SymbolTableCollection &tables) {
  FailureOr<Group> group =
      resolveGroup(*this, tables, getMeshAttr(), getAxes());
  if (failed(group))
    return failure();
  ArrayRef<int64_t> flat = getPairs();
  llvm::DenseSet<int64_t> sources, targets;
  for (size_t i = 0; i + 1 < flat.size(); i += 2) {
    int64_t source = flat[i], target = flat[i + 1];
    for (int64_t index : {source, target})
      if (index < 0 || index >= group->size)
        return emitOpError("pair ")
               << source << " -> " << target << " names device " << index
               << ", outside the group of " << group->size << " over axes "
               << group->axes;
    if (!sources.insert(source).second)
      return emitOpError("device ") << source << " is the source of two pairs";
    if (!targets.insert(target).second)
      return emitOpError("device ") << target << " is the target of two pairs";
  }
  return success();
}

LogicalResult BroadcastOp::verify() { return verifyAxesList(*this, getAxes()); }

LogicalResult BroadcastOp::verifySymbolUses(SymbolTableCollection &tables) {
  FailureOr<Group> group =
      resolveGroup(*this, tables, getMeshAttr(), getAxes());
  if (failed(group))
    return failure();
  int64_t root = getRoot();
  if (root < 0 || root >= group->size)
    return emitOpError("root ") << root << " is outside the group of "
                                << group->size << " over axes " << group->axes;
  return success();
}

/// `peer` is an index along one mesh axis.
static LogicalResult verifyPeer(Operation *op, SymbolTableCollection &tables,
                                FlatSymbolRefAttr meshName, StringRef axis,
                                int64_t peer) {
  FailureOr<MeshAttr> mesh = resolveMesh(op, tables, meshName);
  if (failed(mesh))
    return failure();
  MeshAxisAttr meshAxis = mesh->getAxis(axis);
  if (!meshAxis)
    return op->emitOpError("axis \"")
           << axis << "\" is not an axis of mesh " << meshName;
  if (peer < 0 || peer >= meshAxis.getSize())
    return op->emitOpError("peer ") << peer << " is outside axis \"" << axis
                                    << "\" of size " << meshAxis.getSize();
  return success();
}

LogicalResult SendOp::verifySymbolUses(SymbolTableCollection &tables) {
  return verifyPeer(*this, tables, getMeshAttr(), getAxis(), getPeer());
}

LogicalResult RecvOp::verifySymbolUses(SymbolTableCollection &tables) {
  return verifyPeer(*this, tables, getMeshAttr(), getAxis(), getPeer());
}

#define GET_OP_CLASSES
#include "dialects/Dist/DistOps.cpp.inc"
