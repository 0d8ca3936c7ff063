//===- Executor.cpp - run a program on a device ---------------------------===//

#include "runtime/executor/Executor.h"
#include "runtime/support/Status.h"

#include "absl/strings/str_cat.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <string_view>
#include <thread>

namespace veomni::rt {

/// Runs collectives one after another, in the order they were queued (the
/// program's, so every rank issues them alike), while the kernels go on.
class Executor::CommThread {
public:
  CommThread() : thread_([this] { Loop(); }) {}
  ~CommThread() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }
  /// Queues `fn`; returns its ticket.
  uint64_t Push(std::function<absl::Status()> fn) {
    std::lock_guard<std::mutex> lock(mutex_);
    tasks_.push_back({++issued_, std::move(fn)});
    wake_.notify_all();
    return issued_;
  }
  /// Waits until every task up to `ticket` has run; the first error.
  absl::Status Wait(uint64_t ticket) {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return finished_ >= ticket; });
    return error_;
  }
  uint64_t Issued() const { return issued_; }

private:
  struct Task {
    uint64_t ticket;
    std::function<absl::Status()> fn;
  };
  void Loop() {
    for (;;) {
      Task task;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stop_ || !tasks_.empty(); });
        if (tasks_.empty())
          return;
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      absl::Status s = task.fn();
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!s.ok() && error_.ok())
          error_ = s;
        finished_ = task.ticket;
      }
      done_.notify_all();
    }
  }
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::deque<Task> tasks_;
  uint64_t issued_ = 0, finished_ = 0;
  absl::Status error_;
  bool stop_ = false;
  std::thread thread_;
};

Executor::Executor(Program program, std::unique_ptr<Device> device)
    : program_(std::move(program)), device_(std::move(device)) {}

Executor::~Executor() = default;

absl::StatusOr<std::unique_ptr<Executor>>
Executor::Create(Program program, std::unique_ptr<Device> device,
                 Communicator *comm) {
  std::vector<KernelFn> fns;
  fns.reserve(program.kernels.size());
  std::vector<int> groupIndex;
  std::vector<uint32_t> handles;
  uint32_t world = 0;
  if (program.worldSize > 1 || !program.commGroups.empty()) {
    if (!comm || comm->WorldSize() != static_cast<int>(program.worldSize))
      return absl::FailedPreconditionError(absl::StrCat(
          "the program is partitioned for ", program.worldSize,
          " ranks; run it on that many (mpirun -np ", program.worldSize,
          "), not ", comm ? comm->WorldSize() : 1));
    if (!device->HostAccessible())
      return absl::UnimplementedError(
          absl::StrCat("collectives on the ", device->Name(),
                       " backend need its own communicator"));
    for (uint32_t g = 0; g < program.commGroups.size(); ++g) {
      std::vector<uint32_t> ranks = program.GroupRanks(g, comm->Rank());
      std::string axes;
      for (uint32_t a : program.commGroups[g])
        absl::StrAppend(&axes, axes.empty() ? "" : "+", program.mesh[a].first);
      VEOMNI_ASSIGN_OR_RETURN(uint32_t handle, comm->AddGroup(axes, ranks));
      handles.push_back(handle);
      groupIndex.push_back(static_cast<int>(
          std::find(ranks.begin(), ranks.end(), uint32_t(comm->Rank())) -
          ranks.begin()));
    }
    // A lookup in a split table: this rank's rows of it.
    for (KernelDesc &k : program.kernels) {
      if (k.kind != KernelKind::Gather && k.kind != KernelKind::ScatterAdd)
        continue;
      auto attr = [&](const char *name) -> int64_t & {
        return k.attrs[kernel_table::AttrIndex(k.kind, name)].ints[0];
      };
      int64_t g = attr("index_group");
      if (g < 0)
        continue;
      if (g >= int64_t(program.commGroups.size()))
        return absl::InvalidArgumentError(
            absl::StrCat(KernelName(k.kind), ": index group ", g, " of ",
                         program.commGroups.size()));
      const Shape &table = program.buffers[k.ins[0]].shape;
      int64_t axis = attr("axis");
      if (axis < 0 || axis >= int64_t(table.size()))
        return absl::InvalidArgumentError(
            absl::StrCat(KernelName(k.kind), ": no axis ", axis));
      int64_t size = program.GroupRanks(g, comm->Rank()).size();
      attr("index_offset") = groupIndex[g] * table[axis];
      attr("index_total") = size * table[axis];
    }
    // Every rank, for gathering global tensors.
    std::vector<uint32_t> all(program.worldSize);
    for (uint32_t r = 0; r < program.worldSize; ++r)
      all[r] = r;
    VEOMNI_ASSIGN_OR_RETURN(world, comm->AddGroup("world", all));
  }
  for (size_t i = 0; i < program.kernels.size(); ++i) {
    KernelKind kind = program.kernels[i].kind;
    if (kernel_table::Info(kind).flags & kernel_table::kCollective) {
      fns.push_back(nullptr); // run by the communicator
      continue;
    }
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
  ex->comm_ = comm;
  ex->groupIndex_ = std::move(groupIndex);
  ex->groupHandle_ = std::move(handles);
  ex->worldGroup_ = world;
  // Collectives on a thread of their own, unless this machine's cores are
  // oversubscribed already (MPI waits by spinning: a second spinning thread
  // per rank then slows every rank down). VEOMNI_COMM_THREAD=1 or 0 decides
  // instead.
  const char *choice = std::getenv("VEOMNI_COMM_THREAD");
  bool thread;
  if (choice && *choice)
    thread = std::string_view(choice) != "0";
  else {
    const char *local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    int ranksHere = local ? std::atoi(local) : (comm ? comm->WorldSize() : 1);
    thread = int(std::thread::hardware_concurrency()) >= 2 * ranksHere;
  }
  if (comm && thread && ex->program_.asyncCollectives &&
      comm->CallableFromAnyThread())
    ex->commThread_ = std::make_unique<CommThread>();
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

namespace {

/// Copies the block of shape `local` at `start` of a row-major tensor of
/// shape `global` out of it (`toGlobal` false) or into it; elements of
/// `size` bytes.
void CopyBlock(uint8_t *global, const Shape &globalShape, uint8_t *local,
               const Shape &localShape, const std::vector<int64_t> &start,
               size_t size, bool toGlobal) {
  const size_t rank = localShape.size();
  if (rank == 0) {
    toGlobal ? std::memcpy(global, local, size)
             : std::memcpy(local, global, size);
    return;
  }
  // Rows of the innermost dimension, one memcpy each.
  const size_t row = localShape[rank - 1] * size;
  int64_t rows = 1;
  for (size_t d = 0; d + 1 < rank; ++d)
    rows *= localShape[d];
  std::vector<int64_t> index(rank, 0);
  for (int64_t r = 0; r < rows; ++r) {
    int64_t at = 0;
    for (size_t d = 0; d < rank; ++d)
      at = at * globalShape[d] + start[d] + index[d];
    uint8_t *g = global + at * size, *l = local + r * row;
    toGlobal ? std::memcpy(g, l, row) : std::memcpy(l, g, row);
    for (size_t d = rank - 1; d-- > 0;) {
      if (++index[d] < localShape[d])
        break;
      index[d] = 0;
    }
  }
}

} // namespace

absl::Status Executor::WriteGlobal(uint32_t buffer, const void *global) {
  if (!program_.IsSliced(buffer))
    return Write(buffer, global);
  const BufferDesc &b = program_.buffers[buffer];
  std::vector<uint8_t> local(b.bytes);
  CopyBlock(static_cast<uint8_t *>(const_cast<void *>(global)), b.global,
            local.data(), b.shape, program_.SliceStart(buffer, Rank()),
            SizeOf(b.dtype), /*toGlobal=*/false);
  return Write(buffer, local.data());
}

absl::StatusOr<HostTensor> Executor::ReadGlobal(uint32_t buffer) const {
  if (!program_.IsSliced(buffer))
    return ReadHost(buffer);
  const BufferDesc &b = program_.buffers[buffer];
  // Every rank's slice, in rank order, then each put in its place.
  const int64_t n = b.bytes / SizeOf(b.dtype);
  std::vector<uint8_t> mine(b.bytes), all(b.bytes * program_.worldSize);
  VEOMNI_RETURN_IF_ERROR(Read(buffer, mine.data()));
  VEOMNI_RETURN_IF_ERROR(comm_->AllGather(
      worldGroup_, TensorView{mine.data(), b.dtype, {n}},
      TensorView{all.data(), b.dtype, {n * int64_t(program_.worldSize)}}, 0));
  HostTensor h;
  h.view = TensorView{nullptr, b.dtype, b.global};
  h.copy.resize(h.view.bytes());
  h.view.data = h.copy.data();
  for (uint32_t r = 0; r < program_.worldSize; ++r)
    CopyBlock(h.copy.data(), b.global, all.data() + r * b.bytes, b.shape,
              program_.SliceStart(buffer, r), SizeOf(b.dtype),
              /*toGlobal=*/true);
  return h;
}

absl::Status Executor::SyncStatus(absl::Status mine) const {
  if (!comm_ || program_.worldSize == 1)
    return mine;
  // The lowest failed rank wins: a max over (world - rank) for failures.
  int32_t flag = mine.ok() ? 0 : int32_t(program_.worldSize) - Rank();
  TensorView v{&flag, DType::I32, {1}};
  VEOMNI_RETURN_IF_ERROR(comm_->AllReduce(worldGroup_, v, v, ReduceOp::Max));
  if (!mine.ok() || flag == 0)
    return mine;
  return absl::AbortedError(absl::StrCat("rank ",
                                         int32_t(program_.worldSize) - flag,
                                         " failed (its message says why)"));
}

absl::StatusOr<std::string> Executor::RunProbe() {
  probe_ = true;
  probeHit_ = -1;
  absl::Status s = Run();
  probe_ = false;
  VEOMNI_RETURN_IF_ERROR(s);
  // The lowest kernel over the ranks (one program serves them all), and
  // the lowest rank that saw it there.
  const int64_t world = WorldSize();
  const int64_t none = static_cast<int64_t>(program_.kernels.size());
  int64_t key = -((probeHit_ < 0 ? none : probeHit_) * world + Rank());
  if (comm_ && program_.worldSize > 1) { // the least key: the most negative
    TensorView v{&key, DType::I64, {1}};
    VEOMNI_RETURN_IF_ERROR(comm_->AllReduce(worldGroup_, v, v, ReduceOp::Max));
  }
  key = -key;
  const int64_t kernel = key / world;
  if (kernel >= none)
    return std::string();
  const KernelDesc &k = program_.kernels[kernel];
  return absl::StrCat("kernel ", kernel, " (", KernelName(k.kind), ")",
                      k.location.empty() ? "" : " in ", k.location,
                      world > 1 ? absl::StrCat(", on rank ", key % world) : "");
}

absl::Status Executor::CopyBuffer(uint32_t from, uint32_t to) {
  const BufferDesc &a = program_.buffers[from], &b = program_.buffers[to];
  if (a.bytes != b.bytes)
    return absl::InvalidArgumentError(
        absl::StrCat("copy of ", a.bytes, " bytes into a buffer of ", b.bytes));
  if (a.offset == b.offset) // an update the step wrote in place
    return absl::OkStatus();
  return device_->CopyWithin(b.offset, a.offset, a.bytes);
}

absl::Status Executor::RunCollective(const KernelDesc &k, KernelIns in,
                                     KernelOuts out) {
  if (!comm_)
    return absl::FailedPreconditionError("a collective, and no communicator");
  switch (k.kind) {
  case KernelKind::AllGather: {
    auto a = AttrsOf<KernelKind::AllGather>::Decode(k);
    return comm_->AllGather(groupHandle_[a.group], in[0], out[0], a.dim);
  }
  case KernelKind::ReduceScatter: {
    auto a = AttrsOf<KernelKind::ReduceScatter>::Decode(k);
    return comm_->ReduceScatter(groupHandle_[a.group], in[0], out[0], a.dim,
                                ReduceOp::Sum);
  }
  case KernelKind::AllReduce: {
    auto a = AttrsOf<KernelKind::AllReduce>::Decode(k);
    return comm_->AllReduce(groupHandle_[a.group], in[0], out[0],
                            ReduceOp::Sum);
  }
  case KernelKind::AllToAll: {
    auto a = AttrsOf<KernelKind::AllToAll>::Decode(k);
    return comm_->AllToAll(groupHandle_[a.group], in[0], out[0], a.split_dim,
                           a.concat_dim);
  }
  case KernelKind::Send: {
    auto a = AttrsOf<KernelKind::Send>::Decode(k);
    return comm_->Send(groupHandle_[a.group], in[0], int(a.peer));
  }
  case KernelKind::Recv: {
    auto a = AttrsOf<KernelKind::Recv>::Decode(k);
    return comm_->Recv(groupHandle_[a.group], out[0], int(a.peer));
  }
  case KernelKind::LocalSplit: {
    // This rank's block of dimension `dim`: no communication.
    auto a = AttrsOf<KernelKind::LocalSplit>::Decode(k);
    const TensorView &x = in[0], &y = out[0];
    if (x.dtype != y.dtype || x.rank() != y.rank() || a.dim < 0 ||
        a.dim >= x.rank() || y.shape[a.dim] == 0)
      return absl::InvalidArgumentError("local_split: bad shapes");
    const size_t elem = SizeOf(x.dtype);
    int64_t outer = 1, inner = elem;
    for (int64_t d = 0; d < a.dim; ++d)
      outer *= x.shape[d];
    for (int64_t d = a.dim + 1; d < x.rank(); ++d)
      inner *= x.shape[d];
    const int64_t part = y.shape[a.dim], index = groupIndex_[a.group];
    if ((index + 1) * part > x.shape[a.dim])
      return absl::InvalidArgumentError("local_split: the part lies outside");
    for (int64_t o = 0; o < outer; ++o)
      std::memcpy(static_cast<uint8_t *>(y.data) + o * part * inner,
                  static_cast<const uint8_t *>(x.data) +
                      (o * x.shape[a.dim] + index * part) * inner,
                  part * inner);
    return absl::OkStatus();
  }
  default:
    return absl::InternalError("not a collective");
  }
}

absl::Status Executor::Run() {
  std::vector<TensorView> in, out;
  labelCounts_.clear();
  // Collectives running on their own thread: their ticket and the bytes
  // they read and write.
  struct Pending {
    uint64_t ticket;
    std::vector<std::pair<uint64_t, uint64_t>> reads, writes;
  };
  std::vector<Pending> pending;
  auto range = [&](uint32_t b) {
    const BufferDesc &d = program_.buffers[b];
    return std::pair<uint64_t, uint64_t>{d.offset, d.offset + d.bytes};
  };
  auto overlaps = [](std::pair<uint64_t, uint64_t> a,
                     const std::vector<std::pair<uint64_t, uint64_t>> &bs) {
    for (auto b : bs)
      if (a.first < b.second && b.first < a.second)
        return true;
    return false;
  };
  auto wait = [&](uint64_t ticket) -> absl::Status {
    auto start = std::chrono::steady_clock::now();
    double traceStart = trace_ ? trace_->Now() : 0;
    absl::Status s = commThread_->Wait(ticket);
    double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
    waitSeconds_ += waited;
    if (trace_)
      trace_->waits.push_back({traceStart, waited});
    pending.erase(
        std::remove_if(pending.begin(), pending.end(),
                       [&](const Pending &p) { return p.ticket <= ticket; }),
        pending.end());
    return s;
  };
  for (size_t i = 0; i < program_.kernels.size(); ++i) {
    const KernelDesc &k = program_.kernels[i];
    in.clear();
    out.clear();
    for (uint32_t b : k.ins)
      in.push_back(View(b));
    for (uint32_t b : k.outs)
      out.push_back(View(b));
    const bool collective = !fns_[i];
    // A count stays valid while nothing writes over its labels.
    if (!labelCounts_.empty())
      labelCounts_.erase(
          std::remove_if(labelCounts_.begin(), labelCounts_.end(),
                         [&](const LabelCount &c) {
                           for (uint32_t b : k.outs)
                             if (overlaps(range(b), {range(c.buffer)}))
                               return true;
                           return false;
                         }),
          labelCounts_.end());
    // Communication on this thread waits for all of the other's; a kernel
    // waits for the collectives whose results it reads (or whose buffers
    // it would write).
    const bool communicates = collective ||
                              CommGroupOf(k, "expert_group") >= 0 ||
                              CommGroupOf(k, "vocab_group") >= 0 ||
                              CommGroupOf(k, "token_group") >= 0;
    if (!pending.empty()) {
      uint64_t need = 0;
      for (const Pending &p : pending) {
        for (uint32_t b : k.ins)
          if (overlaps(range(b), p.writes))
            need = std::max(need, p.ticket);
        for (uint32_t b : k.outs)
          if (overlaps(range(b), p.writes) || overlaps(range(b), p.reads))
            need = std::max(need, p.ticket);
      }
      if (communicates && !collective)
        need = commThread_->Issued();
      if (need)
        VEOMNI_RETURN_IF_ERROR(wait(need));
    }
    auto where = [](size_t i, const KernelDesc &k, const absl::Status &s) {
      return absl::Status(s.code(),
                          absl::StrCat("kernel ", i, " (", KernelName(k.kind),
                                       ")", k.location.empty() ? "" : " in ",
                                       k.location, ": ", s.message()));
    };
    absl::Status s;
    if (collective && commThread_ && !probe_) {
      Pending p;
      for (uint32_t b : k.ins)
        p.reads.push_back(range(b));
      for (uint32_t b : k.outs)
        p.writes.push_back(range(b));
      KernelTrace *trace = trace_;
      double issued = trace ? trace->Now() : 0;
      p.ticket = commThread_->Push([this, i, &k, in, out, where, trace,
                                    issued]() {
        absl::Status s = RunCollective(k, in, out);
        // The main thread reads the trace only after waiting for this.
        if (trace)
          trace->commEvents.push_back({&program_, static_cast<uint32_t>(i),
                                       issued, trace->Now() - issued, true});
        return s.ok() ? s : where(i, k, s);
      });
      pending.push_back(std::move(p));
      continue;
    }
    double started = trace_ ? trace_->Now() : 0;
    if (collective)
      s = RunCollective(k, in, out);
    else if (CommGroupOf(k, "expert_group") >= 0)
      s = RunExpertSplit(i, k, in, out);
    else if (CommGroupOf(k, "vocab_group") >= 0)
      s = RunVocabSplitLoss(k, in, out);
    else if (CommGroupOf(k, "token_group") >= 0)
      s = RunTokenSplitLoss(i, k, in, out);
    else
      s = fns_[i](k, in, out);
    if (!s.ok())
      return where(i, k, s);
    if (probe_ && probeHit_ < 0) {
      VEOMNI_RETURN_IF_ERROR(device_->Synchronize());
      for (uint32_t b : k.outs) {
        if (!IsFloat(program_.buffers[b].dtype))
          continue;
        VEOMNI_ASSIGN_OR_RETURN(HostTensor h, ReadHost(b));
        bool finite = true;
        for (int64_t e = 0, n = h.view.numel(); e < n && finite; ++e)
          finite = std::isfinite(LoadF(h.view, e));
        if (!finite) {
          probeHit_ = static_cast<int64_t>(i);
          break;
        }
      }
    }
    if (trace_) {
      VEOMNI_RETURN_IF_ERROR(device_->Synchronize());
      trace_->events.push_back({&program_, static_cast<uint32_t>(i), started,
                                trace_->Now() - started, false});
    }
  }
  if (!pending.empty())
    VEOMNI_RETURN_IF_ERROR(wait(commThread_->Issued()));
  return device_->Synchronize();
}

} // namespace veomni::rt
