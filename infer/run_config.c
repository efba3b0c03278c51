#include "infer/run_config.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"

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
};
static const cfg_schema sample_schema = CFG_SCHEMA(run_sample_section, sample_fields);

static const cfg_field output_fields[] = {
    {"dir", CFG_STRING, offsetof(run_output_section, dir), .def = "output",
     .help = "where adapters are written; samples go to <dir>/samples"},
    {"name", CFG_STRING, offsetof(run_output_section, name), .def = "lora",
     .help = "adapter file name stem: <dir>/<name>.safetensors"},
};
static const cfg_schema output_schema = CFG_SCHEMA(run_output_section, output_fields);

static const cfg_field run_fields[] = {
    {"model", CFG_SECTION, offsetof(run_config, model), .section = &model_schema,
     .help = "the base model"},
    {"subject", CFG_SECTION, offsetof(run_config, subject), .section = &subject_schema,
     .help = "what the adapter teaches"},
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
    return 0;
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
