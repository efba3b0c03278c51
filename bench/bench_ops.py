#!/usr/bin/env python3
"""CPU op timings at SD1.5 shapes: sdft's kernels against PyTorch on this machine.

Runs build/bench_ops (our ops, channels-last), then the same ops in PyTorch in a
worker process of this script, both with the same number of threads, and prints a
Markdown table with the ratio ours / PyTorch. See bench/README.md.

  bench_ops.py --ours build/bench_ops [--threads N] [--repeats N] [--only NAME]...
               [--json FILE] [--isolate]

The PyTorch side needs Debian's python3-torch (run this script with /usr/bin/python3);
without it the table has our column only and says the reference was skipped.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

# Same policy as bench_ops.c, so both sides time alike: one warm-up, then up to
# DEFAULT_REPEATS timed runs, fewer for slow cases (about CASE_BUDGET_SECONDS of
# timed runs, at least one).
DEFAULT_REPEATS = 5
CASE_BUDGET_SECONDS = 5.0
NO_TORCH_EXIT = 3  # the worker's exit status when `import torch` fails


def default_repeats(warm_seconds):
    r = DEFAULT_REPEATS
    if warm_seconds * r > CASE_BUDGET_SECONDS:
        r = int(CASE_BUDGET_SECONDS / warm_seconds)
    return max(r, 1)


# --- the PyTorch side (runs in a worker process) ------------------------------------------


def torch_cases(torch):
    """name -> (PyTorch layout note, factory). A factory allocates the case's inputs
    and returns (run, reset): run is the timed region, reset the untimed clean-up
    between runs. Names and sizes mirror CASES in bench_ops.c."""
    F = torch.nn.functional

    def randn(*shape, grad=False):
        return torch.randn(*shape, dtype=torch.float32).requires_grad_(grad)

    def no_reset():
        pass

    def zero_grads(*ts):
        def reset():
            for t in ts:
                t.grad = None
        return reset

    # PyTorch's convolutions and group norm take NCHW; that is their natural (and
    # default) layout, so that is what we compare against.
    def conv(c, hw, backward=False):
        def make():
            x, w, b = randn(1, c, hw, hw, grad=backward), randn(c, c, 3, 3, grad=backward), \
                randn(c, grad=backward)
            if not backward:
                return (lambda: F.conv2d(x, w, b, padding=1)), no_reset
            gy = randn(1, c, hw, hw)
            return (lambda: F.conv2d(x, w, b, padding=1).backward(gy)), zero_grads(x, w, b)
        return make

    # Attention written out as diffusers' default processor does it: split heads,
    # softmax(QK^T / sqrt(d)) V, merge heads (torch 1.13 has no fused SDPA).
    def attention(q, k, v, heads):
        B, Nq, C = q.shape
        Nk, D = k.shape[1], C // heads
        q = q.view(B, Nq, heads, D).transpose(1, 2)
        k = k.view(B, Nk, heads, D).transpose(1, 2)
        v = v.view(B, Nk, heads, D).transpose(1, 2)
        p = (torch.matmul(q, k.transpose(-1, -2)) * D ** -0.5).softmax(dim=-1)
        return torch.matmul(p, v).transpose(1, 2).reshape(B, Nq, C)

    def attn(nq, nk, heads, d, backward=False):
        def make():
            q, k, v = (randn(1, n, heads * d, grad=backward) for n in (nq, nk, nk))
            if not backward:
                return (lambda: attention(q, k, v, heads)), no_reset
            gy = randn(1, nq, heads * d)
            return (lambda: attention(q, k, v, heads).backward(gy)), zero_grads(q, k, v)
        return make

    def group_norm(hw, c, groups):
        def make():
            x, g, b = randn(1, c, hw, hw), randn(c), randn(c)
            return (lambda: F.group_norm(x, groups, g, b, eps=1e-5)), no_reset
        return make

    def linear(m, cin, cout):
        def make():
            x, w, b = randn(1, m, cin), randn(cout, cin), randn(cout)
            return (lambda: F.linear(x, w, b)), no_reset
        return make

    def layer_norm(m, c):
        def make():
            x, g, b = randn(1, m, c), randn(c), randn(c)
            return (lambda: F.layer_norm(x, (c,), g, b, eps=1e-5)), no_reset
        return make

    def unary(fn, hw, c):
        def make():
            x = randn(1, c, hw, hw)
            return (lambda: fn(x)), no_reset
        return make

    nchw = "NCHW"
    tokens = "[B, N, C] (same)"
    return {
        "conv2d_320_64x64": (nchw, conv(320, 64)),
        "conv2d_320_64x64_fwdbwd": (nchw, conv(320, 64, backward=True)),
        "conv2d_640_32x32": (nchw, conv(640, 32)),
        "conv2d_1280_16x16": (nchw, conv(1280, 16)),
        "conv2d_1280_8x8": (nchw, conv(1280, 8)),
        "attn_self_4096": (tokens + ", unfused", attn(4096, 4096, 8, 40)),
        "attn_self_4096_fwdbwd": (tokens + ", unfused", attn(4096, 4096, 8, 40, backward=True)),
        "attn_cross_4096x77": (tokens + ", unfused", attn(4096, 77, 8, 40)),
        "group_norm_64x64x320": (nchw, group_norm(64, 320, 32)),
        "linear_4096x320x320": (tokens, linear(4096, 320, 320)),
        "linear_geglu_4096x320x2560": (tokens, linear(4096, 320, 2560)),
        "layer_norm_4096x320": (tokens, layer_norm(4096, 320)),
        "silu_64x64x320": (nchw + " (elementwise)", unary(F.silu, 64, 320)),
        "gelu_64x64x320": (nchw + " (elementwise)", unary(F.gelu, 64, 320)),
    }


def torch_worker(args):
    try:
        import torch
    except Exception as e:  # ImportError, or a broken install failing its own imports
        print(f"import torch failed: {e}", file=sys.stderr)
        sys.exit(NO_TORCH_EXIT)
    torch.set_num_threads(args.threads)
    torch.manual_seed(1234)
    cases = torch_cases(torch)
    print(json.dumps({"torch_version": torch.__version__, "threads": torch.get_num_threads()}),
          flush=True)
    for name in args.only:
        if name not in cases:
            print(json.dumps({"name": name, "error": "no PyTorch version of this case"}),
                  flush=True)
            continue
        layout, make = cases[name]
        backward = name.endswith("_fwdbwd")
        run, reset = make()
        # Forward-only cases run without autograd, as ours run in no-grad mode.
        with torch.set_grad_enabled(backward):
            t0 = time.perf_counter()  # monotonic, like CLOCK_MONOTONIC in the C side
            run()
            warm = time.perf_counter() - t0
            reset()
            repeats = args.repeats or default_repeats(warm)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                run()
                times.append(time.perf_counter() - t0)
                reset()
        del run, reset
        print(json.dumps({"name": name, "layout": layout, "repeats": repeats,
                          "seconds": statistics.median(times), "min_seconds": min(times)}),
              flush=True)


# --- the driver -------------------------------------------------------------------------------


def run_child(cmd, env, side):
    """Runs cmd, returns (exit status, JSON lines of its stdout, stderr, peak RSS in MiB).
    os.wait4 gives this one child's rusage (ru_maxrss is in KiB on Linux), which is
    why this does not use communicate(): that reaps the child itself. stderr goes to
    a file so a chatty child cannot fill a pipe while we read stdout."""
    lines = []
    with tempfile.TemporaryFile(mode="w+") as err_file:
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=err_file, text=True)
        for line in p.stdout:  # line by line, to show progress on long runs
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            lines.append(rec)
            if "seconds" in rec:
                print(f"  {side:5s} {rec['name']}: {rec['seconds'] * 1e3:.2f} ms",
                      file=sys.stderr, flush=True)
        p.stdout.close()
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        err_file.seek(0)
        err = err_file.read()
    return p.returncode, lines, err, ru.ru_maxrss / 1024.0


def thread_env(threads):
    env = dict(os.environ)
    # OpenMP for our kernels and PyTorch's; OpenBLAS reads its own variable first.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    return env


def run_ours(args, names):
    cmd = [args.ours] + [a for n in names for a in ("--only", n)]
    if args.repeats:
        cmd += ["--repeats", str(args.repeats)]
    return run_child(cmd, thread_env(args.threads), "ours")


def run_torch(args, names):
    cmd = [sys.executable, os.path.abspath(__file__), "--torch-worker",
           "--threads", str(args.threads)] + [a for n in names for a in ("--only", n)]
    if args.repeats:
        cmd += ["--repeats", str(args.repeats)]
    return run_child(cmd, thread_env(args.threads), "torch")


def collect(runner, args, names, side):
    """Results by case name, the peak RSS per case (isolated) or per process, and a
    note when the side failed."""
    batches = [[n] for n in names] if args.isolate else [names]
    results, rss, meta, note = {}, {}, {}, None
    for batch in batches:
        rc, lines, err, peak = runner(args, batch)
        if side == "torch" and rc == NO_TORCH_EXIT:
            return {}, {}, {}, "PyTorch not available (install python3-torch): reference SKIPPED"
        for rec in lines:
            if "name" in rec:
                results[rec["name"]] = rec
            else:
                meta.update(rec)
        for n in batch:
            rss[n] = peak
        if rc != 0:
            tail = "; ".join(err.strip().splitlines()[-3:])
            note = f"{side} exited with status {rc}: {tail}"
            print(f"warning: {note}", file=sys.stderr)
    rss["process"] = max(rss.values()) if rss and not args.isolate else None
    return results, rss, meta, note


def fmt_ms(rec):
    if not rec or "seconds" not in rec:
        return "n/a"
    ms = rec["seconds"] * 1e3
    return f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ours", default="build/bench_ops", help="path to the bench_ops binary")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                    help="threads for both sides (default: this machine's cores)")
    ap.add_argument("--repeats", type=int, default=0,
                    help="timed runs per case (default: 5, fewer for slow cases)")
    ap.add_argument("--only", action="append", default=[], help="run only this case")
    ap.add_argument("--json", help="also save the results to this file")
    ap.add_argument("--isolate", action="store_true",
                    help="one process per case, so the RSS column is per op (slower: "
                         "PyTorch is imported once per case)")
    ap.add_argument("--no-torch", action="store_true", help="time ours only")
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads < 1:
        ap.error("--threads must be at least 1")

    if args.torch_worker:
        torch_worker(args)
        return

    listed = subprocess.run([args.ours, "--list"], capture_output=True, text=True, check=True)
    names = listed.stdout.split()
    if args.only:
        unknown = [n for n in args.only if n not in names]
        if unknown:
            ap.error(f"unknown case(s) {', '.join(unknown)}; cases: {', '.join(names)}")
        names = args.only

    ncpu = os.cpu_count() or 1
    load = os.getloadavg()[0]
    print(f"bench: {len(names)} cases, {args.threads} threads on {ncpu} cores "
          f"({platform.processor() or platform.machine()}), load average {load:.2f}",
          file=sys.stderr)
    if load > 0.5 * ncpu:
        print("warning: the machine is busy; timings will be noisy", file=sys.stderr)

    ours, ours_rss, _, ours_note = collect(run_ours, args, names, "ours")
    if args.no_torch:
        ref, ref_rss, ref_meta, ref_note = {}, {}, {}, "PyTorch reference not run (--no-torch)"
    else:
        ref, ref_rss, ref_meta, ref_note = collect(run_torch, args, names, "torch")
    have_ref = bool(ref)
    # Guard the "same threads" claim: each side reports what it actually got.
    got = {o.get("threads") for o in ours.values()} | {ref_meta.get("threads", args.threads)}
    if got - {args.threads}:
        print(f"warning: asked for {args.threads} threads, the sides report {sorted(got)}",
              file=sys.stderr)

    # The table.
    rows, records = [], []
    head = ["op", "pass", "shape (ours: channels-last)", "PyTorch layout", "ours (ms)",
            "PyTorch (ms)", "ours / PyTorch (< 1: ours faster)", "ours rate"]
    if args.isolate:
        head += ["ours peak RSS (MiB)", "PyTorch peak RSS (MiB)"]
    for n in names:
        o, r = ours.get(n), ref.get(n)
        ratio = None
        if o and r and "seconds" in o and "seconds" in r and r["seconds"] > 0:
            ratio = o["seconds"] / r["seconds"]
        rate = ""
        if o and o.get("gflops") is not None:
            rate = f"{o['gflops']:.1f} GFLOP/s"
        elif o and o.get("gbps") is not None:
            rate = f"{o['gbps']:.2f} GB/s"
        row = [n, o["pass"] if o else ("fwd+bwd" if n.endswith("_fwdbwd") else "fwd"),
               o["shape"] if o else "", r.get("layout", "") if r else "",
               fmt_ms(o) if o else "FAILED", fmt_ms(r) if have_ref else "SKIPPED",
               f"{ratio:.2f}" if ratio is not None else "n/a", rate]
        if args.isolate:
            row += [f"{ours_rss.get(n, 0):.0f}", f"{ref_rss[n]:.0f}" if n in ref_rss else "n/a"]
        rows.append(row)
        records.append({"name": n, "ours": o, "torch": r, "ratio": ratio,
                        "ours_peak_rss_mib": ours_rss.get(n) if args.isolate else None,
                        "torch_peak_rss_mib": ref_rss.get(n) if args.isolate else None})

    # libgomp's idle threads spin by default, which competes with OpenBLAS's own
    # pthreads on a small machine; the policy in effect changes the numbers a lot.
    policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    print(f"CPU op timings, SD1.5 shapes, batch 1, f32, {args.threads} thread(s) each side "
          f"(OMP_WAIT_POLICY {policy}); median of the timed runs after one warm-up.")
    if have_ref:
        print(f"PyTorch {ref_meta.get('torch_version', '?')} "
              f"(torch.get_num_threads() = {ref_meta.get('threads', '?')}). "
              f"Ratio = ours / PyTorch: below 1 we are faster, above 1 PyTorch is.")
    print()
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" if i < 4 else "---:" for i in range(len(head))) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    if not args.isolate:
        line = f"Peak RSS, whole process: ours {ours_rss['process']:.0f} MiB"
        if have_ref:
            line += (f", PyTorch {ref_rss['process']:.0f} MiB (includes the Python interpreter "
                     f"and libtorch; --isolate gives it per op)")
        print(line)
    for note in (ours_note, ref_note):
        if note:
            print(note)

    if args.json:
        doc = {"threads": args.threads, "cores": ncpu, "load_average": load,
               "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
               "machine": platform.platform(), "torch": ref_meta or None,
               "ours_peak_rss_mib": None if args.isolate else ours_rss.get("process"),
               "torch_peak_rss_mib": None if args.isolate else ref_rss.get("process"),
               "notes": [n for n in (ours_note, ref_note) if n], "cases": records}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")

    if ours_note or not ours:
        sys.exit(1)


if __name__ == "__main__":
    main()
