//===- NameMatch.h - parameter and module names as recipes name them ------===//
//
// train.freeze's globs and train.lora's targets match a Hugging Face name
// whole or any part of it after a dot, as PEFT matches target_modules:
// "q_proj" names "model.layers.0.self_attn.q_proj", "visual.*" names
// "model.visual.blocks.0.attn.qkv.weight".
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_PASSES_NAMEMATCH_H
#define VEOMNI_PASSES_NAMEMATCH_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/ADT/StringSet.h"

#include <string>
#include <vector>

namespace mlir::veomni {

/// Whether `match` accepts `name` or a part of it after one of its dots.
inline bool matchesNameOrPart(llvm::StringRef name,
                              llvm::function_ref<bool(llvm::StringRef)> match) {
  if (match(name))
    return true;
  for (size_t dot = name.find('.'); dot != llvm::StringRef::npos;
       dot = name.find('.', dot + 1))
    if (match(name.drop_front(dot + 1)))
      return true;
  return false;
}

/// PEFT's target_parameters: `name` is `target` or ends with "." target.
inline bool matchesParameter(llvm::StringRef name, llvm::StringRef target) {
  return name == target ||
         (name.size() > target.size() && name.ends_with(target) &&
          name[name.size() - target.size() - 1] == '.');
}

/// Whether PEFT converts transformers-4 style LoRA targets for models of
/// `modelType`, whose expert modules transformers 5 fused into stacked
/// parameters (transformers' qwen2_moe conversion pattern, which peft
/// 0.21 follows).
inline bool peftFusesExperts(llvm::StringRef modelType) {
  return llvm::is_contained(
      {"qwen3_moe", "qwen3_omni_moe", "qwen3_omni_moe_thinker", "deepseek_v3"},
      modelType);
}

/// LoRA's targets after PEFT's conversion on such a model (peft's
/// _convert_peft_config_moe): target_modules `gate`, `gate_proj`,
/// `up_proj`, `down_proj` (or names ending in them; all of them for
/// all-linear) become target_parameters `gate.weight`, `gate_up_proj`,
/// `down_proj`, and no Linear of those leaf names is adapted any more;
/// with both gate_proj and up_proj, gate_up_proj's rank and alpha double.
struct LoraTargets {
  std::vector<std::string> modules, parameters;
  llvm::StringSet<> convertedLeaves;
  bool doubledGateUp = false;
  std::string error; ///< one of gate_proj/up_proj without the other
};

inline LoraTargets convertLoraTargets(llvm::ArrayRef<std::string> modules,
                                      llvm::ArrayRef<std::string> parameters,
                                      bool fusedExperts) {
  LoraTargets out;
  out.parameters.assign(parameters.begin(), parameters.end());
  if (!fusedExperts) {
    out.modules.assign(modules.begin(), modules.end());
    return out;
  }
  static const std::pair<llvm::StringRef, llvm::StringRef> kMoved[] = {
      {"gate", "gate.weight"},
      {"gate_proj", "gate_up_proj"},
      {"up_proj", "gate_up_proj"},
      {"down_proj", "down_proj"}};
  llvm::StringSet<> old;
  for (const std::string &t : modules) {
    if (t == "all-linear") {
      out.modules.push_back(t);
      for (auto [from, to] : kMoved)
        old.insert(from);
      continue;
    }
    auto it = llvm::find_if(
        kMoved, [&](auto m) { return matchesParameter(t, m.first); });
    if (it == std::end(kMoved))
      out.modules.push_back(t);
    else
      old.insert(it->first);
  }
  for (auto [from, to] : kMoved)
    if (old.contains(from)) {
      out.convertedLeaves.insert(from);
      if (!llvm::is_contained(out.parameters, to.str()))
        out.parameters.push_back(to.str());
    }
  const bool gate = old.contains("gate_proj"), up = old.contains("up_proj");
  if (gate != up)
    out.error = std::string("'") + (gate ? "gate_proj" : "up_proj") +
                "' without '" + (gate ? "up_proj" : "gate_proj") +
                "': transformers 5 fuses the experts' two into "
                "mlp.experts.gate_up_proj, which PEFT adapts whole (name "
                "both, or mlp.experts.gate_up_proj in "
                "train.lora.target_parameters)";
  out.doubledGateUp = gate && up;
  return out;
}

} // namespace mlir::veomni

#endif // VEOMNI_PASSES_NAMEMATCH_H
