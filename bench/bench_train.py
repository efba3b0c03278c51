#!/usr/bin/env python3
"""One DreamBooth-LoRA training step on the CPU: sdft-train against the same step as
diffusers' examples/dreambooth/train_dreambooth_lora.py (v0.30.3) does it on PyTorch,
same checkpoint, settings, machine and thread count.

Runs build/sdft-train (ours) on a run config written here, and in a worker process of
this script the body of that script's training loop (written from reading it, not
copied: the script is not in the diffusers package). Both train on the SD1.5-shaped
random checkpoint at 256×256, batch 1 + 1 class image with prior preservation, LoRA
rank 4 on the UNet's attention projections, frozen text encoder with its prompt
embeddings computed once (the script's --pre_compute_text_embeddings), gradient
checkpointing off and on. Prints a Markdown table: seconds per step, the ratio
ours / diffusers and peak RSS. See bench/README.md.

  bench_train.py --ours build/sdft-train --model DIR --tokenizer DIR [--threads N]
                 [--steps N] [--only NAME]... [--json FILE] [--no-diffusers]

The diffusers side needs torch, diffusers, transformers, peft, numpy and Pillow (run
this script with .venv-golden/bin/python); without them the table has our column only.
"""
import argparse
import gc
import importlib.util
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from bench_models import NO_DIFFUSERS_EXIT, current_rss_mib, fmt_mib, fmt_s, thread_env  # noqa: E402

CASES = {"checkpointing_off": False, "checkpointing_on": True}
WARMUP_STEPS = 1
POLL_SECONDS = 0.2

# The run both sides do. Every value is the script's default or what the issue asks;
# the table's footer repeats them.
SETTINGS = {
    "resolution": 256, "rank": 4, "alpha": 4, "targets": ["to_q", "to_k", "to_v", "to_out.0"],
    "instance_prompt": "a photo of sks dog", "class_prompt": "a photo of dog",
    "learning_rate": 1e-4, "adam_beta1": 0.9, "adam_beta2": 0.999, "adam_weight_decay": 1e-2,
    "adam_epsilon": 1e-8, "max_grad_norm": 1.0, "prior_loss_weight": 1.0, "seed": 42,
}


def label(name):
    s = SETTINGS
    return (f"train step {s['resolution']}×{s['resolution']}, batch 1+1, rank {s['rank']}, "
            f"checkpointing {'on' if CASES[name] else 'off'}")


# --- the diffusers side (runs in a worker process) ------------------------------------------


def load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def diffusers_worker(args):
    try:
        import torch
        import torch.nn.functional as F
        import diffusers
        import peft
        import transformers
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from diffusers.optimization import get_scheduler
        from peft import LoraConfig
        from PIL import Image, ImageOps
        from transformers import CLIPTextModel, CLIPTokenizer
        # The script's transform: Resize(BILINEAR) and RandomCrop as torchvision 0.14
        # computes them on a PIL image, ToTensor, Normalize([0.5], [0.5]) (the golden
        # venv has no torchvision; tools/golden/data.py writes these out).
        golden_data = load_module("golden_data", os.path.join(ROOT, "tools", "golden", "data.py"))
        from data_check import torchvision_resize  # on sys.path through golden_data
    except Exception as e:  # ImportError, or a broken install failing its own imports
        print(f"import of torch/diffusers/transformers/peft/Pillow failed: {e}", file=sys.stderr)
        sys.exit(NO_DIFFUSERS_EXIT)
    torch.set_num_threads(args.threads)
    torch.manual_seed(SETTINGS["seed"])
    s = SETTINGS
    size = s["resolution"]

    # As the script sets up: tokenizer, DDPMScheduler, text encoder, VAE and UNet from
    # the folder, in float32 (no mixed precision), all frozen; gradient checkpointing
    # before the adapters; LoRA with the gaussian init (the script's target list adds
    # add_k_proj/add_v_proj, which SD1.5's UNet does not have).
    tokenizer = CLIPTokenizer.from_pretrained(args.tokenizer)
    noise_scheduler = DDPMScheduler.from_pretrained(args.model, subfolder="scheduler")
    text_encoder = CLIPTextModel.from_pretrained(args.model, subfolder="text_encoder")
    vae = AutoencoderKL.from_pretrained(args.model, subfolder="vae")
    unet = UNet2DConditionModel.from_pretrained(args.model, subfolder="unet")
    for m in (vae, text_encoder, unet):
        m.requires_grad_(False)
    if args.checkpointing:
        unet.enable_gradient_checkpointing()
    unet.add_adapter(LoraConfig(r=s["rank"], lora_alpha=s["alpha"], init_lora_weights="gaussian",
                                target_modules=s["targets"]))
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=s["learning_rate"], betas=(s["adam_beta1"], s["adam_beta2"]),
                                  weight_decay=s["adam_weight_decay"], eps=s["adam_epsilon"])

    # --pre_compute_text_embeddings: each prompt encoded once, then the text encoder
    # is dropped (the script sets it to None and collects).
    def embed(prompt):
        ids = tokenizer(prompt, truncation=True, padding="max_length", max_length=tokenizer.model_max_length,
                        return_tensors="pt").input_ids
        with torch.no_grad():
            return text_encoder(ids, return_dict=False)[0]

    instance_embeds, class_embeds = embed(s["instance_prompt"]), embed(s["class_prompt"])
    text_encoder = None
    gc.collect()
    steps = WARMUP_STEPS + args.steps
    lr_scheduler = get_scheduler("constant", optimizer=optimizer, num_warmup_steps=0, num_training_steps=steps)
    if noise_scheduler.config.prediction_type != "epsilon":
        raise SystemExit(f"prediction type {noise_scheduler.config.prediction_type}: only epsilon is timed")

    def pixels(path):
        """DreamBoothDataset.__getitem__ for one image: open, exif_transpose, RGB,
        Resize(size, BILINEAR), RandomCrop(size) (torchvision 0.14's get_params:
        top then left from torch.randint), ToTensor, Normalize."""
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
        if image.mode != "RGB":
            image = image.convert("RGB")
        image = torchvision_resize(image, size)
        w, h = image.size
        if (w, h) != (size, size):
            top = int(torch.randint(0, h - size + 1, size=(1,)).item())
            left = int(torch.randint(0, w - size + 1, size=(1,)).item())
            image = image.crop((left, top, left + size, top + size))
        return golden_data.normalize(golden_data.to_tensor(image))

    def listing(folder):
        return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                      if f.lower().endswith((".jpg", ".jpeg", ".png")))

    instances, classes = listing(args.instance_dir), listing(args.class_dir)
    print(json.dumps({"torch_version": torch.__version__, "diffusers_version": diffusers.__version__,
                      "transformers_version": transformers.__version__, "peft_version": peft.__version__,
                      "threads": torch.get_num_threads(),
                      "sdpa": hasattr(F, "scaled_dot_product_attention"),
                      "attn_processor": sorted({type(p).__name__ for p in unet.attn_processors.values()}),
                      "lora_parameters": sum(p.numel() for p in params),
                      "rss_after_setup_mib": current_rss_mib()}), flush=True)

    unet.train()  # the script's loop does; diffusers checkpoints only in training mode
    order = []
    with open(args.metrics, "w") as metrics:
        for step in range(steps):
            t0 = time.perf_counter()
            # The DataLoader's part (shuffle, num_workers 0: in the loop's process):
            # both images through the transform, collate_fn's stack and cat.
            if not order:
                order = torch.randperm(max(len(instances), len(classes))).tolist()
            index = order.pop()
            pixel_values = torch.stack([pixels(instances[index % len(instances)]),
                                        pixels(classes[index % len(classes)])])
            pixel_values = pixel_values.to(memory_format=torch.contiguous_format).float()
            encoder_hidden_states = torch.cat([instance_embeds, class_embeds], dim=0)
            # The loop body.
            model_input = vae.encode(pixel_values).latent_dist.sample() * vae.config.scaling_factor
            noise = torch.randn_like(model_input)
            timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (model_input.shape[0],)).long()
            noisy_model_input = noise_scheduler.add_noise(model_input, noise, timesteps)
            model_pred = unet(noisy_model_input, timesteps, encoder_hidden_states, return_dict=False)[0]
            model_pred, model_pred_prior = torch.chunk(model_pred, 2, dim=0)
            target, target_prior = torch.chunk(noise, 2, dim=0)
            instance_loss = F.mse_loss(model_pred.float(), target.float(), reduction="mean")
            prior_loss = F.mse_loss(model_pred_prior.float(), target_prior.float(), reduction="mean")
            loss = instance_loss + s["prior_loss_weight"] * prior_loss
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, s["max_grad_norm"])
            optimizer.step()
            lr = lr_scheduler.get_last_lr()[0]
            lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)  # accelerate's AcceleratedOptimizer default
            loss_value = loss.detach().item()  # the script logs it every step
            seconds = time.perf_counter() - t0
            metrics.write(json.dumps({"step": step + 1, "loss": loss_value, "instance_loss": instance_loss.item(),
                                      "prior_loss": prior_loss.item(), "lr": lr, "grad_norm": float(grad_norm),
                                      "seconds": seconds}) + "\n")
            metrics.flush()


# --- the driver ----------------------------------------------------------------------------------


def our_config(args, checkpointing, work):
    """sdft-train's run config for the case, as YAML (JSON strings are YAML strings)."""
    s, q = SETTINGS, json.dumps
    targets = "".join(f"\n    - {q(t)}" for t in s["targets"])
    return f"""model:
  path: {q(os.path.abspath(args.model))}
  tokenizer: {q(os.path.abspath(args.tokenizer))}
  device: cpu
  dtype: f32
subject:
  token: sks
  class: dog
data:
  instance_dir: {q(os.path.abspath(args.instance_dir))}
  instance_prompt: {q(s['instance_prompt'])}
  resolution: {s['resolution']}
  center_crop: false   # random crops: every step loads, crops and VAE-encodes, as the script does
  random_flip: false
lora:
  rank: {s['rank']}
  alpha: {s['alpha']}
  targets:{targets}
  text_encoder: false  # frozen: prompt embeddings computed once
train:
  steps: {WARMUP_STEPS + args.steps}
  batch_size: 1
  gradient_accumulation: 1
  learning_rate: {s['learning_rate']}
  lr_scheduler: constant
  lr_warmup_steps: 0
  adam_beta1: {s['adam_beta1']}
  adam_beta2: {s['adam_beta2']}
  adam_weight_decay: {s['adam_weight_decay']}
  adam_epsilon: {s['adam_epsilon']}
  max_grad_norm: {s['max_grad_norm']}
  snr_gamma: 0         # train_dreambooth_lora.py has no Min-SNR option
  noise_offset: 0
  seed: {s['seed']}
  gradient_checkpointing: {'true' if checkpointing else 'false'}
prior:
  enabled: true
  class_dir: {q(os.path.join(work, 'class'))}
  class_prompt: {q(s['class_prompt'])}
  num_class_images: 1  # present already: nothing is generated
  prior_loss_weight: {s['prior_loss_weight']}
validation:
  prompts: []          # no validation renders
output:
  dir: {q(os.path.join(work, 'out'))}
  save_every: 0
"""


def read_metrics(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip().endswith("}")]
    except (OSError, json.JSONDecodeError):
        return []


def proc_status_mib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def run_measured(cmd, env, metrics_path, log_path, side):
    """Runs one side's process for a case and follows its metrics file. Once the warm-up
    step is logged, records the process's peak RSS so far (VmHWM: loading and the
    warm-up) and restarts its high-water mark at the current RSS (/proc/PID/clear_refs,
    Linux 4.0+), so the ru_maxrss that wait4 returns at exit is the peak of the timed
    steps. Returns (exit status, step records, peaks)."""
    seen, peak_before, reset = 0, None, False
    with open(log_path, "w") as log:
        p = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            while True:
                pid, status, usage = os.wait4(p.pid, os.WNOHANG)
                steps = read_metrics(metrics_path)
                for rec in steps[seen:]:
                    kind = "warm-up" if rec["step"] <= WARMUP_STEPS else "timed"
                    print(f"  {side:9s} step {rec['step']} ({kind}): {rec['seconds']:.2f} s, "
                          f"loss {rec['loss']:.4f}", file=sys.stderr, flush=True)
                seen = len(steps)
                if pid:
                    break
                if seen >= WARMUP_STEPS and peak_before is None:
                    peak_before = proc_status_mib(p.pid, "VmHWM")
                    try:
                        with open(f"/proc/{p.pid}/clear_refs", "w") as f:
                            f.write("5")
                        reset = True
                    except OSError:
                        pass
                time.sleep(POLL_SECONDS)
        except BaseException:  # interrupted: do not leave a process holding the model behind
            p.kill()
            p.wait()
            raise
    p.returncode = os.waitstatus_to_exitcode(status)
    peak_exit = usage.ru_maxrss / 1024.0  # KiB on Linux
    peaks = {"peak_rss_steps_mib": peak_exit if reset else None,
             "peak_rss_mib": max(peak_exit, peak_before or 0.0), "peak_reset": reset}
    return p.returncode, steps, peaks


def summarise(rc, steps, peaks, log_path, extra=None):
    """A side's record for a case: median seconds of the timed steps and the rest."""
    rec = dict(peaks, exit_status=rc, steps=steps, **(extra or {}))
    timed = [r["seconds"] for r in steps[WARMUP_STEPS:]]
    if timed:
        rec.update(seconds=statistics.median(timed), min_seconds=min(timed), timed_steps=len(timed))
    if steps:
        rec["warmup_seconds"] = steps[0]["seconds"]
    rec["finite_loss"] = all(math.isfinite(r["loss"]) for r in steps)
    if rc != 0 or not timed:
        with open(log_path) as f:
            tail = f.read().strip().splitlines()[-3:]
        rec["error"] = f"exited with status {rc}: " + "; ".join(tail)
    return rec


def run_case(args, name, side, work, env):
    """One side of one case in its own process; returns its record (with "error" on
    failure), or None when the diffusers side cannot import its packages."""
    metrics = os.path.join(work, "out", "metrics.jsonl")
    log_path = os.path.join(work, f"{side}.log")
    if side == "ours":
        config = os.path.join(work, "config.yaml")
        with open(config, "w") as f:
            f.write(our_config(args, CASES[name], work))
        cmd = [args.ours, "--config", config, "--quiet"]
    else:
        cmd = [sys.executable, os.path.abspath(__file__), "--diffusers-worker", "--model", args.model,
               "--tokenizer", args.tokenizer, "--instance-dir", args.instance_dir,
               "--class-dir", os.path.join(work, "class"), "--metrics", metrics,
               "--threads", str(args.threads), "--steps", str(args.steps)]
        if CASES[name]:
            cmd.append("--checkpointing")
    t0 = time.perf_counter()
    rc, steps, peaks = run_measured(cmd, env, metrics, log_path, side)
    wall = time.perf_counter() - t0
    if side == "diffusers" and rc == NO_DIFFUSERS_EXIT:
        return None
    meta = {}
    if side == "diffusers":
        with open(log_path) as f:
            for line in f:
                if line.startswith("{"):
                    meta = json.loads(line)
                    break
    rec = summarise(rc, steps, peaks, log_path, {"wall_seconds": wall, "meta": meta})
    if "error" in rec:
        print(f"warning: {side} {name}: {rec['error']}", file=sys.stderr)
    return rec


def new_workdir(root, args):
    """A case's folder: class/ with the one class image, out/ for the metrics."""
    work = tempfile.mkdtemp(prefix="case-", dir=root)
    os.makedirs(os.path.join(work, "class"))
    os.makedirs(os.path.join(work, "out"))
    shutil.copy(args.class_image, os.path.join(work, "class"))
    return work


def main():
    started = time.perf_counter()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ours", default="build/sdft-train", help="path to the sdft-train binary")
    ap.add_argument("--model", default="build/sd15-random",
                    help="the diffusers folder both sides train on (default: build/sd15-random)")
    ap.add_argument("--tokenizer", default="build/clip-tokenizer", help="a CLIP tokenizer folder")
    ap.add_argument("--instance-dir", default="../shared/data/dreambooth/dog", help="the subject's photos")
    ap.add_argument("--class-image", default="../shared/data/dreambooth/cat/00.jpg",
                    help="the one class image (copied into each case's class folder)")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                    help="threads for both sides (default: this machine's cores)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps after the warm-up step (default 3)")
    ap.add_argument("--only", action="append", default=[], choices=list(CASES),
                    help="run only this case (repeatable)")
    ap.add_argument("--json", help="also save the results to this file")
    ap.add_argument("--no-diffusers", action="store_true", help="time ours only")
    ap.add_argument("--diffusers-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--checkpointing", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--class-dir", help=argparse.SUPPRESS)
    ap.add_argument("--metrics", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads < 1 or args.steps < 1:
        ap.error("--threads and --steps must be at least 1")
    for what, path in (("--model", args.model), ("--tokenizer", args.tokenizer), ("--instance-dir", args.instance_dir)):
        if not os.path.isdir(path):
            ap.error(f"{what} {path}: not a folder")

    if args.diffusers_worker:
        diffusers_worker(args)
        return

    if not os.path.isfile(args.class_image):
        ap.error(f"--class-image {args.class_image}: no such file")
    names = args.only or list(CASES)
    ncpu = os.cpu_count() or 1
    load_start = os.getloadavg()[0]
    print(f"bench: {len(names)} training cases on {args.model}, {WARMUP_STEPS} warm-up + {args.steps} timed "
          f"steps a side, {args.threads} threads on {ncpu} cores, load average {load_start:.2f}"
          + ("; the machine is busy: timings will be noisy" if load_start > 0.5 * ncpu else ""),
          file=sys.stderr)
    env = thread_env(args.threads)
    env.setdefault("OMP_WAIT_POLICY", "passive")

    # One process per case and side (each loads the model): peaks are per case, and the
    # sides alternate, so a change in the machine's load hits both alike.
    results = {n: {} for n in names}
    have_ref = not args.no_diffusers
    skip_note = "diffusers reference not run (--no-diffusers)" if args.no_diffusers else None
    with tempfile.TemporaryDirectory(prefix="bench_train-") as root:
        for n in names:
            for side in ("ours", "diffusers") if have_ref else ("ours",):
                rec = run_case(args, n, side, new_workdir(root, args), env)
                if rec is None:
                    have_ref = False
                    skip_note = ("torch/diffusers/transformers/peft not available (run with "
                                 ".venv-golden/bin/python): reference SKIPPED")
                    continue
                results[n][side] = rec
    load_end = os.getloadavg()[0]
    wall = time.perf_counter() - started

    head = ["case", "ours (s/step)", "diffusers (s/step)", "ours / diffusers (< 1: ours faster)",
            "ours peak RSS, steps (MiB)", "diffusers peak RSS, steps (MiB)",
            "ours peak RSS, whole run (MiB)", "diffusers peak RSS, whole run (MiB)"]
    rows, records = [], []
    for n in names:
        o, r = results[n].get("ours"), results[n].get("diffusers")
        ok_o, ok_r = o and "seconds" in o, r and "seconds" in r
        ratio = o["seconds"] / r["seconds"] if ok_o and ok_r and r["seconds"] > 0 else None
        ref = lambda text: text if have_ref else "SKIPPED"  # noqa: E731
        rows.append([label(n), fmt_s(o) if ok_o else "FAILED", ref(fmt_s(r) if ok_r else "FAILED"),
                     f"{ratio:.2f}" if ratio is not None else "n/a",
                     fmt_mib(o, "peak_rss_steps_mib"), ref(fmt_mib(r, "peak_rss_steps_mib")),
                     fmt_mib(o), ref(fmt_mib(r))])
        records.append({"name": n, "label": label(n), "ours": o, "diffusers": r, "ratio": ratio})

    policy = env["OMP_WAIT_POLICY"]
    print(f"DreamBooth-LoRA training on the CPU, f32, {args.threads} thread(s) each side (OMP_WAIT_POLICY "
          f"{policy}); median of {args.steps} timed step(s) after {WARMUP_STEPS} warm-up; load average "
          f"{load_start:.2f} at the start, {load_end:.2f} at the end; {wall:.0f} s in all.")
    meta = next((rec["meta"] for res in results.values() for side, rec in res.items()
                 if side == "diffusers" and rec.get("meta")), {})
    if have_ref:
        print(f"diffusers {meta.get('diffusers_version', '?')} / peft {meta.get('peft_version', '?')} / "
              f"transformers {meta.get('transformers_version', '?')} on PyTorch {meta.get('torch_version', '?')} "
              f"(torch.get_num_threads() = {meta.get('threads', '?')}; attention "
              f"{', '.join(meta.get('attn_processor', ['?']))}), doing the loop body of "
              f"train_dreambooth_lora.py. Ratio = ours / diffusers: below 1 we are faster.")
    align = ["---"] + ["---:"] * (len(head) - 1)
    print("\n" + "\n".join("| " + " | ".join(r) + " |" for r in [head, align] + rows) + "\n")
    s = SETTINGS
    print(f"Both sides: {args.model}, photos {args.instance_dir} (random {s['resolution']}-pixel crops), one "
          f"class image, prompts \"{s['instance_prompt']}\" / \"{s['class_prompt']}\" encoded once, LoRA rank "
          f"{s['rank']} alpha {s['alpha']} on {', '.join(s['targets'])}, AdamW lr {s['learning_rate']:g} "
          f"(constant), clip {s['max_grad_norm']:g}, prior weight {s['prior_loss_weight']:g}, no Min-SNR. "
          f"A step: load and crop both images, VAE-encode them, noise, UNet forward and backward, "
          f"clip, AdamW.")
    print("Peak RSS, steps: the process's peak from the end of the warm-up step to its exit (weights "
          "included); whole run: its peak from start to exit, model loading included.")
    notes = [skip_note] + [f"{side} {n}: {rec['error']}" for n in names for side, rec in results[n].items()
                           if rec.get("error")]
    notes += [f"{side} {n}: a loss was not finite" for n in names for side, rec in results[n].items()
              if rec.get("steps") and not rec["finite_loss"]]
    if any(rec.get("steps") and not rec["peak_reset"] for res in results.values() for rec in res.values()):
        notes.append("note: /proc/PID/clear_refs refused a reset: the steps' peaks are n/a.")
    for note in filter(None, notes):
        print(note)

    if args.json:
        doc = {"threads": args.threads, "cores": ncpu, "load_average": [load_start, load_end],
               "omp_wait_policy": policy, "machine": platform.platform(), "model": args.model,
               "warmup_steps": WARMUP_STEPS, "timed_steps": args.steps, "settings": SETTINGS,
               "wall_seconds": wall, "notes": [n for n in notes if n], "cases": records}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")

    if any("seconds" not in results[n].get("ours", {}) for n in names):
        sys.exit(1)


if __name__ == "__main__":
    main()
