#!/usr/bin/env python3
"""Writes diffusers' StableDiffusionPipeline results on the tiny model.

usage: pipeline.py MODELS_DIR TOKENIZER_DIR OUT.safetensors
  MODELS_DIR     tests/fixtures/models (its tiny-sd/ folder is the pipeline)
  TOKENIZER_DIR  build/clip-tokenizer (derived at build time; never committed)

For each case the pipeline renders from given initial latents (drawn here, stored)
with classifier-free guidance and a negative prompt, in float32 on the CPU, and we
store under "<case>.": initial_latents (NCHW, before the scheduler's
init_noise_sigma scaling, as the pipeline takes them), final_latents (what
output_type="latent" returns) and decoded (vae.decode(final / scaling_factor), in
[-1, 1] before post-processing). The metadata lists the cases with their settings.
"""
import json
import pathlib
import shutil
import sys
import tempfile

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import models  # noqa: E402  (generator, save_sorted)

import diffusers  # noqa: E402
import transformers  # noqa: E402
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, StableDiffusionPipeline  # noqa: E402

FORMAT_VERSION = "1"
PROMPT = "a photo of sks dog in the snow, highly detailed"
NEGATIVE = "blurry, low quality"

# name -> (scheduler class, extra from_config options, steps, batch, cfg, size)
CASES = {
    "ddim": (DDIMScheduler, {}, 10, 1, 7.5, 64),
    "dpmpp_2m": (DPMSolverMultistepScheduler, {}, 10, 2, 5.0, 64),
}


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__.split("\n\n")[1])
    models_dir, tokenizer_dir, out_path = map(pathlib.Path, sys.argv[1:])
    torch.set_num_threads(1)
    diffusers.utils.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()
    out, settings = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp) / "tiny-sd"
        shutil.copytree(models_dir / "tiny-sd", folder)
        shutil.copytree(tokenizer_dir, folder / "tokenizer")
        pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None,
                                                       requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        base_config = pipe.scheduler.config
        for salt, (name, (cls, options, steps, batch, cfg, size)) in enumerate(CASES.items()):
            pipe.scheduler = cls.from_config(base_config, **options)
            latents = torch.randn(batch, 4, size // 8, size // 8, generator=models.generator(models.SEED, 200 + salt))
            with torch.no_grad():
                final = pipe(PROMPT, negative_prompt=NEGATIVE, height=size, width=size,
                             num_inference_steps=steps, guidance_scale=cfg, num_images_per_prompt=batch,
                             latents=latents.clone(), output_type="latent").images
                decoded = pipe.vae.decode(final / pipe.vae.config.scaling_factor).sample
            out[f"{name}.initial_latents"] = latents
            out[f"{name}.final_latents"] = final.contiguous()
            out[f"{name}.decoded"] = decoded.contiguous()
            settings[name] = dict(scheduler=cls.__name__, steps=steps, batch=batch, cfg=cfg, size=size,
                                  prompt=PROMPT, negative_prompt=NEGATIVE)
            print(f"pipeline.py: {name}: final latents RMS {models.rms(final):.4f}, "
                  f"decoded RMS {models.rms(decoded):.4f}")
    metadata = {
        "format_version": FORMAT_VERSION,
        "generator": "tools/golden/pipeline.py",
        "cases": json.dumps(settings, sort_keys=True),
        "torch_version": torch.__version__,
        "diffusers_version": diffusers.__version__,
        "transformers_version": transformers.__version__,
    }
    models.save_sorted(out, out_path, metadata)
    print(f"pipeline.py: wrote {out_path}")


if __name__ == "__main__":
    main()
