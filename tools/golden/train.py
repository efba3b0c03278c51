#!/usr/bin/env python3
"""Reference numbers for DreamBooth-LoRA training steps, as diffusers' scripts + peft compute them.

usage: train.py MODELS_DIR OUT_DIR   (make golden: tests/fixtures/models tests/fixtures/train)

Writes OUT_DIR/train.safetensors. Everything runs in float32 (as training runs), on
one thread, with the tiny model MODELS_DIR/tiny-sd (tools/golden/models.py) loaded with
from_pretrained; the noise scheduler is DDPMScheduler.from_pretrained(tiny-sd,
subfolder="scheduler") as the diffusers scripts build it (the v case adds
prediction_type="v_prediction"). The output is the same bytes on every run.

This docstring is the protocol the C test follows.

Cases (the names marked <case> carry the case as prefix, e.g. "eps_te.step0.loss"):
  eps_te   epsilon prediction, LoRA on the UNet and the text encoder; step 0 and 20
           optimizer steps
  v_unet   v-prediction, LoRA on the UNet only (text encoder frozen); step 0 only

1. LoRA. peft LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian",
   target_modules=["to_k", "to_q", "to_v", "to_out.0"]) added with unet.add_adapter,
   as train_dreambooth_lora.py does; with text-encoder LoRA also LoraConfig(r=4,
   lora_alpha=4, init_lora_weights="gaussian", target_modules=["q_proj", "k_proj",
   "v_proj", "out_proj"]) with text_encoder.add_adapter. Scaling alpha / r = 1,
   lora_dropout 0 (peft's Identity; peft applies it to the input of lora_A:
   y = base(x) + lora_B(lora_A(dropout(x))) * scaling). The base weights are frozen
   (requires_grad False). peft's gaussian init draws lora_A ~ N(0, (1/r)^2) and sets
   lora_B = 0; here both are then overwritten, in the models' module order (UNet
   first), from torch.Generator seed SEED*1000+salt: lora_A ~ N(0, (1/r)^2) (peft's
   std 1/r = 0.25) and lora_B ~ N(0, 0.02^2) (nonzero, so every gradient is nonzero).
     <case>.init.<module>.lora_A.weight   [4, in]   f32
     <case>.init.<module>.lora_B.weight   [out, 4]  f32
   <module> is the canonical name: "unet.down_blocks.0.attentions.0.transformer_blocks.
   0.attn1.to_q", "text_encoder.text_model.encoder.layers.0.self_attn.q_proj".
   UNet: 128 modules (16 transformer blocks x attn1, attn2 x 4), text encoder: 20
   (5 layers x 4).

2. Batch of 2, DreamBooth with prior preservation: row 0 the instance, row 1 the
   class image (the scripts' collate_fn puts instances first). The images and token
   ids are the same in both cases (no case prefix). 128x128 images, so
   16x16 latents: at 64x64 (8x8 latents) the mid block works at 1x1, its
   self-attention has one key, softmax is 1 whatever the scores, and attn1.to_q /
   to_k of the mid block get exactly zero gradients.
     pixel_values          [2, 3, 128, 128] f32 smooth synthetic images in [-1, 1]
     input_ids             [2, 77]          i32 BOS, 5-20 ids, EOS, EOS padding
     <case>.step0.vae_eps  [2, 4, 16, 16]   f32 N(0, 1)
     <case>.step0.noise    [2, 4, 16, 16]   f32 N(0, 1)
     <case>.step0.timesteps [2]             i32 uniform in [0, 1000) (int64 in torch);
                                                eps_te's instance row in [0, 100), where
                                                snr > 5 and the Min-SNR weight acts

3. Forward (the scripts' order):
     dist = vae.encode(pixel_values).latent_dist           (no grad; logvar clamped
                                                            to [-30, 20] by diffusers)
     latents = (dist.mean + exp(0.5 dist.logvar) * vae_eps) * 0.18215
                                                           (= latent_dist.sample())
     noisy = sqrt(ac[t]) latents + sqrt(1 - ac[t]) noise   (add_noise; ac =
             alphas_cumprod, float32: betas = linspace(sqrt(0.00085), sqrt(0.012),
             1000, float32)^2, ac = cumprod(1 - betas) in float32; sqrt taken in f32)
     ctx = text_encoder(input_ids)[0]                      (last_hidden_state, no
                                                            attention mask)
     pred = unet(noisy, timesteps, ctx).sample            (diffusers' timestep
                                                            embedding, in float32)
     target = noise (eps) or get_velocity(latents, noise, t) =
              sqrt(ac[t]) noise - sqrt(1 - ac[t]) latents (v)
   Intermediates of step 0 are stored to localise a mismatch:
     <case>.step0.latents, .noisy, .target, .pred  [2, 4, 16, 16]; .ctx [2, 77, 32]
     noise_schedule.alphas_cumprod [1000] (once)

4. Loss (train_dreambooth_lora_sdxl.py with --with_prior_preservation --snr_gamma 5):
     snr = (sqrt(ac[t]) / sqrt(1 - ac[t]))^2                (compute_snr, float32)
     w   = min(snr, 5) / snr          epsilon
           min(snr, 5) / (snr + 1)    v-prediction
     instance = mean over the instance rows of (mean over elements of (pred - target)^2) * w
                of that row's timestep (here the one row, row 0)
     prior    = mean over the class rows' elements of (pred - target)^2 (no weight)
     loss     = instance + 1.0 * prior
   <case>.step0.mse_weight [1] is w of the instance row.
   What diffusers 0.30.3's DreamBooth scripts actually compute differs in two ways,
   deliberately not followed here:
   - v-prediction: train_dreambooth_lora_sdxl.py (and train_dreambooth.py, the
     advanced sd15/sdxl scripts) use mse_loss_weights = min(snr, 5) / snr + 1 (the
     weight "floored to one"); the text_to_image scripts use min(snr, 5) / (snr + 1)
     (PR #5238, "Min-SNR Gamma: correct the fix for SNR weighted loss in
     v-prediction"). The latter, the Min-SNR paper's, is used here.
   - the script computes snr over all timesteps of the batch (instance and class)
     but the per-row losses over the instance half only, so loss[1] * w[2]
     broadcasts to [2] and the instance term becomes mse_instance * mean(w0, w1) (at
     a larger batch it fails to broadcast). Here w is the instance row's own.
   train_dreambooth_lora.py (SD1.x) in 0.30.3 has no --snr_gamma at all.

5. Step 0, with the initial LoRA tensors and the step-0 batch:
     <case>.step0.loss                          [1]  f32
     <case>.step0.grad.<module>.lora_A.weight   gradients of loss (before clipping)
     <case>.step0.grad.<module>.lora_B.weight

6. 20 optimizer steps (eps_te only). pixel_values and input_ids stay the same; each
   step k has its own vae_eps, noise and timesteps (step 0's are steps.*[0], so
   steps.loss[0] == step0.loss):
     eps_te.steps.vae_eps    [20, 2, 4, 16, 16]  f32
     eps_te.steps.noise      [20, 2, 4, 16, 16]  f32
     eps_te.steps.timesteps  [20, 2]           i32
   Each step: loss as in 4 -> backward -> total_norm = clip_grad_norm_(all LoRA
   tensors, 1.0) -> AdamW step -> LR scheduler step -> zero grads.
     clip_grad_norm_ (torch 1.13): total_norm = ||(||g_i||_2)_i||_2 over the tensors
       (UNet lora_A, lora_B per module in module order, then the text encoder's),
       coef = min(1, 1.0 / (total_norm + 1e-6)), every gradient multiplied by coef
       (always, also when coef is 1).
     AdamW (torch 1.13, single-tensor path): two param groups, UNet LoRA lr 1e-3,
       text-encoder LoRA lr 5e-4; betas (0.9, 0.999), eps 1e-8, weight_decay 1e-2:
         p *= 1 - lr wd; m = 0.9 m + 0.1 g; v = 0.999 v + 0.001 g^2;
         p -= (lr / (1 - 0.9^k)) * m / (sqrt(v) / sqrt(1 - 0.999^k) + eps), k = 1, 2, ...
     LR: diffusers.optimization.get_scheduler("cosine_with_restarts", optimizer,
       num_warmup_steps=3, num_training_steps=20, num_cycles=2) (LambdaLR of each
       group's lr; step 0's lr is 0, so its update only fills the moments).
     eps_te.steps.loss        [20]  the loss of step k's batch before its update
     eps_te.steps.grad_norm   [20]  total_norm before clipping
     eps_te.steps.lr_unet     [20]  the lr step k's update used (param_groups[g]["lr"])
     eps_te.steps.lr_te       [20]
     eps_te.final.<module>.lora_A.weight / lora_B.weight   after the 20 updates
     eps_te.steps.loss_final  [20]  each step's batch evaluated again with the final
                                    tensors (no grad): a forward-only check
   The lrs are computed in double by LambdaLR and stored rounded to f32.

7. LR schedules alone: get_scheduler(name, AdamW(lr=1e-4), num_warmup_steps=5,
   num_training_steps=50, ...) for constant, constant_with_warmup, linear, cosine,
   cosine_with_restarts (num_cycles=3), polynomial (power=2.0; lr_end is always
   diffusers' default 1e-7, get_scheduler cannot pass it):
     lr.<name>  [50]  param_groups[0]["lr"] before each of 50 scheduler.step()s
   get_scheduler passes num_cycles only to cosine_with_restarts: "cosine" always has
   get_cosine_schedule_with_warmup's default num_cycles = 0.5 (half a cosine down to
   0), whatever --lr_num_cycles says.

Metadata: format_version, generator, seed, protocol (JSON of the settings above),
torch/diffusers/transformers/peft versions.

Checks that stop the script: peft's scaling is 1 for every adapted layer and no
dropout is active; every LoRA gradient of step 0 is nonzero; the base (non-LoRA)
weights of the UNet, text encoder and VAE are bit-identical after training; training
lowers the loss on average (over the 20 batches, final tensors against initial ones,
and steps.loss[10..19] against the same batches' losses with the initial tensors:
steps.loss itself swings with the timesteps drawn); steps.loss[0] == step0.loss.
It also prints how far float32 is from a float64 recomputation of step 0 (exact
timestep embedding, no attention upcast; models.py's tricks): about 1e-7 on the loss
and 5e-6 on the worst gradient tensor, the tolerance a float32 reimplementation can
expect.
"""
import json
import math
import pathlib
import sys

import torch
import torch.nn.functional as F

import diffusers
import peft
import transformers
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import compute_snr
from peft import LoraConfig
from peft.tuners.lora import LoraLayer
from transformers import CLIPTextModel

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import models  # noqa: E402  (also applies the torch 1.13 baddbmm fix)

FORMAT_VERSION = "1"
SEED = 2468

RANK = 4
ALPHA = 4
UNET_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]
TE_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
LORA_A_STD = 1.0 / RANK  # peft's "gaussian" init
LORA_B_STD = 0.02
BATCH = 2
RESOLUTION = 128  # latents 16x16: the mid block then attends over 2x2 (see the docstring)
SNR_GAMMA = 5.0
PRIOR_LOSS_WEIGHT = 1.0
N_STEPS = 20
LR_UNET = 1e-3
LR_TE = 5e-4
BETAS = (0.9, 0.999)
WEIGHT_DECAY = 1e-2
ADAM_EPS = 1e-8
MAX_GRAD_NORM = 1.0
TRAIN_SCHEDULE = dict(name="cosine_with_restarts", num_warmup_steps=3, num_training_steps=N_STEPS, num_cycles=2)
LR_TABLE = dict(base_lr=1e-4, num_warmup_steps=5, num_training_steps=50)
LR_TABLES = {
    "constant": {},
    "constant_with_warmup": {},
    "linear": {},
    "cosine": {},
    "cosine_with_restarts": {"num_cycles": 3},
    "polynomial": {"power": 2.0},
}
CASES = {
    # eps_te's step-0 instance timestep is drawn below 100, where snr > gamma and the
    # Min-SNR weight is below 1 (it is 1 for t above about 130).
    "eps_te": dict(prediction_type="epsilon", train_text_encoder=True, steps=N_STEPS, salt=10,
                   step0_instance_t_below=100),
    "v_unet": dict(prediction_type="v_prediction", train_text_encoder=False, steps=0, salt=20,
                   step0_instance_t_below=0),
}


# --- models ---------------------------------------------------------------------------------------

def load(models_dir, case):
    root = models_dir / "tiny-sd"
    te = CLIPTextModel.from_pretrained(root, subfolder="text_encoder")
    unet = UNet2DConditionModel.from_pretrained(root, subfolder="unet")
    vae = AutoencoderKL.from_pretrained(root, subfolder="vae")
    sched = DDPMScheduler.from_pretrained(root, subfolder="scheduler", prediction_type=case["prediction_type"])
    if sched.config.prediction_type != case["prediction_type"]:
        sys.exit(f"train.py: scheduler prediction_type {sched.config.prediction_type}")
    for m in (te, unet, vae):
        m.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=RANK, lora_alpha=ALPHA, init_lora_weights="gaussian",
                                target_modules=UNET_TARGETS))
    if case["train_text_encoder"]:
        te.add_adapter(LoraConfig(r=RANK, lora_alpha=ALPHA, init_lora_weights="gaussian",
                                  target_modules=TE_TARGETS))
    vae.eval()
    unet.train()
    te.train() if case["train_text_encoder"] else te.eval()
    return te, unet, vae, sched


def lora_layers(te, unet):
    """[(canonical module, LoraLayer)] in module order, UNet first."""
    out = []
    for prefix, model in (("unet", unet), ("text_encoder", te)):
        for name, mod in model.named_modules():
            if isinstance(mod, LoraLayer):
                out.append((f"{prefix}.{name}", mod))
    return out


def lora_tensors(layers):
    """{"<module>.lora_A.weight": parameter, ...}, A then B per module, in order."""
    out = {}
    for name, layer in layers:
        out[f"{name}.lora_A.weight"] = layer.lora_A["default"].weight
        out[f"{name}.lora_B.weight"] = layer.lora_B["default"].weight
    return out


def check_layers(te, unet, layers, case):
    problems = []
    n_unet = sum(1 for n, _ in layers if n.startswith("unet."))
    n_te = len(layers) - n_unet
    if n_unet != 128 or n_te != (20 if case["train_text_encoder"] else 0):
        problems.append(f"{n_unet} UNet and {n_te} text-encoder LoRA layers")
    for name, layer in layers:
        if list(layer.lora_A.keys()) != ["default"]:
            problems.append(f"{name}: adapters {list(layer.lora_A.keys())}")
        if layer.scaling["default"] != 1.0:
            problems.append(f"{name}: peft scaling {layer.scaling['default']} != alpha / r = 1")
        if not isinstance(layer.lora_dropout["default"], torch.nn.Identity):
            problems.append(f"{name}: lora dropout {layer.lora_dropout['default']}")
        if layer.lora_A["default"].bias is not None or layer.lora_B["default"].bias is not None:
            problems.append(f"{name}: LoRA with a bias")
    for model in (te, unet):
        for n, m in model.named_modules():
            if isinstance(m, torch.nn.Dropout) and m.p != 0:
                problems.append(f"dropout {m.p} at {n}")
    if problems:
        sys.exit("train.py: the LoRA setup is not as the protocol says:\n  " + "\n  ".join(problems[:20]))


def redraw(layers, gen):
    with torch.no_grad():
        for _, layer in layers:
            a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
            a.copy_(torch.randn(a.shape, generator=gen) * LORA_A_STD)
            b.copy_(torch.randn(b.shape, generator=gen) * LORA_B_STD)


def base_weights(te, unet, vae):
    return {f"{p}.{n}": t.detach().clone()
            for p, m in (("text_encoder", te), ("unet", unet), ("vae", vae))
            for n, t in m.named_parameters() if "lora_" not in n}


# --- inputs ---------------------------------------------------------------------------------------

def smooth_images(gen, n=BATCH, size=RESOLUTION):
    """tanh of a few low-frequency plane waves per channel: smooth, in (-1, 1)."""
    y, x = torch.meshgrid(torch.arange(size) / size, torch.arange(size) / size, indexing="ij")
    out = torch.zeros(n, 3, size, size)
    for i in range(n):
        for c in range(3):
            acc = 0.3 * torch.randn((), generator=gen)
            for _ in range(4):
                fx, fy = (torch.rand(2, generator=gen) * 6 - 3).tolist()
                phase = float(torch.rand((), generator=gen)) * 2 * math.pi
                amp = 0.3 + 0.5 * float(torch.rand((), generator=gen))
                acc = acc + amp * torch.cos(2 * math.pi * (fx * x + fy * y) + phase)
            out[i, c] = torch.tanh(1.2 * acc)
    return out


def step_inputs(gen, n_steps):
    return {
        "vae_eps": torch.randn(n_steps, BATCH, 4, RESOLUTION // 8, RESOLUTION // 8, generator=gen),
        "noise": torch.randn(n_steps, BATCH, 4, RESOLUTION // 8, RESOLUTION // 8, generator=gen),
        "timesteps": torch.randint(0, 1000, (n_steps, BATCH), generator=gen),
    }


# --- the training step ------------------------------------------------------------------------------

def forward(te, unet, vae, sched, pixel_values, input_ids, vae_eps, noise, timesteps, train_te):
    with torch.no_grad():
        dist = vae.encode(pixel_values).latent_dist
        latents = (dist.mean + dist.std * vae_eps) * vae.config.scaling_factor
    noisy = sched.add_noise(latents, noise, timesteps)
    with torch.set_grad_enabled(train_te and torch.is_grad_enabled()):
        ctx = te(input_ids)[0]
    pred = unet(noisy, timesteps, ctx).sample
    if sched.config.prediction_type == "epsilon":
        target = noise
    else:
        target = sched.get_velocity(latents, noise, timesteps)
    return dict(latents=latents, noisy=noisy, ctx=ctx, pred=pred, target=target)


def loss_of(sched, pred, target, timesteps):
    """The protocol's loss (docstring, 4): returns (loss, w of the instance rows)."""
    half = pred.shape[0] // 2
    snr = compute_snr(sched, timesteps[:half])
    base = torch.stack([snr, SNR_GAMMA * torch.ones_like(snr)], dim=1).min(dim=1)[0]
    w = base / snr if sched.config.prediction_type == "epsilon" else base / (snr + 1)
    # The scripts' .float() (a no-op in float32; kept out of the float64 recomputation).
    up = (lambda t: t) if pred.dtype == torch.float64 else (lambda t: t.float())
    inst = F.mse_loss(up(pred[:half]), up(target[:half]), reduction="none")
    inst = (inst.mean(dim=list(range(1, inst.dim()))) * w).mean()
    prior = F.mse_loss(up(pred[half:]), up(target[half:]), reduction="mean")
    return inst + PRIOR_LOSS_WEIGHT * prior, w


def script_loss(sched, pred, target, timesteps):
    """What train_dreambooth_lora_sdxl.py (0.30.3) computes literally, for the report."""
    snr = compute_snr(sched, timesteps)
    base = torch.stack([snr, SNR_GAMMA * torch.ones_like(timesteps)], dim=1).min(dim=1)[0] / snr
    w = base + 1 if sched.config.prediction_type == "v_prediction" else base
    p, pp = torch.chunk(pred, 2, dim=0)
    t, tp = torch.chunk(target, 2, dim=0)
    prior = F.mse_loss(pp.float(), tp.float(), reduction="mean")
    loss = F.mse_loss(p.float(), t.float(), reduction="none")
    loss = (loss.mean(dim=list(range(1, loss.dim()))) * w).mean()
    return float(loss + PRIOR_LOSS_WEIGHT * prior)


def batch(case_inputs, steps, k):
    return dict(pixel_values=case_inputs["pixel_values"], input_ids=case_inputs["input_ids"],
                vae_eps=steps["vae_eps"][k], noise=steps["noise"][k], timesteps=steps["timesteps"][k])


def rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


def float64_step0(te, unet, vae, sched, b, train_te, ref_loss, ref_grads):
    """Step 0 again in float64 (models.py's tricks); prints how far float32 is from it."""
    te64, unet64, vae64 = models.as_float64(te), models.as_float64(unet), models.as_float64(vae)
    layers = lora_layers(te64, unet64)
    if not train_te:
        layers = [(n, m) for n, m in layers if n.startswith("unet.")]
    params = lora_tensors(layers)
    embedding = diffusers.models.embeddings.get_timestep_embedding
    diffusers.models.embeddings.get_timestep_embedding = models.timestep_embedding_f64
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        out = forward(te64, unet64, vae64, sched, b["pixel_values"].double(), b["input_ids"],
                      b["vae_eps"].double(), b["noise"].double(), b["timesteps"], train_te)
        loss, _ = loss_of(sched, out["pred"], out["target"], b["timesteps"])
        grads = torch.autograd.grad(loss, list(params.values()))
    finally:
        torch.set_default_dtype(default_dtype)
        diffusers.models.embeddings.get_timestep_embedding = embedding
    worst = max(rel(ref_grads[k], g) for k, g in zip(params, grads))
    return abs(float(ref_loss) - float(loss)) / abs(float(loss)), worst


def run_case(name, case, models_dir, inputs, results, report):
    torch.manual_seed(SEED)  # peft's own init draws, replaced below
    te, unet, vae, sched = load(models_dir, case)
    train_te = case["train_text_encoder"]
    layers = lora_layers(te, unet)
    check_layers(te, unet, layers, case)
    gen = models.generator(SEED, case["salt"])
    redraw(layers, gen)
    params = lora_tensors(layers)
    before = base_weights(te, unet, vae)

    n = max(case["steps"], 1)
    steps = step_inputs(gen, n)
    if case["step0_instance_t_below"]:
        steps["timesteps"][0, 0] = torch.randint(0, case["step0_instance_t_below"], (), generator=gen)
    P = f"{name}."
    for k, t in params.items():
        results[f"{P}init.{k}"] = t.detach().clone()

    # Step 0.
    b = batch(inputs, steps, 0)
    out = forward(te, unet, vae, sched, **b, train_te=train_te)
    loss, w = loss_of(sched, out["pred"], out["target"], b["timesteps"])
    grads = torch.autograd.grad(loss, list(params.values()))
    grads = dict(zip(params, grads))
    zero = [k for k, g in grads.items() if not bool(g.abs().max() > 0)]
    if zero:
        sys.exit(f"train.py: {name}: zero gradients for {zero[:5]} ({len(zero)} in all)")
    results[P + "step0.loss"] = loss.detach().reshape(1)
    results[P + "step0.mse_weight"] = w.detach().reshape(1).float()
    results[P + "step0.vae_eps"] = b["vae_eps"]
    results[P + "step0.noise"] = b["noise"]
    results[P + "step0.timesteps"] = b["timesteps"].to(torch.int32)
    for k in ("latents", "noisy", "target", "pred", "ctx"):
        results[f"{P}step0.{k}"] = out[k].detach().contiguous()
    for k, g in grads.items():
        results[f"{P}step0.grad.{k}"] = g.contiguous()
    n_zero = sum(int((g == 0).sum()) for g in grads.values())
    report.append(f"{name}: step 0 loss {float(loss):.6f} (t = {b['timesteps'].tolist()}, instance weight "
                  f"{float(w):.5f}); diffusers 0.30.3's sdxl script would give "
                  f"{script_loss(sched, out['pred'].detach(), out['target'], b['timesteps']):.6f}; "
                  f"{len(grads)} LoRA tensors, {n_zero} zero gradient elements")
    d_loss, d_grad = float64_step0(te, unet, vae, sched, b, train_te, loss, grads)
    report.append(f"{name}: float32 vs float64 step 0: loss {d_loss:.2e}, worst gradient tensor {d_grad:.2e} (relative)")

    if case["steps"]:
        train(name, te, unet, vae, sched, inputs, steps, params, layers, train_te, results, report)
        loss_check = float(results[P + "steps.loss"][0])
        if loss_check != float(results[P + "step0.loss"][0]):
            sys.exit(f"train.py: {name}: steps.loss[0] {loss_check} != step0.loss")

    after = base_weights(te, unet, vae)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    if changed or before.keys() != after.keys():
        sys.exit(f"train.py: {name}: base weights changed: {changed[:5]}")


def train(name, te, unet, vae, sched, inputs, steps, params, layers, train_te, results, report):
    P = f"{name}."
    unet_p = [t for k, t in params.items() if k.startswith("unet.")]
    te_p = [t for k, t in params.items() if k.startswith("text_encoder.")]
    for t in params.values():
        if not t.requires_grad:
            sys.exit(f"train.py: {name}: a LoRA tensor without requires_grad")
    opt = torch.optim.AdamW([{"params": unet_p, "lr": LR_UNET}, {"params": te_p, "lr": LR_TE}],
                            lr=LR_UNET, betas=BETAS, weight_decay=WEIGHT_DECAY, eps=ADAM_EPS)
    sch = TRAIN_SCHEDULE
    lr_sched = get_scheduler(sch["name"], opt, num_warmup_steps=sch["num_warmup_steps"],
                             num_training_steps=sch["num_training_steps"], num_cycles=sch["num_cycles"])
    losses, norms, lr_u, lr_t = [], [], [], []
    for k in range(N_STEPS):
        b = batch(inputs, steps, k)
        out = forward(te, unet, vae, sched, **b, train_te=train_te)
        loss, _ = loss_of(sched, out["pred"], out["target"], b["timesteps"])
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(list(params.values()), MAX_GRAD_NORM)
        losses.append(float(loss))
        norms.append(float(norm))
        lr_u.append(opt.param_groups[0]["lr"])
        lr_t.append(opt.param_groups[1]["lr"])
        opt.step()
        lr_sched.step()
        opt.zero_grad()

    # Each step's batch again, with the initial and with the final tensors.
    final = {k: t.detach().clone() for k, t in params.items()}
    init = {k: results[f"{P}init.{k}"] for k in params}

    def eval_all(values):
        with torch.no_grad():
            for k, t in params.items():
                t.copy_(values[k])
            out_losses = []
            for k in range(N_STEPS):
                b = batch(inputs, steps, k)
                o = forward(te, unet, vae, sched, **b, train_te=train_te)
                out_losses.append(float(loss_of(sched, o["pred"], o["target"], b["timesteps"])[0]))
        return out_losses

    loss_init = eval_all(init)
    loss_final = eval_all(final)
    with torch.no_grad():
        for k, t in params.items():
            t.copy_(final[k])

    results[P + "steps.vae_eps"] = steps["vae_eps"]
    results[P + "steps.noise"] = steps["noise"]
    results[P + "steps.timesteps"] = steps["timesteps"].to(torch.int32)
    results[P + "steps.loss"] = torch.tensor(losses, dtype=torch.float32)
    results[P + "steps.grad_norm"] = torch.tensor(norms, dtype=torch.float32)
    results[P + "steps.lr_unet"] = torch.tensor(lr_u, dtype=torch.float32)
    results[P + "steps.lr_te"] = torch.tensor(lr_t, dtype=torch.float32)
    results[P + "steps.loss_final"] = torch.tensor(loss_final, dtype=torch.float32)
    for k, t in final.items():
        results[f"{P}final.{k}"] = t.contiguous()

    mean = lambda v: sum(v) / len(v)  # noqa: E731
    h = N_STEPS // 2
    report.append(f"{name}: steps.loss " + " ".join(f"{v:.4f}" for v in losses))
    report.append(f"{name}: steps.grad_norm " + " ".join(f"{v:.3f}" for v in norms))
    report.append(f"{name}: steps.lr_unet " + " ".join(f"{v:.3g}" for v in lr_u))
    report.append(f"{name}: the 20 batches' mean loss: initial tensors {mean(loss_init):.5f}, final "
                  f"{mean(loss_final):.5f} (lower on {sum(f < i for f, i in zip(loss_final, loss_init))}/20); "
                  f"steps.loss first half {mean(losses[:h]):.5f}, second half {mean(losses[h:]):.5f}")
    moved = max(float((final[k] - init[k]).abs().max()) for k in params)
    report.append(f"{name}: largest change of a LoRA element over training {moved:.3g}")
    if not mean(loss_final) < mean(loss_init):
        sys.exit(f"train.py: {name}: training did not lower the loss on its batches")
    # steps.loss itself swings with the timesteps drawn (step 8's instance row has
    # t = 4, weight 5 / snr ~ 0.005), so the fall is measured on the same batches:
    # each step's loss against its batch's loss with the initial tensors.
    drop = [i - s for s, i in zip(losses[h:], loss_init[h:])]
    report.append(f"{name}: steps {h}..{N_STEPS - 1}: loss below the initial tensors' on the same batch by "
                  f"{mean(drop):.5f} on average (on {sum(d > 0 for d in drop)}/{len(drop)})")
    if not mean(drop) > 0:
        sys.exit(f"train.py: {name}: steps.loss did not fall below the initial tensors' loss on average")


def lr_tables(results):
    for name, extra in LR_TABLES.items():
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.AdamW([p], lr=LR_TABLE["base_lr"])
        s = get_scheduler(name, opt, num_warmup_steps=LR_TABLE["num_warmup_steps"],
                          num_training_steps=LR_TABLE["num_training_steps"], **extra)
        lrs = []
        for _ in range(LR_TABLE["num_training_steps"]):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()  # no gradient: nothing changes; keeps LambdaLR's order warning quiet
            s.step()
        results[f"lr.{name}"] = torch.tensor(lrs, dtype=torch.float32)


def protocol():
    return {
        "rank": RANK, "lora_alpha": ALPHA, "init_lora_weights": "gaussian",
        "unet_target_modules": UNET_TARGETS, "text_encoder_target_modules": TE_TARGETS,
        "lora_A_std": LORA_A_STD, "lora_B_std": LORA_B_STD,
        "batch": BATCH, "resolution": RESOLUTION, "rows": ["instance", "class"],
        "snr_gamma": SNR_GAMMA, "prior_loss_weight": PRIOR_LOSS_WEIGHT,
        "snr_weight": {"epsilon": "min(snr,gamma)/snr", "v_prediction": "min(snr,gamma)/(snr+1)"},
        "noise_scheduler": "DDPMScheduler.from_pretrained(tiny-sd, subfolder=scheduler)",
        "cases": {k: {kk: vv for kk, vv in v.items() if kk != "salt"} for k, v in CASES.items()},
        "optimizer": {"name": "AdamW", "lr_unet": LR_UNET, "lr_text_encoder": LR_TE, "betas": list(BETAS),
                      "weight_decay": WEIGHT_DECAY, "eps": ADAM_EPS},
        "max_grad_norm": MAX_GRAD_NORM, "clip_eps": 1e-6,
        "lr_scheduler": TRAIN_SCHEDULE,
        "lr_tables": {**LR_TABLE, "schedules": LR_TABLES},
    }


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: train.py MODELS_DIR OUT_DIR")
    models_dir, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    diffusers.utils.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()

    gen = models.generator(SEED, 0)
    inputs = {"pixel_values": smooth_images(gen), "input_ids": models.token_ids(gen, batch=BATCH)}
    results = {"pixel_values": inputs["pixel_values"], "input_ids": inputs["input_ids"].to(torch.int32)}
    report = []
    for name, case in CASES.items():
        run_case(name, case, models_dir, inputs, results, report)
    sched = DDPMScheduler.from_pretrained(models_dir / "tiny-sd", subfolder="scheduler")
    results["noise_schedule.alphas_cumprod"] = sched.alphas_cumprod.to(torch.float32).contiguous()
    lr_tables(results)

    metadata = {
        "format_version": FORMAT_VERSION, "generator": "tools/golden/train.py", "seed": str(SEED),
        "protocol": json.dumps(protocol(), sort_keys=True),
        "torch_version": torch.__version__, "diffusers_version": diffusers.__version__,
        "transformers_version": transformers.__version__, "peft_version": peft.__version__,
    }
    results = {k: v.detach().clone().contiguous() for k, v in results.items()}
    path = out / "train.safetensors"
    models.save_sorted(results, path, metadata)
    for line in report:
        print(f"train.py: {line}")
    print(f"train.py: wrote {path} ({len(results)} tensors, {path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
