//===- Kernel.h - a kernel call and its typed attributes --------*- C++ -*-===//
//
// A loaded kernel call (KernelDesc) keeps its attributes as the program
// stores them; Attrs<Kind>() gives them back as the struct KernelTable.def
// declares for that kind, e.g. MatmulAttrs{transpose_lhs, transpose_rhs}.
// Lists are spans into the KernelDesc, so a decode allocates nothing.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_PROGRAM_KERNEL_H
#define VEOMNI_RUNTIME_PROGRAM_KERNEL_H

#include "runtime/program/KernelTable.h"

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

#include <cstdint>
#include <string>
#include <vector>

namespace veomni::rt {

using kernel_table::KernelKind;

/// The kind's C++ name ("Matmul"), or "?" outside the table.
absl::string_view KernelName(KernelKind k);

/// One stored attribute: one integer (Bool, Int), one double (Float), or a
/// list.
struct AttrValue {
  std::vector<int64_t> ints;
  std::vector<double> floats;
};

struct KernelDesc {
  KernelKind kind = KernelKind::Copy;
  std::vector<uint32_t> ins, outs;
  std::vector<AttrValue> attrs; ///< in the table's order, all present
  std::string location;
};

namespace attr {
using Bool = bool;
using Int = int64_t;
using Float = double;
using Ints = absl::Span<const int64_t>;
using Floats = absl::Span<const double>;
inline Bool Decode(const AttrValue &v, Bool *) { return v.ints[0] != 0; }
inline Int Decode(const AttrValue &v, Int *) { return v.ints[0]; }
inline Float Decode(const AttrValue &v, Float *) { return v.floats[0]; }
inline Ints Decode(const AttrValue &v, Ints *) { return v.ints; }
inline Floats Decode(const AttrValue &v, Floats *) { return v.floats; }
} // namespace attr

// <Name>Attrs: one field per VEOMNI_ATTR of the kind, same name and order.
#define VEOMNI_ATTR(Type, name, default) attr::Type name{};
#define VEOMNI_KERNEL(Name, mnemonic, minIns, maxIns, minOuts, maxOuts, flags, \
                      ...)                                                     \
  struct Name##Attrs {                                                         \
    __VA_ARGS__                                                                \
  };
#include "runtime/program/KernelTable.def"
#undef VEOMNI_KERNEL
#undef VEOMNI_ATTR

/// The attributes of `k` (which the loader checked to be of kind `K`).
template <KernelKind K> struct AttrsOf;
#define VEOMNI_ATTR(Type, name, default)                                       \
  a.name = attr::Decode(k.attrs[i++], static_cast<attr::Type *>(nullptr));
#define VEOMNI_KERNEL(Name, mnemonic, minIns, maxIns, minOuts, maxOuts, flags, \
                      ...)                                                     \
  template <> struct AttrsOf<KernelKind::Name> {                               \
    using type = Name##Attrs;                                                  \
    static Name##Attrs Decode(const KernelDesc &k) {                           \
      Name##Attrs a;                                                           \
      [[maybe_unused]] size_t i = 0;                                           \
      __VA_ARGS__                                                              \
      return a;                                                                \
    }                                                                          \
  };
#include "runtime/program/KernelTable.def"
#undef VEOMNI_KERNEL
#undef VEOMNI_ATTR

/// The attributes that name a comm group: a collective's `group`; a loss's
/// `token_group` and `vocab_group`, a lookup's `index_group`, a grouped
/// matmul's `expert_group` (-1 when that dimension is whole).
constexpr const char *kCommGroupAttrs[] = {
    "group", "token_group", "vocab_group", "index_group", "expert_group"};

/// Kernel `k`'s attribute `name` (one of kCommGroupAttrs), or -1 when it
/// has none.
inline int64_t CommGroupOf(const KernelDesc &k, const char *name) {
  int i = kernel_table::AttrIndex(k.kind, name);
  return i >= 0 ? k.attrs[i].ints[0] : -1;
}

} // namespace veomni::rt

#endif // VEOMNI_RUNTIME_PROGRAM_KERNEL_H
