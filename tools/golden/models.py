#!/usr/bin/env python3
"""Writes tiny Stable Diffusion 1.x models and their reference outputs.

usage: models.py OUT_DIR          (make golden: OUT_DIR = tests/fixtures/models)

Models with SD1.5's structure and small widths, built with diffusers/transformers
from a fixed seed:

  tiny-sd/                      a diffusers folder as StableDiffusionPipeline.save_pretrained
                                writes it (no tokenizer/: that is built from the vocab
                                file at build time)
  tiny-unet-v2/                 a second UNet with SD2.x's options (linear projections,
                                heads per block, upcast_attention, 2 transformer layers
                                in one block)
  tiny-sd.safetensors           tiny-sd's weights in the original LDM single-file layout, in
                                float16 (every weight is drawn exact in float16, so both
                                files hold the same values)
                                (tools/golden/ldm_names.py), checked against diffusers'
                                own single-file converters before anything is kept
  tiny-sd-outputs.safetensors   inputs and outputs of each model, computed in float64
                                with the stored float32 weights, stored as float32 in
                                torch's layout (NCHW, [B, T, C])

Every parameter is re-drawn after construction (init_weights) so that nothing is
zero or one: diffusers zero-initialises some output layers and norms start at
gamma 1 / beta 0, which would hide a missing or swapped parameter. The scales keep
activations O(1) through the whole net; the script prints the RMS range of every
module's output to show it. The output is the same bytes on every run.
"""
import copy
import json
import math
import pathlib
import shutil
import sys

import torch
from torch import nn

import diffusers
import transformers
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from diffusers.loaders import single_file_utils as sfu
from safetensors.torch import load_file, save, save_file
from transformers import CLIPTextConfig, CLIPTextModel

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import ldm_names  # noqa: E402


def _baddbmm_beta0_ignores_input():
    # Debian's torch 1.13 lets a NaN in baddbmm's `input` through when beta == 0
    # for some small shapes (seen at [16, 4, 4]); diffusers' attention passes an
    # uninitialised torch.empty there with beta 0, so its outputs turn NaN at random.
    # Every golden script imports this module, so the fix is made once, here.
    baddbmm = torch.baddbmm

    def safe(input, batch1, batch2, *, beta=1, alpha=1, out=None):
        if beta == 0 and out is None:
            return torch.bmm(batch1, batch2) * alpha
        return baddbmm(input, batch1, batch2, beta=beta, alpha=alpha, out=out)

    torch.baddbmm = safe


_baddbmm_beta0_ignores_input()

HERE = pathlib.Path(__file__).resolve().parent
FORMAT_VERSION = "1"
SEED = 1234
BOS, EOS = 49406, 49407

# SD1.5's CLIP ViT-L/14 text model at width 32: the real vocabulary so real token ids
# work, the real 77 positions.
CLIP_CONFIG = dict(
    vocab_size=49408, hidden_size=32, intermediate_size=37, num_attention_heads=4,
    num_hidden_layers=5, max_position_embeddings=77, hidden_act="quick_gelu",
    layer_norm_eps=1e-5, projection_dim=32, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=1,
)

# SD1.5's unet/config.json with small widths. attention_head_dim is, for SD1 in
# diffusers, the number of heads. (32, 32, 64, 64) came to 2.4 M parameters (9.8 MB),
# over the budget, so the widths are halved.
UNET_CONFIG = dict(
    sample_size=16, in_channels=4, out_channels=4, center_input_sample=False,
    flip_sin_to_cos=True, freq_shift=0,
    down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    block_out_channels=[16, 16, 32, 32], layers_per_block=2, downsample_padding=1,
    mid_block_scale_factor=1, act_fn="silu", norm_num_groups=8, norm_eps=1e-5,
    cross_attention_dim=32, attention_head_dim=4, use_linear_projection=False,
)

# SD2.x's options: linear proj_in/proj_out, heads per block (again diffusers'
# attention_head_dim means heads), upcast_attention, and two transformer layers in
# down block 1 (diffusers mirrors the list for the up blocks: [1, 1, 2, 1]).
UNET_V2_CONFIG = dict(
    UNET_CONFIG, cross_attention_dim=48, attention_head_dim=[2, 4, 4, 4],
    use_linear_projection=True, upcast_attention=True, transformer_layers_per_block=[1, 2, 1, 1],
)

VAE_CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=4, sample_size=32, act_fn="silu",
    down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
    block_out_channels=[16, 32, 32, 32], layers_per_block=2, norm_num_groups=8,
    scaling_factor=0.18215,
)

# PNDM with SD1.5's scheduler settings.
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False,
)

EMBEDDING_STD = 0.5 ** 0.5  # token + position embedding then has unit variance
# A residual branch's last layer adds to the stream that every later block reads; a
# gain below 1 there keeps the stream's RMS from growing with depth.
RESIDUAL_OUT_GAIN = 0.5


def _is_residual_out(name):
    # diffusers/transformers names of the layers that end a residual branch.
    return any(s in name for s in (".conv2.", ".to_out.0.", ".proj_out.", ".ff.net.2.", ".fc2.", ".out_proj."))


def init_rule(model):
    """The distribution of each parameter of model, in named_parameters order: a list of
    (name, offset, std), the value drawn being offset + std * N(0, 1).

    Weights ~ N(0, g^2 / fan_in) (g = RESIDUAL_OUT_GAIN at the end of a residual
    branch, else 1), norm gammas 1 + 0.1 N, biases and norm betas 0.1 N, embedding
    tables N(0, 1/2). Needs only the shapes: tools/sd15_manifest.py reads it from
    models on the meta device.
    """
    kinds = {}
    for mname, mod in model.named_modules():
        for pname, _ in mod.named_parameters(recurse=False):
            full = f"{mname}.{pname}" if mname else pname
            if isinstance(mod, (nn.GroupNorm, nn.LayerNorm)):
                kinds[full] = "gamma" if pname == "weight" else "bias"
            elif isinstance(mod, nn.Embedding):
                kinds[full] = "embedding"
    rule = []
    for name, p in model.named_parameters():
        kind = kinds.get(name, "bias" if p.dim() == 1 else "weight")
        if kind == "gamma":
            rule.append((name, 1.0, 0.1))
        elif kind == "bias":
            rule.append((name, 0.0, 0.1))
        elif kind == "embedding":
            rule.append((name, 0.0, EMBEDDING_STD))
        else:
            gain = RESIDUAL_OUT_GAIN if _is_residual_out("." + name) else 1.0
            rule.append((name, 0.0, gain / math.sqrt(p[0].numel())))
    return rule


def init_weights(model, gen):
    """Redraws every parameter of model in place from gen, as init_rule says."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, offset, std in init_rule(model):
            p = params[name]
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            p.copy_(offset + noise * std if offset else noise * std)
            # Values exact in float16, so the float16 single file holds the same
            # numbers as the float32 folder (and the fixture tests f16 loading).
            p.copy_(p.half().float())


def generator(seed, salt):
    # One stream per use, so adding a model or an input leaves the others unchanged.
    return torch.Generator().manual_seed(seed * 1000 + salt)


def build_models(seed):
    te = CLIPTextModel(CLIPTextConfig(**CLIP_CONFIG)).eval()
    unet = UNet2DConditionModel(**UNET_CONFIG).eval()
    vae = AutoencoderKL(**VAE_CONFIG).eval()
    unet_v2 = UNet2DConditionModel(**UNET_V2_CONFIG).eval()
    for salt, model in enumerate((te, unet, vae, unet_v2)):
        init_weights(model, generator(seed, salt))
    return te, unet, vae, unet_v2


def token_ids(gen, batch=2, length=77):
    """BOS, 5-20 ids from the ordinary vocabulary, EOS, then EOS padding as SD1.5 pads."""
    rows = []
    for _ in range(batch):
        n = int(torch.randint(5, 21, (1,), generator=gen))
        ids = torch.randint(0, BOS, (n,), generator=gen).tolist()
        rows.append([BOS] + ids + [EOS] * (length - n - 1))
    return torch.tensor(rows, dtype=torch.int64)


# --- saving --------------------------------------------------------------------------------

def save_sorted(tensors, path, metadata):
    """safetensors' save_file with the metadata in sorted order.

    The Rust side keeps metadata in a hash map, so its order (and the file's bytes)
    changes from run to run; the header is rewritten with the keys sorted, padded
    with spaces to 8 bytes as the library pads it. Written to a temporary name and
    renamed, so a failed run leaves the old file.
    """
    data = save(tensors, metadata=metadata)
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    header = dict(sorted(header.items(), key=lambda kv: kv[0] != "__metadata__"))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path = pathlib.Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(len(text).to_bytes(8, "little") + text + data[8 + n:])
    tmp.replace(path)


def write_json(path, obj):
    # diffusers' own formatting (configuration_utils.to_json_string).
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_folder(root, te, unet, vae):
    scheduler = PNDMScheduler(**SCHEDULER_CONFIG)
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=te, tokenizer=None, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(root, safe_serialization=True)
    # The pipeline had no tokenizer object to save, so diffusers wrote [null, null];
    # the folder gets its tokenizer/ at build time, so the entry names it as SD1.5 does.
    index_path = root / "model_index.json"
    index = json.loads(index_path.read_text())
    index["tokenizer"] = ["transformers", "CLIPTokenizer"]
    write_json(index_path, index)
    # SD1.5's scheduler file as it ships: it also names options other samplers read
    # (clip_sample: false), which a PNDMScheduler would not write back.
    shutil.copyfile(HERE.parent / "sd15_configs" / "scheduler.json", root / "scheduler" / "scheduler_config.json")


def single_file_dict(te, unet, vae):
    position_ids = torch.arange(CLIP_CONFIG["max_position_embeddings"], dtype=torch.int64)[None]
    return ldm_names.to_single_file(
        unet.state_dict(), dict(unet.config), vae.state_dict(), dict(vae.config),
        te.state_dict(), position_ids=position_ids,
    )


def verify_single_file(ldm, unet_sd, unet_config, vae_sd, vae_config, te_sd, what):
    """Converts ldm back with diffusers' converters; every tensor must come back exact."""
    ldm = dict(ldm)  # the converters only read it, but a copy keeps that true
    back = {}
    if unet_sd:
        back["unet"] = (sfu.convert_ldm_unet_checkpoint(ldm, unet_config), unet_sd)
    if vae_sd:
        back["vae"] = (sfu.convert_ldm_vae_checkpoint(ldm, vae_config), vae_sd)
    if te_sd:
        back["text_encoder"] = (sfu.convert_ldm_clip_checkpoint(ldm), te_sd)
    # The only key diffusers hands on that the model does not have: the position_ids
    # buffer, which transformers no longer saves (non-persistent since 4.31).
    allowed_extra = {"text_encoder": {"text_model.embeddings.position_ids"}}
    problems = []
    for part, (got, want) in back.items():
        missing = sorted(want.keys() - got.keys())
        extra = sorted(got.keys() - want.keys() - allowed_extra.get(part, set()))
        problems += [f"{part}: missing {k}" for k in missing] + [f"{part}: extra {k}" for k in extra]
        for k in sorted(want.keys() & got.keys()):
            a, b = got[k], want[k]
            # The single file is float16; its values are exactly the folder's.
            if a.is_floating_point():
                a = a.float()
            if a.dtype != b.dtype or a.shape != b.shape or not torch.equal(a, b):
                problems.append(f"{part}: {k} differs ({tuple(a.shape)} vs {tuple(b.shape)})")
    if problems:
        sys.exit(f"models.py: {what}: the LDM layout does not convert back exactly:\n  "
                 + "\n  ".join(problems[:40]) + (f"\n  ... {len(problems)} in all" if len(problems) > 40 else ""))
    n = sum(len(w) for _, w in back.values())
    print(f"models.py: {what}: {n} tensors convert back exactly with diffusers' converters")


# --- float64 reference ----------------------------------------------------------------------

def timestep_embedding_f64(timesteps, embedding_dim, flip_sin_to_cos=False,
                           downscale_freq_shift=1, scale=1, max_period=10000):
    """diffusers' get_timestep_embedding computed in float64.

    diffusers computes it in float32 even in a float64 model (up to 5e-5 off at
    t = 1000); our op computes the exact value (see ref_embedding.py).
    """
    half = embedding_dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float64) / (half - downscale_freq_shift)
    arg = scale * timesteps.to(torch.float64)[:, None] * torch.exp(exponent)[None, :]
    emb = torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if embedding_dim % 2 == 1:
        emb = nn.functional.pad(emb, (0, 1, 0, 0))
    return emb


def as_float64(model):
    """A float64 copy with diffusers' float32 upcasts turned off.

    upcast_attention / upcast_softmax cast the scores to float32, which in a float64
    model is a downcast; in float32 they change nothing, so turning them off keeps
    the model's math and makes the reference float64 throughout.
    """
    model = copy.deepcopy(model).double()
    for mod in model.modules():
        if isinstance(mod, diffusers.models.attention_processor.Attention):
            mod.upcast_attention = False
            mod.upcast_softmax = False
    return model


class RmsRecorder:
    """Forward hooks that keep the RMS of every module's (first) output."""

    def __init__(self, model):
        self.rms = {}
        self.handles = [m.register_forward_hook(self._hook(n)) for n, m in model.named_modules() if n]

    def _hook(self, name):
        def hook(mod, args, out):
            t = out[0] if isinstance(out, (tuple, list)) else getattr(out, "sample", out)
            if torch.is_tensor(t) and t.is_floating_point():
                self.rms[name] = float(t.pow(2).mean().sqrt())
        return hook

    def summary(self):
        for h in self.handles:
            h.remove()
        lo = min(self.rms, key=self.rms.get)
        hi = max(self.rms, key=self.rms.get)
        return f"module outputs RMS {self.rms[lo]:.3g} ({lo}) .. {self.rms[hi]:.3g} ({hi})"


def rms(t):
    return float(t.double().pow(2).mean().sqrt())


def f32(t):
    return t.detach().to(torch.float32).contiguous()


def reference_outputs(root, seed):
    """Loads the models back from what was written and runs them in float64."""
    te = as_float64(CLIPTextModel.from_pretrained(root / "tiny-sd", subfolder="text_encoder"))
    unet = as_float64(UNet2DConditionModel.from_pretrained(root / "tiny-sd", subfolder="unet"))
    vae = as_float64(AutoencoderKL.from_pretrained(root / "tiny-sd", subfolder="vae"))
    unet_v2 = as_float64(UNet2DConditionModel.from_pretrained(root / "tiny-unet-v2"))
    out = {}
    stats = []

    gen = generator(seed, 100)
    ids = token_ids(gen)
    rec = RmsRecorder(te)
    # transformers 4.44 fills its causal mask with finfo(float64).min through a
    # torch.full of the default dtype, which overflows float32 on torch 1.13.
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with torch.no_grad():
            r = te(ids, output_hidden_states=True)
            # diffusers' encode_prompt with clip_skip=1: the final layer norm over the
            # output of the second-to-last layer.
            skip1 = te.text_model.final_layer_norm(r.hidden_states[-2])
    finally:
        torch.set_default_dtype(default_dtype)
    stats.append(f"text encoder: {rec.summary()}")
    out["te.input_ids"] = ids.to(torch.int32)
    for i, h in enumerate(r.hidden_states):
        out[f"te.hidden_states.{i}"] = f32(h)
    out["te.last_hidden_state"] = f32(r.last_hidden_state)
    out["te.clip_skip_1"] = f32(skip1)

    embedding = diffusers.models.embeddings.get_timestep_embedding
    diffusers.models.embeddings.get_timestep_embedding = timestep_embedding_f64
    try:
        # unet_odd: a 10x14 latent (an 80x112 image) halves to odd sizes on the way
        # down, so the up path meets skips one smaller than 2x.
        for name, model, salt, t, context, size in (
            ("unet", unet, 101, [999.0, 37.0], out["te.last_hidden_state"], (16, 16)),
            ("unet_v2", unet_v2, 102, [1.0, 500.0], None, (16, 16)),
            ("unet_odd", unet, 104, [250.0, 700.0], out["te.last_hidden_state"], (10, 14)),
        ):
            gen = generator(seed, salt)
            sample = torch.randn(2, 4, *size, generator=gen)
            if context is None:
                context = torch.randn(2, 77, model.config.cross_attention_dim, generator=gen)
            t = torch.tensor(t, dtype=torch.float32)
            rec = RmsRecorder(model)
            with torch.no_grad():
                y = model(sample.double(), t, encoder_hidden_states=context.double()).sample
            stats.append(f"{name}: {rec.summary()}")
            out[f"{name}.sample"] = sample
            out[f"{name}.timestep"] = t
            out[f"{name}.encoder_hidden_states"] = context.clone()
            out[f"{name}.out"] = f32(y)
    finally:
        diffusers.models.embeddings.get_timestep_embedding = embedding

    gen = generator(seed, 103)
    image = torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1
    eps = torch.randn(2, 4, 4, 4, generator=gen)
    latent = torch.randn(2, 4, 4, 4, generator=gen)
    rec = RmsRecorder(vae)
    with torch.no_grad():
        dist = vae.encode(image.double()).latent_dist
        decoded = vae.decode(latent.double()).sample
    stats.append(f"vae: {rec.summary()}")
    out["vae.image"] = image
    out["vae.mean"] = f32(dist.mean)
    out["vae.logvar"] = f32(dist.logvar)
    out["vae.eps"] = eps
    out["vae.sample"] = f32(dist.mean + torch.exp(0.5 * dist.logvar) * eps.double())
    out["vae.latent"] = latent
    out["vae.decoded"] = f32(decoded)
    return out, stats


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: models.py OUT_DIR")
    root = pathlib.Path(sys.argv[1])
    root.mkdir(parents=True, exist_ok=True)
    # One thread: float64 sums then come out the same on every machine, so the
    # float32 outputs are the same bytes.
    torch.set_num_threads(1)
    diffusers.utils.logging.set_verbosity_error()  # "accelerate not found" on every load
    transformers.logging.set_verbosity_error()
    torch.manual_seed(SEED)  # construction draws defaults before init_weights replaces them

    te, unet, vae, unet_v2 = build_models(SEED)
    save_folder(root / "tiny-sd", te, unet, vae)
    unet_v2.save_pretrained(root / "tiny-unet-v2", safe_serialization=True)

    # The single file, from the weights as written, checked before it is kept.
    folder = {
        "unet": load_file(root / "tiny-sd/unet/diffusion_pytorch_model.safetensors"),
        "vae": load_file(root / "tiny-sd/vae/diffusion_pytorch_model.safetensors"),
        "text_encoder": load_file(root / "tiny-sd/text_encoder/model.safetensors"),
    }
    # float16, as most community checkpoints ship (and half the size).
    ldm = {k: v.half() if v.is_floating_point() else v for k, v in single_file_dict(te, unet, vae).items()}
    tmp = root / "tiny-sd.safetensors.tmp"
    save_file(ldm, tmp)
    verify_single_file(load_file(tmp), folder["unet"], dict(unet.config), folder["vae"],
                       dict(vae.config), folder["text_encoder"], "tiny-sd.safetensors")
    tmp.replace(root / "tiny-sd.safetensors")
    # The SD2-style UNet has no single file here, but its names go through the same map.
    v2 = ldm_names.to_single_file(unet_v2.state_dict(), dict(unet_v2.config), {}, {}, {})
    verify_single_file(v2, unet_v2.state_dict(), dict(unet_v2.config), {}, {}, {}, "tiny-unet-v2 (in memory)")

    outputs, stats = reference_outputs(root, SEED)
    metadata = {
        "format_version": FORMAT_VERSION,
        "generator": "tools/golden/models.py",
        "seed": str(SEED),
        "torch_version": torch.__version__,
        "diffusers_version": diffusers.__version__,
        "transformers_version": transformers.__version__,
    }
    save_sorted(outputs, root / "tiny-sd-outputs.safetensors", metadata)

    for line in stats:
        print(f"models.py: {line}")
    for name in ("te", "unet", "vae", "unet_v2"):
        model = dict(te=te, unet=unet, vae=vae, unet_v2=unet_v2)[name]
        print(f"models.py: {name}: {sum(p.numel() for p in model.parameters())} parameters")
    for k in sorted(outputs):
        if outputs[k].is_floating_point():
            print(f"models.py: {k} {list(outputs[k].shape)} RMS {rms(outputs[k]):.4f}")
    print(f"models.py: wrote {root}")


if __name__ == "__main__":
    main()
