// Noise schedules and samplers, as diffusers defines them.
//
// A noise_schedule is the training forward process read from a model's
// scheduler/scheduler_config.json (betas, alphas_cumprod, prediction type and the
// options samplers read). A sampler walks it backwards over a number of inference
// steps; it works on host float arrays (the latents of a whole batch, any layout:
// every update is elementwise).
//
// Usage, per image batch:
//   sampler *s = sampler_new(SAMPLER_DPMPP_2M, &schedule, 20);
//   x = noise * sampler_init_noise_sigma(s)
//   for i in 0 .. sampler_num_steps(s):
//       model_out = unet(x * sampler_input_scale(s, i), sampler_timestep(s, i))
//       sampler_step(s, i, model_out, x, n, noise_or_NULL)
// Samplers that add fresh noise in a step (DDPM, Euler ancestral) say so with
// sampler_needs_noise; the caller draws it (from our RNG) and passes n values.
#pragma once
#include <stdbool.h>
#include <stddef.h>

typedef enum { PRED_EPSILON, PRED_V, PRED_SAMPLE } prediction_type;

// Options a config may leave out whose defaults differ between diffusers' classes:
// bits of noise_schedule.given. Where the file is silent, each sampler takes its own
// class's default, as from_config does (DDIM's set_alpha_to_one is true, PNDM's
// false; Euler and DPM-Solver space timesteps by "linspace", the others by "leading").
enum { NS_GIVEN_TIMESTEP_SPACING = 1, NS_GIVEN_SET_ALPHA_TO_ONE = 2 };

typedef struct {
    int num_train_timesteps;
    double *betas;           // [num_train_timesteps] DDPMScheduler's (float32 values)
    double *alphas_cumprod;  // [num_train_timesteps] DDPMScheduler's (float32 values)
    prediction_type prediction;
    // The config's options that set_timesteps and the steps read (diffusers names).
    // An option the file leaves out holds the default of the classes that read it;
    // where those differ (NS_GIVEN_*), "leading" and false.
    char timestep_spacing[16];  // "leading", "trailing", "linspace"
    int steps_offset;
    bool set_alpha_to_one, skip_prk_steps, clip_sample;
    float clip_sample_range;
    char default_sampler[32];  // the config's _class_name, e.g. "PNDMScheduler"
    char beta_schedule[24];    // "linear", "scaled_linear", "squaredcos_cap_v2"
    double beta_start, beta_end;
    bool rescale_betas_zero_snr;  // every class but PNDMScheduler applies it
    char variance_type[16];       // DDPM: "fixed_small", "fixed_small_log", "fixed_large"
    char final_sigmas_type[16];   // Euler, DPM++: "zero" or "sigma_min"
    bool lower_order_final, euler_at_final;  // DPM++
    bool use_karras_sigmas;  // only chooses sampler_default's DPM++ variant
    unsigned given;          // NS_GIVEN_* bits
} noise_schedule;

// 0, or -1 with err_msg() naming the file and key (an unknown beta_schedule, an
// option we do not implement such as thresholding). Keys that name the sampler
// rather than the model (algorithm_type, solver_order, solver_type,
// use_karras_sigmas) do not apply to samplers: a sampler_kind fixes them.
int noise_schedule_load(noise_schedule *ns, const char *path);
void noise_schedule_free(noise_schedule *ns);

// The training forward process (DDPM), per sample b of a batch with `per_sample`
// values each and integer timesteps t[b]:
//   noisy = sqrt(acp[t]) x0 + sqrt(1 - acp[t]) noise
//   velocity = sqrt(acp[t]) noise - sqrt(1 - acp[t]) x0        (v-prediction target)
//   snr(t) = acp[t] / (1 - acp[t])
void noise_schedule_add_noise(const noise_schedule *ns, float *noisy, const float *x0,
                              const float *noise, const int *t, int batch, size_t per_sample);
void noise_schedule_velocity(const noise_schedule *ns, float *velocity, const float *x0,
                             const float *noise, const int *t, int batch, size_t per_sample);
double noise_schedule_snr(const noise_schedule *ns, int t);

typedef enum {
    SAMPLER_DDPM,
    SAMPLER_DDIM,
    SAMPLER_PNDM,
    SAMPLER_EULER,
    SAMPLER_EULER_ANCESTRAL,
    SAMPLER_DPMPP_2M,
    SAMPLER_DPMPP_2M_KARRAS,
    SAMPLER_COUNT
} sampler_kind;

const char *sampler_name(sampler_kind k);        // "ddim", "dpmpp_2m_karras", ...
const char *sampler_a1111_name(sampler_kind k);  // "DDIM", "DPM++ 2M Karras", ... (PNG metadata)
// 0, or -1 with err_msg() listing the valid names.
int sampler_from_name(const char *name, sampler_kind *k);
// The sampler a schedule's config names (_class_name): PNDM for SD1.5.
sampler_kind sampler_default(const noise_schedule *ns);

typedef struct sampler sampler;
// NULL with err_msg() for what diffusers refuses or cannot run: steps outside
// 1..num_train_timesteps, a steps_offset that takes DDPM, DDIM or PNDM past the last
// training step, prediction_type "sample" with PNDM or Euler ancestral, PNDM's
// Runge-Kutta warm-up (skip_prk_steps false) with fewer than 4 steps.
sampler *sampler_new(sampler_kind kind, const noise_schedule *ns, int steps);
void sampler_free(sampler *s);
int sampler_num_steps(const sampler *s);               // model evaluations
double sampler_timestep(const sampler *s, int i);      // the UNet's t at evaluation i
double sampler_init_noise_sigma(const sampler *s);     // scale of the initial noise
double sampler_input_scale(const sampler *s, int i);   // scale_model_input's factor
// The noise level sigma at evaluation i, i = sampler_num_steps(s) being the final
// one (0, or sigma_min with final_sigmas_type "sigma_min"); NAN for the samplers
// that keep no sigmas (DDPM, DDIM, PNDM).
double sampler_sigma(const sampler *s, int i);
bool sampler_needs_noise(const sampler *s);
// Advances x[n] with the model output of evaluation i (steps must come in order);
// noise[n] (standard normal) when sampler_needs_noise, else NULL.
void sampler_step(sampler *s, int i, const float *model_output, float *x, size_t n,
                  const float *noise);
