//===- KernelTable.h - the kernel table as data -----------------*- C++ -*-===//
//
// KernelTable.def as constexpr data, for the compiler (vrt.kernel's
// verifier, lowering, translation) and the runtime (loading, dispatch)
// alike. Standard C++ only: the runtime builds without LLVM and the
// compiler without Abseil. The namespace is kernel_table, outside veomni::,
// so that compiler code that sees it keeps `veomni::` meaning mlir::veomni.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_PROGRAM_KERNELTABLE_H
#define VEOMNI_RUNTIME_PROGRAM_KERNELTABLE_H

#include <cstdint>
#include <iterator>
#include <optional>
#include <string_view>

namespace kernel_table {

/// How an attribute is stored in a program: Bool and Int as one integer,
/// Float as one double, Ints and Floats as lists of any length.
enum class AttrType : uint8_t { Bool, Int, Float, Ints, Floats };

enum KernelFlags : uint8_t {
  kInPlace = 1,    ///< the output may reuse an input's memory (same type)
  kCollective = 2, ///< run by the Communicator, not by a backend
};

/// The kernel kinds; the numbering is part of the program format.
enum class KernelKind : uint16_t {
#define VEOMNI_KERNEL(Name, ...) Name,
#include "runtime/program/KernelTable.def"
#undef VEOMNI_KERNEL
};

inline constexpr uint16_t kNumKernelKinds = 0
#define VEOMNI_KERNEL(Name, ...) +1
#include "runtime/program/KernelTable.def"
#undef VEOMNI_KERNEL
    ;

struct AttrSpec {
  const char *name;
  AttrType type;
  double defaultValue; ///< for Int and Float when the op gives none
};

struct KernelInfo {
  const char *name;     ///< the C++ name, "GroupedMatmul"
  const char *mnemonic; ///< vrt.kernel's spelling, "grouped_matmul"
  uint32_t minIns, maxIns, minOuts, maxOuts;
  uint8_t flags;
  const AttrSpec *attrs;
  uint32_t numAttrs;
};

namespace detail {
// Each kind's attribute list ends with a sentinel, so that kinds without
// attributes have a (one-element) array too.
#define VEOMNI_ATTR(Type, name, default)                                       \
  AttrSpec{#name, AttrType::Type, default},
#define VEOMNI_KERNEL(Name, mnemonic, minIns, maxIns, minOuts, maxOuts, flags, \
                      ...)                                                     \
  inline constexpr AttrSpec Name##AttrSpecs[] = {                              \
      __VA_ARGS__ AttrSpec{nullptr, AttrType::Bool, 0}};
#include "runtime/program/KernelTable.def"
#undef VEOMNI_KERNEL
#undef VEOMNI_ATTR
} // namespace detail

inline constexpr KernelInfo kKernelTable[] = {
#define VEOMNI_KERNEL(Name, mnemonic, minIns, maxIns, minOuts, maxOuts, flags, \
                      ...)                                                     \
  KernelInfo{#Name,                                                            \
             mnemonic,                                                         \
             minIns,                                                           \
             maxIns,                                                           \
             minOuts,                                                          \
             maxOuts,                                                          \
             flags,                                                            \
             detail::Name##AttrSpecs,                                          \
             static_cast<uint32_t>(std::size(detail::Name##AttrSpecs) - 1)},
#include "runtime/program/KernelTable.def"
#undef VEOMNI_KERNEL
};
static_assert(std::size(kKernelTable) == kNumKernelKinds);

inline const KernelInfo &Info(KernelKind k) {
  return kKernelTable[static_cast<uint16_t>(k)];
}

/// The position of attribute `name` among `k`'s, or -1.
inline int AttrIndex(KernelKind k, std::string_view name) {
  const KernelInfo &info = Info(k);
  for (uint32_t i = 0; i < info.numAttrs; ++i)
    if (name == info.attrs[i].name)
      return static_cast<int>(i);
  return -1;
}

/// The kind spelled `mnemonic` in vrt.kernel, if any.
inline std::optional<KernelKind> KindOfMnemonic(std::string_view mnemonic) {
  for (uint16_t i = 0; i < kNumKernelKinds; ++i)
    if (mnemonic == kKernelTable[i].mnemonic)
      return static_cast<KernelKind>(i);
  return std::nullopt;
}

} // namespace kernel_table

#endif // VEOMNI_RUNTIME_PROGRAM_KERNELTABLE_H
