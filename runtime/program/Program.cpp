//===- Program.cpp - load and check a .vmb program ------------------------===//

#include "runtime/program/Program.h"

#include "runtime/schema/ProgramFile.h"
#include "runtime/schema/program_generated.h"

#include "absl/strings/str_cat.h"

#include <algorithm>
#include <fstream>
#include <iterator>
#include <limits>

namespace veomni::rt {
namespace {

static_assert(static_cast<int>(fb::ProgramRole::MAX) ==
              static_cast<int>(ProgramRole::kLast));
static_assert(static_cast<int>(fb::ArgumentRole::MAX) ==
              static_cast<int>(ArgumentRole::kLast));
static_assert(static_cast<int>(fb::OutputRole::MAX) ==
              static_cast<int>(OutputRole::kLast));

absl::Status Bad(const std::string &name, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat(name, ": invalid program: ", what));
}

template <typename T> std::vector<T> ToVector(const flatbuffers::Vector<T> *v) {
  return v ? std::vector<T>(v->begin(), v->end()) : std::vector<T>();
}

} // namespace

absl::string_view KernelName(KernelKind k) {
  auto i = static_cast<uint16_t>(k);
  return i < kernel_table::kNumKernelKinds ? kernel_table::kKernelTable[i].name
                                           : "?";
}

namespace {

/// Coordinates of `rank`, row-major over the mesh.
std::vector<uint32_t>
Coordinates(const std::vector<std::pair<std::string, uint32_t>> &mesh,
            uint32_t rank) {
  std::vector<uint32_t> coord(mesh.size());
  for (size_t a = mesh.size(), r = rank; a-- > 0;) {
    coord[a] = r % mesh[a].second;
    r /= mesh[a].second;
  }
  return coord;
}

} // namespace

std::vector<int64_t> Program::SliceStart(uint32_t buffer, uint32_t rank) const {
  const BufferDesc &b = buffers[buffer];
  std::vector<int64_t> start(b.shape.size(), 0);
  std::vector<uint32_t> coord = Coordinates(mesh, rank);
  for (size_t d = 0; d < b.split.size(); ++d) {
    // The dimension's chunk index, row-major over its axes (major first),
    // as an all-gather over those axes concatenates the chunks.
    int64_t chunk = 0;
    for (uint32_t a : b.split[d])
      chunk = chunk * mesh[a].second + coord[a];
    start[d] = chunk * b.shape[d];
  }
  return start;
}

std::vector<uint32_t> Program::GroupRanks(uint32_t group, uint32_t rank) const {
  std::vector<uint32_t> coord = Coordinates(mesh, rank);
  const std::vector<uint32_t> &axes = commGroups[group];
  uint32_t count = 1;
  for (uint32_t a : axes)
    count *= mesh[a].second;
  std::vector<uint32_t> ranks;
  for (uint32_t i = 0; i < count; ++i) {
    // Member i: coordinates i, row-major over `axes`, on those axes.
    std::vector<uint32_t> c = coord;
    for (size_t k = axes.size(), j = i; k-- > 0;) {
      c[axes[k]] = j % mesh[axes[k]].second;
      j /= mesh[axes[k]].second;
    }
    uint32_t r = 0;
    for (size_t a = 0; a < mesh.size(); ++a)
      r = r * mesh[a].second + c[a];
    ranks.push_back(r);
  }
  return ranks;
}

int Program::FindOutput(absl::string_view name) const {
  for (size_t i = 0; i < outputNames.size(); ++i)
    if (outputNames[i] == name)
      return static_cast<int>(i);
  return -1;
}

const ArgumentDesc *Program::FindArgument(ArgumentRole role) const {
  for (const ArgumentDesc &a : arguments)
    if (a.role == role)
      return &a;
  return nullptr;
}

int Program::FindOutput(OutputRole role) const {
  for (size_t i = 0; i < outputRoles.size(); ++i)
    if (outputRoles[i] == role)
      return static_cast<int>(i);
  return -1;
}

const ArgumentDesc *Program::FindArgument(absl::string_view name) const {
  for (const ArgumentDesc &a : arguments)
    if (a.name == name)
      return &a;
  return nullptr;
}

absl::StatusOr<Program> LoadProgram(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  if (in.bad())
    return absl::DataLossError(absl::StrCat(path, ": read error"));
  return ParseProgram(bytes, path);
}

absl::StatusOr<Program> ParseProgram(absl::Span<const uint8_t> bytes,
                                     const std::string &name) {
  if (bytes.size() < fb::kHeaderBytes)
    return Bad(name, absl::StrCat("truncated: ", bytes.size(),
                                  " bytes, shorter than the header"));
  fb::ProgramHeader header;
  std::memcpy(&header, bytes.data(), sizeof(header));
  if (std::memcmp(header.magic, fb::kProgramMagic, sizeof(header.magic)))
    return Bad(name, "not a veomni program (bad magic)");
  if (header.version != fb::kFormatVersion)
    return Bad(name, absl::StrCat("format version ", header.version,
                                  ", this runtime reads ", fb::kFormatVersion));
  absl::Span<const uint8_t> payload = bytes.subspan(fb::kHeaderBytes);
  if (header.payloadBytes != payload.size())
    return Bad(name, absl::StrCat("truncated or padded: header says ",
                                  header.payloadBytes,
                                  " payload bytes, file has ", payload.size()));
  if (fb::HashPayload(payload.data(), payload.size()) != header.payloadHash)
    return Bad(name, "checksum mismatch (the file is corrupt)");
  flatbuffers::Verifier verifier(payload.data(), payload.size());
  if (!fb::VerifyProgramBuffer(verifier))
    return Bad(name, "the FlatBuffers verifier rejects the payload");
  const fb::Program *p = fb::GetProgram(payload.data());

  Program out;
  out.modelType = p->model_type() ? p->model_type()->str() : "";
  auto role = static_cast<uint8_t>(p->role());
  if (role > static_cast<uint8_t>(ProgramRole::kLast))
    return Bad(name, absl::StrCat("unknown program role ", role));
  out.role = static_cast<ProgramRole>(role);
  out.arenaBytes = p->arena_bytes();
  if (out.arenaBytes > (uint64_t{1} << 46))
    return Bad(name, absl::StrCat("arena of ", out.arenaBytes, " bytes"));
  if (!p->buffers() || !p->kernels() || !p->arguments() || !p->outputs())
    return Bad(name, "missing buffers, arguments, kernels or outputs");

  for (uint32_t i = 0; i < p->buffers()->size(); ++i) {
    const fb::Buffer *b = p->buffers()->Get(i);
    BufferDesc d;
    d.offset = b->offset();
    auto dt = static_cast<uint8_t>(b->dtype());
    if (dt > static_cast<uint8_t>(DType::I64))
      return Bad(name, absl::StrCat("buffer ", i, ": unknown dtype ", dt));
    d.dtype = static_cast<DType>(dt);
    uint64_t elements = 1;
    for (int64_t dim : ToVector(b->shape())) {
      if (dim < 1 || dim > (int64_t{1} << 40) ||
          elements > std::numeric_limits<uint64_t>::max() / uint64_t(dim))
        return Bad(name, absl::StrCat("buffer ", i, ": bad dimension ", dim));
      elements *= dim;
      d.shape.push_back(dim);
    }
    if (elements > (uint64_t{1} << 44))
      return Bad(name, absl::StrCat("buffer ", i, ": too large"));
    d.bytes = elements * SizeOf(d.dtype);
    if (b->split()) {
      if (b->split()->size() != d.shape.size())
        return Bad(name,
                   absl::StrCat("buffer ", i, " splits ", b->split()->size(),
                                " dimensions of ", d.shape.size()));
      for (const fb::DimSplit *s : *b->split())
        d.split.push_back(ToVector(s->axes()));
    }
    if (d.offset % fb::kBufferAlignment != 0 || d.offset > out.arenaBytes ||
        d.bytes > out.arenaBytes - d.offset)
      return Bad(name, absl::StrCat("buffer ", i, " [", d.offset, ", +",
                                    d.bytes, ") lies outside the arena of ",
                                    out.arenaBytes, " bytes"));
    out.buffers.push_back(std::move(d));
  }
  const uint32_t nbuf = out.buffers.size();
  auto index = [&](uint32_t b, absl::string_view where) -> absl::Status {
    if (b >= nbuf)
      return Bad(name, absl::StrCat(where, " names buffer ", b, " of ", nbuf));
    return absl::OkStatus();
  };

  for (uint32_t i = 0; i < p->arguments()->size(); ++i) {
    const fb::Argument *a = p->arguments()->Get(i);
    ArgumentDesc d;
    d.name = a->name() ? a->name()->str() : "";
    if (d.name.empty())
      return Bad(name, absl::StrCat("argument ", i, " has no name"));
    if (out.FindArgument(d.name))
      return Bad(name, absl::StrCat("argument '", d.name, "' appears twice"));
    auto role = static_cast<uint8_t>(a->role());
    if (role > static_cast<uint8_t>(ArgumentRole::kLast))
      return Bad(name,
                 absl::StrCat("argument '", d.name, "': unknown role ", role));
    d.role = static_cast<ArgumentRole>(role);
    d.isParam = d.role == ArgumentRole::Parameter;
    // Training state is what a checkpoint keeps besides the parameters;
    // everything else is given to each run.
    d.kind = d.isParam ? ArgumentKind::Param
             : d.role == ArgumentRole::OptimizerState ||
                     d.role == ArgumentRole::MasterWeight ||
                     d.role == ArgumentRole::GradAccumulator
                 ? ArgumentKind::State
                 : ArgumentKind::Input;
    d.initFrom = a->init_from() ? a->init_from()->str() : "";
    d.stateOf = a->state_of() ? a->state_of()->str() : "";
    d.buffer = a->buffer();
    if (auto s = index(d.buffer, absl::StrCat("argument '", d.name, "'"));
        !s.ok())
      return s;
    d.placement = a->placement() ? a->placement()->str() : "";
    auto init = static_cast<uint8_t>(a->init());
    if (init > static_cast<uint8_t>(ParamInit::LoraA))
      return Bad(name, absl::StrCat("argument '", d.name, "': bad init"));
    d.init = static_cast<ParamInit>(init);
    d.bound = a->bound();
    d.frozen = a->frozen();
    d.adapter = a->adapter();
    out.arguments.push_back(std::move(d));
  }

  if (p->constants()) {
    for (uint32_t i = 0; i < p->constants()->size(); ++i) {
      const fb::Constant *c = p->constants()->Get(i);
      ConstantDesc d;
      d.buffer = c->buffer();
      if (auto s = index(d.buffer, absl::StrCat("constant ", i)); !s.ok())
        return s;
      d.data = ToVector(c->data());
      if (d.data.size() != out.buffers[d.buffer].bytes)
        return Bad(name, absl::StrCat("constant ", i, " has ", d.data.size(),
                                      " bytes for a buffer of ",
                                      out.buffers[d.buffer].bytes));
      out.constants.push_back(std::move(d));
    }
  }

  for (uint32_t i = 0; i < p->kernels()->size(); ++i) {
    const fb::Kernel *k = p->kernels()->Get(i);
    KernelDesc d;
    uint16_t kind = k->kind();
    if (kind >= kernel_table::kNumKernelKinds)
      return Bad(name, absl::StrCat("kernel ", i, ": unknown kind ", kind));
    d.kind = static_cast<KernelKind>(kind);
    d.ins = ToVector(k->inputs());
    d.outs = ToVector(k->outputs());
    d.location = k->location() ? k->location()->str() : "";
    std::string where =
        absl::StrCat("kernel ", i, " (", KernelName(d.kind), ")");
    const kernel_table::KernelInfo &info = kernel_table::Info(d.kind);
    if (d.ins.size() < info.minIns || d.ins.size() > info.maxIns ||
        d.outs.size() < info.minOuts || d.outs.size() > info.maxOuts)
      return Bad(name, absl::StrCat(where, " has ", d.ins.size(),
                                    " inputs and ", d.outs.size(), " outputs"));
    size_t nattrs = k->attrs() ? k->attrs()->size() : 0;
    if (nattrs != info.numAttrs)
      return Bad(name, absl::StrCat(where, " has ", nattrs,
                                    " attributes, its "
                                    "kind takes ",
                                    info.numAttrs));
    for (uint32_t j = 0; j < info.numAttrs; ++j) {
      const fb::Attr *a = k->attrs()->Get(j);
      AttrValue v{ToVector(a->ints()), ToVector(a->floats())};
      kernel_table::AttrType type = info.attrs[j].type;
      bool scalarInt = type == kernel_table::AttrType::Bool ||
                       type == kernel_table::AttrType::Int;
      bool ok = scalarInt ? v.ints.size() == 1 && v.floats.empty()
                : type == kernel_table::AttrType::Float
                    ? v.floats.size() == 1 && v.ints.empty()
                : type == kernel_table::AttrType::Ints ? v.floats.empty()
                                                       : v.ints.empty();
      if (!ok)
        return Bad(name,
                   absl::StrCat(where, ": attribute '", info.attrs[j].name,
                                "' has ", v.ints.size(), " integers and ",
                                v.floats.size(), " floats"));
      d.attrs.push_back(std::move(v));
    }
    for (uint32_t b : d.ins)
      if (auto s = index(b, where); !s.ok())
        return s;
    for (uint32_t b : d.outs)
      if (auto s = index(b, where); !s.ok())
        return s;
    out.kernels.push_back(std::move(d));
  }
  for (uint32_t b : ToVector(p->outputs())) {
    if (auto s = index(b, "an output"); !s.ok())
      return s;
    out.outputs.push_back(b);
  }
  if (out.outputs.empty())
    return Bad(name, "the program has no outputs");
  for (size_t i = 0; i < out.outputs.size(); ++i) {
    out.outputNames.push_back(p->output_names() && i < p->output_names()->size()
                                  ? p->output_names()->Get(i)->str()
                                  : "");
    auto role = p->output_roles() && i < p->output_roles()->size()
                    ? static_cast<uint8_t>(p->output_roles()->Get(i))
                    : uint8_t{0};
    if (role > static_cast<uint8_t>(OutputRole::kLast))
      return Bad(name, absl::StrCat("output ", i, ": unknown role ", role));
    out.outputRoles.push_back(static_cast<OutputRole>(role));
  }
  if (p->updates()) {
    for (uint32_t i = 0; i < p->updates()->size(); ++i) {
      const fb::Update *u = p->updates()->Get(i);
      if (u->output() >= out.outputs.size() ||
          u->argument() >= out.arguments.size())
        return Bad(name, absl::StrCat("update ", i, " is out of range"));
      const BufferDesc &from = out.buffers[out.outputs[u->output()]];
      const BufferDesc &to = out.buffers[out.arguments[u->argument()].buffer];
      if (from.bytes != to.bytes || from.dtype != to.dtype)
        return Bad(name, absl::StrCat("update ", i, " copies ", from.bytes,
                                      " bytes into an argument of ", to.bytes));
      if (from.split != to.split)
        return Bad(name, absl::StrCat("update ", i,
                                      " copies a slice into an argument "
                                      "split otherwise"));
      out.updates.push_back({u->output(), u->argument()});
    }
  }
  out.worldSize = p->world_size();
  out.asyncCollectives = p->async_collectives();
  uint64_t devices = 1;
  if (p->mesh())
    for (uint32_t i = 0; i < p->mesh()->size(); ++i) {
      const fb::MeshAxis *a = p->mesh()->Get(i);
      if (!a->name() || a->size() < 1 || a->size() > (1u << 20))
        return Bad(name, absl::StrCat("mesh axis ", i,
                                      " is unnamed or of "
                                      "size ",
                                      a->size()));
      devices *= a->size();
      out.mesh.push_back({a->name()->str(), a->size()});
    }
  if (out.worldSize < 1 || devices != out.worldSize)
    return Bad(name, absl::StrCat("world size ", out.worldSize,
                                  " is not the mesh's ", devices, " devices"));
  // Global shapes of sliced buffers: each axis once, each global dimension
  // within the limits every buffer has.
  for (uint32_t i = 0; i < out.buffers.size(); ++i) {
    BufferDesc &d = out.buffers[i];
    d.global = d.shape;
    std::vector<bool> seen(out.mesh.size(), false);
    uint64_t elements = 1;
    for (size_t dim = 0; dim < d.split.size(); ++dim) {
      for (uint32_t a : d.split[dim]) {
        if (a >= out.mesh.size() || seen[a])
          return Bad(name,
                     absl::StrCat("buffer ", i, " is split over mesh axis ", a,
                                  " of ", out.mesh.size(), " (or twice)"));
        seen[a] = true;
        d.global[dim] *= out.mesh[a].second;
      }
      if (d.global[dim] > (int64_t{1} << 40))
        return Bad(name, absl::StrCat("buffer ", i, ": bad global dimension ",
                                      d.global[dim]));
      elements *= d.global[dim];
      if (elements > (uint64_t{1} << 50))
        return Bad(name, absl::StrCat("buffer ", i, ": too large globally"));
    }
  }
  if (p->comm_groups())
    for (uint32_t i = 0; i < p->comm_groups()->size(); ++i) {
      std::vector<uint32_t> axes = ToVector(p->comm_groups()->Get(i)->axes());
      std::vector<bool> seen(out.mesh.size(), false);
      for (uint32_t a : axes) {
        if (a >= out.mesh.size() || seen[a])
          return Bad(name,
                     absl::StrCat("comm group ", i, " names mesh axis ", a,
                                  " of ", out.mesh.size(), " (or twice)"));
        seen[a] = true;
      }
      out.commGroups.push_back(std::move(axes));
    }
  for (size_t i = 0; i < out.kernels.size(); ++i) {
    const KernelDesc &k = out.kernels[i];
    for (const char *attr : kCommGroupAttrs) {
      const int64_t group = CommGroupOf(k, attr);
      // A collective must name one; a loss or lookup may name none (-1).
      if (group == -1 &&
          !(std::string_view(attr) == "group" &&
            kernel_table::Info(k.kind).flags & kernel_table::kCollective))
        continue;
      if (group < 0 || group >= static_cast<int64_t>(out.commGroups.size()))
        return Bad(name, absl::StrCat("kernel ", i, " (", KernelName(k.kind),
                                      ") names comm group ", group, " of ",
                                      out.commGroups.size(), " (", attr, ")"));
    }
  }
  for (const ArgumentDesc &a : out.arguments)
    if (!a.initFrom.empty()) {
      const ArgumentDesc *src = out.FindArgument(a.initFrom);
      if (!src || !src->isParam ||
          out.buffers[src->buffer].shape != out.buffers[a.buffer].shape ||
          out.buffers[src->buffer].split != out.buffers[a.buffer].split)
        return Bad(name, absl::StrCat("state '", a.name,
                                      "' starts from unknown parameter '",
                                      a.initFrom, "'"));
    }
  return out;
}

} // namespace veomni::rt
