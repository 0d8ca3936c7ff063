//===- Commands.h - the veomni subcommands ----------------------*- C++ -*-===//

#ifndef VEOMNI_TOOLS_VEOMNI_COMMANDS_H
#define VEOMNI_TOOLS_VEOMNI_COMMANDS_H

#include "llvm/ADT/ArrayRef.h"

/// veomni train recipe.yaml [--section.key value ...]
int runTrain(llvm::ArrayRef<const char *> args);
/// veomni plan recipe.yaml [--report] [--section.key value ...]
int runPlan(llvm::ArrayRef<const char *> args);

#endif // VEOMNI_TOOLS_VEOMNI_COMMANDS_H
