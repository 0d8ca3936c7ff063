//===- LowerToVrt.cpp - veomni ops to kernel calls on buffers -------------===//

#include "dialects/VeOmni/VeOmniOps.h"
#include "passes/Passes.h"
#include "runtime/program/Fused.h"
#include "llvm/ADT/DenseSet.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/IRMapping.h"

#include <limits>
#include <map>

namespace mlir::veomni {
#define GEN_PASS_DEF_LOWERTOVRT
#include "passes/Passes.h.inc"
} // namespace mlir::veomni

using namespace mlir;
using namespace mlir::veomni;

namespace {

MemRefType bufferType(Type tensor) {
  auto t = cast<RankedTensorType>(tensor);
  return MemRefType::get(t.getShape(), t.getElementType());
}

/// The kernel-table row a veomni op becomes: the op's name without the
/// dialect prefix, but for the variants the table keeps apart (the
/// reduction of reduce, the tanh form of gelu, the inverse of rope).
std::string kernelMnemonic(Operation *op) {
  if (auto r = dyn_cast<ReduceOp>(op))
    return ("reduce_" + stringifyReduceKind(r.getKind())).str();
  if (auto g = dyn_cast<GeluOp>(op);
      g && g.getApproximation() == GeluApproximation::Tanh)
    return "gelu_tanh";
  if (isa<RopeOp>(op) && op->hasAttr("inverse"))
    return "rope_inverse";
  return op->getName().stripDialect().str();
}

/// The value of the table's attribute `spec` in `attrs` (op's), or the
/// table's default. Enumerations become their numbers as the table says.
FailureOr<Attribute> kernelAttr(Operation *op, DictionaryAttr attrs,
                                const ::kernel_table::AttrSpec &spec) {
  using ::kernel_table::AttrType;
  Builder b(op->getContext());
  StringRef name = spec.name;
  Attribute given = attrs.get(name);
  switch (spec.type) {
  case AttrType::Bool:
    if (name == "tanh_approximation") {
      auto approx =
          dyn_cast_or_null<GeluApproximationAttr>(attrs.get("approximation"));
      return approx && approx.getValue() == GeluApproximation::Tanh
                 ? Attribute(b.getUnitAttr())
                 : Attribute();
    }
    if (auto flag = dyn_cast_or_null<BoolAttr>(given))
      return flag.getValue() ? Attribute(b.getUnitAttr()) : Attribute();
    return given ? Attribute(b.getUnitAttr()) : Attribute();
  case AttrType::Int:
    if (auto r = dyn_cast_or_null<LossReductionAttr>(given))
      return Attribute(
          b.getI64IntegerAttr(r.getValue() == LossReduction::Mean  ? 0
                              : r.getValue() == LossReduction::Sum ? 1
                                                                   : 2));
    if (auto i = dyn_cast_or_null<IntegerAttr>(given))
      return Attribute(b.getI64IntegerAttr(i.getValue().getSExtValue()));
    if (given)
      break;
    return Attribute(
        b.getI64IntegerAttr(static_cast<int64_t>(spec.defaultValue)));
  case AttrType::Float:
    if (auto f = dyn_cast_or_null<FloatAttr>(given))
      return Attribute(b.getF64FloatAttr(f.getValueAsDouble()));
    if (auto i = dyn_cast_or_null<IntegerAttr>(given))
      return Attribute(b.getF64FloatAttr(i.getValue().getSExtValue()));
    if (given)
      break;
    return Attribute(b.getF64FloatAttr(spec.defaultValue));
  case AttrType::Ints:
    if (isa_and_nonnull<DenseI64ArrayAttr>(given))
      return given;
    if (given)
      break;
    return Attribute(b.getDenseI64ArrayAttr({}));
  case AttrType::Floats:
    if (isa_and_nonnull<DenseF32ArrayAttr, DenseF64ArrayAttr>(given))
      return given;
    if (given)
      break;
    return Attribute(b.getDenseF64ArrayAttr({}));
  }
  return op->emitOpError("attribute '")
         << name << "' = " << given
         << " does not have the type its runtime kernel takes";
}

/// A kernel call of `op` on buffers, with the table's attributes taken
/// from `op` (or their defaults, with `ownAttrs` false).
FailureOr<vrt::KernelOp> createKernel(OpBuilder &builder, Operation *op,
                                      StringRef mnemonic, ValueRange ins,
                                      ValueRange outs, bool ownAttrs = true) {
  auto kind = ::kernel_table::KindOfMnemonic(mnemonic);
  if (!kind)
    return op->emitOpError("has no runtime kernel ('")
           << mnemonic << "' is not in runtime/program/KernelTable.def)";
  auto kernel = vrt::KernelOp::create(
      builder, op->getLoc(), vrt::KernelKindAttr::get(op->getContext(), *kind),
      ins, outs);
  const ::kernel_table::KernelInfo &info = ::kernel_table::Info(*kind);
  DictionaryAttr from = ownAttrs ? op->getAttrDictionary()
                                 : DictionaryAttr::get(op->getContext());
  for (uint32_t i = 0; i < info.numAttrs; ++i) {
    FailureOr<Attribute> a = kernelAttr(op, from, info.attrs[i]);
    if (failed(a))
      return failure();
    if (*a)
      kernel->setAttr(info.attrs[i].name, *a);
  }
  return kernel;
}

/// A `fused` kernel for `op`: its body as a register program
/// (runtime/program/Fused.h).
FailureOr<vrt::KernelOp> createFusedKernel(OpBuilder &builder, FusedOp op,
                                           ValueRange ins, ValueRange outs) {
  using ::kernel_table::fused::kMaxRegisters;
  using FOp = ::kernel_table::fused::Op;
  FailureOr<vrt::KernelOp> kernel =
      createKernel(builder, op, "fused", ins, outs, /*ownAttrs=*/false);
  if (failed(kernel))
    return failure();
  Block &body = op.getBody().front();
  int64_t domain = 1;
  body.walk([&](Operation *inner) {
    for (Type t :
         llvm::concat<Type>(inner->getOperandTypes(), inner->getResultTypes()))
      domain = std::max(domain, cast<RankedTensorType>(t).getNumElements());
  });
  for (Type t : body.getArgumentTypes())
    domain = std::max(domain, cast<RankedTensorType>(t).getNumElements());

  // Each value's last reader (the yield reads last), for register reuse.
  DenseMap<Operation *, int64_t> position;
  int64_t at = 0;
  for (Operation &inner : body)
    position[&inner] = at++;
  DenseMap<Value, int64_t> reg;
  SmallVector<int64_t> regEnd; // per register: its values' last reader
  auto lastUse = [&](Value v) {
    int64_t end = -1;
    for (Operation *user : v.getUsers())
      end = std::max(end, position.lookup(user));
    return end;
  };
  auto bind = [&](Value v, int64_t r) {
    reg[v] = r;
    regEnd[r] = std::max(regEnd[r], lastUse(v));
  };
  auto fresh = [&](Value v, int64_t now) -> int64_t {
    for (int64_t r = 0; r < static_cast<int64_t>(regEnd.size()); ++r)
      if (regEnd[r] < now) {
        regEnd[r] = -1;
        bind(v, r);
        return r;
      }
    regEnd.push_back(-1);
    bind(v, static_cast<int64_t>(regEnd.size()) - 1);
    return reg[v];
  };

  SmallVector<int64_t> code, modes, results;
  SmallVector<double> constants;
  auto emit = [&](FOp o, int64_t dst, int64_t a = 0, int64_t b = 0) {
    code.append({static_cast<int64_t>(o), dst, a, b});
  };
  auto round = [&](Type t, int64_t r) {
    Type e = cast<RankedTensorType>(t).getElementType();
    if (e.isBF16())
      emit(FOp::RoundBf16, r, r);
    else if (e.isF16())
      emit(FOp::RoundF16, r, r);
  };
  // Each constant value once, in a register of its own that is never
  // reused: written by one Const, the kernel fills it once per thread
  // instead of once per block.
  std::map<double, int64_t> constantRegs;
  auto constant = [&](double v, int64_t now) -> int64_t {
    auto it = constantRegs.find(v);
    if (it != constantRegs.end())
      return it->second;
    constants.push_back(v);
    regEnd.push_back(std::numeric_limits<int64_t>::max());
    int64_t r = static_cast<int64_t>(regEnd.size()) - 1;
    emit(FOp::Const, r, static_cast<int64_t>(constants.size()) - 1);
    constantRegs[v] = r;
    return r;
  };
  // Inputs: registers 0..I-1, read as their users need.
  for (BlockArgument arg : body.getArguments()) {
    regEnd.push_back(-1);
    bind(arg, arg.getArgNumber());
    int64_t n = cast<RankedTensorType>(arg.getType()).getNumElements();
    int64_t mode = n == domain ? 0 : n == 1 ? 1 : -1;
    for (Operation *user : arg.getUsers()) {
      auto b = dyn_cast<BroadcastOp>(user);
      int64_t m = b ? fusedInputMode(b) : (n == domain ? 0 : -1);
      if (m < 0 || (mode >= 0 && n != 1 && m != mode))
        return op.emitOpError("input #")
               << arg.getArgNumber() << " " << arg.getType()
               << " is not read elementwise, as a broadcast over leading or "
                  "over trailing dimensions of the "
               << domain << "-element domain";
      if (n != 1)
        mode = m;
    }
    modes.push_back(mode < 0 ? 0 : mode);
  }
  DenseMap<Value, int64_t> reduction; // value -> Fused.h's Reduce
  for (Operation &inner : body) {
    int64_t now = position[&inner];
    if (auto yield = dyn_cast<YieldOp>(inner)) {
      for (Value v : yield.getValues())
        results.append({reg.lookup(v), reduction.lookup(v)});
      break;
    }
    Value result = inner.getResult(0);
    if (isa<BroadcastOp, ReshapeOp>(inner)) {
      bind(result, reg.lookup(inner.getOperand(0)));
      continue;
    }
    if (auto r = dyn_cast<ReduceOp>(inner)) {
      auto in = cast<RankedTensorType>(r.getInput().getType());
      ArrayRef<int64_t> dims = r.getDims();
      for (auto [i, d] : llvm::enumerate(dims))
        if (d != in.getRank() - static_cast<int64_t>(dims.size()) +
                     static_cast<int64_t>(i))
          return r.emitOpError("in a veomni.fused body must reduce trailing "
                               "dimensions");
      if (!llvm::all_of(result.getUsers(),
                        [](Operation *u) { return isa<YieldOp>(u); }))
        return r.emitOpError("in a veomni.fused body must be yielded, not "
                             "read: its result leaves the iteration domain");
      bind(result, reg.lookup(r.getInput()));
      reduction[result] = r.getKind() == ReduceKind::Sum   ? 1
                          : r.getKind() == ReduceKind::Max ? 2
                                                           : 3;
      continue;
    }
    if (auto c = dyn_cast<ConstantOp>(inner)) {
      auto splat = dyn_cast<SplatElementsAttr>(c.getValue());
      if (!splat)
        return c.emitOpError("in a veomni.fused body must be a splat");
      bind(result,
           constant(splat.getSplatValue<APFloat>().convertToDouble(), now));
      continue;
    }
    if (auto cast = dyn_cast<CastOp>(inner)) {
      // Widening is exact: the same register.
      if (cast.getType().getElementType().isF32()) {
        bind(result, reg.lookup(cast.getInput()));
        continue;
      }
      // Narrowing rounds a copy (x * 1), the input staying as it is.
      int64_t one = constant(1.0, now);
      int64_t r = fresh(result, now);
      emit(FOp::Mul, r, reg.lookup(cast.getInput()), one);
      round(result.getType(), r);
      continue;
    }
    // The elementwise ops, by type; gelu by its approximation.
    const std::pair<TypeID, FOp> kinds[] = {
        {TypeID::get<NegOp>(), FOp::Neg},
        {TypeID::get<ExpOp>(), FOp::Exp},
        {TypeID::get<LogOp>(), FOp::Log},
        {TypeID::get<SqrtOp>(), FOp::Sqrt},
        {TypeID::get<RsqrtOp>(), FOp::Rsqrt},
        {TypeID::get<SinOp>(), FOp::Sin},
        {TypeID::get<CosOp>(), FOp::Cos},
        {TypeID::get<TanhOp>(), FOp::Tanh},
        {TypeID::get<SigmoidOp>(), FOp::Sigmoid},
        {TypeID::get<SiluOp>(), FOp::Silu},
        {TypeID::get<AddOp>(), FOp::Add},
        {TypeID::get<SubOp>(), FOp::Sub},
        {TypeID::get<MulOp>(), FOp::Mul},
        {TypeID::get<DivOp>(), FOp::Div},
        {TypeID::get<IsFiniteOp>(), FOp::IsFinite},
        {TypeID::get<MulNoNanOp>(), FOp::MulNoNan}};
    const auto *kind = llvm::find_if(kinds, [&](const auto &k) {
      return k.first == inner.getName().getTypeID();
    });
    FOp o;
    if (auto g = dyn_cast<GeluOp>(inner))
      o = g.getApproximation() == GeluApproximation::Tanh ? FOp::GeluTanh
                                                          : FOp::Gelu;
    else if (kind != std::end(kinds))
      o = kind->second;
    else
      return inner.emitOpError("has no fused form");
    int64_t a = reg.lookup(inner.getOperand(0));
    int64_t b =
        inner.getNumOperands() > 1 ? reg.lookup(inner.getOperand(1)) : 0;
    int64_t r = fresh(result, now);
    emit(o, r, a, b);
    round(result.getType(), r);
  }
  if (static_cast<int64_t>(regEnd.size()) > kMaxRegisters)
    return op.emitOpError("needs ")
           << regEnd.size() << " registers, more than the fused kernel's "
           << kMaxRegisters;
  (*kernel)->setAttr("code", builder.getDenseI64ArrayAttr(code));
  (*kernel)->setAttr("constants", builder.getDenseF64ArrayAttr(constants));
  (*kernel)->setAttr("input_modes", builder.getDenseI64ArrayAttr(modes));
  (*kernel)->setAttr("results", builder.getDenseI64ArrayAttr(results));
  (*kernel)->setAttr("segments", builder.getI64IntegerAttr(1));
  return kernel;
}

/// The comm groups of the module's collective kernels, by their axes (in
/// the order the collective lists them); kernels name them by index.
struct CommGroups {
  SmallVector<Attribute> axes;
  int64_t indexOf(ArrayAttr groupAxes) {
    for (auto [i, a] : llvm::enumerate(axes))
      if (a == groupAxes)
        return static_cast<int64_t>(i);
    axes.push_back(groupAxes);
    return static_cast<int64_t>(axes.size()) - 1;
  }
};

LogicalResult lowerFunction(func::FuncOp func, CommGroups &groups) {
  if (func.getBody().getBlocks().size() != 1)
    return func.emitError("veomni-lower-to-vrt expects a single-block "
                          "function, @")
           << func.getName() << " has " << func.getBody().getBlocks().size();
  Block &block = func.getBody().front();
  OpBuilder builder(func.getContext());
  IRMapping buffers;

  for (BlockArgument arg : block.getArguments()) {
    if (!isa<RankedTensorType>(arg.getType()))
      return func.emitError("argument #")
             << arg.getArgNumber() << " of @" << func.getName()
             << " is not a tensor: " << arg.getType();
  }

  SmallVector<Operation *> lowered;
  for (Operation &op : llvm::make_early_inc_range(block)) {
    builder.setInsertionPoint(&op);
    Location loc = op.getLoc();
    if (auto ret = dyn_cast<func::ReturnOp>(op)) {
      SmallVector<Value> results;
      for (Value v : ret.getOperands()) {
        // An argument returned as it is (a gradient that is an input)
        // is copied: results live in buffers the program owns.
        if (isa<BlockArgument>(v)) {
          Value buf = vrt::AllocOp::create(
              builder, loc, bufferType(v.getType()), IntegerAttr());
          if (failed(createKernel(builder, &op, "copy", ValueRange(v),
                                  ValueRange(buf))))
            return failure();
          results.push_back(buf);
          continue;
        }
        results.push_back(buffers.lookup(v));
      }
      func::ReturnOp::create(builder, loc, results);
      lowered.push_back(&op);
      continue;
    }
    // Collectives of a partitioned step are kernels like any other.
    if (!isa<VeOmniDialect, dist::DistDialect>(op.getDialect()))
      return op.emitOpError("cannot be lowered to vrt: not a veomni op or a "
                            "collective");

    if (auto c = dyn_cast<ConstantOp>(op)) {
      // A splat (zeros for gradients, ones, scales) is filled when the step
      // runs, instead of being stored in the program.
      if (auto splat = dyn_cast<SplatElementsAttr>(c.getValue())) {
        Value buf = vrt::AllocOp::create(builder, loc, bufferType(c.getType()),
                                         IntegerAttr());
        FailureOr<vrt::KernelOp> fill =
            createKernel(builder, &op, "fill", ValueRange(), ValueRange(buf),
                         /*ownAttrs=*/false);
        if (failed(fill))
          return failure();
        Attribute value = splat.getSplatValue<Attribute>();
        double v = 0;
        if (auto f = dyn_cast<FloatAttr>(value))
          v = f.getValueAsDouble();
        else if (auto i = dyn_cast<IntegerAttr>(value))
          v = static_cast<double>(i.getValue().getSExtValue());
        else
          return c.emitOpError("splat of ") << value << " cannot be filled";
        (*fill)->setAttr("value", builder.getF64FloatAttr(v));
        buffers.map(c.getResult(), buf);
      } else {
        Value buf = vrt::ConstantOp::create(
            builder, loc, bufferType(c.getType()), c.getValue(), IntegerAttr());
        buffers.map(c.getResult(), buf);
      }
    } else if (auto r = dyn_cast<ReshapeOp>(op)) {
      // A reshape of a contiguous buffer moves no bytes.
      Value source = r.getInput();
      Value buf = vrt::ViewOp::create(
          builder, loc, bufferType(r.getType()),
          isa<BlockArgument>(source) ? source : buffers.lookup(source));
      buffers.map(r.getResult(), buf);
    } else {
      SmallVector<Value> ins, outs;
      for (Value operand : op.getOperands())
        ins.push_back(isa<BlockArgument>(operand) ? operand
                                                  : buffers.lookup(operand));
      for (Value result : op.getResults()) {
        Value buf = vrt::AllocOp::create(
            builder, loc, bufferType(result.getType()), IntegerAttr());
        buffers.map(result, buf);
        outs.push_back(buf);
      }
      if (isa<dist::AllGatherOp, dist::ReduceScatterOp, dist::AllReduceOp,
              dist::AllToAllOp, dist::LocalSplitOp>(op)) {
        // A collective kernel on its comm group (the runtime's
        // communicator runs it).
        FailureOr<vrt::KernelOp> kernel =
            createKernel(builder, &op, op.getName().stripDialect(), ins, outs);
        if (failed(kernel))
          return failure();
        (*kernel)->setAttr("group", builder.getI64IntegerAttr(groups.indexOf(
                                        op.getAttrOfType<ArrayAttr>("axes"))));
      } else if (isa<dist::SendOp, dist::RecvOp>(op)) {
        // A pipeline stage's send or receive, to its peer along one axis.
        FailureOr<vrt::KernelOp> kernel =
            createKernel(builder, &op, op.getName().stripDialect(), ins, outs);
        if (failed(kernel))
          return failure();
        auto axis = op.getAttrOfType<StringAttr>("axis");
        (*kernel)->setAttr("group", builder.getI64IntegerAttr(groups.indexOf(
                                        builder.getArrayAttr({axis}))));
      } else if (isa<dist::DistDialect>(op.getDialect())) {
        // Permutes and broadcasts have no runtime kernel
        // yet: memory planning still sees their buffers; translation
        // refuses them.
        auto c = vrt::CollectiveOp::create(
            builder, loc, op.getName().getStringRef(), ins, outs);
        for (NamedAttribute attr : op.getAttrs())
          c->setAttr(attr.getName(), attr.getValue());
      } else if (auto fused = dyn_cast<FusedOp>(op)) {
        if (failed(createFusedKernel(builder, fused, ins, outs)))
          return failure();
      } else {
        FailureOr<vrt::KernelOp> kernel =
            createKernel(builder, &op, kernelMnemonic(&op), ins, outs);
        if (failed(kernel))
          return failure();
        // A token-split cross entropy counts its tokens over a comm group;
        // a lookup in a split table finds its slice from its place in one.
        if (auto tokens = op.getAttrOfType<ArrayAttr>(
                dist::DistDialect::kTokenAxesAttrName))
          (*kernel)->setAttr("token_group",
                             builder.getI64IntegerAttr(groups.indexOf(tokens)));
        if (auto index = op.getAttrOfType<ArrayAttr>(
                dist::DistDialect::kIndexAxesAttrName))
          (*kernel)->setAttr("index_group",
                             builder.getI64IntegerAttr(groups.indexOf(index)));
        if (auto vocab = op.getAttrOfType<ArrayAttr>(
                dist::DistDialect::kVocabAxesAttrName))
          (*kernel)->setAttr("vocab_group",
                             builder.getI64IntegerAttr(groups.indexOf(vocab)));
        if (auto experts = op.getAttrOfType<ArrayAttr>(
                dist::DistDialect::kExpertAxesAttrName))
          (*kernel)->setAttr("expert_group", builder.getI64IntegerAttr(
                                                 groups.indexOf(experts)));
      }
    }
    lowered.push_back(&op);
  }
  for (Operation *op : llvm::reverse(lowered)) {
    op->dropAllUses();
    op->erase();
  }

  for (BlockArgument arg : block.getArguments())
    arg.setType(bufferType(arg.getType()));
  auto ret = cast<func::ReturnOp>(block.getTerminator());
  func.setFunctionType(FunctionType::get(
      func.getContext(), block.getArgumentTypes(), ret.getOperandTypes()));
  return success();
}

bool isFused(Operation *op) {
  auto k = dyn_cast_or_null<vrt::KernelOp>(op);
  return k && k.getKind().getKind() == ::kernel_table::KernelKind::Fused;
}

/// Multi-tensor: within a stretch of fused kernels (the optimizer's is the
/// whole update), those with one program (the update of every matrix,
/// every vector) become one call over that many segments, placed where the
/// last of them was. A kernel that reads what a pending one writes first
/// places that one's call; any other kind of kernel places them all.
/// Buffer declarations (allocs, views) do not interrupt a stretch.
void mergeSegments(func::FuncOp func) {
  Block &block = func.getBody().front();
  // Each pending run, and the buffers (roots) its kernels write: whether a
  // kernel reads one of them is a lookup, not a scan of the run (the
  // optimizer's stretch holds a kernel per parameter).
  struct Run {
    SmallVector<vrt::KernelOp> kernels;
    llvm::DenseSet<Value> written;
  };
  std::vector<Run> runs;
  auto sameProgram = [](vrt::KernelOp a, vrt::KernelOp b) {
    for (StringRef name :
         {"code", "constants", "input_modes", "results", "segments"})
      if (a->getAttr(name) != b->getAttr(name))
        return false;
    return a.getIns().size() == b.getIns().size() &&
           a.getOuts().size() == b.getOuts().size();
  };
  auto reads = [](Operation *op, const Run &run) {
    return llvm::any_of(op->getOperands(), [&](Value in) {
      return run.written.contains(vrt::rootBuffer(in));
    });
  };
  auto place = [](Run &pending) {
    SmallVector<vrt::KernelOp> &run = pending.kernels;
    if (run.size() < 2)
      return;
    vrt::KernelOp last = run.back();
    OpBuilder b(last);
    SmallVector<Value> ins, outs;
    for (vrt::KernelOp k : run) {
      llvm::append_range(ins, k.getIns());
      llvm::append_range(outs, k.getOuts());
    }
    auto merged = vrt::KernelOp::create(b, run.front().getLoc(),
                                        last.getKindAttr(), ins, outs);
    for (NamedAttribute a : run.front()->getAttrs())
      if (a.getName() != merged.getOperandSegmentSizesAttrName())
        merged->setAttr(a.getName(), a.getValue());
    merged->setAttr("segments",
                    b.getI64IntegerAttr(static_cast<int64_t>(run.size())));
    for (vrt::KernelOp k : run)
      k->erase();
  };
  for (Operation &op : llvm::make_early_inc_range(block)) {
    if (isa<vrt::AllocOp, vrt::ViewOp>(op))
      continue;
    if (!isFused(&op)) {
      for (auto &run : runs)
        place(run);
      runs.clear();
      continue;
    }
    for (auto it = runs.begin(); it != runs.end();) {
      if (reads(&op, *it)) {
        place(*it);
        it = runs.erase(it);
      } else {
        ++it;
      }
    }
    auto k = cast<vrt::KernelOp>(op);
    auto same = llvm::find_if(runs, [&](const Run &run) {
      return sameProgram(run.kernels.front(), k);
    });
    if (same == runs.end()) {
      runs.emplace_back();
      same = std::prev(runs.end());
    }
    same->kernels.push_back(k);
    for (Value out : k.getOuts())
      same->written.insert(vrt::rootBuffer(out));
  }
}

struct LowerToVrtPass : veomni::impl::LowerToVrtBase<LowerToVrtPass> {
  void runOnOperation() override {
    CommGroups groups;
    for (auto func : getOperation().getOps<func::FuncOp>())
      if (failed(lowerFunction(func, groups)))
        return signalPassFailure();
    for (auto func : getOperation().getOps<func::FuncOp>())
      mergeSegments(func);
    if (!groups.axes.empty())
      getOperation()->setAttr(vrt::VrtDialect::kCommGroupsAttrName,
                              ArrayAttr::get(&getContext(), groups.axes));
  }
};

} // namespace
