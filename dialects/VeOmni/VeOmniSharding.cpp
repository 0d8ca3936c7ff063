//===- VeOmniSharding.cpp - sharding rules of the veomni ops --------------===//
//
// One factor-form rule per op (ShardingRule.h). A rule says which dimensions
// of the operands and results are the same loop of the computation (one
// factor), which loops are contractions (a result without the factor holds
// partial sums), and which must stay whole on every rank. Propagation and
// partitioning read only these rules, so a new op needs its rule here and
// nothing in the passes.
//
// Conventions worth knowing:
//  - attention keeps the sequences whole (a query needs every key) but
//    splits heads, grouped-query heads being [kv head, group] so that a
//    split of the kv heads carries the query heads with it. Ulysses comes
//    from this: an sp-split sequence meets a rule that wants it whole, and
//    the cheapest fix is an all-to-all onto the heads.
//  - gather's indexed dimension (an embedding's vocabulary) is a reduction:
//    each rank looks up the ids in its slice of the table, zeros elsewhere,
//    so the results sum to the lookup (vocab-parallel embedding).
//  - cross_entropy's vocabulary is an internal factor: the op, told its
//    vocab axes, combines the max, the sum of exponentials and the target
//    logit across ranks without gathering the logits, and its loss is
//    complete (a split of the tokens still leaves partial sums).
//
//===----------------------------------------------------------------------===//

#include "dialects/VeOmni/VeOmniOps.h"

#include "llvm/ADT/TypeSwitch.h"
#include <numeric>

using namespace mlir;
using namespace mlir::veomni;

namespace {

using Dims = ShardingRule::Dims;
using K = FactorKind;

RankedTensorType typeOf(Value v) { return cast<RankedTensorType>(v.getType()); }

/// Builds a rule tensor by tensor, operands in operand order.
struct RuleBuilder {
  ShardingRule rule;

  int64_t factor(int64_t size, K kind = K::PassThrough) {
    return rule.addFactor(size, kind);
  }
  /// One new factor per dimension of `t`.
  Dims fresh(RankedTensorType t, K kind = K::PassThrough) {
    Dims dims;
    for (int64_t size : t.getShape())
      dims.push_back({factor(size, kind)});
    return dims;
  }
  void operand(Dims dims) { rule.operandDims.push_back(std::move(dims)); }
  void result(Dims dims, bool perShard = false) {
    rule.resultDims.push_back(std::move(dims));
    rule.perShardResults.push_back(perShard);
  }
  /// Every operand and result shares `dims`.
  ShardingRule uniform(Operation *op, const Dims &dims) {
    for (unsigned i = 0; i < op->getNumOperands(); ++i)
      operand(dims);
    for (unsigned i = 0; i < op->getNumResults(); ++i)
      result(dims);
    return std::move(rule);
  }
};

/// No dimension of any operand or result may be split.
ShardingRule replicatedRule(Operation *op) {
  RuleBuilder b;
  for (Value v : op->getOperands())
    b.operand(b.fresh(typeOf(v), K::NeedReplication));
  for (Value v : op->getResults())
    b.result(b.fresh(typeOf(v), K::NeedReplication));
  return std::move(b.rule);
}

ShardingRule elementwiseRule(Operation *op) {
  RuleBuilder b;
  Dims dims = b.fresh(typeOf(op->getResult(0)));
  return b.uniform(op, dims);
}

/// [leading..., D] with D whole: norms, softmax-like rows.
Dims rowsWith(RuleBuilder &b, RankedTensorType t, int64_t wholeDim,
              int64_t &whole) {
  Dims dims;
  for (int64_t d = 0; d < t.getRank(); ++d)
    dims.push_back(
        {d == wholeDim ? (whole = b.factor(t.getDimSize(d), K::NeedReplication))
                       : b.factor(t.getDimSize(d))});
  return dims;
}

ShardingRule matmulRule(MatmulOp op) {
  RuleBuilder b;
  RankedTensorType lhs = typeOf(op.getLhs()), rhs = typeOf(op.getRhs());
  int64_t rank = lhs.getRank();
  Dims batch;
  for (int64_t d = 0; d + 2 < rank; ++d)
    batch.push_back({b.factor(lhs.getDimSize(d))});
  int64_t m =
      b.factor(lhs.getDimSize(op.getTransposeLhs() ? rank - 1 : rank - 2));
  int64_t k = b.factor(
      lhs.getDimSize(op.getTransposeLhs() ? rank - 2 : rank - 1), K::Reduction);
  int64_t n = b.factor(rhs.getDimSize(
      op.getTransposeRhs() ? rhs.getRank() - 2 : rhs.getRank() - 1));
  Dims l = batch, r = rhs.getRank() == 2 ? Dims{} : batch, out = batch;
  l.append(op.getTransposeLhs() ? Dims{{k}, {m}} : Dims{{m}, {k}});
  r.append(op.getTransposeRhs() ? Dims{{n}, {k}} : Dims{{k}, {n}});
  out.append({{m}, {n}});
  b.operand(l);
  b.operand(r);
  b.result(out);
  return std::move(b.rule);
}

/// input [N, K], weight [E, K, M] ([E, M, K] transposed), group_sizes [E].
struct GroupedFactors {
  int64_t n, k, m, e;
  Dims weight;
  /// group_sizes counts every expert's rows: it stays whole.
  Dims groups(RuleBuilder &b, RankedTensorType t) {
    return {{b.factor(t.getDimSize(0), K::NeedReplication)}};
  }
};
GroupedFactors groupedFactors(RuleBuilder &b, RankedTensorType input,
                              RankedTensorType weight, bool transposed) {
  GroupedFactors f;
  f.e = b.factor(weight.getDimSize(0), K::Expert);
  f.n = b.factor(input.getDimSize(0));
  f.k = b.factor(input.getDimSize(1), K::Reduction);
  f.m = b.factor(weight.getDimSize(transposed ? 1 : 2));
  f.weight = transposed ? Dims{{f.e}, {f.m}, {f.k}} : Dims{{f.e}, {f.k}, {f.m}};
  return f;
}

ShardingRule reduceRule(Operation *op, ArrayRef<int64_t> reduced, bool sum,
                        bool keepDims, bool gradForm) {
  RuleBuilder b;
  RankedTensorType in = typeOf(op->getOperand(0));
  Dims full, kept;
  for (int64_t d = 0; d < in.getRank(); ++d) {
    bool isReduced = llvm::is_contained(reduced, d);
    int64_t f = b.factor(in.getDimSize(d), !isReduced ? K::PassThrough
                                           : sum      ? K::Reduction
                                                      : K::NeedReplication);
    full.push_back({f});
    if (!isReduced)
      kept.push_back({f});
    else if (keepDims)
      kept.push_back({});
  }
  b.operand(full);
  if (gradForm) { // reduce_max_grad(input, grad) -> input_grad
    b.operand(kept);
    b.result(full);
  } else {
    b.result(kept);
  }
  return std::move(b.rule);
}

/// Shardy's reshape factors: walk both shapes, cutting a common factor off
/// the current dimensions while one size divides the other. What cannot be
/// matched that way stays whole.
ShardingRule reshapeRule(ReshapeOp op) {
  RuleBuilder b;
  RankedTensorType in = typeOf(op.getInput()), out = typeOf(op.getResult());
  Dims inDims(in.getRank()), outDims(out.getRank());
  int64_t i = 0, j = 0;
  int64_t a = in.getRank() ? in.getDimSize(0) : 1;
  int64_t c = out.getRank() ? out.getDimSize(0) : 1;
  while (i < in.getRank() && j < out.getRank()) {
    if (a == 1) {
      if (++i < in.getRank())
        a = in.getDimSize(i);
      continue;
    }
    if (c == 1) {
      if (++j < out.getRank())
        c = out.getDimSize(j);
      continue;
    }
    int64_t small = std::min(a, c), large = std::max(a, c);
    if (large % small != 0)
      break;
    int64_t f = b.factor(small);
    inDims[i].push_back(f);
    outDims[j].push_back(f);
    a /= small;
    c /= small;
  }
  // Whatever is left: whole on both sides.
  for (; i < in.getRank(); ++i, a = i < in.getRank() ? in.getDimSize(i) : 1)
    if (a != 1)
      inDims[i].push_back(b.factor(a, K::NeedReplication));
  for (; j < out.getRank(); ++j, c = j < out.getRank() ? out.getDimSize(j) : 1)
    if (c != 1)
      outDims[j].push_back(b.factor(c, K::NeedReplication));
  b.operand(inDims);
  b.result(outDims);
  return std::move(b.rule);
}

ShardingRule broadcastRule(BroadcastOp op) {
  RuleBuilder b;
  RankedTensorType in = typeOf(op.getInput()), out = typeOf(op.getResult());
  Dims outDims(out.getRank()), inDims(in.getRank());
  ArrayRef<int64_t> map = op.getDims();
  for (int64_t d = 0; d < out.getRank(); ++d) {
    const int64_t *it = llvm::find(map, d);
    int64_t f = b.factor(out.getDimSize(d));
    outDims[d].push_back(f);
    if (it != map.end()) {
      int64_t src = it - map.begin();
      if (in.getDimSize(src) == out.getDimSize(d))
        inDims[src].push_back(f);
    }
  }
  b.operand(inDims);
  b.result(outDims);
  return std::move(b.rule);
}

/// Whole dims of a slice are shared; sliced dims stay whole on each side.
ShardingRule sliceRule(Operation *op, RankedTensorType full,
                       RankedTensorType part, bool gradForm) {
  RuleBuilder b;
  Dims fullDims, partDims;
  for (int64_t d = 0; d < full.getRank(); ++d) {
    if (full.getDimSize(d) == part.getDimSize(d)) {
      int64_t f = b.factor(full.getDimSize(d));
      fullDims.push_back({f});
      partDims.push_back({f});
      continue;
    }
    fullDims.push_back({b.factor(full.getDimSize(d), K::NeedReplication)});
    partDims.push_back({b.factor(part.getDimSize(d), K::NeedReplication)});
  }
  if (gradForm) {
    b.operand(partDims);
    b.result(fullDims);
  } else {
    b.operand(fullDims);
    b.result(partDims);
  }
  return std::move(b.rule);
}

ShardingRule concatRule(ConcatOp op) {
  RuleBuilder b;
  RankedTensorType out = typeOf(op.getResult());
  int64_t axis = op.getDim();
  Dims shared;
  for (int64_t d = 0; d < out.getRank(); ++d)
    shared.push_back(
        d == axis ? SmallVector<int64_t, 1>{}
                  : SmallVector<int64_t, 1>{b.factor(out.getDimSize(d))});
  auto with = [&](RankedTensorType t) {
    Dims dims = shared;
    dims[axis] = {b.factor(t.getDimSize(axis), K::NeedReplication)};
    return dims;
  };
  for (Value v : op.getInputs())
    b.operand(with(typeOf(v)));
  b.result(with(out));
  return std::move(b.rule);
}

/// gather/scatter_add: the table's other dims, the indices' dims and the
/// updates (or result) laid out as table[:axis] + indices + table[axis+1:].
struct IndexedFactors {
  Dims table, indices, slices;
  int64_t indexed;
};
IndexedFactors indexedFactors(RuleBuilder &b, RankedTensorType table,
                              RankedTensorType indices, int64_t axis,
                              K indexedKind) {
  IndexedFactors f;
  for (int64_t d = 0; d < indices.getRank(); ++d)
    f.indices.push_back({b.factor(indices.getDimSize(d))});
  for (int64_t d = 0; d < table.getRank(); ++d) {
    if (d == axis) {
      f.indexed = b.factor(table.getDimSize(d), indexedKind);
      f.table.push_back({f.indexed});
      f.slices.append(f.indices);
      continue;
    }
    int64_t g = b.factor(table.getDimSize(d));
    f.table.push_back({g});
    f.slices.push_back({g});
  }
  return f;
}

/// q [B, S, Hq, D], k [B, Skv, Hkv, D], v [B, Skv, Hkv, Dv], segments
/// [B, S]; result (and its cotangent) [B, S, Hq, Dv].
struct AttentionFactors {
  Dims q, k, v, segments, sinks, out;
};
/// Sequences split over an axis move onto the heads (Ulysses).
/// Segment ids [2, B, S] (with bidirectional blocks) add a plane factor.
AttentionFactors attentionFactors(RuleBuilder &b, RankedTensorType q,
                                  RankedTensorType k, RankedTensorType v,
                                  Value segments) {
  int64_t batch = b.factor(q.getDimSize(0));
  int64_t s = b.factor(q.getDimSize(1), K::NeedReplication);
  int64_t skv = b.factor(k.getDimSize(1), K::NeedReplication);
  int64_t hkv = b.factor(k.getDimSize(2));
  int64_t group = b.factor(q.getDimSize(2) / k.getDimSize(2));
  int64_t d = b.factor(q.getDimSize(3), K::NeedReplication);
  int64_t dv = b.factor(v.getDimSize(3));
  // With fewer kv heads than the split needs, the query heads of a group
  // take it and keys and values stay whole.
  b.rule.relocations = {{s, hkv}, {s, group}, {skv, hkv}};
  AttentionFactors f;
  f.q = {{batch}, {s}, {hkv, group}, {d}};
  f.k = {{batch}, {skv}, {hkv}, {d}};
  f.v = {{batch}, {skv}, {hkv}, {dv}};
  f.segments = {{batch}, {s}};
  if (segments && cast<RankedTensorType>(segments.getType()).getRank() == 3)
    f.segments.insert(f.segments.begin(), {b.factor(2, K::NeedReplication)});
  f.sinks = {{hkv, group}};
  f.out = {{batch}, {s}, {hkv, group}, {dv}};
  return f;
}

/// logits [..., V] and labels [...]: the token factors and the vocabulary.
struct LossFactors {
  Dims tokens, logits;
  int64_t vocab;
};
LossFactors lossFactors(RuleBuilder &b, RankedTensorType logits, K vocabKind) {
  LossFactors f;
  for (int64_t d = 0; d + 1 < logits.getRank(); ++d)
    f.tokens.push_back({b.factor(logits.getDimSize(d))});
  f.vocab = b.factor(logits.getDimSize(logits.getRank() - 1), vocabKind);
  f.logits = f.tokens;
  f.logits.push_back({f.vocab});
  return f;
}

/// conv1d: input [B, Cin, L], weight [Cout, Cin, K], bias [Cout].
struct ConvFactors {
  Dims input, weight, bias, out;
};
/// With `addsBias`, the input channels stay whole: split, every rank's
/// partial sum would carry the whole bias.
ConvFactors convFactors(RuleBuilder &b, RankedTensorType input,
                        RankedTensorType weight, RankedTensorType out,
                        bool addsBias = false) {
  int64_t batch = b.factor(input.getDimSize(0));
  int64_t cin = b.factor(input.getDimSize(1),
                         addsBias ? K::NeedReplication : K::Reduction);
  int64_t cout = b.factor(weight.getDimSize(0));
  ConvFactors f;
  f.input = {
      {batch}, {cin}, {b.factor(input.getDimSize(2), K::NeedReplication)}};
  f.weight = {
      {cout}, {cin}, {b.factor(weight.getDimSize(2), K::NeedReplication)}};
  f.bias = {{cout}};
  f.out = {{batch}, {cout}, {b.factor(out.getDimSize(2), K::NeedReplication)}};
  return f;
}

/// moe rows [T*k, H] in expert order: the token factor times the copies.
Dims expertRows(int64_t token, int64_t copy, int64_t hidden) {
  return {{token, copy}, {hidden}};
}

ShardingRule computeRule(Operation *op) {
  RuleBuilder b;
  return TypeSwitch<Operation *, ShardingRule>(op)
      .Case([&](ConstantOp c) {
        if (!c.getValue().isSplat())
          return replicatedRule(op);
        b.result(b.fresh(typeOf(c.getResult())));
        return std::move(b.rule);
      })
      .Case([&](MatmulOp m) { return matmulRule(m); })
      .Case([&](GroupedMatmulOp g) {
        GroupedFactors f =
            groupedFactors(b, typeOf(g.getInput()), typeOf(g.getWeight()),
                           g.getTransposeWeight());
        b.operand({{f.n}, {f.k}});
        b.operand(f.weight);
        b.operand(f.groups(b, typeOf(g.getGroupSizes())));
        b.result({{f.n}, {f.m}});
        return std::move(b.rule);
      })
      .Case([&](GroupedMatmulWeightGradOp g) {
        GroupedFactors f =
            groupedFactors(b, typeOf(g.getInput()), typeOf(g.getWeight()),
                           g.getTransposeWeight());
        // The rows are the contraction here: a split of them sums.
        b.rule.factorKinds[f.n] = K::Reduction;
        b.rule.factorKinds[f.k] = K::PassThrough;
        b.operand({{f.n}, {f.k}});
        b.operand(f.weight);
        b.operand(f.groups(b, typeOf(g.getGroupSizes())));
        b.operand({{f.n}, {f.m}});
        b.result(f.weight);
        b.rule.typeOnlyOperands = {1}; // the weight gives the result its type
        return std::move(b.rule);
      })
      .Case([&](Conv1DOp c) {
        ConvFactors f =
            convFactors(b, typeOf(c.getInput()), typeOf(c.getWeight()),
                        typeOf(c.getResult()), /*addsBias=*/!!c.getBias());
        b.operand(f.input);
        b.operand(f.weight);
        if (c.getBias())
          b.operand(f.bias);
        b.result(f.out);
        return std::move(b.rule);
      })
      .Case([&](Conv1DGradOp c) {
        // A bias cotangent does not involve the input channels: with one,
        // they stay whole (autodiff sums it with a reduce of its own).
        ConvFactors f =
            convFactors(b, typeOf(c.getInput()), typeOf(c.getWeight()),
                        typeOf(c.getGrad()), /*addsBias=*/!!c.getBiasGrad());
        b.operand(f.input);
        b.operand(f.weight);
        if (c.getBias())
          b.operand(f.bias);
        b.operand(f.out);
        b.result(f.input);
        b.result(f.weight);
        if (c.getBiasGrad())
          b.result(f.bias);
        return std::move(b.rule);
      })
      .Case([&](ReduceOp r) {
        return reduceRule(op, r.getDims(), r.getKind() == ReduceKind::Sum,
                          r.getKeepDims(), /*gradForm=*/false);
      })
      .Case([&](ReduceMaxGradOp r) {
        return reduceRule(op, r.getDims(), /*sum=*/false, r.getKeepDims(),
                          /*gradForm=*/true);
      })
      .Case([&](SoftmaxOp s) {
        int64_t whole;
        Dims dims = rowsWith(b, typeOf(s.getInput()), s.getDim(), whole);
        return b.uniform(op, dims);
      })
      .Case<RMSNormOp, LayerNormOp>([&](auto n) {
        RankedTensorType t = typeOf(n.getInput());
        int64_t d;
        Dims dims = rowsWith(b, t, t.getRank() - 1, d);
        b.operand(dims);
        for (unsigned i = 1; i < op->getNumOperands(); ++i)
          b.operand({{d}});
        b.result(dims);
        return std::move(b.rule);
      })
      .Case<RMSNormGradOp, LayerNormGradOp>([&](auto n) {
        RankedTensorType t = typeOf(n.getInput());
        int64_t d;
        Dims dims = rowsWith(b, t, t.getRank() - 1, d);
        // input, weight, (bias), grad -> input_grad, weight_grad, (bias_grad)
        for (Value v : op->getOperands())
          b.operand(v == n.getInput() || v == n.getGrad() ? dims : Dims{{d}});
        b.result(dims);
        for (unsigned i = 1; i < op->getNumResults(); ++i)
          b.result({{d}});
        return std::move(b.rule);
      })
      .Case([&](BroadcastOp o) { return broadcastRule(o); })
      .Case([&](ReshapeOp o) { return reshapeRule(o); })
      .Case([&](TransposeOp t) {
        Dims in = b.fresh(typeOf(t.getInput())), out;
        for (int64_t p : t.getPerm())
          out.push_back(in[p]);
        b.operand(in);
        b.result(out);
        return std::move(b.rule);
      })
      .Case([&](SliceOp s) {
        return sliceRule(op, typeOf(s.getInput()), typeOf(s.getResult()),
                         /*gradForm=*/false);
      })
      .Case([&](SliceGradOp s) {
        return sliceRule(op, typeOf(s.getInputGrad()), typeOf(s.getGrad()),
                         /*gradForm=*/true);
      })
      .Case([&](ConcatOp c) { return concatRule(c); })
      .Case([&](GatherOp g) {
        IndexedFactors f =
            indexedFactors(b, typeOf(g.getSource()), typeOf(g.getIndices()),
                           g.getAxis(), K::Reduction);
        b.operand(f.table);
        b.operand(f.indices);
        b.result(f.slices);
        return std::move(b.rule);
      })
      .Case([&](ScatterAddOp s) {
        // Each rank adds the updates whose index falls in its slice.
        IndexedFactors f =
            indexedFactors(b, typeOf(s.getDest()), typeOf(s.getIndices()),
                           s.getAxis(), K::PassThrough);
        b.operand(f.table);
        b.operand(f.indices);
        b.operand(f.slices);
        b.result(f.table);
        return std::move(b.rule);
      })
      .Case([&](RopeOp r) {
        RankedTensorType t = typeOf(r.getInput());
        int64_t d;
        Dims dims = rowsWith(b, t, 3, d);
        Dims positions = {dims[0], dims[1]};
        if (typeOf(r.getPositions()).getRank() == 3)
          positions.insert(positions.begin(),
                           {b.factor(typeOf(r.getPositions()).getDimSize(0),
                                     K::NeedReplication)});
        b.operand(dims);
        b.operand(positions);
        b.result(dims);
        return std::move(b.rule);
      })
      .Case([&](AttentionOp a) {
        AttentionFactors f =
            attentionFactors(b, typeOf(a.getQuery()), typeOf(a.getKey()),
                             typeOf(a.getValue()), a.getSegmentIds());
        b.operand(f.q);
        b.operand(f.k);
        b.operand(f.v);
        if (a.getSegmentIds())
          b.operand(f.segments);
        if (a.getSinks())
          b.operand(f.sinks);
        b.result(f.out);
        return std::move(b.rule);
      })
      .Case([&](AttentionGradOp a) {
        AttentionFactors f =
            attentionFactors(b, typeOf(a.getQuery()), typeOf(a.getKey()),
                             typeOf(a.getValue()), a.getSegmentIds());
        b.operand(f.q);
        b.operand(f.k);
        b.operand(f.v);
        if (a.getSegmentIds())
          b.operand(f.segments);
        if (a.getSinks())
          b.operand(f.sinks);
        b.operand(f.out);
        b.result(f.q);
        b.result(f.k);
        b.result(f.v);
        if (a.getSinks())
          b.result(f.sinks); // summed over the batch and sequence factors
        return std::move(b.rule);
      })
      .Case([&](CrossEntropyOp c) {
        LossFactors f = lossFactors(b, typeOf(c.getLogits()), K::Internal);
        b.operand(f.logits);
        b.operand(f.tokens);
        b.result(c.getReduction() == LossReduction::None ? f.tokens : Dims{});
        return std::move(b.rule);
      })
      .Case([&](CrossEntropyGradOp c) {
        LossFactors f = lossFactors(b, typeOf(c.getLogits()), K::Internal);
        b.operand(f.logits);
        b.operand(f.tokens);
        b.operand(c.getReduction() == LossReduction::None ? f.tokens : Dims{});
        b.result(f.logits);
        return std::move(b.rule);
      })
      .Case<MoETopKOp, MoETopKGradOp, MoEGroupTopKOp, MoEGroupTopKGradOp>(
          [&](auto t) {
            // Routers: logits or scores [T, E] (a group router's bias [E];
            // a VJP's weights cotangent [T, k]): tokens split, experts and
            // choices whole.
            Value in = t->getOperand(0);
            int64_t token = b.factor(typeOf(in).getDimSize(0));
            int64_t expert =
                b.factor(typeOf(in).getDimSize(1), K::NeedReplication);
            int64_t k = b.factor(t.getK(), K::NeedReplication);
            b.operand({{token}, {expert}});
            if (isa<MoEGroupTopKOp, MoEGroupTopKGradOp>(op))
              b.operand({{expert}});
            if (isa<MoETopKGradOp, MoEGroupTopKGradOp>(op)) {
              b.operand({{token}, {k}});
              b.result({{token}, {expert}});
            } else {
              b.result({{token}, {k}});
              b.result({{token}, {k}});
            }
            return std::move(b.rule);
          })
      .Case([&](MoEDispatchOp d) {
        // The rows of a token split are that split's copies in expert
        // order; group_sizes counts the local rows (per shard).
        RankedTensorType in = typeOf(d.getInput());
        RankedTensorType idx = typeOf(d.getIndices());
        int64_t token = b.factor(in.getDimSize(0));
        int64_t hidden = b.factor(in.getDimSize(1));
        int64_t copy = b.factor(idx.getDimSize(1), K::NeedReplication);
        int64_t expert = b.factor(d.getNumExperts(), K::NeedReplication);
        b.operand({{token}, {hidden}});
        b.operand({{token}, {copy}});
        b.result(expertRows(token, copy, hidden));
        b.result({{expert}}, /*perShard=*/true);
        return std::move(b.rule);
      })
      .Case<MoECombineOp, MoECombineGradOp>([&](auto c) {
        RankedTensorType in = typeOf(c.getInput());
        RankedTensorType idx = typeOf(c.getIndices());
        int64_t token = b.factor(idx.getDimSize(0));
        int64_t hidden = b.factor(in.getDimSize(1));
        int64_t copy = b.factor(idx.getDimSize(1), K::NeedReplication);
        Dims rows = expertRows(token, copy, hidden);
        Dims perToken = {{token}, {copy}};
        b.operand(rows);
        b.operand(perToken);
        b.operand(perToken);
        if (isa<MoECombineGradOp>(op)) {
          b.operand({{token}, {hidden}});
          b.result(rows);
          b.result(perToken);
        } else {
          b.result({{token}, {hidden}});
        }
        return std::move(b.rule);
      })
      .Case([&](GeluGradOp) { return elementwiseRule(op); })
      .Default([&](Operation *other) {
        if (other->hasTrait<OpTrait::Elementwise>())
          return elementwiseRule(other);
        return replicatedRule(other);
      });
}

template <typename OpT>
struct RuleModel : ShardingRuleOpInterface::ExternalModel<RuleModel<OpT>, OpT> {
  ShardingRule getShardingRule(Operation *op) const { return computeRule(op); }
};

} // namespace

namespace mlir::veomni {
template <typename... Ops> static void attachRules(MLIRContext *ctx) {
  (Ops::template attachInterface<RuleModel<Ops>>(*ctx), ...);
}

void attachShardingRules(MLIRContext *ctx) {
  attachRules<
#define GET_OP_LIST
#include "dialects/VeOmni/VeOmniOps.cpp.inc"
      >(ctx);
}
} // namespace mlir::veomni
