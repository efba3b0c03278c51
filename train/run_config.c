#include "train/run_config.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "kernels/backend.h"
#include "train/lr_schedule.h"

static const char *const devices[] = {"cpu", "cuda", NULL};
static const char *const dtypes[] = {"f32", "bf16", NULL};

static const cfg_field model_fields[] = {
    {"path", CFG_STRING, offsetof(run_model_section, path),
     .help = "diffusers folder or original single-file .safetensors"},
    {"config_dir", CFG_STRING, offsetof(run_model_section, config_dir),
     .help = "single files: a folder of component config.json files (default: SD1.5's)"},
    {"tokenizer", CFG_STRING, offsetof(run_model_section, tokenizer),
     .help = "tokenizer folder (default: the model's tokenizer/, or the build's)"},
    {"scheduler_config", CFG_STRING, offsetof(run_model_section, scheduler_config),
     .help = "scheduler_config.json (default: the model's, or SD1.5's)"},
    {"device", CFG_ENUM, offsetof(run_model_section, device), .choices = devices, .def = "cpu",
     .help = "where to compute"},
    {"dtype", CFG_ENUM, offsetof(run_model_section, dtype), .choices = dtypes, .def = "f32",
     .help = "weights' compute dtype (bf16 on cuda)"},
    {"clip_skip", CFG_INT, offsetof(run_model_section, clip_skip), .def = "1", .min = 1, .max = 48,
     .help = "A1111's clip skip: 1 = the text encoder's last layer, 2 = the one before"},
};
static const cfg_schema model_schema = CFG_SCHEMA(run_model_section, model_fields);

static const cfg_field subject_fields[] = {
    {"token", CFG_STRING, offsetof(run_subject_section, token), .def = "sks",
     .help = "the rare token that names the subject ({token} in prompts)"},
    {"class", CFG_STRING, offsetof(run_subject_section, class_name), .def = "dog",
     .help = "the subject's class ({class} in prompts)"},
};
static const cfg_schema subject_schema = CFG_SCHEMA(run_subject_section, subject_fields);

static const cfg_field sample_fields[] = {
    {"prompts", CFG_STRING_LIST, offsetof(run_sample_section, prompts),
     .def = "[\"a photo of {token} {class}\"]", .help = "prompts to render; {token}, {class} replaced"},
    {"negative_prompt", CFG_STRING, offsetof(run_sample_section, negative_prompt), .def = "",
     .help = "what to steer away from"},
    {"steps", CFG_INT, offsetof(run_sample_section, steps), .def = "25", .min = 1, .max = 1000,
     .help = "sampler steps"},
    {"cfg", CFG_FLOAT, offsetof(run_sample_section, cfg), .def = "7.5", .min = 0, .max = 100,
     .help = "classifier-free guidance scale (1 turns it off)"},
    {"sampler", CFG_STRING, offsetof(run_sample_section, sampler), .def = "dpmpp_2m",
     .help = "ddpm, ddim, pndm, euler, euler_a, dpmpp_2m, dpmpp_2m_karras"},
    {"seed", CFG_INT64, offsetof(run_sample_section, seed), .def = "42", .min = 0, .max = 9e18,
     .help = "seed of the first image; image i uses seed + i"},
    {"width", CFG_INT, offsetof(run_sample_section, width), .def = "512", .min = 8, .max = 8192,
     .help = "image width, a multiple of 8"},
    {"height", CFG_INT, offsetof(run_sample_section, height), .def = "512", .min = 8, .max = 8192,
     .help = "image height, a multiple of 8"},
    {"images_per_prompt", CFG_INT, offsetof(run_sample_section, images_per_prompt), .def = "1",
     .min = 1, .max = 64, .help = "images rendered for each prompt"},
    {"lora_scale", CFG_FLOAT, offsetof(run_sample_section, lora_scale), .def = "1.0", .min = -10,
     .max = 10, .help = "multiplier of the run's adapter, when output.dir holds one"},
    {"every", CFG_INT, offsetof(run_sample_section, every), .def = "0", .min = 0, .max = 1e9,
     .help = "training: steps between validation grids (0: only at the end)"},
};
static const cfg_schema sample_schema = CFG_SCHEMA(run_sample_section, sample_fields);

static const cfg_field output_fields[] = {
    {"dir", CFG_STRING, offsetof(run_output_section, dir), .def = "output",
     .help = "where adapters are written; samples go to <dir>/samples"},
    {"name", CFG_STRING, offsetof(run_output_section, name), .def = "lora",
     .help = "adapter file name stem: <dir>/<name>.safetensors (and <name>_kohya.safetensors)"},
    {"save_every", CFG_INT, offsetof(run_output_section, save_every), .def = "0", .min = 0, .max = 1e9,
     .help = "steps between saved adapters and training states (0: only at the end)"},
};
static const cfg_schema output_schema = CFG_SCHEMA(run_output_section, output_fields);

static const cfg_field data_fields[] = {
    {"instance_dir", CFG_STRING, offsetof(run_data_section, instance_dir),
     .help = "folder of the subject's photos (JPEG or PNG)"},
    {"instance_prompt", CFG_STRING, offsetof(run_data_section, instance_prompt),
     .def = "a photo of {token} {class}", .help = "the photos' prompt (NAME.txt beside a photo replaces it)"},
    {"resolution", CFG_INT, offsetof(run_data_section, resolution), .def = "512", .min = 64, .max = 4096,
     .help = "training size: shorter side resized to it, then cropped square"},
    {"center_crop", CFG_BOOL, offsetof(run_data_section, center_crop), .def = "true",
     .help = "center crop (false: random crop)"},
    {"random_flip", CFG_BOOL, offsetof(run_data_section, random_flip), .def = "false",
     .help = "flip photos horizontally at random"},
    {"repeats", CFG_INT, offsetof(run_data_section, repeats), .def = "1", .min = 1, .max = 10000,
     .help = "times each photo appears per epoch"},
    {"strict", CFG_BOOL, offsetof(run_data_section, strict), .def = "false",
     .help = "stop at a bad image file (false: skip it with a warning)"},
};
static const cfg_schema data_schema = CFG_SCHEMA(run_data_section, data_fields);

static const cfg_field lora_fields[] = {
    {"rank", CFG_INT, offsetof(run_lora_section, rank), .def = "8", .min = 1, .max = 1024,
     .help = "adapter rank"},
    {"alpha", CFG_FLOAT, offsetof(run_lora_section, alpha), .def = "8", .min = 0, .max = 1e6,
     .help = "scale = alpha / rank"},
    {"dropout", CFG_FLOAT, offsetof(run_lora_section, dropout), .def = "0", .min = 0, .max = 1,
     .below_max = true,
     .help = "probability of dropping each input element of an adapter while training (peft's lora_dropout)"},
    {"targets", CFG_STRING_LIST, offsetof(run_lora_section, targets), .def = "[to_q, to_k, to_v, to_out.0]",
     .help = "UNet linear layers to adapt, by the end of their names (also ff.net.0.proj, ff.net.2, proj_in, proj_out)"},
    {"text_encoder", CFG_BOOL, offsetof(run_lora_section, text_encoder), .def = "false",
     .help = "also train adapters in the text encoder"},
    {"te_targets", CFG_STRING_LIST, offsetof(run_lora_section, te_targets),
     .def = "[q_proj, k_proj, v_proj, out_proj]", .help = "text-encoder layers to adapt"},
};
static const cfg_schema lora_schema = CFG_SCHEMA(run_lora_section, lora_fields);

static const cfg_field train_fields[] = {
    {"steps", CFG_INT, offsetof(run_train_section, steps), .def = "600", .min = 1, .max = 1e8,
     .help = "optimizer steps"},
    {"batch_size", CFG_INT, offsetof(run_train_section, batch_size), .def = "1", .min = 1, .max = 1024,
     .help = "instance photos per step (as many class images join them)"},
    {"gradient_accumulation", CFG_INT, offsetof(run_train_section, gradient_accumulation), .def = "1",
     .min = 1, .max = 1024, .help = "batches whose gradients add up before each optimizer step"},
    {"learning_rate", CFG_FLOAT, offsetof(run_train_section, learning_rate), .def = "1e-4", .min = 0,
     .max = 1, .above_min = true, .help = "UNet adapters' learning rate"},
    {"text_encoder_lr", CFG_FLOAT, offsetof(run_train_section, text_encoder_lr), .def = "5e-5", .min = 0,
     .max = 1, .above_min = true, .help = "text-encoder adapters' learning rate"},
    {"lr_scheduler", CFG_ENUM, offsetof(run_train_section, lr_scheduler), .choices = lr_schedule_names,
     .def = "constant", .help = "learning-rate schedule, as diffusers' get_scheduler"},
    {"lr_warmup_steps", CFG_INT, offsetof(run_train_section, lr_warmup_steps), .def = "0", .min = 0,
     .max = 1e8, .help = "steps of linear warmup"},
    {"lr_num_cycles", CFG_FLOAT, offsetof(run_train_section, lr_num_cycles), .def = "1", .min = 0,
     .max = 1000, .help = "cosine_with_restarts: restarts; cosine uses 0.5 (half a wave)"},
    {"lr_power", CFG_FLOAT, offsetof(run_train_section, lr_power), .def = "1", .min = 0, .max = 100,
     .help = "polynomial schedule's power"},
    {"adam_beta1", CFG_FLOAT, offsetof(run_train_section, adam_beta1), .def = "0.9", .min = 0, .max = 1,
     .below_max = true},
    {"adam_beta2", CFG_FLOAT, offsetof(run_train_section, adam_beta2), .def = "0.999", .min = 0, .max = 1,
     .below_max = true},
    {"adam_weight_decay", CFG_FLOAT, offsetof(run_train_section, adam_weight_decay), .def = "1e-2", .min = 0,
     .max = 10},
    {"adam_epsilon", CFG_FLOAT, offsetof(run_train_section, adam_epsilon), .def = "1e-8", .min = 0, .max = 1,
     .above_min = true},
    {"max_grad_norm", CFG_FLOAT, offsetof(run_train_section, max_grad_norm), .def = "1.0", .min = 0,
     .max = 1e9, .help = "clip gradients to this global norm (0: no clipping)"},
    {"snr_gamma", CFG_FLOAT, offsetof(run_train_section, snr_gamma), .def = "5.0", .min = 0, .max = 1e6,
     .help = "Min-SNR-gamma loss weighting (0: plain MSE)"},
    {"noise_offset", CFG_FLOAT, offsetof(run_train_section, noise_offset), .def = "0", .min = 0, .max = 1,
     .help = "offset noise: adds noise_offset x a per-channel normal to the noise"},
    {"seed", CFG_INT64, offsetof(run_train_section, seed), .def = "42", .min = 0, .max = 9e18},
    {"gradient_checkpointing", CFG_BOOL, offsetof(run_train_section, gradient_checkpointing),
     .def = "false", .help = "recompute each UNet layer in the backward pass: less memory, one more UNet forward per step"},
    {"resume", CFG_STRING, offsetof(run_train_section, resume), .def = "",
     .help = "\"latest\" (the newest state in output.dir) or a state file; empty: start fresh"},
};
static const cfg_schema train_schema = CFG_SCHEMA(run_train_section, train_fields);

static const cfg_field prior_fields[] = {
    {"enabled", CFG_BOOL, offsetof(run_prior_section, enabled), .def = "true",
     .help = "prior preservation on class images"},
    {"class_dir", CFG_STRING, offsetof(run_prior_section, class_dir),
     .help = "class images; missing ones are generated there (default: <output.dir>/class)"},
    {"class_prompt", CFG_STRING, offsetof(run_prior_section, class_prompt), .def = "a photo of {class}",
     .help = "the class images' prompt"},
    {"num_class_images", CFG_INT, offsetof(run_prior_section, num_class_images), .def = "100", .min = 1,
     .max = 1e6, .help = "class images to use (generated when fewer exist)"},
    {"prior_loss_weight", CFG_FLOAT, offsetof(run_prior_section, prior_loss_weight), .def = "1.0", .min = 0,
     .max = 1e6, .help = "weight of the class images' loss"},
};
static const cfg_schema prior_schema = CFG_SCHEMA(run_prior_section, prior_fields);

static const cfg_field run_fields[] = {
    {"model", CFG_SECTION, offsetof(run_config, model), .section = &model_schema,
     .help = "the base model"},
    {"subject", CFG_SECTION, offsetof(run_config, subject), .section = &subject_schema,
     .help = "what the adapter teaches"},
    {"data", CFG_SECTION, offsetof(run_config, data), .section = &data_schema,
     .help = "the subject's photos"},
    {"lora", CFG_SECTION, offsetof(run_config, lora), .section = &lora_schema,
     .help = "the adapters trained"},
    {"train", CFG_SECTION, offsetof(run_config, train), .section = &train_schema,
     .help = "optimization"},
    {"prior", CFG_SECTION, offsetof(run_config, prior), .section = &prior_schema,
     .help = "prior preservation"},
    {"validation", CFG_SECTION, offsetof(run_config, validation), .section = &sample_schema,
     .help = "prompts rendered by make sample (and during training)"},
    {"output", CFG_SECTION, offsetof(run_config, output), .section = &output_schema,
     .help = "where results go"},
};
const cfg_schema run_config_schema = CFG_SCHEMA(run_config, run_fields);

int run_config_read(run_config *cfg, const char *path, int n_overrides, char *const *overrides) {
    config_init(&run_config_schema, cfg);
    if (config_load(path, &run_config_schema, cfg)) return -1;
    for (int i = 0; i < n_overrides; i++)
        if (config_set(overrides[i], &run_config_schema, cfg)) return -1;
    if (!cfg->model.path || !*cfg->model.path) {
        err_set("%s: model.path is not set (a diffusers folder or a .safetensors file)", path);
        return -1;
    }
    sampler_kind sampler;
    if (cfg->validation.sampler && sampler_from_name(cfg->validation.sampler, &sampler)) {
        err_set("%s: validation.sampler: %s", path, err_msg());
        return -1;
    }
    return 0;
}

const cfg_field *run_config_field(const char *key) {
    const char *dot = strchr(key, '.');
    CHECK(dot, "run_config_field: \"%s\" is not section.key", key);
    for (int i = 0; i < run_config_schema.n_fields; i++) {
        const cfg_field *section = &run_config_schema.fields[i];
        if (strncmp(section->key, key, (size_t)(dot - key)) || section->key[dot - key]) continue;
        for (int k = 0; k < section->section->n_fields; k++)
            if (strcmp(section->section->fields[k].key, dot + 1) == 0) return &section->section->fields[k];
    }
    DIE("run_config_field: no config key \"%s\"", key);
}

// Appends s to the growing buffer.
static void append(char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
    if (*len + n + 1 > *cap) {
        *cap = 2 * (*len + n + 1);
        *buf = realloc(*buf, *cap);
        CHECK(*buf, "out of memory");
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
}

char *run_config_expand(const run_config *cfg, const char *prompt) {
    char *out = NULL;
    size_t len = 0, cap = 0;
    append(&out, &len, &cap, "", 0);
    for (const char *p = prompt; *p;) {
        if (strncmp(p, "{token}", 7) == 0) {
            append(&out, &len, &cap, cfg->subject.token, strlen(cfg->subject.token));
            p += 7;
        } else if (strncmp(p, "{class}", 7) == 0) {
            append(&out, &len, &cap, cfg->subject.class_name, strlen(cfg->subject.class_name));
            p += 7;
        } else {
            append(&out, &len, &cap, p, 1);
            p++;
        }
    }
    return out;
}

int run_config_open_pipeline(pipeline *p, const run_config *cfg) {
    const run_model_section *m = &cfg->model;
    *p = (pipeline){0};
    sd_load_options lo = {.dt = m->dtype == RUN_DTYPE_BF16 ? DT_BF16 : DT_F32,
                          .dev = m->device == RUN_DEVICE_CUDA ? DEV_CUDA : DEV_CPU, .config_dir = m->config_dir};
    if (lo.dev == DEV_CUDA && !backend_available(DEV_CUDA)) {
        err_set("model.device is cuda, but no CUDA device answers here (or this is a CPU-only build)");
        return -1;
    }
    return pipeline_open(p, m->path, m->tokenizer, m->scheduler_config, &lo);
}

int run_config_clip_skip(const run_config *cfg) { return cfg->model.clip_skip - 1; }

int run_config_render_params(render_params *rp, const pipeline *p, const run_config *cfg) {
    const run_sample_section *v = &cfg->validation;
    render_params_default(rp, p);
    rp->negative_prompt = v->negative_prompt;
    rp->steps = v->steps;
    rp->cfg_scale = (float)v->cfg;
    rp->width = v->width, rp->height = v->height;
    rp->batch = v->images_per_prompt;
    rp->clip_skip = run_config_clip_skip(cfg);
    if (v->sampler && sampler_from_name(v->sampler, &rp->sampler)) {
        err_set("validation.sampler: %s", err_msg());
        return -1;
    }
    return 0;
}
