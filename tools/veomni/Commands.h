//===- Commands.h - the veomni subcommands ----------------------*- C++ -*-===//

#ifndef VEOMNI_TOOLS_VEOMNI_COMMANDS_H
#define VEOMNI_TOOLS_VEOMNI_COMMANDS_H

#include "compiler/Recipe.h"
#include "frontends/Importer.h"

#include "llvm/ADT/ArrayRef.h"

/// The import options a recipe's model and data sections ask for.
inline mlir::veomni::ImportOptions
importOptionsOf(const mlir::veomni::Recipe &r) {
  mlir::veomni::ImportOptions io;
  io.dtype = r.dtype;
  io.batch = r.batchSize;
  io.seqLen = r.seqLen;
  io.imagePatches = r.imagePatches;
  io.audioFrames = r.audioFrames;
  io.numLayers = r.numLayers;
  return io;
}

/// veomni train recipe.yaml [--section.key value ...]
int runTrain(llvm::ArrayRef<const char *> args);
/// veomni plan recipe.yaml [--report] [--section.key value ...]
int runPlan(llvm::ArrayRef<const char *> args);

#endif // VEOMNI_TOOLS_VEOMNI_COMMANDS_H
