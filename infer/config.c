#include "infer/config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/files.h"

// --- reading config.json ------------------------------------------------------------------------

typedef struct {
    const char *path;
    cJSON *root;
    bool failed;  // the first error wins: later reads see failed and do nothing
} json_file;

static int json_open(json_file *j, const char *path) {
    *j = (json_file){.path = path};
    return read_json_object(path, &j->root) ? -1 : 0;
}

static void json_fail(json_file *j, const char *key, const char *what) {
    if (!j->failed) err_set("%s: key \"%s\": %s", j->path, key, what);
    j->failed = true;
}

// The key's value, or NULL when absent or null (diffusers writes null for "default").
static const cJSON *json_get(json_file *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j->root, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static int json_int(json_file *j, const char *key, int dflt) {
    const cJSON *v = json_get(j, key);
    if (!v) return dflt;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble)) {
        json_fail(j, key, "expected an integer");
        return dflt;
    }
    return (int)v->valuedouble;
}

static float json_float(json_file *j, const char *key, float dflt) {
    const cJSON *v = json_get(j, key);
    if (!v) return dflt;
    if (!cJSON_IsNumber(v)) {
        json_fail(j, key, "expected a number");
        return dflt;
    }
    return (float)v->valuedouble;
}

static bool json_bool(json_file *j, const char *key, bool dflt) {
    const cJSON *v = json_get(j, key);
    if (!v) return dflt;
    if (!cJSON_IsBool(v)) {
        json_fail(j, key, "expected true or false");
        return dflt;
    }
    return cJSON_IsTrue(v);
}

static const char *json_string(json_file *j, const char *key, const char *dflt) {
    const cJSON *v = json_get(j, key);
    if (!v) return dflt;
    if (!cJSON_IsString(v)) {
        json_fail(j, key, "expected a string");
        return dflt;
    }
    return v->valuestring;
}

// A per-block integer: one number for every block, or a list of n. Returns the
// number of values written (n), or 0 when the key is absent.
static int json_per_block(json_file *j, const char *key, int *out, int n) {
    const cJSON *v = json_get(j, key);
    if (!v) return 0;
    if (cJSON_IsNumber(v)) {
        for (int i = 0; i < n; i++) out[i] = (int)v->valuedouble;
        return n;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != n) {
        char what[64];
        snprintf(what, sizeof what, "expected an integer or a list of %d integers", n);
        json_fail(j, key, what);
        return 0;
    }
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(v, i);
        if (!cJSON_IsNumber(e)) {
            json_fail(j, key, "expected integers");
            return 0;
        }
        out[i] = (int)e->valuedouble;
    }
    return n;
}

// A list of integers (block_out_channels); returns its length.
static int json_int_list(json_file *j, const char *key, int *out, int max) {
    const cJSON *v = json_get(j, key);
    int n = v && cJSON_IsArray(v) ? cJSON_GetArraySize(v) : -1;
    if (n < 1 || n > max) {
        char what[64];
        snprintf(what, sizeof what, "expected a list of 1 to %d integers", max);
        json_fail(j, key, what);
        return 0;
    }
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(v, i);
        if (!cJSON_IsNumber(e) || e->valuedouble < 1) {
            json_fail(j, key, "expected positive integers");
            return 0;
        }
        out[i] = (int)e->valuedouble;
    }
    return n;
}

// A list of block type names, each one of the two accepted; writes 0 for the first
// name and 1 for the second. Returns the length.
static int json_block_types(json_file *j, const char *key, int *out, const char *name0,
                            const char *name1) {
    const cJSON *v = json_get(j, key);
    int n = v && cJSON_IsArray(v) ? cJSON_GetArraySize(v) : -1;
    if (n < 1 || n > CFG_MAX_BLOCKS) {
        json_fail(j, key, "expected a list of block types");
        return 0;
    }
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(v, i);
        const char *s = cJSON_IsString(e) ? e->valuestring : "";
        if (strcmp(s, name0) == 0) out[i] = 0;
        else if (name1 && strcmp(s, name1) == 0) out[i] = 1;
        else {
            char what[160];
            snprintf(what, sizeof what, "block type \"%s\" is not supported (%s%s%s)", s, name0,
                     name1 ? " or " : "", name1 ? name1 : "");
            json_fail(j, key, what);
            return 0;
        }
    }
    return n;
}

// Keys whose non-default values change the model in ways we do not implement.
static void json_require_absent(json_file *j, const char *key) {
    if (json_get(j, key)) json_fail(j, key, "is not supported (only null or absent)");
}

static void json_require_false(json_file *j, const char *key) {
    const cJSON *v = json_get(j, key);
    if (v && !cJSON_IsFalse(v)) json_fail(j, key, "is not supported (only false)");
}

static void json_require_string(json_file *j, const char *key, const char *only) {
    const char *s = json_string(j, key, only);
    if (!j->failed && strcmp(s, only) != 0) {
        char what[96];
        snprintf(what, sizeof what, "\"%s\" is not supported (only \"%s\")", s, only);
        json_fail(j, key, what);
    }
}

static void json_require_number(json_file *j, const char *key, double only) {
    float v = json_float(j, key, (float)only);
    if (!j->failed && v != (float)only) {
        char what[64];
        snprintf(what, sizeof what, "is not supported (only %g)", only);
        json_fail(j, key, what);
    }
}

static int json_close(json_file *j) {
    cJSON_Delete(j->root);
    return j->failed ? -1 : 0;
}

static void require_positive(json_file *j, const char *key, int v) {
    if (v < 1) json_fail(j, key, "must be positive");
}

// --- CLIP text model (transformers' CLIPTextConfig) ---------------------------------------------

int clip_config_load(clip_config *c, const char *path) {
    json_file j;
    if (json_open(&j, path)) return -1;
    *c = (clip_config){
        .vocab_size = json_int(&j, "vocab_size", 49408),
        .hidden_size = json_int(&j, "hidden_size", 512),
        .intermediate_size = json_int(&j, "intermediate_size", 2048),
        .num_hidden_layers = json_int(&j, "num_hidden_layers", 12),
        .num_attention_heads = json_int(&j, "num_attention_heads", 8),
        .max_position_embeddings = json_int(&j, "max_position_embeddings", 77),
        .layer_norm_eps = json_float(&j, "layer_norm_eps", 1e-5f),
    };
    const char *act = json_string(&j, "hidden_act", "quick_gelu");
    if (strcmp(act, "quick_gelu") == 0) c->act = CLIP_QUICK_GELU;
    else if (strcmp(act, "gelu") == 0) c->act = CLIP_GELU;
    else if (strcmp(act, "gelu_new") == 0 || strcmp(act, "gelu_pytorch_tanh") == 0) c->act = CLIP_GELU_TANH;
    else json_fail(&j, "hidden_act", "is not one of quick_gelu, gelu, gelu_new, gelu_pytorch_tanh");
    require_positive(&j, "vocab_size", c->vocab_size);
    require_positive(&j, "hidden_size", c->hidden_size);
    require_positive(&j, "intermediate_size", c->intermediate_size);
    require_positive(&j, "num_hidden_layers", c->num_hidden_layers);
    require_positive(&j, "max_position_embeddings", c->max_position_embeddings);
    if (c->num_attention_heads < 1 || c->hidden_size % c->num_attention_heads)
        json_fail(&j, "num_attention_heads", "must divide hidden_size");
    return json_close(&j);
}

void clip_config_sd15(clip_config *c) {
    *c = (clip_config){.vocab_size = 49408, .hidden_size = 768, .intermediate_size = 3072,
                       .num_hidden_layers = 12, .num_attention_heads = 12,
                       .max_position_embeddings = 77, .act = CLIP_QUICK_GELU,
                       .layer_norm_eps = 1e-5f};
}

// --- UNet2DConditionModel -------------------------------------------------------------------------

int unet_config_load(unet_config *c, const char *path) {
    json_file j;
    if (json_open(&j, path)) return -1;
    *c = (unet_config){
        .in_channels = json_int(&j, "in_channels", 4),
        .out_channels = json_int(&j, "out_channels", 4),
        .sample_size = json_int(&j, "sample_size", 64),
        .layers_per_block = json_int(&j, "layers_per_block", 2),
        .cross_attention_dim = json_int(&j, "cross_attention_dim", 1280),
        .norm_num_groups = json_int(&j, "norm_num_groups", 32),
        .norm_eps = json_float(&j, "norm_eps", 1e-5f),
        .use_linear_projection = json_bool(&j, "use_linear_projection", false),
        .upcast_attention = json_bool(&j, "upcast_attention", false),
        .flip_sin_to_cos = json_bool(&j, "flip_sin_to_cos", true),
        .freq_shift = json_float(&j, "freq_shift", 0),
        .downsample_padding = json_int(&j, "downsample_padding", 1),
        .mid_block_scale_factor = json_float(&j, "mid_block_scale_factor", 1),
    };
    int n = json_int_list(&j, "block_out_channels", c->block_out_channels, CFG_MAX_BLOCKS);
    c->n_blocks = n;
    int down[CFG_MAX_BLOCKS], up[CFG_MAX_BLOCKS];
    int nd = json_block_types(&j, "down_block_types", down, "DownBlock2D", "CrossAttnDownBlock2D");
    int nu = json_block_types(&j, "up_block_types", up, "UpBlock2D", "CrossAttnUpBlock2D");
    if (!j.failed && nd != n) json_fail(&j, "down_block_types", "needs one type per block_out_channels entry");
    if (!j.failed && nu != n) json_fail(&j, "up_block_types", "needs one type per block_out_channels entry");
    for (int i = 0; i < n && !j.failed; i++) {
        c->down[i] = down[i] ? BLOCK_CROSS_ATTN : BLOCK_PLAIN;
        c->up[i] = up[i] ? BLOCK_CROSS_ATTN : BLOCK_PLAIN;
    }
    // SD1/SD2 configs name the head count attention_head_dim (a diffusers naming
    // slip it keeps for compatibility); num_attention_heads wins when present.
    if (!json_per_block(&j, "num_attention_heads", c->heads, n) &&
        !json_per_block(&j, "attention_head_dim", c->heads, n))
        for (int i = 0; i < n; i++) c->heads[i] = 8;
    if (!json_per_block(&j, "transformer_layers_per_block", c->transformer_layers, n))
        for (int i = 0; i < n; i++) c->transformer_layers[i] = 1;
    for (int i = 0; i < n && !j.failed; i++) {
        if (c->heads[i] < 1 || c->block_out_channels[i] % c->heads[i])
            json_fail(&j, "attention_head_dim", "each block's head count must divide its channels");
        else if (c->transformer_layers[i] < 1)
            json_fail(&j, "transformer_layers_per_block", "must be positive");
        else if (c->block_out_channels[i] % c->norm_num_groups)
            json_fail(&j, "norm_num_groups", "must divide every block's channels");
    }
    require_positive(&j, "in_channels", c->in_channels);
    require_positive(&j, "out_channels", c->out_channels);
    require_positive(&j, "layers_per_block", c->layers_per_block);
    require_positive(&j, "cross_attention_dim", c->cross_attention_dim);
    require_positive(&j, "norm_num_groups", c->norm_num_groups);

    // What SD1.x and SD2.x use; SDXL's and other variants' keys must keep their
    // defaults until they are implemented.
    json_require_string(&j, "mid_block_type", "UNetMidBlock2DCrossAttn");
    json_require_string(&j, "act_fn", "silu");
    json_require_string(&j, "resnet_time_scale_shift", "default");
    json_require_string(&j, "time_embedding_type", "positional");
    json_require_string(&j, "attention_type", "default");
    json_require_false(&j, "center_input_sample");
    json_require_false(&j, "only_cross_attention");
    json_require_false(&j, "dual_cross_attention");
    json_require_false(&j, "resnet_skip_time_act");
    json_require_false(&j, "class_embeddings_concat");
    json_require_number(&j, "conv_in_kernel", 3);
    json_require_number(&j, "conv_out_kernel", 3);
    json_require_number(&j, "resnet_out_scale_factor", 1);
    const char *absent[] = {"class_embed_type", "addition_embed_type", "num_class_embeds",
                            "encoder_hid_dim", "encoder_hid_dim_type", "time_embedding_dim",
                            "time_embedding_act_fn", "timestep_post_act", "time_cond_proj_dim",
                            "projection_class_embeddings_input_dim", "cross_attention_norm",
                            "reverse_transformer_layers_per_block",
                            "mid_block_only_cross_attention"};
    for (size_t i = 0; i < sizeof absent / sizeof *absent; i++) json_require_absent(&j, absent[i]);
    return json_close(&j);
}

void unet_config_sd15(unet_config *c) {
    *c = (unet_config){
        .in_channels = 4, .out_channels = 4, .sample_size = 64, .n_blocks = 4,
        .block_out_channels = {320, 640, 1280, 1280},
        .down = {BLOCK_CROSS_ATTN, BLOCK_CROSS_ATTN, BLOCK_CROSS_ATTN, BLOCK_PLAIN},
        .up = {BLOCK_PLAIN, BLOCK_CROSS_ATTN, BLOCK_CROSS_ATTN, BLOCK_CROSS_ATTN},
        .layers_per_block = 2, .heads = {8, 8, 8, 8}, .transformer_layers = {1, 1, 1, 1},
        .cross_attention_dim = 768, .norm_num_groups = 32, .norm_eps = 1e-5f,
        .flip_sin_to_cos = true, .freq_shift = 0, .downsample_padding = 1,
        .mid_block_scale_factor = 1,
    };
}

// --- AutoencoderKL ----------------------------------------------------------------------------------

int vae_config_load(vae_config *c, const char *path) {
    json_file j;
    if (json_open(&j, path)) return -1;
    *c = (vae_config){
        .in_channels = json_int(&j, "in_channels", 3),
        .out_channels = json_int(&j, "out_channels", 3),
        .latent_channels = json_int(&j, "latent_channels", 4),
        .sample_size = json_int(&j, "sample_size", 32),
        .layers_per_block = json_int(&j, "layers_per_block", 1),
        .norm_num_groups = json_int(&j, "norm_num_groups", 32),
        .scaling_factor = json_float(&j, "scaling_factor", 0.18215f),
        .use_quant_conv = json_bool(&j, "use_quant_conv", true),
        .use_post_quant_conv = json_bool(&j, "use_post_quant_conv", true),
        .mid_block_add_attention = json_bool(&j, "mid_block_add_attention", true),
    };
    int n = json_int_list(&j, "block_out_channels", c->block_out_channels, CFG_MAX_BLOCKS);
    c->n_blocks = n;
    int types[CFG_MAX_BLOCKS];
    if (!j.failed && json_block_types(&j, "down_block_types", types, "DownEncoderBlock2D", NULL) != n)
        json_fail(&j, "down_block_types", "needs one type per block_out_channels entry");
    if (!j.failed && json_block_types(&j, "up_block_types", types, "UpDecoderBlock2D", NULL) != n)
        json_fail(&j, "up_block_types", "needs one type per block_out_channels entry");
    for (int i = 0; i < n && !j.failed; i++)
        if (c->block_out_channels[i] % c->norm_num_groups)
            json_fail(&j, "norm_num_groups", "must divide every block's channels");
    require_positive(&j, "in_channels", c->in_channels);
    require_positive(&j, "out_channels", c->out_channels);
    require_positive(&j, "latent_channels", c->latent_channels);
    require_positive(&j, "layers_per_block", c->layers_per_block);
    require_positive(&j, "norm_num_groups", c->norm_num_groups);
    json_require_string(&j, "act_fn", "silu");
    // Pipelines shift and rescale latents with these (SD3, some SDXL fine-tunes).
    json_require_absent(&j, "shift_factor");
    json_require_absent(&j, "latents_mean");
    json_require_absent(&j, "latents_std");
    return json_close(&j);
}

void vae_config_sd15(vae_config *c) {
    *c = (vae_config){
        .in_channels = 3, .out_channels = 3, .latent_channels = 4, .sample_size = 512,
        .n_blocks = 4, .block_out_channels = {128, 256, 512, 512}, .layers_per_block = 2,
        .norm_num_groups = 32, .scaling_factor = 0.18215f, .use_quant_conv = true,
        .use_post_quant_conv = true, .mid_block_add_attention = true,
    };
}
