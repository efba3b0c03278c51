// The YAML run config (configs/*.yaml): which model, the subject's token and class,
// its photos and class images, the adapter, the training settings, the prompts to
// render and where results go. `make train` and `make sample` read the same file.
//
// Bound by core/config.h's schema: unknown keys and wrong types are errors naming the
// line, with the nearest valid key suggested.
#pragma once
#include <stdint.h>

#include "core/config.h"
#include "infer/pipeline.h"

typedef struct {
    char *path;              // diffusers folder or single .safetensors file
    char *config_dir;        // single files: folder of component config.json files
    char *tokenizer;         // tokenizer folder (default: the model's, or the build's)
    char *scheduler_config;  // scheduler_config.json (default: the model's, or SD1.5's)
    int device;              // RUN_DEVICE_*
    int dtype;               // RUN_DTYPE_*
    int clip_skip;           // A1111's clip skip: 1 = the last layer
} run_model_section;

typedef struct {
    char *token;  // the rare token that names the subject, "sks"
    char *class_name;  // the subject's class, "dog" (key "class")
} run_subject_section;

typedef struct {
    cfg_strings prompts;  // {token} and {class} are replaced
    char *negative_prompt;
    int steps;
    double cfg;
    char *sampler;  // a sampler name; NULL: the model's scheduler
    int64_t seed;
    int width, height;
    int images_per_prompt;
    double lora_scale;  // multiplier of the run's adapter when one is found
    int every;          // training: steps between validation grids (0: at the end only)
} run_sample_section;

typedef struct {
    char *dir;  // where adapters are written and samples/ goes
    char *name;  // adapter file name stem
    int save_every;  // steps between saved adapters and training states (0: at the end only)
} run_output_section;

typedef struct {
    char *instance_dir;     // the subject's photos
    char *instance_prompt;  // "a photo of {token} {class}"; NAME.txt beside a photo replaces it
    int resolution;
    bool center_crop;  // else a random crop
    bool random_flip;
    int repeats;
    bool strict;  // stop on a bad image instead of skipping it
} run_data_section;

typedef struct {
    int rank;
    double alpha;
    double dropout;          // peft's lora_dropout on each adapter's input while training
    cfg_strings targets;     // UNet linear layers, by the end of their names
    bool text_encoder;       // also train text-encoder adapters
    cfg_strings te_targets;  // its layers
} run_lora_section;

typedef struct {
    int steps, batch_size, gradient_accumulation;
    double learning_rate, text_encoder_lr;
    int lr_scheduler;  // lr_kind
    int lr_warmup_steps;
    double lr_num_cycles, lr_power;
    double adam_beta1, adam_beta2, adam_weight_decay, adam_epsilon, max_grad_norm;
    double snr_gamma, noise_offset;
    int64_t seed;
    bool gradient_checkpointing;
    char *resume;  // "latest", a state file, or empty
} run_train_section;

typedef struct {
    bool enabled;
    char *class_dir;
    char *class_prompt;  // "a photo of {class}"
    int num_class_images;
    double prior_loss_weight;
} run_prior_section;

typedef struct {
    run_model_section model;
    run_subject_section subject;
    run_data_section data;
    run_lora_section lora;
    run_train_section train;
    run_prior_section prior;
    run_sample_section validation;
    run_output_section output;
} run_config;

enum { RUN_DEVICE_CPU, RUN_DEVICE_CUDA };
enum { RUN_DTYPE_F32, RUN_DTYPE_BF16 };

extern const cfg_schema run_config_schema;

// config_init + config_load + the overrides, in that order; checks what the schema
// cannot (a model path is given, the sampler's name), so a mistake stops a program
// before it loads anything. 0, or -1 with err_msg(). Free with config_free.
int run_config_read(run_config *cfg, const char *path, int n_overrides, char *const *overrides);

// The schema's field of "section.key" (its absence is a program bug): a command-line
// option that sets what a config key sets takes its type and range from it
// (core/args.h's arg_field), so both accept the same values.
const cfg_field *run_config_field(const char *key);

// The prompt with {token} and {class} replaced (caller frees).
char *run_config_expand(const run_config *cfg, const char *prompt);

// One path from a config to models and renders, for sdft-train, sdft-sample and
// sdft-eval alike.
// The model section's pipeline: model.path with its dtype, device and config_dir,
// model.tokenizer and model.scheduler_config. 0, or -1 with err_msg() (model.device
// cuda where no CUDA device answers; what pipeline_open reports), *p then zeroed.
int run_config_open_pipeline(pipeline *p, const run_config *cfg);
// The validation section's render settings over p's defaults: negative prompt, steps,
// cfg, size, images per prompt and sampler, with model.clip_skip; the prompt and the
// seed are the caller's. 0, or -1 with err_msg() naming validation.sampler.
int run_config_render_params(render_params *rp, const pipeline *p, const run_config *cfg);

// model.clip_skip (A1111's numbering, 1 = the last layer) as the text encoder takes it
// (diffusers' numbering, 0 = the last layer).
int run_config_clip_skip(const run_config *cfg);
