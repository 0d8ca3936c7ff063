#!/usr/bin/env python3
"""Training step time: veomni (CPU backend) against PyTorch CPU eager mode.

How to run, from the repository root, after building build/bin/veomni:

    python bench/train_vs_torch.py                 # three models, f32: a few min on 2 cores
    python bench/train_vs_torch.py --models tiny   # only the tiny Llama
    python bench/train_vs_torch.py --models 155m --dtypes f32,bf16
                                                   # issue 15's yardstick, both rows
    python bench/train_vs_torch.py --threads 4     # another thread count

torch and transformers come from PyPI (`pip install torch transformers
safetensors numpy`; written against torch 2.15 and transformers 5.24). They
are needed only for this benchmark: veomni itself neither builds against nor
runs with Python.

For each model the script trains the same Llama config twice, one framework
after the other (never at the same time), on the same batch shape and the
same random token batches:

  veomni  `veomni train RECIPE.yaml` on a recipe written to a temporary
          directory: f32, seeded init, data from a batch file (safetensors)
          that this script writes (docs/data.md); steps = warmup + timed.
          Step times come from the run's metrics.jsonl, whose `step_s` is
          each step's own time (microsecond resolution). Compile time is what veomni
          prints ("compiled in X s") and is not part of any step; nor are
          the parameter init and the final checkpoint, which the printed
          process wall time includes.
  torch   transformers' AutoModelForCausalLM built from the same config.json
          (float32, sdpa attention, no torch.compile), torch.optim.AdamW with
          the same betas, eps, weight decay (matrices only, as veomni) and
          the same linear-warmup-into-cosine learning rate, and per step:
          forward with labels, loss.backward(), clip_grad_norm_, step,
          zero_grad. Each step is timed with perf_counter around all of it.

The table gives the median over the timed steps (robust to a stray
interruption; the mean, min and first step are printed above it). Each
measurement also prints how much CPU other processes took meanwhile: on a
small machine a concurrent build skews the timings, so a measurement during
which they took more than 10% is repeated (--retries, default 2) and the
least disturbed one kept; the table flags models whose kept measurement was
still disturbed.

Both use the same number of threads: torch.set_num_threads(T) here;
VEOMNI_CPU_THREADS=T (veomni's own kernels) and OPENBLAS_NUM_THREADS=T (its
GEMMs) for veomni.

The batches are random tokens drawn uniformly from the first 256 ids (a
byte-sized vocabulary) so that both runs have something to learn in a few
steps: the loss starts near ln(vocab) and falls toward ln(256) as each model
learns which ids occur. The final losses are printed as a sanity check that
both actually train; they do not match exactly (different random inits).
"""

import argparse
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Hyperparameters shared by both frameworks.
HP = dict(lr=1.0e-3, betas=(0.9, 0.95), eps=1.0e-8, weight_decay=0.01,
          max_grad_norm=1.0, min_lr_ratio=0.1)

MODELS = {
    "tiny": dict(name="tiny llama", config="examples/tiny/llama.json",
                 batch=4, seq=64, warmup=10, timed=100),
    "100m": dict(name="llama 100M", config="bench/configs/llama_100m.json",
                 batch=1, seq=256, warmup=3, timed=5),
    # Issue 15's yardstick: 8 x 1024 hidden, GQA 16/4, untied head.
    "155m": dict(name="llama 155M", config="bench/configs/llama_155m.json",
                 batch=1, seq=512, warmup=2, timed=4),
}

DATA_VOCAB = 256  # ids drawn from [0, 256): see the docstring


def lr_at(step, total, warmup):
    """veomni's schedule (docs/training.md): linear warmup, then a cosine
    decay to lr * min_lr_ratio at the last step. Steps count from 1."""
    lr, floor = HP["lr"], HP["min_lr_ratio"]
    if step <= warmup:
        return lr * step / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def machine_info(threads, torch, transformers):
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        have = set(re.search(r"^flags\s*:(.*)$", text, re.M).group(1).split())
        flags = " ".join(x for x in ("avx2", "fma", "avx512f", "avx512_bf16")
                         if x in have)
    except (OSError, AttributeError):
        pass
    try:
        rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        rev += " (+ uncommitted changes)" if dirty else ""
    except OSError:
        rev = "?"
    blas = "?"
    cfg = torch.__config__.show()
    m = re.search(r"BLAS_INFO=(\w+)", cfg)
    if m:
        blas = m.group(1)
    return [
        f"CPU:          {cpu} ({os.cpu_count()} logical CPUs; {flags})",
        f"threads:      {threads} (torch.set_num_threads; veomni "
        f"VEOMNI_CPU_THREADS and OPENBLAS_NUM_THREADS)",
        f"python:       {platform.python_version()}, torch {torch.__version__} "
        f"(BLAS {blas}), transformers {transformers.__version__}",
        f"veomni:       {os.path.relpath(VEOMNI, REPO)} (source tree at {rev})",
    ]


class ForeignLoad:
    """CPU time that other processes used while a measurement ran: all busy
    time in /proc/stat less this process's and its children's. A concurrent
    build on a 2-core machine skews step times; this makes it visible."""

    @staticmethod
    def _busy():
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
        except OSError:
            return None
        idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
        return (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own():
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def __enter__(self):
        self.b0, self.o0, self.t0 = self._busy(), self._own(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        b1, o1 = self._busy(), self._own()
        wall = time.perf_counter() - self.t0
        if self.b0 is None or b1 is None:
            self.share = float("nan")
        else:
            foreign = max(0.0, (b1 - self.b0) - (o1 - self.o0))
            self.share = foreign / (wall * (os.cpu_count() or 1))
        return False

    def note(self):
        if self.share != self.share:
            return ""
        warn = "  <-- machine busy: timings skewed" if self.share > 0.1 else ""
        return f"; other processes: {100 * self.share:.0f}% of the CPUs{warn}"


def measure(label, fn, retries, extra):
    """Runs fn, again (up to `retries` times) while other processes took
    more than 10% of the CPUs meanwhile; keeps the least disturbed run."""
    best = None
    for attempt in range(retries + 1):
        with ForeignLoad() as load:
            r = fn()
        more = extra(r)
        print(f"   {label + ':':<7} {r['median_s'] * 1e3:9.1f} ms/step median "
              f"(mean {r['step_s'] * 1e3:.1f}, min {r['min_s'] * 1e3:.1f}, "
              f"first step {r['first_s'] * 1e3:.1f}){'; ' + more if more else ''}"
              f"{load.note()}", flush=True)
        r["busy"] = load.share
        if best is None or not load.share >= best[1]:
            best = (r, load.share)
        if not load.share > 0.1:
            break
        if attempt < retries:
            print(f"   {'':<7} machine busy: measuring {label} again", flush=True)
    return best[0]


def make_batches(vocab, steps, batch, seq, seed):
    import numpy as np
    rng = np.random.default_rng(seed)
    return rng.integers(0, min(vocab, DATA_VOCAB), size=(steps, batch, seq),
                        dtype=np.int32)


def write_batch_file(path, ids):
    """A veomni batch file: N batches of input_ids, position_ids,
    segment_ids and already-shifted labels (docs/data.md)."""
    import numpy as np
    from safetensors.numpy import save_file
    n, b, s = ids.shape
    labels = np.full_like(ids, -100)
    labels[:, :, :-1] = ids[:, :, 1:]
    save_file({
        "input_ids": ids,
        "position_ids": np.broadcast_to(np.arange(s, dtype=np.int32),
                                        (n, b, s)).copy(),
        "segment_ids": np.zeros_like(ids),
        "labels": labels,
    }, path)


def veomni_params(config):
    out = subprocess.run([VEOMNI, "import", config, "--summary"],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"^total\s+([\d,]+)", out, re.M)
    return int(m.group(1).replace(",", "")) if m else None


def run_veomni(spec, ids, threads, workdir, seed, dtype):
    steps = spec["warmup"] + spec["timed"]
    b, s = spec["batch"], spec["seq"]
    data = os.path.join(workdir, "batches.safetensors")
    write_batch_file(data, ids)
    out_dir = os.path.join(workdir, "out")
    recipe = os.path.join(workdir, "recipe.yaml")
    with open(recipe, "w") as f:
        f.write(f"""\
model:
  config: {os.path.join(REPO, spec['config'])}
  dtype: {dtype}
  seed: {seed}
data:
  path: {data}
  seq_len: {s}
  batch_size: {b}
train:
  steps: {steps}
  lr: {HP['lr']}
  warmup_steps: {spec['warmup']}
  min_lr_ratio: {HP['min_lr_ratio']}
  weight_decay: {HP['weight_decay']}
  betas: [{HP['betas'][0]}, {HP['betas'][1]}]
  eps: {HP['eps']}
  max_grad_norm: {HP['max_grad_norm']}
  log_interval: {max(1, steps // 4)}
  checkpoint_interval: 0
  output_dir: {out_dir}
  profile: {os.path.join(workdir, "trace.json")}
""")
    env = dict(os.environ, VEOMNI_CPU_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads))
    for attempt in range(3):
        shutil.rmtree(out_dir, ignore_errors=True)
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([VEOMNI, "train", recipe],
                                  capture_output=True, text=True, env=env)
            failure = proc.returncode and (f"exit {proc.returncode}:\n"
                                           f"{proc.stdout}\n{proc.stderr}")
        except OSError as e:  # being relinked by a concurrent build
            failure = str(e)
        wall = time.perf_counter() - t0
        if not failure:
            break
        if attempt < 2:
            print(f"   veomni train failed ({failure.strip()[:200]}); "
                  f"trying again in 15 s", flush=True)
            time.sleep(15)
    else:
        sys.exit(f"veomni train failed: {failure}")
    # "model llama, 767 kernels, arena 5 MiB (...), compiled in 0.01 s"
    find = lambda pat: re.search(pat, proc.stdout)
    m = find(r"compiled in ([\d.]+) s")
    compile_s = float(m.group(1)) if m else float("nan")
    m = find(r"(\d+) kernels")
    kernels = m.group(1) if m else "?"
    m = find(r"arena (\d+ [KMG]i?B)")
    arena = m.group(1) if m else "?"
    # The profiled step's matmuls (step 2, a warm-up step): their share of
    # the kernel time and their rate.
    m = find(r"by kind: .*?matmul ([\d.]+)% \(([\d.]+) GFLOP/s\)")
    matmul_share = float(m.group(1)) if m else float("nan")
    matmul_gflops = float(m.group(2)) if m else float("nan")
    rows = [json.loads(l) for l in open(os.path.join(out_dir, "metrics.jsonl"))]
    assert [r["step"] for r in rows] == list(range(1, steps + 1)), rows
    tokens = b * s
    per_step = [r["step_s"] for r in rows][:steps]
    timed = per_step[spec["warmup"]:]
    return dict(step_s=sum(timed) / len(timed),
                median_s=statistics.median(timed), min_s=min(timed),
                first_s=per_step[0], compile_s=compile_s, kernels=kernels,
                arena=arena, wall_s=wall, matmul_share=matmul_share,
                matmul_gflops=matmul_gflops,
                loss_first=rows[0]["loss"], loss_last=rows[-1]["loss"],
                grad_norm_last=rows[-1]["grad_norm"])


def gemm_rate(threads):
    """The chosen GEMM library's rate on a large f32 GEMM here (2048^3,
    build/bench/veomni-bench-gemm), or None without that benchmark."""
    exe = os.path.join(REPO, "build/bench/veomni-bench-gemm")
    if not os.access(exe, os.X_OK):
        return None, "no build/bench/veomni-bench-gemm (needs libdnnl-dev)"
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads),
               OMP_NUM_THREADS=str(threads))
    out = subprocess.run([exe, "5"], capture_output=True, text=True,
                         env=env).stdout
    m = re.search(r"^square 2048\^3\s+\d+\s+\d+\s+\d+\s+([\d.]+)\s+([\d.]+)",
                  out, re.M)
    if not m:
        return None, "veomni-bench-gemm printed no square row"
    chosen = re.search(r"^veomni uses: (\w+)", out, re.M)
    lib = chosen.group(1) if chosen else "openblas"
    rate = float(m.group(2) if lib == "onednn" else m.group(1))
    return rate, f"{lib} {rate:.1f} GFLOP/s on 2048^3 f32"


def run_torch(spec, ids, seed, dtype):
    import torch
    import transformers
    steps = spec["warmup"] + spec["timed"]
    with open(os.path.join(REPO, spec["config"])) as f:
        cfg_dict = json.load(f)
    cfg = transformers.AutoConfig.for_model(**cfg_dict)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(
        cfg, dtype=torch.float32).float()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]  # unique
    n_params = sum(p.numel() for p in params)
    # As veomni: decay matrices (rank >= 2), not norms or biases.
    groups = [
        {"params": [p for p in params if p.dim() >= 2],
         "weight_decay": HP["weight_decay"]},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=HP["lr"], betas=HP["betas"],
                            eps=HP["eps"], foreach=None)
    batches = torch.from_numpy(ids.astype("int64"))
    times, losses = [], []
    for step in range(1, steps + 1):
        t0 = time.perf_counter()
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, spec["warmup"])
        x = batches[step - 1]
        # labels = input_ids: transformers shifts them itself (the last
        # position predicts nothing), as veomni's already-shifted labels.
        # bf16: torch's autocast (bf16 matmuls, f32 weights and optimizer),
        # against veomni's bf16 parameters with f32 master weights.
        with torch.autocast("cpu", dtype=torch.bfloat16,
                            enabled=dtype == "bf16"):
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(params, HP["max_grad_norm"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append((loss.item(), gn.item()))
        times.append(time.perf_counter() - t0)
    timed = times[spec["warmup"]:]
    return dict(step_s=sum(timed) / len(timed),
                median_s=statistics.median(timed), min_s=min(timed),
                first_s=times[0], n_params=n_params,
                loss_first=losses[0][0], loss_last=losses[-1][0],
                grad_norm_last=losses[-1][1])


def main():
    global VEOMNI
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="tiny,100m,155m",
                    help="comma-separated: " + ", ".join(MODELS))
    ap.add_argument("--dtypes", default="f32",
                    help="comma-separated rows per model: f32, bf16 "
                         "(torch with autocast)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--veomni", default=os.path.join(REPO, "build/bin/veomni"))
    ap.add_argument("--warmup", type=int, help="override warmup steps")
    ap.add_argument("--timed", type=int, help="override timed steps")
    ap.add_argument("--retries", type=int, default=2,
                    help="measure again while the machine is busy (default 2)")
    args = ap.parse_args()
    VEOMNI = args.veomni
    for _ in range(30):  # the binary may be briefly missing during a rebuild
        if os.access(VEOMNI, os.X_OK):
            break
        time.sleep(10)
    else:
        sys.exit(f"{VEOMNI} not found: build it first (docs/training.md)")

    import torch
    import transformers
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()

    print("\n".join(machine_info(args.threads, torch, transformers)))
    print(f"optimizer:    AdamW lr {HP['lr']} betas {HP['betas']} eps "
          f"{HP['eps']} wd {HP['weight_decay']} (matrices), clip "
          f"{HP['max_grad_norm']}, warmup+cosine to {HP['min_lr_ratio']}x; "
          f"{args.dtypes}; tokens uniform in [0, {DATA_VOCAB})\n", flush=True)

    rate, rate_text = gemm_rate(args.threads)
    print(f"GEMM rate:    {rate_text} (the 'GEMM' column: the step's matmul "
          f"GFLOP/s as a fraction of it)\n", flush=True)

    results = []
    for key, dtype in [(k, d) for k in args.models.split(",")
                       for d in args.dtypes.split(",")]:
        spec = dict(MODELS[key])
        if args.warmup is not None:
            spec["warmup"] = args.warmup
        if args.timed is not None:
            spec["timed"] = args.timed
        config = os.path.join(REPO, spec["config"])
        with open(config) as f:
            vocab = json.load(f)["vocab_size"]
        steps = spec["warmup"] + spec["timed"]
        ids = make_batches(vocab, steps, spec["batch"], spec["seq"], args.seed)
        print(f"== {spec['name']} {dtype}: {spec['config']}, batch {spec['batch']} x "
              f"seq {spec['seq']}, {spec['warmup']} warmup + {spec['timed']} "
              f"timed steps", flush=True)

        def run_veomni_once():
            workdir = tempfile.mkdtemp(prefix="veomni-bench-")
            try:
                return run_veomni(spec, ids, args.threads, workdir, args.seed,
                                  dtype)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)

        v = measure("veomni", run_veomni_once, args.retries, lambda v: (
            f"compiled in {v['compile_s']:.2f} s, {v['kernels']} kernels, "
            f"arena {v['arena']}; matmuls {v['matmul_share']:.0f}% of the "
            f"kernel time at {v['matmul_gflops']:.1f} GFLOP/s; process wall "
            f"{v['wall_s']:.1f} s"))
        t = measure("torch", lambda: run_torch(spec, ids, args.seed, dtype),
                    args.retries, lambda t: "")
        vp = veomni_params(config)
        if vp is not None and vp != t["n_params"]:
            print(f"   note: veomni counts {vp:,} parameters, torch "
                  f"{t['n_params']:,}")
        results.append((dict(spec, name=f"{spec['name']} {dtype}"), vocab,
                        t["n_params"], v, t))

    tok = lambda spec: spec["batch"] * spec["seq"]
    head = (f"{'model':<16} {'params':>12} {'tokens/step':>11} "
            f"{'veomni ms/step':>14} {'torch ms/step':>13} "
            f"{'veomni tok/s':>12} {'torch tok/s':>11} {'ratio':>6} "
            f"{'GEMM':>5}")
    print("\n" + head + "\n" + "-" * len(head))
    for spec, vocab, n, v, t in results:
        print(f"{spec['name']:<16} {n:>12,} {tok(spec):>11} "
              f"{v['median_s'] * 1e3:>14.1f} {t['median_s'] * 1e3:>13.1f} "
              f"{tok(spec) / v['median_s']:>12.0f} "
              f"{tok(spec) / t['median_s']:>11.0f} "
              f"{t['median_s'] / v['median_s']:>6.2f} "
              f"{(v['matmul_gflops'] / rate if rate else float('nan')):>5.0%}"
              f"{'  (*)' if max(v['busy'], t['busy']) > 0.1 else ''}")
    print("ms/step: median of the timed steps (warmup steps and veomni's "
          "compile excluded); ratio = torch time / veomni time (> 1: veomni "
          "is faster).")
    if any(max(v["busy"], t["busy"]) > 0.1 for _, _, _, v, t in results):
        print("(*) other processes took more than 10% of the CPUs during a "
              "measurement of this row: rerun on a quiet machine.")
    print()
    print("final losses after the timed steps (sanity check; different inits,"
          " so they differ):")
    for spec, vocab, n, v, t in results:
        print(f"  {spec['name']:<16} veomni {v['loss_first']:.4f} -> "
              f"{v['loss_last']:.4f} (grad norm {v['grad_norm_last']:.3f})   "
              f"torch {t['loss_first']:.4f} -> {t['loss_last']:.4f} (grad norm"
              f" {t['grad_norm_last']:.3f})   ln(vocab) {math.log(vocab):.3f}, "
              f"ln({min(vocab, DATA_VOCAB)}) "
              f"{math.log(min(vocab, DATA_VOCAB)):.3f}")


if __name__ == "__main__":
    main()
