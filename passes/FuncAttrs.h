//===- FuncAttrs.h - argument and result attributes, all at once -*- C++
//-*-===//
//
// FuncOp::setArgAttr (and setResultAttr, removeArgAttr, ...) rebuild the
// function's whole attribute list on every call, and MLIR keeps each list
// uniqued for the context's lifetime: a pass that sets one attribute per
// argument uses memory quadratic in the arguments (gigabytes on a model of
// a few hundred layers). These edit every list once.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_PASSES_FUNCATTRS_H
#define VEOMNI_PASSES_FUNCATTRS_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/OperationSupport.h"
#include "llvm/ADT/STLFunctionalExtras.h"

namespace mlir::veomni {

/// Calls `edit(i, attrs)` on every argument's attributes, then sets them.
inline void
editArgAttrs(func::FuncOp func,
             llvm::function_ref<void(unsigned, NamedAttrList &)> edit) {
  SmallVector<DictionaryAttr> all;
  all.reserve(func.getNumArguments());
  for (unsigned i = 0, e = func.getNumArguments(); i < e; ++i) {
    NamedAttrList attrs(func.getArgAttrDict(i));
    edit(i, attrs);
    all.push_back(attrs.getDictionary(func.getContext()));
  }
  func.setAllArgAttrs(all);
}

/// Calls `edit(i, attrs)` on every result's attributes, then sets them.
inline void
editResultAttrs(func::FuncOp func,
                llvm::function_ref<void(unsigned, NamedAttrList &)> edit) {
  SmallVector<DictionaryAttr> all;
  all.reserve(func.getNumResults());
  for (unsigned i = 0, e = func.getNumResults(); i < e; ++i) {
    NamedAttrList attrs(func.getResultAttrDict(i));
    edit(i, attrs);
    all.push_back(attrs.getDictionary(func.getContext()));
  }
  func.setAllResultAttrs(all);
}

} // namespace mlir::veomni

#endif // VEOMNI_PASSES_FUNCATTRS_H
