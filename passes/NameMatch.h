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

#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/ADT/StringRef.h"

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

} // namespace mlir::veomni

#endif // VEOMNI_PASSES_NAMEMATCH_H
