// A Stable Diffusion model: text encoder, UNet and VAE with one parameter set,
// loaded from a diffusers folder (model_index.json, each component's config.json and
// safetensors, .fp16 variants, sharded weights) or from an original single-file
// .safetensors checkpoint (SD1.x configs built in, or taken from a folder of
// config.json files). Weights are converted once to the compute dtype and layout.
#pragma once
#include "infer/clip.h"
#include "infer/unet.h"
#include "infer/vae.h"

typedef struct {
    dtype dt;    // compute dtype of the parameters (f32, or bf16 on CUDA)
    device dev;
    // Single files: a folder holding text_encoder/, unet/ and vae/ config.json files
    // (a diffusers folder), used instead of the built-in SD1.x configs. NULL: built in.
    const char *config_dir;
    // diffusers folders: "fp16" loads the *.fp16.safetensors variant; NULL takes the
    // plain files, or the fp16 variant when only that exists.
    const char *variant;
} sd_load_options;

typedef struct {
    clip_config clip_cfg;
    unet_config unet_cfg;
    vae_config vae_cfg;
    param_set params;
    clip_text_model text_encoder;
    unet_model unet;
    vae_model vae;
    load_report report[3];  // text_encoder, unet, vae
} sd_model;

// path: a diffusers folder or a .safetensors file. 0, or -1 with a one-line err_msg()
// naming the file (a pickle .ckpt/.bin is refused with a note on converting it); *m is
// left zeroed on failure.
int sd_model_load(sd_model *m, const char *path, const sd_load_options *opt);
// Frees and zeroes *m: safe on a zeroed or already freed model (a failed load leaves it so).
void sd_model_free(sd_model *m);
void sd_model_print_report(const sd_model *m);
