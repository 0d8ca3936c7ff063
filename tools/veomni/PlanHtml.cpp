//===- PlanHtml.cpp - veomni plan --search --report-html FILE -------------===//
//
// One self-contained HTML page about a search: the best plan's mesh (its
// axes, where each falls, a node's devices and their coordinates), memory
// per device as stacked bars for the top plans against the device's
// memory, the best plan's traffic per axis and collective, the best
// pipelined plan's schedule as a timeline (from the simulated schedule),
// and the top plans compared in a table. The figures travel as JSON in the
// page; a small script draws them as SVG (no network, no library), and
// marks the body data-rendered="yes" when it is done, which the test reads
// in a headless browser.
//
//===----------------------------------------------------------------------===//

#include "tools/veomni/Commands.h"

#include "passes/PipelineSchedule.h"

#include "llvm/Support/JSON.h"
#include "llvm/Support/raw_ostream.h"

using namespace mlir;
using namespace mlir::veomni;

namespace {

const char *opName(pipeline::Op op) {
  switch (op) {
  case pipeline::Op::Forward:
    return "F";
  case pipeline::Op::Backward:
    return "B";
  case pipeline::Op::BackwardInput:
    return "BI";
  case pipeline::Op::BackwardWeight:
    return "BW";
  default:
    return "?";
  }
}

llvm::json::Object planJson(const Candidate &c, int rank, bool given) {
  const ParallelSection &p = c.recipe.parallel;
  const StepFigures &f = c.figures;
  llvm::json::Array traffic;
  for (auto &[group, kinds] : f.traffic.byGroup)
    for (auto &[kind, t] : kinds)
      if (t.count > 0 || t.bytes > 0)
        traffic.push_back(llvm::json::Object{{"group", group},
                                             {"kind", kind},
                                             {"count", t.count},
                                             {"bytes", t.bytes},
                                             {"seconds", t.seconds}});
  sharding::LinkModel link = linkModelOf(c.recipe);
  llvm::json::Array axes;
  for (auto &[name, size] : meshAxesOf(p))
    axes.push_back(
        llvm::json::Object{{"name", name},
                           {"size", size},
                           {"node", size > 1 && link.isIntraNode(name)}});
  double fixed = f.params + f.grads + f.optimizer;
  return llvm::json::Object{
      {"rank", rank},
      {"given", given},
      {"mesh", c.meshText()},
      {"axes", std::move(axes)},
      {"micro", c.recipe.data.accumulationSteps()},
      {"batch", c.recipe.data.batchSize},
      {"remat", c.recipe.train.remat},
      {"schedule", p.pp > 1 ? p.ppSchedule : std::string()},
      {"stepSeconds", c.stepSeconds},
      {"tokensPerSecond", c.tokensPerSecond},
      {"mfu", c.mfu},
      {"fits", c.fits},
      {"stageModel", c.stageModel},
      {"bubble", c.bubble},
      {"dominant", c.dominant},
      {"memory", llvm::json::Object{{"parameters", f.params},
                                    {"gradients", f.grads},
                                    {"optimizer", f.optimizer},
                                    {"activations", c.bytes - fixed}}},
      {"traffic", std::move(traffic)}};
}

/// The schedule of `c` (pp > 1) timed by its stage's figures: a forward a
/// third of a micro-batch's time on the stage, each backward half a third.
llvm::json::Value pipelineJson(const Candidate &c) {
  const ParallelSection &p = c.recipe.parallel;
  int micro = c.recipe.data.accumulationSteps();
  pipeline::Kind kind = p.ppSchedule == "zb-h1" ? pipeline::Kind::ZeroBubbleH1
                        : p.ppSchedule == "interleaved"
                            ? pipeline::Kind::Interleaved
                            : pipeline::Kind::OneFOneB;
  double perMicro =
      c.stepSeconds * std::max(1e-3, 1 - c.bubble) / std::max(micro, 1);
  double third = perMicro / 3 / std::max<int64_t>(p.ppChunks, 1);
  pipeline::Costs costs{third, third, third};
  absl::StatusOr<pipeline::Schedule> s =
      pipeline::makeSchedule(kind, p.pp, micro, p.ppChunks, costs);
  if (!s.ok())
    return nullptr;
  absl::StatusOr<pipeline::Simulation> sim = pipeline::simulate(*s, costs);
  if (!sim.ok())
    return nullptr;
  llvm::json::Array spans;
  for (const pipeline::Span &x : sim->spans)
    spans.push_back(llvm::json::Array{x.stage, opName(x.op), x.microBatch,
                                      x.chunk, x.start, x.end});
  return llvm::json::Object{{"mesh", c.meshText()},
                            {"schedule", p.ppSchedule},
                            {"stages", p.pp},
                            {"chunks", p.ppChunks},
                            {"micro", micro},
                            {"bubble", sim->bubble},
                            {"makespan", sim->makespan},
                            {"spans", std::move(spans)}};
}

// The page: styles, the drawing script, and where the JSON goes.
const char *kHead = R"html(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>veomni plan search</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.sub{color:#666} table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:4px 8px;text-align:right;border-bottom:1px solid #eee} th{background:#f6f6f6}
td.l,th.l{text-align:left} tr.best td{font-weight:600} tr.given td{background:#fff7e0}
tr.sel td{outline:1px solid #48c} tr{cursor:pointer} .no{color:#b00}
svg text{font:12px system-ui,sans-serif} .legend span{display:inline-block;margin-right:14px}
.legend i{display:inline-block;width:11px;height:11px;margin-right:4px;vertical-align:-1px}
</style></head><body>
<h1 id="title">veomni plan search</h1><div class="sub" id="subtitle"></div>
<h2>The mesh of the selected plan</h2><div id="mesh"></div>
<h2>Memory per device</h2><div class="legend" id="memlegend"></div><div id="memory"></div>
<h2>Communication of the selected plan, per axis</h2><div id="traffic"></div>
<h2>Pipeline schedule</h2><div id="pipeline"></div>
<h2>The top plans</h2><p class="sub">Click a row to select its plan.</p><div id="plans"></div>
<script type="application/json" id="data">)html";

const char *kTail = R"html(</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const NS = "http://www.w3.org/2000/svg";
const GiB = 1073741824;
function el(tag, attrs, parent, text) {
  const e = document.createElementNS(NS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}
function svg(parent, id, w, h) {
  parent.textContent = "";
  return el("svg", {id: id, width: w, height: h, viewBox: "0 0 " + w + " " + h}, parent);
}
function secs(s) { return s < 1e-3 ? (s * 1e6).toFixed(1) + " us" : s < 1 ? (s * 1e3).toFixed(1) + " ms" : s.toFixed(3) + " s"; }
function bytes(b) { const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0; while (b >= 1024 && i < 4) { b /= 1024; i++; } return b.toFixed(i ? 2 : 0) + " " + u[i]; }
const capacity = (D.cluster.memoryGib - D.cluster.reservedGib) * GiB;
document.getElementById("title").textContent =
  "veomni plan: " + D.model + " on " + D.devices + " devices" + (D.cluster.name ? " of " + D.cluster.name : "");
document.getElementById("subtitle").textContent =
  D.parameters.toLocaleString("en") + " parameters; a step: " + D.globalBatch + " sequences of " + D.seqLen +
  " tokens; " + D.search.plans.toLocaleString("en") + " plans divide the model, " + D.search.measured +
  " measured exactly in " + D.search.seconds.toFixed(2) + " s; " + bytes(capacity) + " usable a device";

function drawMesh(p) {
  const box = document.getElementById("mesh");
  box.textContent = "";
  const t = document.createElement("p");
  t.textContent = p.mesh + ", " + p.micro + " micro-batches of " + p.batch + " sequences, remat " + p.remat +
    ": " + secs(p.stepSeconds) + " a step, " + Math.round(p.tokensPerSecond).toLocaleString("en") +
    " tokens/s a device, MFU " + (100 * p.mfu).toFixed(1) + "%" + (p.stageModel ? " (stage model)" : "");
  box.appendChild(t);
  const axes = p.axes.filter(a => a.size > 1);
  // A node's devices and their coordinates on the axes, minor axis last.
  const per = D.cluster.devicesPerNode, n = Math.min(per, D.devices);
  const cols = Math.min(n, 8), rows = Math.ceil(n / cols);
  const s = svg(box, "meshsvg", 60 + cols * 120, 40 + rows * 90 + 24 * axes.length);
  for (let r = 0; r < n; r++) {
    const x = 10 + (r % cols) * 120, y = 10 + Math.floor(r / cols) * 90;
    el("rect", {x: x, y: y, width: 110, height: 80, rx: 6, fill: "#eef4fb", stroke: "#48c"}, s);
    el("text", {x: x + 8, y: y + 18}, s, "device " + r);
    // Its coordinates, the minor axes (those that vary in a node) first.
    let rest = r, coord = [];
    for (let i = p.axes.length - 1; i >= 0; i--) {
      const a = p.axes[i];
      if (a.size > 1) coord.push(a.name + " " + (rest % a.size));
      rest = Math.floor(rest / a.size);
    }
    coord.slice(0, 3).forEach((c, j) => el("text", {x: x + 8, y: y + 36 + 14 * j, fill: "#555"}, s, c));
  }
  let y = 30 + rows * 90;
  for (const a of axes) {
    el("text", {x: 10, y: y}, s, a.name + " = " + a.size + ": " +
      (a.node ? "inside a node (" + per + " devices, fast links)" : "across nodes"));
    y += 24;
  }
}

const parts = [["parameters", "#4c78a8"], ["gradients", "#72b7b2"], ["optimizer", "#f58518"], ["activations", "#e45756"]];
function drawMemory() {
  const leg = document.getElementById("memlegend");
  leg.textContent = "";
  for (const [name, color] of parts) {
    const s = document.createElement("span"), i = document.createElement("i");
    i.style.background = color; s.appendChild(i); s.appendChild(document.createTextNode(name)); leg.appendChild(s);
  }
  const plans = D.plans, w = 1000, left = 300, bar = 22;
  const most = Math.max(capacity, ...plans.map(p => Object.values(p.memory).reduce((a, b) => a + b, 0)));
  const scale = (w - left - 80) / most;
  const s = svg(document.getElementById("memory"), "memsvg", w, 30 + plans.length * (bar + 8));
  plans.forEach((p, i) => {
    const y = 10 + i * (bar + 8);
    el("text", {x: 0, y: y + 15}, s, (p.given ? "recipe: " : "#" + p.rank + " ") + p.mesh.slice(0, 38));
    let x = left, total = 0;
    for (const [name, color] of parts) {
      const v = Math.max(0, p.memory[name]);
      el("rect", {x: x, y: y, width: v * scale, height: bar, fill: color}, s).appendChild(
        el("title", {}, null, name + ": " + bytes(v)));
      x += v * scale; total += v;
    }
    el("text", {x: x + 6, y: y + 15, class: p.fits ? "" : "no"}, s, bytes(total) + (p.fits ? "" : " (does not fit)"));
  });
  const cx = left + capacity * scale;
  el("line", {x1: cx, x2: cx, y1: 0, y2: 20 + plans.length * (bar + 8), stroke: "#000", "stroke-dasharray": "4 3"}, s);
  el("text", {x: cx - 4, y: 20 + plans.length * (bar + 8), "text-anchor": "end"}, s, "usable " + bytes(capacity));
}

function drawTraffic(p) {
  const box = document.getElementById("traffic");
  const rows = p.traffic.slice().sort((a, b) => b.seconds - a.seconds);
  const w = 1000, left = 260, bar = 18;
  const most = Math.max(1e-12, ...rows.map(r => r.seconds));
  const s = svg(box, "trafficsvg", w, 10 + rows.length * (bar + 6));
  rows.forEach((r, i) => {
    const y = 4 + i * (bar + 6);
    el("text", {x: 0, y: y + 13}, s, r.group + " " + r.kind + " x" + r.count);
    el("rect", {x: left, y: y, width: Math.max(1, (w - left - 200) * r.seconds / most), height: bar,
      fill: /dp_/.test(r.group) ? "#72b7b2" : "#e45756"}, s);
    el("text", {x: left + (w - left - 200) * r.seconds / most + 6, y: y + 13}, s, bytes(r.bytes) + ", " + secs(r.seconds));
  });
  const note = document.createElement("p");
  note.className = "sub";
  note.textContent = "Teal: FSDP and replica traffic, which runs beside compute; red: on the critical path. " +
    "Per device and step; the longest is " + p.dominant + ".";
  box.appendChild(note);
}

function drawPipeline() {
  const box = document.getElementById("pipeline");
  const q = D.pipeline;
  if (!q) { box.textContent = "No pipelined plan was measured."; return; }
  const w = 1000, left = 70, row = 26;
  const s = svg(box, "pipelinesvg", w, 40 + q.stages * row);
  const scale = (w - left - 10) / q.makespan;
  const colors = {F: "#4c78a8", B: "#e45756", BI: "#e45756", BW: "#f58518"};
  for (let st = 0; st < q.stages; st++)
    el("text", {x: 0, y: 18 + st * row}, s, "stage " + st);
  for (const [st, op, mb, chunk, a, b] of q.spans) {
    const r = el("rect", {x: left + a * scale, y: 4 + st * row, width: Math.max(1, (b - a) * scale - 1),
      height: row - 6, fill: colors[op] || "#999", class: "span"}, s);
    r.appendChild(el("title", {}, null, op + " micro-batch " + mb + " chunk " + chunk + ": " + secs(a) + " to " + secs(b)));
    if ((b - a) * scale > 16)
      el("text", {x: left + a * scale + 3, y: 20 + st * row, fill: "#fff"}, s, String(mb));
  }
  el("text", {x: left, y: 30 + q.stages * row}, s,
    q.mesh + ": " + q.micro + " micro-batches, bubble " + (100 * q.bubble).toFixed(1) +
    "% (blue forward, red backward or its input half, orange the weight half)");
}

function drawPlans(selected) {
  const box = document.getElementById("plans");
  box.textContent = "";
  const t = document.createElement("table");
  const head = ["rank", "mesh", "micro x b", "remat", "step", "tokens/s/device", "MFU", "memory/device", "longest communication"];
  const tr = t.insertRow();
  head.forEach((h, i) => { const th = document.createElement("th"); th.textContent = h; if (i == 1 || i == 8) th.className = "l"; tr.appendChild(th); });
  D.plans.forEach((p, i) => {
    const r = t.insertRow();
    r.className = (i == 0 ? "best " : "") + (p.given ? "given " : "") + (i == selected ? "sel" : "");
    const total = Object.values(p.memory).reduce((a, b) => a + b, 0);
    const cells = [p.given ? "recipe (" + p.rank + ")" : p.rank, p.mesh, p.micro + " x " + p.batch, p.remat,
      secs(p.stepSeconds), Math.round(p.tokensPerSecond).toLocaleString("en"), (100 * p.mfu).toFixed(1) + "%",
      bytes(total) + (p.fits ? "" : " (no)"), p.dominant + (p.stageModel ? " (stage model)" : "")];
    cells.forEach((c, j) => { const td = r.insertCell(); td.textContent = c; if (j == 1 || j == 8) td.className = "l"; });
    r.addEventListener("click", () => select(i));
  });
  box.appendChild(t);
}

function select(i) {
  drawMesh(D.plans[i]);
  drawTraffic(D.plans[i]);
  drawPlans(i);
}
drawMemory();
drawPipeline();
select(0);
document.body.dataset.rendered = "yes";
</script></body></html>
)html";

} // namespace

std::string planSearchHtml(const SearchResult &s, const Recipe &r, int top) {
  llvm::json::Array plans;
  int shown = 0;
  bool anyFits = !s.ranked.empty() && s.ranked.front().fits;
  for (const Candidate &c : s.ranked) {
    if (shown == top || (anyFits && !c.fits))
      break;
    ++shown;
    plans.push_back(planJson(c, shown, false));
  }
  if (s.given)
    plans.push_back(planJson(*s.given, s.givenRank, true));
  llvm::json::Value pipeline = nullptr;
  for (const Candidate &c : s.ranked)
    if (c.recipe.parallel.pp > 1) {
      pipeline = pipelineJson(c);
      break;
    }
  llvm::json::Object data{
      {"model", s.modelType},
      {"parameters", s.parameters},
      {"devices", r.parallel.worldSize},
      {"seqLen", r.data.seqLen},
      {"globalBatch", r.data.globalBatchSize},
      {"cluster",
       llvm::json::Object{{"name", r.cluster.name},
                          {"memoryGib", r.cluster.memoryGib},
                          {"reservedGib", r.cluster.reservedGib},
                          {"devicesPerNode", r.cluster.devicesPerNode}}},
      {"search", llvm::json::Object{{"meshes", s.meshes},
                                    {"plans", s.plans},
                                    {"measured", s.measured},
                                    {"seconds", s.seconds}}},
      {"plans", std::move(plans)},
      {"pipeline", std::move(pipeline)}};
  std::string json;
  llvm::raw_string_ostream os(json);
  os << llvm::json::Value(std::move(data));
  // Inside <script>, "</" would end the element: JSON allows "<\/".
  std::string safe;
  for (size_t i = 0; i < json.size(); ++i) {
    if (json[i] == '<' && i + 1 < json.size() && json[i + 1] == '/')
      safe += "<\\";
    else
      safe += json[i];
  }
  return std::string(kHead) + safe + kTail;
}
