#!/usr/bin/env python3
"""Writes a random-weight Stable Diffusion 1.5 checkpoint with the real shapes.

usage: make_random_sd15.py [--out-dir DIR] [--single-file PATH] [--dtype fp32|fp16]
                           [--seed N] [--tokenizer-from DIR]

For make test-full and the benchmarks: the real model's sizes and names without its
weights. At least one of
  --out-dir DIR        a diffusers folder: model_index.json, text_encoder/, unet/, vae/,
                       scheduler/ (and tokenizer/, copied from --tokenizer-from).
                       The config files are SD1.5's own (tools/sd15_configs/, byte for
                       byte as runwayml/stable-diffusion-v1-5 ships them); with --dtype
                       fp16 the weights carry diffusers' variant names
                       (diffusion_pytorch_model.fp16.safetensors, model.fp16.safetensors).
  --single-file PATH   the same weights in the original LDM single-file layout
                       (tools/golden/ldm_names.py), as community checkpoints ship.
The weights are drawn as in the tiny golden models (tools/golden/models.py,
init_weights), so activations stay O(1). Peak memory is about two copies of the
float32 weights (8.6 GB for fp32 folder + single file); about 30 s on 2 cores.
"""
import argparse
import json
import pathlib
import shutil
import sys
import time

import torch

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "golden"))
import ldm_names  # noqa: E402
import models  # noqa: E402  (tools/golden/models.py: init_weights, generator, verify_single_file)

import diffusers  # noqa: E402
import transformers  # noqa: E402
from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel  # noqa: E402

CONFIGS = HERE / "sd15_configs"
# SD1.5's model_index.json, less the safety checker and feature extractor this folder
# does not have (written as diffusers writes a pipeline saved without them).
MODEL_INDEX = {
    "_class_name": "StableDiffusionPipeline",
    "_diffusers_version": "0.6.0",
    "feature_extractor": [None, None],
    "requires_safety_checker": False,
    "safety_checker": [None, None],
    "scheduler": ["diffusers", "PNDMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}

# Each part's weights file, less the variant suffix (".fp16") and ".safetensors".
WEIGHT_STEMS = {"text_encoder": "model", "unet": "diffusion_pytorch_model", "vae": "diffusion_pytorch_model"}


def config(name):
    return json.loads((CONFIGS / f"{name}.json").read_text())


def models_from_configs():
    """The three models with SD1.5's configs, as constructed (tools/sd15_manifest.py
    builds them on the meta device)."""
    te = CLIPTextModel(CLIPTextConfig(**config("text_encoder")))
    unet = UNet2DConditionModel.from_config(config("unet"))
    vae = AutoencoderKL.from_config(config("vae"))
    return te, unet, vae


def build(seed):
    """The three models with SD1.5's configs, every parameter drawn from seed."""
    te, unet, vae = models_from_configs()
    # The same salts as models.py's build_models: te 0, unet 1, vae 2.
    for salt, model in enumerate((te, unet, vae)):
        models.init_weights(model, models.generator(seed, salt))
    return te, unet, vae


def cast(sd, dtype):
    return {k: v.to(dtype).contiguous() if v.is_floating_point() else v for k, v in sd.items()}


def write_folder(root, te, unet, vae, dtype, tokenizer_from):
    suffix = ".fp16" if dtype == torch.float16 else ""
    for part, model in (("text_encoder", te), ("unet", unet), ("vae", vae)):
        name = f"{WEIGHT_STEMS[part]}{suffix}.safetensors"
        (root / part).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(CONFIGS / f"{part}.json", root / part / "config.json")
        # diffusers and transformers both mark their files format "pt".
        save_file(cast(model.state_dict(), dtype), root / part / name, metadata={"format": "pt"})
    (root / "scheduler").mkdir(exist_ok=True)
    shutil.copyfile(CONFIGS / "scheduler.json", root / "scheduler" / "scheduler_config.json")
    index = dict(MODEL_INDEX)
    if tokenizer_from:
        shutil.copytree(tokenizer_from, root / "tokenizer", dirs_exist_ok=True)
    else:
        index["tokenizer"] = [None, None]
    (root / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", type=pathlib.Path)
    ap.add_argument("--single-file", type=pathlib.Path)
    ap.add_argument("--dtype", choices=("fp32", "fp16"), default="fp32")
    ap.add_argument("--seed", type=int, default=models.SEED)
    ap.add_argument("--tokenizer-from", type=pathlib.Path,
                    help="a tokenizer folder (vocab.json, merges.txt, ...) to copy in")
    args = ap.parse_args()
    if not args.out_dir and not args.single_file:
        ap.error("give --out-dir, --single-file or both")
    if args.tokenizer_from and not args.out_dir:
        ap.error("--tokenizer-from needs --out-dir")
    if args.tokenizer_from and not args.tokenizer_from.is_dir():
        ap.error(f"--tokenizer-from: {args.tokenizer_from} is not a folder")
    diffusers.utils.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()
    dtype = torch.float16 if args.dtype == "fp16" else torch.float32

    t0 = time.time()
    te, unet, vae = build(args.seed)
    n = {name: sum(p.numel() for p in m.parameters()) for name, m in (("te", te), ("unet", unet), ("vae", vae))}
    print(f"make_random_sd15: built {n} parameters in {time.time() - t0:.1f} s")

    if args.out_dir:
        t = time.time()
        write_folder(args.out_dir, te, unet, vae, dtype, args.tokenizer_from)
        print(f"make_random_sd15: wrote {args.out_dir} ({args.dtype}) in {time.time() - t:.1f} s")

    if args.single_file:
        t = time.time()
        unet_sd, vae_sd, te_sd = unet.state_dict(), vae.state_dict(), te.state_dict()
        position_ids = torch.arange(te.config.max_position_embeddings, dtype=torch.int64)[None]
        ldm = ldm_names.to_single_file(unet_sd, dict(unet.config), vae_sd, dict(vae.config), te_sd,
                                       position_ids=position_ids)
        # The same check as the golden fixture's, on SD1.5's real block structure.
        models.verify_single_file(ldm, unet_sd, dict(unet.config), vae_sd, dict(vae.config), te_sd,
                                  str(args.single_file))
        args.single_file.parent.mkdir(parents=True, exist_ok=True)
        save_file(cast(ldm, dtype), args.single_file)
        print(f"make_random_sd15: wrote {args.single_file} ({args.dtype}) in {time.time() - t:.1f} s")
    print(f"make_random_sd15: done in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
