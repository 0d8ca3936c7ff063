//===- Program.h - a loaded, checked .vmb program ---------------*- C++ -*-===//
//
// The runtime never touches the FlatBuffer after loading: LoadProgram checks
// the header, the hash, the FlatBuffers verifier, and every index, offset,
// size, arity and attribute count, then copies the program into these plain
// structs. Anything that passes here can be executed without reading
// outside the arena; shapes are checked again by each kernel.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_PROGRAM_PROGRAM_H
#define VEOMNI_RUNTIME_PROGRAM_PROGRAM_H

#include "runtime/core/Tensor.h"
#include "runtime/program/Kernel.h"

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

#include <cstdint>
#include <string>
#include <vector>

namespace veomni::rt {

enum class ParamInit : uint8_t { Normal = 0, Ones = 1, Zeros = 2, LoraA = 3 };

struct BufferDesc {
  uint64_t offset = 0;
  DType dtype = DType::F32;
  Shape shape;
  uint64_t bytes = 0;
  /// A partitioned program's arguments and outputs: per dimension, the mesh
  /// axes (indices into Program::mesh, major first) that split it; empty
  /// for a whole tensor. `global` is the tensor's shape before the split
  /// (equal to `shape` when nothing is split).
  std::vector<std::vector<uint32_t>> split;
  Shape global;
};

/// Mirrors fb::ArgumentRole (program.fbs): what an argument is for.
enum class ArgumentRole : uint8_t {
  Parameter = 0,
  BatchInput,
  Step,
  Apply,
  OptimizerState,
  MasterWeight,
  GradAccumulator,
  Gradient,        ///< a pipeline stage's summed gradient (its update)
  GradNormSquared, ///< the squared gradient norm over all stages
  Activation,      ///< received from the previous pipeline chunk, or kept
  Cotangent,       ///< the gradient of what the chunk sent on
  Stash,           ///< a split backward's input half, to its weight half
  kLast = Stash
};
/// Mirrors fb::OutputRole (program.fbs).
enum class OutputRole : uint8_t {
  Other = 0,
  Loss,
  Logits,
  GradNorm,
  LearningRate,
  Gradient,
  Update,
  Activation,      ///< sent to the next pipeline chunk
  Cotangent,       ///< sent back to the previous pipeline chunk
  Stash,           ///< kept for the split backward's weight half
  GradNormSquared, ///< this stage's share of the squared gradient norm
  kLast = GradNormSquared
};

/// Mirrors fb::ProgramRole (program.fbs): what the program computes.
enum class ProgramRole : uint8_t {
  Forward = 0,
  Gradients,
  TrainStep,
  ForwardChunk,
  BackwardChunk,
  BackwardInput,
  BackwardWeight,
  StageUpdate,
  StageGradNorm,
  kLast = StageGradNorm
};

/// Param: a model parameter; Input: filled before each step (data, the
/// step counter, the accumulation flag); State: updated by the step.
enum class ArgumentKind : uint8_t { Param = 0, Input = 1, State = 2 };

struct ArgumentDesc {
  std::string name;
  ArgumentRole role = ArgumentRole::BatchInput;
  bool isParam = false;                    ///< role Parameter
  ArgumentKind kind = ArgumentKind::Input; ///< from the role
  /// State that starts as a copy of this parameter (f32 master weights).
  std::string initFrom;
  /// The parameter a state (moment, master, gradient sum) belongs to.
  std::string stateOf;
  uint32_t buffer = 0;
  std::string placement;
  ParamInit init = ParamInit::Normal;
  int64_t bound = 0; ///< inputs used as indices lie in [0, bound)
  /// Parameters: one that does not train; a LoRA adapter.
  bool frozen = false, adapter = false;
};

/// Data the batch fills (not the step counter or the accumulation flag).
inline bool IsBatchInput(const ArgumentDesc &a) {
  return a.role == ArgumentRole::BatchInput;
}

struct ConstantDesc {
  uint32_t buffer = 0;
  std::vector<uint8_t> data;
};

struct Program {
  std::string modelType;
  ProgramRole role = ProgramRole::Forward;
  uint64_t arenaBytes = 0;
  std::vector<BufferDesc> buffers;
  std::vector<ArgumentDesc> arguments;
  std::vector<ConstantDesc> constants;
  std::vector<KernelDesc> kernels;
  std::vector<uint32_t> outputs;
  std::vector<std::string> outputNames; ///< one per output, "" if unnamed
  std::vector<OutputRole> outputRoles;  ///< one per output
  /// After a training step, output `first` is copied into argument `second`.
  std::vector<std::pair<uint32_t, uint32_t>> updates;
  /// The mesh the program was partitioned for (empty: one rank), and the
  /// comm groups its collective kernels name (axes indices into `mesh`).
  uint32_t worldSize = 1;
  std::vector<std::pair<std::string, uint32_t>> mesh;
  std::vector<std::vector<uint32_t>> commGroups;
  /// Collectives may run asynchronously until their results are read.
  bool asyncCollectives = false;

  /// Where `rank`'s slice of buffer `buffer` starts in its global tensor,
  /// per dimension (zeros for a whole tensor).
  std::vector<int64_t> SliceStart(uint32_t buffer, uint32_t rank) const;
  /// Whether buffer `buffer` is a slice of a larger global tensor.
  bool IsSliced(uint32_t buffer) const {
    return buffers[buffer].global != buffers[buffer].shape;
  }

  /// The ranks of group `group` that `rank` belongs to, in group order.
  std::vector<uint32_t> GroupRanks(uint32_t group, uint32_t rank) const;

  /// The argument called `name`, or null.
  const ArgumentDesc *FindArgument(absl::string_view name) const;
  /// The index of the output called `name`, or -1.
  int FindOutput(absl::string_view name) const;
  /// The first argument of role `role`, or null.
  const ArgumentDesc *FindArgument(ArgumentRole role) const;
  /// The index of the first output of role `role`, or -1.
  int FindOutput(OutputRole role) const;
};

/// Reads and checks a .vmb file. Errors name the file and what is wrong.
absl::StatusOr<Program> LoadProgram(const std::string &path);
/// Checks in-memory .vmb bytes; `name` labels errors.
absl::StatusOr<Program> ParseProgram(absl::Span<const uint8_t> bytes,
                                     const std::string &name);
/// The same for the bytes of a .vmb held in a string (what the compiler's
/// translation returns).
inline absl::StatusOr<Program> ParseProgram(absl::string_view bytes,
                                            const std::string &name) {
  return ParseProgram(
      absl::Span<const uint8_t>(reinterpret_cast<const uint8_t *>(bytes.data()),
                                bytes.size()),
      name);
}

} // namespace veomni::rt

#endif // VEOMNI_RUNTIME_PROGRAM_PROGRAM_H
