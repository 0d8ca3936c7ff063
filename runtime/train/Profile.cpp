//===- Profile.cpp - a step's kernels as a Chrome trace -------------------===//

#include "runtime/train/Profile.h"

#include "runtime/io/Safetensors.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

#include <algorithm>
#include <cctype>
#include <map>

namespace veomni::rt {
namespace {

std::string ShapeText(const BufferDesc &b) {
  return absl::StrCat(Name(b.dtype), "[", absl::StrJoin(b.shape, "x"), "]");
}

/// JSON string contents: quotes, backslashes and control bytes escaped.
std::string Escape(absl::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '"' || c == '\\')
      absl::StrAppend(&out, "\\", std::string(1, c));
    else if (static_cast<unsigned char>(c) < 0x20)
      absl::StrAppendFormat(&out, "\\u%04x", c);
    else
      out += c;
  }
  return out;
}

/// `location` with each run of digits after "layers." (or any ".N.")
/// replaced by `*`, so a layer's kernels add up with the others'.
std::string ModulePattern(absl::string_view location) {
  std::string out;
  for (size_t i = 0; i < location.size();) {
    bool segmentStart = i == 0 || location[i - 1] == '.';
    size_t j = i;
    while (j < location.size() && std::isdigit((unsigned char)location[j]))
      ++j;
    if (segmentStart && j > i && (j == location.size() || location[j] == '.')) {
      out += '*';
      i = j;
    } else {
      out += location[i++];
    }
  }
  return out;
}

absl::string_view Mnemonic(const KernelDesc &k) {
  return kernel_table::Info(k.kind).mnemonic;
}

} // namespace

double KernelFlops(const Program &p, const KernelDesc &k) {
  auto numel = [](const Shape &s) {
    double n = 1;
    for (int64_t d : s)
      n *= static_cast<double>(d);
    return n;
  };
  if (k.kind == KernelKind::Matmul) {
    const Shape &lhs = p.buffers[k.ins[0]].shape;
    if (lhs.size() < 2)
      return 0;
    auto a = AttrsOf<KernelKind::Matmul>::Decode(k);
    double inner =
        static_cast<double>(a.transpose_lhs ? lhs[lhs.size() - 2] : lhs.back());
    return 2 * numel(p.buffers[k.outs[0]].shape) * inner;
  }
  if (k.kind == KernelKind::GroupedMatmul) {
    // rows [T, K] times each row's expert's [K, N]: T N K.
    const Shape &rows = p.buffers[k.ins[0]].shape;
    return rows.empty() ? 0
                        : 2 * numel(p.buffers[k.outs[0]].shape) *
                              static_cast<double>(rows.back());
  }
  if (k.kind == KernelKind::GroupedMatmulWeightGrad) {
    // The weights' gradient [E, K, N] from rows [T, K] and dout [T, N]
    // (ins: input, weight, group sizes, dout): T K N.
    if (k.ins.size() < 4)
      return 0;
    const Shape &x = p.buffers[k.ins[0]].shape;
    const Shape &dy = p.buffers[k.ins[3]].shape;
    return x.size() == 2 && dy.size() == 2
               ? 2 * static_cast<double>(x[0]) * x[1] * dy[1]
               : 0;
  }
  if (k.kind == KernelKind::Attention || k.kind == KernelKind::AttentionGrad) {
    // Q K^T and P V over the visible scores (half of them when causal);
    // the VJP does five such products.
    const Shape &q = p.buffers[k.ins[0]].shape;
    const Shape &kk = p.buffers[k.ins[1]].shape;
    const Shape &v = p.buffers[k.ins[2]].shape;
    if (q.size() != 4 || kk.size() != 4 || v.size() != 4)
      return 0;
    auto a = AttrsOf<KernelKind::Attention>::Decode(k);
    double scores = static_cast<double>(q[0]) * q[1] * q[2] * kk[1] *
                    (a.causal ? 0.5 : 1.0);
    double forward = 2 * scores * (q[3] + v[3]);
    return k.kind == KernelKind::Attention ? forward : 2.5 * forward;
  }
  if (k.kind == KernelKind::LinearCrossEntropy) {
    // logits, dhidden and dweight: three products of T H V.
    const Shape &h = p.buffers[k.ins[0]].shape;
    const Shape &w = p.buffers[k.ins[1]].shape;
    return w.size() == 2 ? 3 * 2 * numel(h) * static_cast<double>(w[0]) : 0;
  }
  return 0;
}

absl::Status WriteChromeTrace(const KernelTrace &trace,
                              const ProgramNames &names, int rank,
                              const std::string &path) {
  std::map<const Program *, std::string> nameOf(names.begin(), names.end());
  std::string out = "{\"displayTimeUnit\": \"ms\", \"traceEvents\": [\n";
  absl::StrAppendFormat(&out,
                        "{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": "
                        "%d, \"args\": {\"name\": \"rank %d\"}},\n",
                        rank, rank);
  absl::StrAppendFormat(&out,
                        "{\"name\": \"thread_name\", \"ph\": \"M\", \"pid\": "
                        "%d, \"tid\": 1, \"args\": {\"name\": "
                        "\"collectives\"}},\n",
                        rank);
  auto event = [&](const KernelEvent &e) {
    const Program &p = *e.program;
    const KernelDesc &k = p.kernels[e.kernel];
    std::vector<std::string> ins, outs;
    for (uint32_t b : k.ins)
      ins.push_back(ShapeText(p.buffers[b]));
    for (uint32_t b : k.outs)
      outs.push_back(ShapeText(p.buffers[b]));
    std::string flops;
    if (double f = KernelFlops(p, k); f > 0)
      flops = absl::StrFormat(", \"gflop\": %.4f, \"gflop_per_s\": %.1f",
                              f * 1e-9, f * 1e-9 / std::max(e.seconds, 1e-9));
    absl::StrAppendFormat(
        &out,
        "{\"name\": \"%s\", \"cat\": \"%s\", \"ph\": \"X\", \"pid\": %d, "
        "\"tid\": %d, \"ts\": %.3f, \"dur\": %.3f, \"args\": {\"module\": "
        "\"%s\", \"program\": \"%s\", \"kernel\": %d, \"inputs\": \"%s\", "
        "\"outputs\": \"%s\"%s}},\n",
        Mnemonic(k),
        (kernel_table::Info(k.kind).flags & kernel_table::kCollective)
            ? "collective"
            : "kernel",
        rank, e.onCommThread ? 1 : 0, e.start * 1e6, e.seconds * 1e6,
        Escape(k.location), Escape(nameOf[&p]), e.kernel,
        absl::StrJoin(ins, ", "), absl::StrJoin(outs, ", "), flops);
  };
  for (const KernelEvent &e : trace.events)
    event(e);
  for (const KernelEvent &e : trace.commEvents)
    event(e);
  for (auto [start, seconds] : trace.waits)
    absl::StrAppendFormat(&out,
                          "{\"name\": \"wait for collectives\", \"cat\": "
                          "\"wait\", \"ph\": \"X\", \"pid\": %d, \"tid\": 0, "
                          "\"ts\": %.3f, \"dur\": %.3f},\n",
                          rank, start * 1e6, seconds * 1e6);
  // The last event without its comma.
  if (absl::EndsWith(out, ",\n"))
    out.resize(out.size() - 2);
  out += "\n]}\n";
  return WriteTextFile(path, out);
}

std::string ProfileSummary(const KernelTrace &trace, size_t top) {
  struct Sum {
    double seconds = 0, flops = 0;
    int64_t calls = 0;
  };
  std::map<std::pair<std::string, std::string>, Sum> byModule;
  std::map<std::string, Sum> byKind;
  double total = 0, waited = 0;
  for (const KernelEvent &e : trace.events) {
    const KernelDesc &k = e.program->kernels[e.kernel];
    std::string kind(Mnemonic(k));
    double flops = KernelFlops(*e.program, k);
    for (Sum *s :
         {&byModule[{kind, ModulePattern(k.location)}], &byKind[kind]}) {
      s->seconds += e.seconds;
      s->flops += flops;
      ++s->calls;
    }
    total += e.seconds;
  }
  for (auto [start, seconds] : trace.waits)
    waited += seconds;
  std::vector<std::pair<std::pair<std::string, std::string>, Sum>> rows(
      byModule.begin(), byModule.end());
  std::sort(rows.begin(), rows.end(), [](const auto &a, const auto &b) {
    return a.second.seconds > b.second.seconds;
  });
  std::string out = absl::StrFormat(
      "%d kernel calls, %.1f ms in kernels%s\n", trace.events.size(),
      total * 1e3,
      waited > 0
          ? absl::StrFormat(", %.1f ms waiting for collectives", waited * 1e3)
          : "");
  absl::StrAppend(&out, "   share        ms   calls  kernel  module\n");
  for (size_t i = 0; i < rows.size() && i < top; ++i) {
    const auto &[key, s] = rows[i];
    absl::StrAppendFormat(&out, "  %5.1f%%  %8.2f  %6d  %s  %s\n",
                          100 * s.seconds / std::max(total, 1e-12),
                          s.seconds * 1e3, s.calls, key.first,
                          key.second.empty() ? "-" : key.second);
  }
  std::vector<std::pair<std::string, Sum>> kinds(byKind.begin(), byKind.end());
  std::sort(kinds.begin(), kinds.end(), [](const auto &a, const auto &b) {
    return a.second.seconds > b.second.seconds;
  });
  std::vector<std::string> parts;
  for (const auto &[kind, s] : kinds) {
    std::string part = absl::StrFormat(
        "%s %.1f%%", kind, 100 * s.seconds / std::max(total, 1e-12));
    if (s.flops > 0)
      absl::StrAppendFormat(&part, " (%.1f GFLOP/s)",
                            s.flops * 1e-9 / std::max(s.seconds, 1e-12));
    parts.push_back(part);
  }
  absl::StrAppend(&out, "  by kind: ", absl::StrJoin(parts, ", "), "\n");
  return out;
}

} // namespace veomni::rt
