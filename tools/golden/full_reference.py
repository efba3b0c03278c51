#!/usr/bin/env python3
"""Reference passes of a full-size SD1.5 folder, for make test-full (not CI).

usage: full_reference.py MODEL_DIR --out OUT.safetensors [--seed N]

MODEL_DIR is a diffusers folder such as tools/make_random_sd15.py writes (fp32, or
fp16 variant files, which are computed in float32 all the same). With diffusers in
float32 on the CPU it runs, and stores with their inputs (torch layout, float32):

  te.input_ids [2,77] int32          token ids built as in models.py (BOS, 5-20 ids, EOS
                                      padding), since the vocab files may be absent
  te.last_hidden_state [2,77,768]    the text encoder's output
  te.clip_skip_1 [2,77,768]          final_layer_norm(hidden_states[-2]) (diffusers' clip_skip=1)
  unet.sample [2,4,64,64], unet.timestep [2] (500), unet.encoder_hidden_states
                                      (= te.last_hidden_state), unet.out [2,4,64,64]
  vae.latent [1,4,64,64], vae.decoded [1,3,512,512]  (vae.decode(latent).sample, unscaled)

Each pass's time is printed; on 2 cores the three take a few minutes.
"""
import argparse
import contextlib
import pathlib
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import models  # noqa: E402  (token_ids, generator, save_sorted, rms)

import diffusers  # noqa: E402
import transformers  # noqa: E402
from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: E402
from transformers import CLIPTextModel  # noqa: E402


@contextlib.contextmanager
def timed(what):
    t = time.time()
    with torch.no_grad():
        yield
    print(f"full_reference: {what}: {time.time() - t:.1f} s")


def load(cls, root, part, weights):
    # Prefer the float32 file; a folder written with --dtype fp16 has only the variant.
    variant = None if (root / part / weights).exists() else "fp16"
    return cls.from_pretrained(root, subfolder=part, variant=variant).float().eval()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir", type=pathlib.Path)
    ap.add_argument("--out", type=pathlib.Path, required=True)
    ap.add_argument("--seed", type=int, default=models.SEED)
    args = ap.parse_args()
    diffusers.utils.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()
    root = args.model_dir
    out = {}

    te = load(CLIPTextModel, root, "text_encoder", "model.safetensors")
    ids = models.token_ids(models.generator(args.seed, 100), length=te.config.max_position_embeddings)
    with timed("text encoder [2,77]"):
        r = te(ids, output_hidden_states=True)
        skip1 = te.text_model.final_layer_norm(r.hidden_states[-2])
    out["te.input_ids"] = ids.to(torch.int32)
    out["te.last_hidden_state"] = r.last_hidden_state.contiguous()
    out["te.clip_skip_1"] = skip1.contiguous()
    del te, r

    unet = load(UNet2DConditionModel, root, "unet", "diffusion_pytorch_model.safetensors")
    sample = torch.randn(2, unet.config.in_channels, 64, 64, generator=models.generator(args.seed, 101))
    t = torch.tensor([500.0, 500.0])
    context = out["te.last_hidden_state"]
    with timed("unet [2,4,64,64]"):
        y = unet(sample, t, encoder_hidden_states=context).sample
    out["unet.sample"] = sample
    out["unet.timestep"] = t
    out["unet.encoder_hidden_states"] = context.clone()  # safetensors refuses shared storage
    out["unet.out"] = y.contiguous()
    del unet

    vae = load(AutoencoderKL, root, "vae", "diffusion_pytorch_model.safetensors")
    latent = torch.randn(1, vae.config.latent_channels, 64, 64, generator=models.generator(args.seed, 103))
    with timed("vae decode [1,4,64,64] -> [1,3,512,512]"):
        x = vae.decode(latent).sample
    out["vae.latent"] = latent
    out["vae.decoded"] = x.contiguous()
    del vae

    for k in sorted(out):
        if out[k].is_floating_point():
            print(f"full_reference: {k} {list(out[k].shape)} RMS {models.rms(out[k]):.4f}")
    metadata = {
        "generator": "tools/golden/full_reference.py",
        "model_dir": str(root),
        "seed": str(args.seed),
        "torch_version": torch.__version__,
        "diffusers_version": diffusers.__version__,
        "transformers_version": transformers.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    models.save_sorted(out, args.out, metadata)
    print(f"full_reference: wrote {args.out}")


if __name__ == "__main__":
    main()
