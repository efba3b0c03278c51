// The DreamBooth-LoRA training run: `make train` / `sdft-train --config FILE`.
//
// Reads the run config (train/run_config.h), generates missing class images with the
// base model, caches the photos' latents (and the prompts' embeddings when the text
// encoder is frozen), trains the adapters, and writes into output.dir:
//   <name>.safetensors        the adapters, diffusers/PEFT layout
//   <name>_kohya.safetensors  the adapters, kohya layout with .alpha and ss_* metadata
//   state-<step>.safetensors  adapters, AdamW moments, step and RNG positions, for
//                             train.resume (exact: the run continues bit for bit)
//   metrics.jsonl             one line per step: loss, its parts, lr, grad norm, time
//   loss.png                  the loss curve
//   validation/step-<step>.png  the validation prompts' grid, every validation.every
//                             steps and at the end
// Every file is written to a temporary name and renamed.
#pragma once
#include "train/run_config.h"

typedef struct {
    bool show_progress;  // a progress bar on stderr
    int stop_after;      // > 0: stop after this many steps of this run (tests of resume)
} train_options;

// 0, or -1 with err_msg() (bad data, unreadable model, a write that failed).
int train_run(const run_config *cfg, const train_options *opt);
