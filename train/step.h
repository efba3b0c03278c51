// One DreamBooth training step's loss, as diffusers' DreamBooth LoRA scripts compute
// it with prior preservation and Min-SNR-γ weighting:
//   noisy = sqrt(acp[t]) latents + sqrt(1 - acp[t]) noise
//   pred = unet(noisy, t, text_encoder(ids))
//   target = noise (epsilon) or sqrt(acp) noise - sqrt(1 - acp) latents (v)
//   instance = mean_n w_n mean((pred_n - target_n)^2) over the instance rows, with
//              w = min(snr, γ) / snr (epsilon) or min(snr, γ) / (snr + 1) (v), 1 without γ
//   prior = mean((pred - target)^2) over the class rows (no SNR weight, as diffusers)
//   loss = instance + prior_loss_weight * prior
#pragma once
#include "infer/scheduler.h"
#include "infer/sd_model.h"

typedef struct {
    int batch;       // rows: the instance rows first, then the class rows
    int n_instance;  // rows [0, n_instance) are instance examples
    int height, width;  // latent size
    const float *latents;  // [batch, h, w, C], already times the VAE's scaling_factor
    const float *noise;    // [batch, h, w, C]
    const int *timesteps;  // [batch], in [0, num_train_timesteps)
    const int32_t *ids;    // [batch, 77] token ids (the text encoder runs, with its adapters)
    int clip_skip;         // diffusers' numbering: 0 = last layer
    // The text encoder's output [batch, 77, D] when it is frozen and cached; NULL:
    // it runs on ids.
    tensor *context;
} train_batch;

typedef struct {
    float snr_gamma;          // 0: no Min-SNR weighting
    float prior_loss_weight;  // weight of the class rows' loss
} loss_config;

typedef struct {
    float loss, instance, prior;
} loss_parts;

// Builds the step's graph on the tape and returns the scalar loss (f32 [1]); the
// caller runs autograd_backward on it. parts (may be NULL) gets the values.
tensor *dreambooth_loss(sd_model *m, const noise_schedule *ns, const train_batch *b,
                        const loss_config *lc, loss_parts *parts);

// What the loss compares, row by row: the UNet's prediction on the noisy latents
// (f32, on the tape when grad mode is on) and its target (the noise for epsilon
// prediction, the velocity for v-prediction), both [batch, h, w, C] on the model's
// device, C the UNet's input channels. sdft-eval measures adapters with it.
void denoising_prediction(tensor **pred, tensor **target, sd_model *m, const noise_schedule *ns,
                          const train_batch *b);

// The Min-SNR-γ weight of timestep t, in float32 as diffusers' compute_snr.
float min_snr_weight(const noise_schedule *ns, int t, float gamma);
