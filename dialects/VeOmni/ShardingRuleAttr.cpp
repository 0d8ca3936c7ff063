//===- ShardingRuleAttr.cpp - sharding rules as attributes ----------------===//
//
// #veomni.sharding_rule: the factor form of ShardingRule, printed and parsed
// so that rules can be FileChecked and diffed.
//
//===----------------------------------------------------------------------===//

#include "dialects/VeOmni/VeOmniOps.h"

#include "mlir/IR/DialectImplementation.h"

using namespace mlir;
using namespace mlir::veomni;

namespace {

constexpr std::pair<FactorKind, llvm::StringLiteral> kKindNames[] = {
    {FactorKind::Reduction, "reduction"},
    {FactorKind::NeedReplication, "need_replication"},
    {FactorKind::Internal, "internal"},
    {FactorKind::Expert, "expert"}};

/// Factor 0 is i, then j, ... z, then z_1, z_2, ...
std::string factorName(int64_t f) {
  if (f < 18)
    return std::string(1, static_cast<char>('i' + f));
  return "z_" + std::to_string(f - 17);
}

/// The inverse of factorName, or -1.
int64_t factorIndex(StringRef name) {
  if (name.size() == 1 && name[0] >= 'i' && name[0] <= 'z')
    return name[0] - 'i';
  int64_t n;
  if (name.consume_front("z_") && !name.getAsInteger(10, n) && n > 0)
    return 17 + n;
  return -1;
}

void encode(ArrayRef<ShardingRule::Dims> tensors, SmallVector<int64_t> &out) {
  out.push_back(tensors.size());
  for (const ShardingRule::Dims &dims : tensors) {
    out.push_back(dims.size());
    for (const auto &factors : dims) {
      out.push_back(factors.size());
      llvm::append_range(out, factors);
    }
  }
}

SmallVector<ShardingRule::Dims> decode(ArrayRef<int64_t> flat) {
  SmallVector<ShardingRule::Dims> tensors;
  size_t at = 0;
  int64_t count = flat.empty() ? 0 : flat[at++];
  for (int64_t t = 0; t < count; ++t) {
    ShardingRule::Dims dims;
    int64_t rank = flat[at++];
    for (int64_t d = 0; d < rank; ++d) {
      int64_t n = flat[at++];
      dims.emplace_back(flat.begin() + at, flat.begin() + at + n);
      at += n;
    }
    tensors.push_back(std::move(dims));
  }
  return tensors;
}

void printTensors(AsmPrinter &p, ArrayRef<ShardingRule::Dims> tensors) {
  p << "(";
  llvm::interleaveComma(tensors, p, [&](const ShardingRule::Dims &dims) {
    p << "[";
    llvm::interleaveComma(dims, p, [&](const auto &factors) {
      if (factors.empty()) {
        p << "1";
        return;
      }
      llvm::interleave(
          factors, p, [&](int64_t f) { p << factorName(f); }, "*");
    });
    p << "]";
  });
  p << ")";
}

void printList(AsmPrinter &p, StringRef key, ArrayRef<std::string> items) {
  if (items.empty())
    return;
  p << " " << key << "={";
  llvm::interleaveComma(items, p);
  p << "}";
}

} // namespace

ShardingRuleAttr ShardingRuleAttr::get(MLIRContext *context,
                                       const ShardingRule &rule) {
  SmallVector<int64_t> kinds, operands, results, perShard, relocations;
  for (FactorKind k : rule.factorKinds)
    kinds.push_back(static_cast<int64_t>(k));
  encode(rule.operandDims, operands);
  encode(rule.resultDims, results);
  for (bool b : rule.perShardResults)
    perShard.push_back(b);
  for (auto [from, to] : rule.relocations)
    relocations.append({from, to});
  return get(context, rule.factorSizes, kinds, operands, results, perShard,
             rule.typeOnlyOperands, relocations);
}

ShardingRule ShardingRuleAttr::getRule() const {
  ShardingRule rule;
  rule.factorSizes.assign(getFactorSizes().begin(), getFactorSizes().end());
  for (int64_t k : getFactorKinds())
    rule.factorKinds.push_back(static_cast<FactorKind>(k));
  rule.operandDims = decode(getOperands());
  rule.resultDims = decode(getResults());
  for (int64_t b : getPerShardResults())
    rule.perShardResults.push_back(b != 0);
  rule.typeOnlyOperands.assign(getTypeOnlyOperands().begin(),
                               getTypeOnlyOperands().end());
  ArrayRef<int64_t> r = getRelocations();
  for (size_t i = 0; i + 1 < r.size(); i += 2)
    rule.relocations.push_back({r[i], r[i + 1]});
  return rule;
}

void ShardingRuleAttr::print(AsmPrinter &p) const {
  ShardingRule rule = getRule();
  p << "<";
  printTensors(p, rule.operandDims);
  p << " -> ";
  printTensors(p, rule.resultDims);
  p << " {";
  for (int64_t f = 0; f < rule.numFactors(); ++f)
    p << (f ? ", " : "") << factorName(f) << "=" << rule.factorSizes[f];
  p << "}";
  for (auto [kind, key] : kKindNames) {
    std::vector<std::string> names;
    for (int64_t f = 0; f < rule.numFactors(); ++f)
      if (rule.factorKinds[f] == kind)
        names.push_back(factorName(f));
    printList(p, key, names);
  }
  std::vector<std::string> perShard, typeOnly, relocate;
  for (auto [i, b] : llvm::enumerate(rule.perShardResults))
    if (b)
      perShard.push_back(std::to_string(i));
  for (int64_t i : rule.typeOnlyOperands)
    typeOnly.push_back(std::to_string(i));
  for (auto [from, to] : rule.relocations)
    relocate.push_back(factorName(from) + "->" + factorName(to));
  printList(p, "per_shard", perShard);
  printList(p, "type_only", typeOnly);
  printList(p, "relocate", relocate);
  p << ">";
}

Attribute ShardingRuleAttr::parse(AsmParser &parser, Type) {
  // Factors are named by their index (i, j, ... z, z_1, ...).
  int64_t numFactors = 0;
  bool badName = false;
  auto factor = [&](StringRef name) {
    int64_t f = factorIndex(name);
    if (f < 0) {
      parser.emitError(parser.getCurrentLocation(), "factor '")
          << name << "' is not one of i, j, ... z, z_1, z_2, ...";
      badName = true;
      return int64_t{0};
    }
    numFactors = std::max(numFactors, f + 1);
    return f;
  };
  auto parseTensors =
      [&](SmallVector<ShardingRule::Dims> &tensors) -> ParseResult {
    if (parser.parseLParen())
      return failure();
    if (succeeded(parser.parseOptionalRParen()))
      return success();
    do {
      ShardingRule::Dims dims;
      if (parser.parseLSquare())
        return failure();
      if (failed(parser.parseOptionalRSquare())) {
        do {
          SmallVector<int64_t, 1> factors;
          int64_t one;
          if (parser.parseOptionalInteger(one).has_value()) {
            if (one != 1)
              return parser.emitError(parser.getCurrentLocation(),
                                      "a dimension without factors is 1"),
                     failure();
          } else {
            do {
              std::string name;
              if (parser.parseKeywordOrString(&name))
                return failure();
              factors.push_back(factor(name));
              if (badName)
                return failure();
            } while (succeeded(parser.parseOptionalStar()));
          }
          dims.push_back(std::move(factors));
        } while (succeeded(parser.parseOptionalComma()));
        if (parser.parseRSquare())
          return failure();
      }
      tensors.push_back(std::move(dims));
    } while (succeeded(parser.parseOptionalComma()));
    return parser.parseRParen();
  };
  ShardingRule rule;
  SmallVector<ShardingRule::Dims> operands, results;
  if (parser.parseLess() || parseTensors(operands) || parser.parseArrow() ||
      parseTensors(results) || parser.parseLBrace())
    return {};
  SmallVector<int64_t> sizes(numFactors, -1);
  do {
    std::string name;
    int64_t size;
    SMLoc at = parser.getCurrentLocation();
    if (parser.parseKeywordOrString(&name) || parser.parseEqual() ||
        parser.parseInteger(size))
      return {};
    int64_t f = factorIndex(name);
    if (f < 0 || f >= numFactors) {
      parser.emitError(at, "factor '") << name << "' appears in no tensor";
      return {};
    }
    sizes[f] = size;
  } while (succeeded(parser.parseOptionalComma()));
  if (parser.parseRBrace())
    return {};
  for (int64_t f = 0; f < numFactors; ++f)
    if (sizes[f] < 1) {
      parser.emitError(parser.getCurrentLocation(), "factor '")
          << factorName(f) << "' has no positive size";
      return {};
    }
  rule.factorSizes.assign(sizes.begin(), sizes.end());
  rule.factorKinds.assign(sizes.size(), FactorKind::PassThrough);
  rule.operandDims = std::move(operands);
  rule.resultDims = std::move(results);
  rule.perShardResults.assign(rule.resultDims.size(), false);

  std::string key;
  while (succeeded(parser.parseOptionalKeywordOrString(&key))) {
    if (parser.parseEqual() || parser.parseLBrace())
      return {};
    do {
      std::string item;
      SMLoc at = parser.getCurrentLocation();
      int64_t number;
      if ((key == "per_shard" || key == "type_only") &&
          parser.parseOptionalInteger(number).has_value()) {
        if (key == "per_shard") {
          if (number < 0 ||
              number >= static_cast<int64_t>(rule.perShardResults.size())) {
            parser.emitError(at, "no result #") << number;
            return {};
          }
          rule.perShardResults[number] = true;
        } else {
          rule.typeOnlyOperands.push_back(number);
        }
        continue;
      }
      if (parser.parseKeywordOrString(&item))
        return {};
      auto lookup = [&](StringRef name) -> int64_t {
        int64_t f = factorIndex(name);
        if (f < 0 || f >= numFactors) {
          parser.emitError(at, "unknown factor '") << name << "'";
          return -1;
        }
        return f;
      };
      if (key == "relocate") {
        std::string to;
        if (parser.parseArrow() || parser.parseKeywordOrString(&to))
          return {};
        int64_t a = lookup(item), b = lookup(to);
        if (a < 0 || b < 0)
          return {};
        rule.relocations.push_back({a, b});
        continue;
      }
      const auto *kind =
          llvm::find_if(kKindNames, [&](auto &k) { return k.second == key; });
      if (kind == std::end(kKindNames)) {
        parser.emitError(at, "unknown sharding rule list '") << key << "'";
        return {};
      }
      int64_t f = lookup(item);
      if (f < 0)
        return {};
      rule.factorKinds[f] = kind->first;
    } while (succeeded(parser.parseOptionalComma()));
    if (parser.parseRBrace())
      return {};
  }
  if (parser.parseGreater())
    return {};
  return ShardingRuleAttr::get(parser.getContext(), rule);
}
