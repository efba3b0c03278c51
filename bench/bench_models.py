#!/usr/bin/env python3
"""SD1.5 model timings on the CPU: sdft's text encoder, UNet and VAE decoder against
diffusers and transformers on PyTorch, same checkpoint, machine and thread count.

Runs build/bench_models (ours, channels-last) and the same three cases in diffusers
(NCHW) in a worker process of this script, one process per case and side, and prints
a Markdown table: seconds, the ratio ours / diffusers and peak RSS. See bench/README.md.

  bench_models.py --ours build/bench_models --model DIR [--threads N] [--repeats N]
                  [--only NAME]... [--json FILE] [--no-diffusers]

DIR is a diffusers folder (model_index.json, text_encoder/, unet/, vae/), e.g. the
random-weight SD1.5 that `make bench-models` writes with tools/make_random_sd15.py.
The diffusers side needs torch, diffusers and transformers (run this script with
.venv-golden/bin/python); without them the table has our column only.
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

# Same policy as bench_models.c: one warm-up, then the case's default number of
# timed runs, cut so they take about CASE_BUDGET_SECONDS (at least one).
DEFAULT_REPEATS = {"text_encoder": 5, "unet": 2, "vae_decode": 2, "render": 1}
CASE_BUDGET_SECONDS = 30.0
CASES = list(DEFAULT_REPEATS)
NO_DIFFUSERS_EXIT = 3  # the worker's exit status when torch/diffusers do not import
LABELS = {
    "load": "load: text encoder + UNet + VAE, f32",
    "text_encoder": "text encoder, ids [2, 77]",
    "unet": "UNet, latent 2×64×64×4 (one CFG step at 512×512)",
    "vae_decode": "VAE decode, 64×64×4 → 512×512×3",
    "render": "render 512×512, 20 steps, CFG 7.5 (whole pipeline)",
}


def default_repeats(name, warm_seconds):
    r = DEFAULT_REPEATS[name]
    if warm_seconds and warm_seconds * r > CASE_BUDGET_SECONDS:
        r = int(CASE_BUDGET_SECONDS / warm_seconds)
    return max(r, 1)


# --- memory, the same way as bench_models.c ----------------------------------------------


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def current_rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return -1.0


def reset_peak_rss():
    """Restarts the high-water mark behind ru_maxrss at the current RSS (Linux 4.0+)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# --- the diffusers side (runs in a worker process) -----------------------------------------


def diffusers_worker(args):
    try:
        import torch
        import diffusers
        import transformers
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextModel
    except Exception as e:  # ImportError, or a broken install failing its own imports
        print(f"import of torch/diffusers/transformers failed: {e}", file=sys.stderr)
        sys.exit(NO_DIFFUSERS_EXIT)
    diffusers.utils.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1234)
    # With accelerate installed, diffusers' from_pretrained defaults to
    # low_cpu_mem_usage: the model is built without initialising it and takes the
    # safetensors tensors as they come, memory-mapped, read on first use. Without it,
    # the model is built with random initialisation and the weights copied in.
    lazy = diffusers.utils.is_accelerate_available()
    print(json.dumps({"torch_version": torch.__version__, "diffusers_version": diffusers.__version__,
                      "transformers_version": transformers.__version__,
                      "threads": torch.get_num_threads(),
                      "sdpa": hasattr(torch.nn.functional, "scaled_dot_product_attention"),
                      "low_cpu_mem_usage": lazy}),
          flush=True)

    # The whole model, as ours loads it, with diffusers' defaults.
    f32 = torch.float32
    t0 = time.perf_counter()
    te = CLIPTextModel.from_pretrained(args.model, subfolder="text_encoder", torch_dtype=f32)
    unet = UNet2DConditionModel.from_pretrained(args.model, subfolder="unet", torch_dtype=f32)
    vae = AutoencoderKL.from_pretrained(args.model, subfolder="vae", torch_dtype=f32)
    for m in (te, unet, vae):
        m.eval()
    load = time.perf_counter() - t0
    rss_before_touch = current_rss_mib()
    # Untimed: read every weight once, so that mapped weights are resident before the
    # cases, as ours are after sd_model_load: the RSS columns then compare the same
    # resident model, and no case's first run pays for reading the files.
    t0 = time.perf_counter()
    with torch.no_grad():
        for m in (te, unet, vae):
            for t in list(m.parameters()) + list(m.buffers()):
                t.sum()
    touch = time.perf_counter() - t0
    rss_after_load = current_rss_mib()
    print(json.dumps({"name": "load", "threads": torch.get_num_threads(), "seconds": load,
                      "rss_before_touch_mib": rss_before_touch, "touch_seconds": touch,
                      "rss_mib": rss_after_load, "peak_rss_mib": peak_rss_mib()}), flush=True)

    for name in args.only:
        peak_reset = reset_peak_rss()
        if name == "text_encoder":
            ids = torch.randint(0, te.config.vocab_size, (2, 77))
            ids[:, 0] = 49406  # CLIP's start token
            run = lambda: te(input_ids=ids).last_hidden_state  # noqa: E731
            layout = "ids [2, 77]"
        elif name == "unet":
            x = torch.randn(2, unet.config.in_channels, 64, 64)
            t = torch.tensor([500, 500])
            ctx = torch.randn(2, 77, unet.config.cross_attention_dim)
            run = lambda: unet(x, t, encoder_hidden_states=ctx).sample  # noqa: E731
            layout = "NCHW"
        elif name == "vae_decode":
            z = torch.randn(1, vae.config.latent_channels, 64, 64)
            run = lambda: vae.decode(z).sample  # noqa: E731
            layout = "NCHW"
        elif name == "render":
            import diffusers.schedulers as schedulers
            from diffusers import StableDiffusionPipeline
            from transformers import CLIPTokenizer
            with open(os.path.join(args.model, "scheduler", "scheduler_config.json")) as f:
                sched_cls = getattr(schedulers, json.load(f)["_class_name"])
            pipe = StableDiffusionPipeline(
                vae=vae, text_encoder=te, tokenizer=CLIPTokenizer.from_pretrained(args.tokenizer), unet=unet,
                scheduler=sched_cls.from_pretrained(args.model, subfolder="scheduler"), safety_checker=None,
                feature_extractor=None, requires_safety_checker=False)
            pipe.set_progress_bar_config(disable=True)
            run = lambda: pipe("a photo of a dog", height=512, width=512, num_inference_steps=20,  # noqa: E731
                               guidance_scale=7.5, output_type="np").images
            layout = "NCHW"
        else:
            print(json.dumps({"name": name, "error": "no diffusers version of this case"}),
                  flush=True)
            continue
        with torch.no_grad():
            warm = 0.0
            if name != "render":  # a 20-step render amortises its own warm-up, as ours
                t0 = time.perf_counter()  # monotonic, like CLOCK_MONOTONIC in the C side
                run()
                warm = time.perf_counter() - t0
            repeats = args.repeats or default_repeats(name, warm)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                run()
                times.append(time.perf_counter() - t0)
        print(json.dumps({"name": name, "layout": layout, "threads": torch.get_num_threads(),
                          "repeats": repeats, "seconds": statistics.median(times),
                          "min_seconds": min(times), "warmup_seconds": warm,
                          "rss_after_load_mib": rss_after_load, "peak_rss_mib": peak_rss_mib(),
                          "peak_reset": peak_reset}), flush=True)


# --- the driver -------------------------------------------------------------------------------


def run_child(cmd, env, side):
    """Runs cmd; returns (exit status, JSON lines of its stdout, stderr). stderr goes to
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
                extra = f" ({rec['repeats']} timed)" if "repeats" in rec else ""
                print(f"  {side:9s} {rec['name']}: {rec['seconds']:.2f} s{extra}, "
                      f"peak RSS {rec.get('peak_rss_mib', 0):.0f} MiB", file=sys.stderr,
                      flush=True)
        p.stdout.close()
        p.wait()
        err_file.seek(0)
        err = err_file.read()
    return p.returncode, lines, err


def thread_env(threads):
    env = dict(os.environ)
    # OpenMP for our kernels and PyTorch's; OpenBLAS reads its own variable first.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    return env


def run_ours(args, name):
    cmd = [args.ours, "--model", args.model, "--only", name]
    if name == "render":
        cmd += ["--tokenizer", args.tokenizer]
    if args.repeats:
        cmd += ["--repeats", str(args.repeats)]
    return run_child(cmd, thread_env(args.threads), "ours")


def run_diffusers(args, name):
    cmd = [sys.executable, os.path.abspath(__file__), "--diffusers-worker", "--model", args.model,
           "--threads", str(args.threads), "--only", name]
    if name == "render":
        cmd += ["--tokenizer", args.tokenizer]
    if args.repeats:
        cmd += ["--repeats", str(args.repeats)]
    return run_child(cmd, thread_env(args.threads), "diffusers")


class Side:
    """One side's results: the case records, the load records (one per process) and
    metadata; note is set when a process failed."""

    def __init__(self):
        self.cases, self.loads, self.meta, self.note = {}, [], {}, None

    def add(self, side, rc, lines, err):
        for rec in lines:
            if rec.get("name") == "load":
                self.loads.append(rec)
            elif "name" in rec:
                self.cases[rec["name"]] = rec
            else:
                self.meta.update(rec)
        if rc != 0 and not self.note:
            tail = "; ".join(err.strip().splitlines()[-3:])
            self.note = f"{side} exited with status {rc}: {tail}"
            print(f"warning: {self.note}", file=sys.stderr)

    def load(self):
        """The median load over the processes (the first may find the files out of the
        page cache), with the peak and resident memory of that same process."""
        if not self.loads:
            return None
        ordered = sorted(self.loads, key=lambda r: r["seconds"])
        return ordered[(len(ordered) - 1) // 2]


def fmt_s(rec):
    if not rec or "seconds" not in rec:
        return "n/a"
    s = rec["seconds"]
    return f"{s:.1f}" if s >= 10 else f"{s:.2f}"


def fmt_mib(rec, key="peak_rss_mib"):
    return f"{rec[key]:.0f}" if rec and rec.get(key) is not None else "n/a"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ours", default="build/bench_models", help="path to the bench_models binary")
    ap.add_argument("--model", default="build/sd15-random",
                    help="the diffusers folder both sides load (default: build/sd15-random)")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                    help="threads for both sides (default: this machine's cores)")
    ap.add_argument("--repeats", type=int, default=0,
                    help="timed runs per case (default: 5 for the text encoder, 2 for the "
                         "UNet and the VAE, fewer when they would take over 30 s)")
    ap.add_argument("--only", action="append", default=[], choices=CASES,
                    help="run only this case (repeatable)")
    ap.add_argument("--tokenizer", help="a CLIP tokenizer folder: adds the 20-step render case "
                                        "(about 10 minutes a side on 2 cores)")
    ap.add_argument("--json", help="also save the results to this file")
    ap.add_argument("--no-diffusers", action="store_true", help="time ours only")
    ap.add_argument("--diffusers-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads < 1:
        ap.error("--threads must be at least 1")
    if not os.path.isdir(args.model):
        ap.error(f"--model {args.model}: not a folder (make bench-models creates "
                 f"build/sd15-random with tools/make_random_sd15.py)")

    if args.diffusers_worker:
        diffusers_worker(args)
        return

    names = args.only or [n for n in CASES if n != "render" or args.tokenizer]
    if "render" in names and not args.tokenizer:
        ap.error("the render case needs --tokenizer DIR")
    ncpu = os.cpu_count() or 1
    load_avg = os.getloadavg()[0]
    print(f"bench: {len(names)} model cases from {args.model}, {args.threads} threads on {ncpu} "
          f"cores ({platform.processor() or platform.machine()}), load average {load_avg:.2f}",
          file=sys.stderr)
    if load_avg > 0.5 * ncpu:
        print("warning: the machine is busy; timings will be noisy", file=sys.stderr)

    # One process per case and side: each loads the whole model, and a case's peak
    # RSS cannot include memory an earlier case left in the allocator. The sides
    # alternate case by case, so a change in the machine's load hits both alike.
    ours, ref = Side(), Side()
    have_ref = not args.no_diffusers
    ref_skip_note = "diffusers reference not run (--no-diffusers)" if args.no_diffusers else None
    for n in names:
        ours.add("ours", *run_ours(args, n))
        if have_ref:
            rc, lines, err = run_diffusers(args, n)
            if rc == NO_DIFFUSERS_EXIT:
                have_ref = False
                ref_skip_note = ("torch/diffusers/transformers not available (run with "
                                 ".venv-golden/bin/python): reference SKIPPED")
                continue
            ref.add("diffusers", rc, lines, err)
    load_end = os.getloadavg()[0]

    got = {r.get("threads") for r in list(ours.cases.values()) + ours.loads}
    if have_ref:
        got.add(ref.meta.get("threads", args.threads))
    if got - {args.threads}:
        print(f"warning: asked for {args.threads} threads, the sides report {sorted(got)}",
              file=sys.stderr)

    # The table: the load, then the cases.
    head = ["case", "ours (s)", "diffusers (s)", "ours / diffusers (< 1: ours faster)",
            "ours peak RSS (MiB)", "diffusers peak RSS (MiB)"]
    rows, records = [], []
    for n, o, r in [("load", ours.load(), ref.load())] + \
            [(n, ours.cases.get(n), ref.cases.get(n)) for n in names]:
        ratio = None
        if o and r and "seconds" in o and "seconds" in r and r["seconds"] > 0:
            ratio = o["seconds"] / r["seconds"]
        rows.append([LABELS[n], fmt_s(o) if o else "FAILED",
                     fmt_s(r) if have_ref else "SKIPPED",
                     f"{ratio:.2f}" if ratio is not None else "n/a",
                     fmt_mib(o) if o else "n/a", fmt_mib(r) if have_ref else "n/a"])
        records.append({"name": n, "ours": o, "diffusers": r, "ratio": ratio})

    policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    print(f"SD1.5 models on the CPU, f32, no grad, {args.threads} thread(s) each side "
          f"(OMP_WAIT_POLICY {policy}); median of the timed runs after one warm-up; "
          f"load average {load_avg:.2f} at the start, {load_end:.2f} at the end.")
    if have_ref:
        m = ref.meta
        print(f"diffusers {m.get('diffusers_version', '?')} / transformers "
              f"{m.get('transformers_version', '?')} on PyTorch {m.get('torch_version', '?')} "
              f"(torch.get_num_threads() = {m.get('threads', '?')}). "
              f"Ratio = ours / diffusers: below 1 we are faster, above 1 diffusers is.")
    print()
    print("| " + " | ".join(head) + " |")
    print("|---|" + "|".join("---:" for _ in head[1:]) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    ol, rl = ours.load(), ref.load()
    line = ("Peak RSS: the load row is the peak while loading; a case's is the peak from the "
            "end of loading to the end of the case (weights included), one process per case "
            "and side. RSS right after loading (the weights): ours " + fmt_mib(ol, "rss_mib"))
    if have_ref:
        line += f", diffusers {fmt_mib(rl, 'rss_mib')} (with the Python interpreter and libtorch)"
    print(line + ".")
    if have_ref and rl:
        if ref.meta.get("low_cpu_mem_usage"):
            print(f"diffusers loaded with low_cpu_mem_usage (accelerate is installed): the "
                  f"safetensors files are memory-mapped and read on first use, so its load row "
                  f"is from_pretrained alone (RSS {rl.get('rss_before_touch_mib', 0):.0f} MiB "
                  f"after it); then, untimed, every weight was read once "
                  f"({rl.get('touch_seconds', 0):.1f} s) so both sides start the cases with the "
                  f"whole model resident.")
        else:
            print("diffusers loaded without accelerate: each model is built with random "
                  "initialisation (part of the load row), then the weights are copied in.")
    if have_ref:
        sdpa = ref.meta.get("sdpa")
        print("diffusers' attention: " + (
            "torch has scaled_dot_product_attention, so diffusers uses AttnProcessor2_0."
            if sdpa else
            f"PyTorch {ref.meta.get('torch_version', '?')} has no scaled_dot_product_attention, "
            "so diffusers runs its default AttnProcessor (softmax(QKᵀ)·V written out, the "
            "N×N scores in memory)."))
    if any(rec and rec.get("peak_reset") is False
           for rec in list(ours.cases.values()) + list(ref.cases.values())):
        print("note: /proc/self/clear_refs refused a reset, so some case peaks include the load.")
    for note in (ours.note, ref.note, ref_skip_note):
        if note:
            print(note)

    if args.json:
        doc = {"threads": args.threads, "cores": ncpu, "load_average": [load_avg, load_end],
               "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
               "machine": platform.platform(), "model": args.model,
               "diffusers": ref.meta or None, "ours_loads": ours.loads,
               "diffusers_loads": ref.loads,
               "notes": [n for n in (ours.note, ref.note, ref_skip_note) if n],
               "cases": records}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")

    if ours.note or not ours.cases:
        sys.exit(1)


if __name__ == "__main__":
    main()
