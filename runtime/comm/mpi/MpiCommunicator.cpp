//===- MpiCommunicator.cpp - collectives over MPI -------------------------===//

#include "runtime/comm/mpi/MpiCommunicator.h"

#include "runtime/support/Status.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

#include <mpi.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

/// Runs an MPI call; a failure returns an absl::Status naming the call.
#define VEOMNI_MPI_CALL(call)                                                  \
  do {                                                                         \
    int _veomni_mpi_rc = (call);                                               \
    if (_veomni_mpi_rc != MPI_SUCCESS) {                                       \
      char _veomni_mpi_text[MPI_MAX_ERROR_STRING];                             \
      int _veomni_mpi_len = 0;                                                 \
      MPI_Error_string(_veomni_mpi_rc, _veomni_mpi_text, &_veomni_mpi_len);    \
      return ::veomni::rt::CallError(                                          \
          absl::StatusCode::kInternal, #call, __FILE__, __LINE__,              \
          absl::string_view(_veomni_mpi_text, _veomni_mpi_len));               \
    }                                                                          \
  } while (0)

namespace veomni::rt::mpi {

struct MpiCommunicator::Sends {
  std::vector<MPI_Request> requests;
};

struct MpiCommunicator::Group {
  std::string axis;
  std::vector<uint32_t> ranks;
  MPI_Comm comm = MPI_COMM_NULL;
  int size = 1, rank = 0;
  ~Group() {
    if (comm != MPI_COMM_NULL)
      MPI_Comm_free(&comm);
  }
};

namespace {

absl::Status Bad(absl::string_view op, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(op, ": ", why));
}

/// MPI counts are ints: a message of more elements is an error naming its
/// size, never a count that wraps (callers split larger transfers).
absl::Status FitsMpiCount(absl::string_view op, uint64_t count) {
  if (count <= static_cast<uint64_t>(std::numeric_limits<int>::max()))
    return absl::OkStatus();
  return Bad(op, absl::StrCat(count,
                              " elements in one message; MPI takes at "
                              "most ",
                              std::numeric_limits<int>::max()));
}

int64_t Product(const Shape &s, size_t begin, size_t end) {
  int64_t n = 1;
  for (size_t i = begin; i < end; ++i)
    n *= s[i];
  return n;
}

/// Copies `part` (its shape is `big`'s with dimension `dim` replaced by
/// part's) into or out of `big` at position `offset` of that dimension.
void CopyBlock(const TensorView &big, int64_t dim, int64_t offset,
               uint8_t *part, int64_t partDim, bool intoBig) {
  const size_t elem = SizeOf(big.dtype);
  const int64_t outer = Product(big.shape, 0, dim);
  const int64_t inner = Product(big.shape, dim + 1, big.shape.size()) * elem;
  const int64_t bigDim = big.shape[dim];
  auto *b = static_cast<uint8_t *>(big.data);
  for (int64_t o = 0; o < outer; ++o) {
    uint8_t *at = b + (o * bigDim + offset) * inner;
    uint8_t *p = part + o * partDim * inner;
    if (intoBig)
      std::memcpy(at, p, partDim * inner);
    else
      std::memcpy(p, at, partDim * inner);
  }
}

/// `in` and `out` have the same shape but in dimension `dim`, where out's
/// is `factor` times in's.
absl::Status CheckScaled(absl::string_view op, const TensorView &in,
                         const TensorView &out, int64_t dim, int factor) {
  if (in.dtype != out.dtype)
    return Bad(op, "input and output element types differ");
  if (dim < 0 || dim >= in.rank() || in.rank() != out.rank())
    return Bad(op, absl::StrCat("dimension ", dim, " is outside ",
                                in.ToString(), " or ", out.ToString()));
  for (int64_t d = 0; d < in.rank(); ++d)
    if (out.shape[d] != (d == dim ? in.shape[d] * factor : in.shape[d]))
      return Bad(op, absl::StrCat(out.ToString(), " is not ", in.ToString(),
                                  " with dimension ", dim, " times ", factor));
  return absl::OkStatus();
}

/// The element type reductions run in, and whether `t` must be widened.
struct Reduced {
  MPI_Datatype type;
  bool widen;
};
Reduced ReducedType(DType t) {
  switch (t) {
  case DType::F32:
    return {MPI_FLOAT, false};
  case DType::BF16:
  case DType::F16:
    return {MPI_FLOAT, true};
  case DType::I32:
    return {MPI_INT32_T, false};
  case DType::I64:
    return {MPI_INT64_T, false};
  }
  return {MPI_BYTE, false};
}

std::vector<float> Widen(const TensorView &v, const void *data) {
  TensorView w = v;
  w.data = const_cast<void *>(data);
  std::vector<float> out(v.numel());
  for (int64_t i = 0; i < v.numel(); ++i)
    out[i] = LoadF(w, i);
  return out;
}

void Narrow(const std::vector<float> &in, const TensorView &out) {
  for (int64_t i = 0; i < out.numel(); ++i)
    StoreF(out, i, in[i]);
}

double Share(int size) { return size > 1 ? double(size - 1) / size : 0.0; }

} // namespace

class MpiCommunicator::Waiting {
public:
  Waiting(MpiCommunicator *c, const char *op, const char *axis) : c_(c) {
    c_->op_ = op;
    c_->axis_ = axis;
    c_->since_ = std::chrono::steady_clock::now().time_since_epoch().count();
  }
  ~Waiting() {
    c_->collectiveSeconds_ +=
        double(std::chrono::steady_clock::now().time_since_epoch().count() -
               c_->since_) *
        1e-9;
    c_->since_ = 0;
  }

private:
  MpiCommunicator *c_;
};

void MpiCommunicator::Watch() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!wake_.wait_for(lock, std::chrono::milliseconds(200),
                         [&] { return stop_; })) {
    int64_t since = since_;
    if (since == 0)
      continue;
    double waited =
        double(std::chrono::steady_clock::now().time_since_epoch().count() -
               since) *
        1e-9;
    if (waited < timeout_)
      continue;
    std::fprintf(stderr,
                 "veomni: error: rank %d: %s over %s has waited %.0f s for "
                 "its peers (one is stuck or gone); ending the job "
                 "(VEOMNI_COMM_TIMEOUT sets the limit)\n",
                 rank_, static_cast<const char *>(op_),
                 static_cast<const char *>(axis_), waited);
    std::fflush(stderr);
    // Not MPI_Abort: MPI may not be called from this thread. The launcher
    // ends the other ranks when this one exits.
    std::_Exit(1);
  }
}

absl::StatusOr<std::unique_ptr<MpiCommunicator>> MpiCommunicator::Create() {
  auto c = std::unique_ptr<MpiCommunicator>(new MpiCommunicator());
  int initialized = 0;
  VEOMNI_MPI_CALL(MPI_Initialized(&initialized));
  if (!initialized) {
    int provided = MPI_THREAD_SINGLE;
    VEOMNI_MPI_CALL(
        MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided));
    c->finalize_ = true;
  }
  int level = MPI_THREAD_SINGLE;
  VEOMNI_MPI_CALL(MPI_Query_thread(&level));
  c->serialized_ = level >= MPI_THREAD_SERIALIZED;
  VEOMNI_MPI_CALL(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  VEOMNI_MPI_CALL(MPI_Comm_rank(MPI_COMM_WORLD, &c->rank_));
  VEOMNI_MPI_CALL(MPI_Comm_size(MPI_COMM_WORLD, &c->size_));
  if (const char *t = std::getenv("VEOMNI_COMM_TIMEOUT")) {
    char *end = nullptr;
    double v = std::strtod(t, &end);
    if (end == t || *end || !(v > 0))
      return absl::InvalidArgumentError(
          absl::StrCat("VEOMNI_COMM_TIMEOUT=", t,
                       ": expected a positive number of seconds"));
    c->timeout_ = v;
  }
  c->watchdog_ = std::thread([p = c.get()] { p->Watch(); });
  return c;
}

void MpiCommunicator::Abort(int code) {
  std::fflush(stdout);
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code); // MPI_Abort does not return; should it, end this rank
}

MpiCommunicator::~MpiCommunicator() {
  if (watchdog_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    watchdog_.join();
  }
  if (sends_)
    for (MPI_Request &r : sends_->requests)
      MPI_Request_free(&r);
  groups_.clear();
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalize_ && !finalized)
    MPI_Finalize();
}

absl::StatusOr<uint32_t>
MpiCommunicator::AddGroup(absl::string_view axis,
                          absl::Span<const uint32_t> ranks) {
  std::string what =
      absl::StrCat("group ", axis, " [", absl::StrJoin(ranks, ", "), "]");
  for (uint32_t h = 0; h < groups_.size(); ++h)
    if (groups_[h]->ranks == std::vector<uint32_t>(ranks.begin(), ranks.end()))
      return h;
  if (ranks.empty())
    return Bad(what, "has no ranks");
  std::vector<int> list;
  int mine = -1;
  for (uint32_t r : ranks) {
    if (r >= static_cast<uint32_t>(size_))
      return Bad(what,
                 absl::StrCat("names rank ", r, " of a world of ", size_));
    if (static_cast<int>(r) == rank_)
      mine = static_cast<int>(list.size());
    list.push_back(static_cast<int>(r));
  }
  if (mine < 0)
    return Bad(what, absl::StrCat("does not include this rank (", rank_, ")"));
  auto g = std::make_unique<Group>();
  g->axis = std::string(axis);
  g->ranks.assign(ranks.begin(), ranks.end());
  MPI_Group world, sub;
  VEOMNI_MPI_CALL(MPI_Comm_group(MPI_COMM_WORLD, &world));
  VEOMNI_MPI_CALL(
      MPI_Group_incl(world, static_cast<int>(list.size()), list.data(), &sub));
  // The tag tells apart groups made at once; every member computes the
  // same one from the ranks.
  uint32_t tag = 17;
  for (uint32_t r : ranks)
    tag = tag * 31 + r;
  VEOMNI_MPI_CALL(MPI_Comm_create_group(
      MPI_COMM_WORLD, sub, static_cast<int>(tag % 32749), &g->comm));
  MPI_Group_free(&sub);
  MPI_Group_free(&world);
  VEOMNI_MPI_CALL(MPI_Comm_set_errhandler(g->comm, MPI_ERRORS_RETURN));
  VEOMNI_MPI_CALL(MPI_Comm_size(g->comm, &g->size));
  VEOMNI_MPI_CALL(MPI_Comm_rank(g->comm, &g->rank));
  groups_.push_back(std::move(g));
  return static_cast<uint32_t>(groups_.size() - 1);
}

absl::StatusOr<MpiCommunicator::Group *>
MpiCommunicator::Find(uint32_t group, absl::string_view op) {
  if (group >= groups_.size())
    return Bad(op, absl::StrCat("no group ", group));
  return groups_[group].get();
}

absl::Status MpiCommunicator::AllGather(uint32_t group, const TensorView &in,
                                        const TensorView &out, int64_t dim) {
  VEOMNI_ASSIGN_OR_RETURN(Group * g, Find(group, "all_gather"));
  Waiting waiting(this, "all_gather", g->axis.c_str());
  VEOMNI_RETURN_IF_ERROR(CheckScaled("all_gather", in, out, dim, g->size));
  const int64_t bytes = in.bytes();
  VEOMNI_RETURN_IF_ERROR(FitsMpiCount("all_gather", bytes));
  if (Product(out.shape, 0, dim) == 1) {
    // The ranks' blocks follow one another in `out` (FSDP's dim 0): no
    // staging.
    VEOMNI_MPI_CALL(MPI_Allgather(in.data, static_cast<int>(bytes), MPI_BYTE,
                                  out.data, static_cast<int>(bytes), MPI_BYTE,
                                  g->comm));
  } else {
    std::vector<uint8_t> all(bytes * g->size);
    VEOMNI_MPI_CALL(MPI_Allgather(in.data, static_cast<int>(bytes), MPI_BYTE,
                                  all.data(), static_cast<int>(bytes), MPI_BYTE,
                                  g->comm));
    for (int r = 0; r < g->size; ++r)
      CopyBlock(out, dim, r * in.shape[dim], all.data() + r * bytes,
                in.shape[dim], /*intoBig=*/true);
  }
  bytesSent_ += Share(g->size) * out.bytes();
  return absl::OkStatus();
}

absl::Status MpiCommunicator::ReduceScatter(uint32_t group,
                                            const TensorView &in,
                                            const TensorView &out, int64_t dim,
                                            ReduceOp op) {
  VEOMNI_ASSIGN_OR_RETURN(Group * g, Find(group, "reduce_scatter"));
  Waiting waiting(this, "reduce_scatter", g->axis.c_str());
  VEOMNI_RETURN_IF_ERROR(CheckScaled("reduce_scatter", out, in, dim, g->size));
  // Rank r's part of `in` (its block of dimension dim), one after another.
  // (Already so when the split dimension leads, as FSDP's dim 0 does.)
  const int64_t partBytes = out.bytes();
  std::vector<uint8_t> staged;
  const uint8_t *parts = static_cast<const uint8_t *>(in.data);
  if (Product(in.shape, 0, dim) != 1) {
    staged.resize(partBytes * g->size);
    for (int r = 0; r < g->size; ++r)
      CopyBlock(in, dim, r * out.shape[dim], staged.data() + r * partBytes,
                out.shape[dim], /*intoBig=*/false);
    parts = staged.data();
  }
  Reduced t = ReducedType(in.dtype);
  MPI_Op mpiOp = op == ReduceOp::Sum ? MPI_SUM : MPI_MAX;
  const int count = static_cast<int>(out.numel());
  if (t.widen) {
    TensorView all = in;
    all.shape = {static_cast<int64_t>(g->size) * out.numel()};
    std::vector<float> send = Widen(all, parts), recv(out.numel());
    VEOMNI_MPI_CALL(MPI_Reduce_scatter_block(send.data(), recv.data(), count,
                                             t.type, mpiOp, g->comm));
    Narrow(recv, out);
  } else {
    VEOMNI_MPI_CALL(MPI_Reduce_scatter_block(parts, out.data, count, t.type,
                                             mpiOp, g->comm));
  }
  bytesSent_ += Share(g->size) * in.bytes();
  return absl::OkStatus();
}

absl::Status MpiCommunicator::AllReduce(uint32_t group, const TensorView &in,
                                        const TensorView &out, ReduceOp op) {
  VEOMNI_ASSIGN_OR_RETURN(Group * g, Find(group, "all_reduce"));
  Waiting waiting(this, "all_reduce", g->axis.c_str());
  if (in.dtype != out.dtype || in.shape != out.shape)
    return Bad("all_reduce",
               absl::StrCat(in.ToString(), " into ", out.ToString()));
  Reduced t = ReducedType(in.dtype);
  MPI_Op mpiOp = op == ReduceOp::Sum ? MPI_SUM : MPI_MAX;
  VEOMNI_RETURN_IF_ERROR(FitsMpiCount("all_reduce", in.numel()));
  const int count = static_cast<int>(in.numel());
  if (t.widen) {
    std::vector<float> send = Widen(in, in.data), recv(in.numel());
    VEOMNI_MPI_CALL(
        MPI_Allreduce(send.data(), recv.data(), count, t.type, mpiOp, g->comm));
    Narrow(recv, out);
  } else {
    VEOMNI_MPI_CALL(MPI_Allreduce(in.data == out.data ? MPI_IN_PLACE : in.data,
                                  out.data, count, t.type, mpiOp, g->comm));
  }
  bytesSent_ += 2 * Share(g->size) * in.bytes();
  return absl::OkStatus();
}

absl::Status MpiCommunicator::AllToAll(uint32_t group, const TensorView &in,
                                       const TensorView &out, int64_t splitDim,
                                       int64_t concatDim) {
  VEOMNI_ASSIGN_OR_RETURN(Group * g, Find(group, "all_to_all"));
  Waiting waiting(this, "all_to_all", g->axis.c_str());
  const int n = g->size;
  if (in.dtype != out.dtype || in.rank() != out.rank() || splitDim < 0 ||
      splitDim >= in.rank() || concatDim < 0 || concatDim >= in.rank() ||
      in.shape[splitDim] % n != 0)
    return Bad("all_to_all", absl::StrCat(in.ToString(), " split along ",
                                          splitDim, " into ", n, " parts"));
  Shape part = in.shape;
  part[splitDim] /= n;
  Shape want = part;
  want[concatDim] *= n;
  if (out.shape != want)
    return Bad("all_to_all",
               absl::StrCat(out.ToString(), " is not the ", n,
                            " parts concatenated along ", concatDim));
  const int64_t partBytes = in.bytes() / n;
  std::vector<uint8_t> send(in.bytes()), recv(in.bytes());
  for (int r = 0; r < n; ++r)
    CopyBlock(in, splitDim, r * part[splitDim], send.data() + r * partBytes,
              part[splitDim], /*intoBig=*/false);
  VEOMNI_MPI_CALL(MPI_Alltoall(send.data(), static_cast<int>(partBytes),
                               MPI_BYTE, recv.data(),
                               static_cast<int>(partBytes), MPI_BYTE, g->comm));
  for (int r = 0; r < n; ++r)
    CopyBlock(out, concatDim, r * part[concatDim], recv.data() + r * partBytes,
              part[concatDim], /*intoBig=*/true);
  bytesSent_ += Share(n) * in.bytes();
  return absl::OkStatus();
}

absl::Status MpiCommunicator::ExchangeRows(uint32_t group, const void *send,
                                           absl::Span<const int64_t> sendRows,
                                           void *recv,
                                           absl::Span<const int64_t> recvRows,
                                           int64_t rowBytes,
                                           double modelBytes) {
  VEOMNI_ASSIGN_OR_RETURN(Group * g, Find(group, "exchange_rows"));
  Waiting waiting(this, "exchange_rows", g->axis.c_str());
  const int n = g->size;
  if (int(sendRows.size()) != n || int(recvRows.size()) != n || rowBytes < 0)
    return Bad("exchange_rows",
               absl::StrCat(sendRows.size(), " and ", recvRows.size(),
                            " row counts for a group of ", n));
  std::vector<int> sc(n), sd(n), rc(n), rd(n);
  int64_t so = 0, ro = 0;
  for (int r = 0; r < n; ++r) {
    int64_t s = sendRows[r] * rowBytes, q = recvRows[r] * rowBytes;
    if (sendRows[r] < 0 || recvRows[r] < 0 || so + s > INT32_MAX ||
        ro + q > INT32_MAX)
      return Bad("exchange_rows", "row counts beyond 2 GiB per exchange");
    sc[r] = int(s);
    sd[r] = int(so);
    rc[r] = int(q);
    rd[r] = int(ro);
    so += s;
    ro += q;
  }
  VEOMNI_MPI_CALL(MPI_Alltoallv(send, sc.data(), sd.data(), MPI_BYTE, recv,
                                rc.data(), rd.data(), MPI_BYTE, g->comm));
  bytesSent_ += Share(n) * modelBytes;
  return absl::OkStatus();
}

absl::Status MpiCommunicator::Send(uint32_t group, const TensorView &in,
                                   int peer) {
  VEOMNI_ASSIGN_OR_RETURN(Group * g, Find(group, "send"));
  Waiting waiting(this, "send", g->axis.c_str());
  if (peer < 0 || peer >= g->size || peer == g->rank)
    return Bad("send", absl::StrCat("peer ", peer, " in a group of ", g->size));
  VEOMNI_RETURN_IF_ERROR(FitsMpiCount("send", in.bytes()));
  VEOMNI_MPI_CALL(MPI_Send(in.data, static_cast<int>(in.bytes()), MPI_BYTE,
                           peer, 0, g->comm));
  bytesSent_ += in.bytes();
  return absl::OkStatus();
}

absl::Status MpiCommunicator::Recv(uint32_t group, const TensorView &out,
                                   int peer) {
  VEOMNI_ASSIGN_OR_RETURN(Group * g, Find(group, "recv"));
  Waiting waiting(this, "recv", g->axis.c_str());
  if (peer < 0 || peer >= g->size || peer == g->rank)
    return Bad("recv", absl::StrCat("peer ", peer, " in a group of ", g->size));
  VEOMNI_RETURN_IF_ERROR(FitsMpiCount("recv", out.bytes()));
  MPI_Status status;
  VEOMNI_MPI_CALL(MPI_Recv(out.data, static_cast<int>(out.bytes()), MPI_BYTE,
                           peer, 0, g->comm, &status));
  int got = 0;
  VEOMNI_MPI_CALL(MPI_Get_count(&status, MPI_BYTE, &got));
  if (got != static_cast<int>(out.bytes()))
    return Bad("recv",
               absl::StrCat("received ", got, " bytes for ", out.ToString()));
  return absl::OkStatus();
}

absl::Status MpiCommunicator::StartSend(uint32_t group, const TensorView &in,
                                        int peer) {
  VEOMNI_ASSIGN_OR_RETURN(Group * g, Find(group, "send"));
  if (peer < 0 || peer >= g->size || peer == g->rank)
    return Bad("send", absl::StrCat("peer ", peer, " in a group of ", g->size));
  VEOMNI_RETURN_IF_ERROR(FitsMpiCount("send", in.bytes()));
  MPI_Request request;
  VEOMNI_MPI_CALL(MPI_Isend(in.data, static_cast<int>(in.bytes()), MPI_BYTE,
                            peer, 0, g->comm, &request));
  if (!sends_)
    sends_ = std::make_unique<Sends>();
  sends_->requests.push_back(request);
  bytesSent_ += in.bytes();
  return absl::OkStatus();
}

absl::Status MpiCommunicator::WaitSends() {
  if (!sends_ || sends_->requests.empty())
    return absl::OkStatus();
  Waiting waiting(this, "send", "pp");
  std::vector<MPI_Request> pending;
  pending.swap(sends_->requests);
  int rc = MPI_Waitall(static_cast<int>(pending.size()), pending.data(),
                       MPI_STATUSES_IGNORE);
  if (rc != MPI_SUCCESS) {
    for (MPI_Request &r : pending)
      if (r != MPI_REQUEST_NULL)
        MPI_Request_free(&r);
    return Bad("send", "MPI_Waitall failed: a peer did not receive");
  }
  return absl::OkStatus();
}

absl::Status MpiCommunicator::Broadcast(uint32_t group,
                                        const TensorView &buffer, int root) {
  VEOMNI_ASSIGN_OR_RETURN(Group * g, Find(group, "broadcast"));
  Waiting waiting(this, "broadcast", g->axis.c_str());
  if (root < 0 || root >= g->size)
    return Bad("broadcast",
               absl::StrCat("root ", root, " in a group of ", g->size));
  VEOMNI_RETURN_IF_ERROR(FitsMpiCount("broadcast", buffer.bytes()));
  VEOMNI_MPI_CALL(MPI_Bcast(buffer.data, static_cast<int>(buffer.bytes()),
                            MPI_BYTE, root, g->comm));
  if (g->rank == root)
    bytesSent_ += Share(g->size) * buffer.bytes();
  return absl::OkStatus();
}

absl::Status MpiCommunicator::Barrier(uint32_t group) {
  VEOMNI_ASSIGN_OR_RETURN(Group * g, Find(group, "barrier"));
  Waiting waiting(this, "barrier", g->axis.c_str());
  VEOMNI_MPI_CALL(MPI_Barrier(g->comm));
  return absl::OkStatus();
}

} // namespace veomni::rt::mpi
