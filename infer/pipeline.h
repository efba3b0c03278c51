// Text-to-image rendering, as diffusers' StableDiffusionPipeline does it: prompts
// through the tokenizer and text encoder (negative prompt for classifier-free
// guidance), initial latents from our RNG, the sampler's loop over the UNet with
// guidance, and the VAE decode to pixels.
#pragma once
#include <stdint.h>

#include "core/rng.h"
#include "infer/scheduler.h"
#include "infer/sd_model.h"
#include "infer/tokenizer.h"

typedef struct {
    sd_model model;
    clip_tokenizer *tokenizer;
    noise_schedule schedule;
    char model_path[1024];
    bool show_progress;  // a progress bar with it/s on stderr
} pipeline;

// A diffusers folder (its tokenizer/ and scheduler/ are used) or a single file (then
// tokenizer_dir and scheduler_config must be given, or default to the SD1.5 files
// beside the program). 0, or -1 with err_msg() and *p zeroed (closing it again is harmless).
int pipeline_open(pipeline *p, const char *model_path, const char *tokenizer_dir,
                  const char *scheduler_config, const sd_load_options *opt);
// Frees what open loaded and zeroes *p: safe on a zeroed or already closed pipeline.
void pipeline_close(pipeline *p);

typedef struct {
    const char *prompt;
    const char *negative_prompt;  // NULL: "" (unconditional)
    int width, height;            // multiples of 8 (the VAE's factor)
    int steps;
    float cfg_scale;  // classifier-free guidance; <= 1 turns it off
    uint64_t seed;
    int batch;      // images per prompt
    int clip_skip;  // diffusers' clip_skip: 0 = the last layer
    sampler_kind sampler;
} render_params;

// Fills defaults: 512x512, 20 steps, CFG 7.5, batch 1, seed 0, the schedule's sampler.
void render_params_default(render_params *rp, const pipeline *p);

// Renders rp->batch images: latents [batch, h/8, w/8, 4] are drawn from the seed
// (stream offset 0, channels-last) unless initial_latents (host, that layout) is
// given. Writes the final latents (host, f32, may be NULL) and the decoded images
// [batch, H, W, 3] in [-1, 1] (host, f32; caller frees). 0, or -1 with err_msg().
int pipeline_render(pipeline *p, const render_params *rp, const float *initial_latents,
                    float *final_latents, float **images);

// The prompt's text-encoder embedding [n, 77, D] for n copies (used by the trainer
// for its text cache too).
tensor *pipeline_encode_prompt(pipeline *p, const char *prompt, int n, int clip_skip);

// A1111's "parameters" text for the PNG: prompt, "Negative prompt: ...", then
// "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7.5, Seed: 1, Size: 512x512,
// Model hash: 1a2b3c4d5e, Model: name[, Lora hashes: ...]". Caller frees.
char *pipeline_a1111_parameters(const pipeline *p, const render_params *rp, uint64_t seed,
                                const char *model_hash, const char *extra);

// A1111's "Model hash": the first 10 hex digits of the checkpoint file's SHA-256 (of
// the UNet's weights for a diffusers folder) into out. 0, or -1 with err_msg().
int pipeline_model_hash(const char *model_path, char out[11]);
