//===- Executor.cpp - run a program on a device ---------------------------===//

#include "runtime/executor/Executor.h"
#include "runtime/support/Status.h"

#include "absl/strings/str_cat.h"

namespace veomni::rt {

absl::StatusOr<std::unique_ptr<Executor>>
Executor::Create(Program program, std::unique_ptr<Device> device) {
  std::vector<KernelFn> fns;
  fns.reserve(program.kernels.size());
  for (size_t i = 0; i < program.kernels.size(); ++i) {
    KernelKind kind = program.kernels[i].kind;
    KernelFn fn = device->Kernels().Find(kind);
    if (!fn)
      return absl::UnimplementedError(
          absl::StrCat("kernel ", i, " (", KernelName(kind), "): the ",
                       device->Name(), " backend has no such kernel"));
    fns.push_back(fn);
  }
  VEOMNI_RETURN_IF_ERROR(device->AllocateArena(program.arenaBytes));
  for (const ConstantDesc &c : program.constants)
    VEOMNI_RETURN_IF_ERROR(device->CopyIn(program.buffers[c.buffer].offset,
                                          c.data.data(), c.data.size()));
  auto ex = std::unique_ptr<Executor>(
      new Executor(std::move(program), std::move(device)));
  ex->fns_ = std::move(fns);
  return ex;
}

absl::StatusOr<std::unique_ptr<Executor>> Executor::Create(Program program) {
  absl::StatusOr<std::unique_ptr<Device>> device = CreateDevice("cpu");
  if (!device.ok())
    return device.status();
  return Create(std::move(program), *std::move(device));
}

TensorView Executor::View(uint32_t buffer) const {
  const BufferDesc &b = program_.buffers[buffer];
  return TensorView{device_->Arena() + b.offset, b.dtype, b.shape};
}

absl::StatusOr<TensorView> Executor::Argument(absl::string_view name) const {
  const ArgumentDesc *a = program_.FindArgument(name);
  if (!a)
    return absl::NotFoundError(
        absl::StrCat("the program has no argument '", name, "'"));
  return View(a->buffer);
}

absl::Status Executor::Read(uint32_t buffer, void *host) const {
  const BufferDesc &b = program_.buffers[buffer];
  return device_->CopyOut(b.offset, host, b.bytes);
}

absl::Status Executor::Write(uint32_t buffer, const void *host) {
  const BufferDesc &b = program_.buffers[buffer];
  return device_->CopyIn(b.offset, host, b.bytes);
}

absl::Status Executor::WriteAt(uint32_t buffer, uint64_t offset,
                               const void *host, uint64_t bytes) {
  const BufferDesc &b = program_.buffers[buffer];
  if (offset > b.bytes || bytes > b.bytes - offset)
    return absl::OutOfRangeError(absl::StrCat("writing [", offset, ", +", bytes,
                                              ") of a buffer of ", b.bytes,
                                              " bytes"));
  return device_->CopyIn(b.offset + offset, host, bytes);
}

absl::StatusOr<HostTensor> Executor::ReadHost(uint32_t buffer) const {
  HostTensor h;
  h.view = View(buffer);
  if (device_->HostAccessible())
    return h;
  h.copy.resize(h.view.bytes());
  VEOMNI_RETURN_IF_ERROR(Read(buffer, h.copy.data()));
  h.view.data = h.copy.data();
  return h;
}

absl::Status Executor::CopyBuffer(uint32_t from, uint32_t to) {
  const BufferDesc &a = program_.buffers[from], &b = program_.buffers[to];
  if (a.bytes != b.bytes)
    return absl::InvalidArgumentError(
        absl::StrCat("copy of ", a.bytes, " bytes into a buffer of ", b.bytes));
  return device_->CopyWithin(b.offset, a.offset, a.bytes);
}

absl::Status Executor::Run() {
  std::vector<TensorView> in, out;
  for (size_t i = 0; i < program_.kernels.size(); ++i) {
    const KernelDesc &k = program_.kernels[i];
    in.clear();
    out.clear();
    for (uint32_t b : k.ins)
      in.push_back(View(b));
    for (uint32_t b : k.outs)
      out.push_back(View(b));
    absl::Status s = fns_[i](k, in, out);
    if (!s.ok())
      return absl::Status(s.code(),
                          absl::StrCat("kernel ", i, " (", KernelName(k.kind),
                                       ")", k.location.empty() ? "" : " in ",
                                       k.location, ": ", s.message()));
  }
  return device_->Synchronize();
}

} // namespace veomni::rt
