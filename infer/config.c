#include "infer/config.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/json_reader.h"

// --- reading config.json ------------------------------------------------------------------------

// A list of block type names, each one of the two accepted; writes 0 for the first
// name and 1 for the second. Returns the length (0 on error).
static int json_block_types(json_reader *r, const char *key, int *out, const char *name0,
                            const char *name1) {
    const cJSON *v = json_item(r, key);
    int n = v && cJSON_IsArray(v) ? cJSON_GetArraySize(v) : -1;
    if (n < 1 || n > CFG_MAX_BLOCKS) {
        json_reader_fail(r, key, "expected a list of block types");
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
            json_reader_fail(r, key, what);
            return 0;
        }
    }
    return n;
}

// Ranges of the values read.
#define WIDTH 1, CFG_MAX_WIDTH
#define DEPTH 1, CFG_MAX_DEPTH
#define LAYERS_PER_BLOCK 1, CFG_MAX_LAYERS_PER_BLOCK
#define SAMPLE_SIZE 1, CFG_MAX_SAMPLE_SIZE
// A normalisation's epsilon is above zero, so that a constant input divides by no zero.
#define EPSILON FLT_MIN, 1.0f
#define FACTOR FLT_MIN, 1000.0f  // a positive scale

// --- CLIP text model (transformers' CLIPTextConfig) ---------------------------------------------

int clip_config_load(clip_config *c, const char *path) {
    json_reader j;
    if (json_reader_open(&j, path)) return -1;
    // transformers' CLIPTextConfig defaults.
    *c = (clip_config){.vocab_size = 49408, .hidden_size = 512, .intermediate_size = 2048,
                       .num_hidden_layers = 12, .num_attention_heads = 8,
                       .max_position_embeddings = 77, .layer_norm_eps = 1e-5f};
    json_int(&j, "vocab_size", 1, CFG_MAX_VOCAB, &c->vocab_size);
    json_int(&j, "hidden_size", WIDTH, &c->hidden_size);
    json_int(&j, "intermediate_size", WIDTH, &c->intermediate_size);
    json_int(&j, "num_hidden_layers", DEPTH, &c->num_hidden_layers);
    json_int(&j, "num_attention_heads", WIDTH, &c->num_attention_heads);
    json_int(&j, "max_position_embeddings", 1, CFG_MAX_POSITIONS, &c->max_position_embeddings);
    json_float(&j, "layer_norm_eps", EPSILON, &c->layer_norm_eps);
    static const char *const acts[] = {"quick_gelu", "gelu", "gelu_new", "gelu_pytorch_tanh", NULL};
    static const int act_of[] = {CLIP_QUICK_GELU, CLIP_GELU, CLIP_GELU_TANH, CLIP_GELU_TANH};
    int act = 0;
    json_choice(&j, "hidden_act", acts, &act);
    c->act = act_of[act];
    if (!j.failed && c->hidden_size % c->num_attention_heads)
        json_reader_fail(&j, "num_attention_heads", "must divide hidden_size");
    return json_reader_close(&j);
}

void clip_config_sd15(clip_config *c) {
    *c = (clip_config){.vocab_size = 49408, .hidden_size = 768, .intermediate_size = 3072,
                       .num_hidden_layers = 12, .num_attention_heads = 12,
                       .max_position_embeddings = 77, .act = CLIP_QUICK_GELU,
                       .layer_norm_eps = 1e-5f};
}

// --- UNet2DConditionModel -------------------------------------------------------------------------

int unet_config_load(unet_config *c, const char *path) {
    json_reader j;
    if (json_reader_open(&j, path)) return -1;
    // UNet2DConditionModel's defaults.
    *c = (unet_config){.in_channels = 4, .out_channels = 4, .sample_size = 64,
                       .layers_per_block = 2, .cross_attention_dim = 1280, .norm_num_groups = 32,
                       .norm_eps = 1e-5f, .flip_sin_to_cos = true, .downsample_padding = 1,
                       .mid_block_scale_factor = 1};
    json_int(&j, "in_channels", WIDTH, &c->in_channels);
    json_int(&j, "out_channels", WIDTH, &c->out_channels);
    json_int(&j, "sample_size", SAMPLE_SIZE, &c->sample_size);
    json_int(&j, "layers_per_block", LAYERS_PER_BLOCK, &c->layers_per_block);
    json_int(&j, "cross_attention_dim", WIDTH, &c->cross_attention_dim);
    json_int(&j, "norm_num_groups", WIDTH, &c->norm_num_groups);
    json_float(&j, "norm_eps", EPSILON, &c->norm_eps);
    json_bool(&j, "use_linear_projection", &c->use_linear_projection);
    json_bool(&j, "upcast_attention", &c->upcast_attention);
    json_bool(&j, "flip_sin_to_cos", &c->flip_sin_to_cos);
    json_float(&j, "freq_shift", 0, 1, &c->freq_shift);
    json_int(&j, "downsample_padding", 0, 16, &c->downsample_padding);
    json_float(&j, "mid_block_scale_factor", FACTOR, &c->mid_block_scale_factor);
    int n = json_int_list(&j, "block_out_channels", CFG_MAX_BLOCKS, WIDTH, c->block_out_channels);
    c->n_blocks = n;
    int down[CFG_MAX_BLOCKS], up[CFG_MAX_BLOCKS];
    int nd = json_block_types(&j, "down_block_types", down, "DownBlock2D", "CrossAttnDownBlock2D");
    int nu = json_block_types(&j, "up_block_types", up, "UpBlock2D", "CrossAttnUpBlock2D");
    if (!j.failed && nd != n) json_reader_fail(&j, "down_block_types", "needs one type per block_out_channels entry");
    if (!j.failed && nu != n) json_reader_fail(&j, "up_block_types", "needs one type per block_out_channels entry");
    for (int i = 0; i < n && !j.failed; i++) {
        c->down[i] = down[i] ? BLOCK_CROSS_ATTN : BLOCK_PLAIN;
        c->up[i] = up[i] ? BLOCK_CROSS_ATTN : BLOCK_PLAIN;
        c->heads[i] = 8;
        c->transformer_layers[i] = 1;
    }
    // SD1/SD2 configs name the head count attention_head_dim (a diffusers naming
    // slip it keeps for compatibility); num_attention_heads wins when present.
    if (n && !json_int_or_list(&j, "num_attention_heads", n, WIDTH, c->heads))
        json_int_or_list(&j, "attention_head_dim", n, WIDTH, c->heads);
    if (n) json_int_or_list(&j, "transformer_layers_per_block", n, DEPTH, c->transformer_layers);
    for (int i = 0; i < n && !j.failed; i++) {
        if (c->block_out_channels[i] % c->heads[i])
            json_reader_fail(&j, "attention_head_dim", "each block's head count must divide its channels");
        else if (c->block_out_channels[i] % c->norm_num_groups)
            json_reader_fail(&j, "norm_num_groups", "must divide every block's channels");
    }

    // What SD1.x and SD2.x use; SDXL's and other variants' keys must keep their
    // defaults until they are implemented.
    json_require_string(&j, "mid_block_type", "UNetMidBlock2DCrossAttn");
    json_require_string(&j, "act_fn", "silu");
    json_require_string(&j, "resnet_time_scale_shift", "default");
    json_require_string(&j, "time_embedding_type", "positional");
    json_require_string(&j, "attention_type", "default");
    const char *only_false[] = {"center_input_sample", "only_cross_attention", "dual_cross_attention",
                                "resnet_skip_time_act", "class_embeddings_concat"};
    for (size_t i = 0; i < sizeof only_false / sizeof *only_false; i++)
        json_require_false(&j, only_false[i], "is not supported (only false)");
    json_require_number(&j, "conv_in_kernel", 3);
    json_require_number(&j, "conv_out_kernel", 3);
    json_require_number(&j, "resnet_out_scale_factor", 1);
    const char *absent[] = {"class_embed_type", "addition_embed_type", "num_class_embeds",
                            "encoder_hid_dim", "encoder_hid_dim_type", "time_embedding_dim",
                            "time_embedding_act_fn", "timestep_post_act", "time_cond_proj_dim",
                            "projection_class_embeddings_input_dim", "cross_attention_norm",
                            "reverse_transformer_layers_per_block",
                            "mid_block_only_cross_attention"};
    for (size_t i = 0; i < sizeof absent / sizeof *absent; i++)
        json_require_absent(&j, absent[i], "is not supported (only null or absent)");
    return json_reader_close(&j);
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
    json_reader j;
    if (json_reader_open(&j, path)) return -1;
    // AutoencoderKL's defaults.
    *c = (vae_config){.in_channels = 3, .out_channels = 3, .latent_channels = 4, .sample_size = 32,
                      .layers_per_block = 1, .norm_num_groups = 32, .scaling_factor = 0.18215f,
                      .use_quant_conv = true, .use_post_quant_conv = true,
                      .mid_block_add_attention = true};
    json_int(&j, "in_channels", WIDTH, &c->in_channels);
    json_int(&j, "out_channels", WIDTH, &c->out_channels);
    json_int(&j, "latent_channels", WIDTH, &c->latent_channels);
    json_int(&j, "sample_size", SAMPLE_SIZE, &c->sample_size);
    json_int(&j, "layers_per_block", LAYERS_PER_BLOCK, &c->layers_per_block);
    json_int(&j, "norm_num_groups", WIDTH, &c->norm_num_groups);
    json_float(&j, "scaling_factor", FACTOR, &c->scaling_factor);
    json_bool(&j, "use_quant_conv", &c->use_quant_conv);
    json_bool(&j, "use_post_quant_conv", &c->use_post_quant_conv);
    json_bool(&j, "mid_block_add_attention", &c->mid_block_add_attention);
    int n = json_int_list(&j, "block_out_channels", CFG_MAX_BLOCKS, WIDTH, c->block_out_channels);
    c->n_blocks = n;
    int types[CFG_MAX_BLOCKS];
    if (!j.failed && json_block_types(&j, "down_block_types", types, "DownEncoderBlock2D", NULL) != n)
        json_reader_fail(&j, "down_block_types", "needs one type per block_out_channels entry");
    if (!j.failed && json_block_types(&j, "up_block_types", types, "UpDecoderBlock2D", NULL) != n)
        json_reader_fail(&j, "up_block_types", "needs one type per block_out_channels entry");
    for (int i = 0; i < n && !j.failed; i++)
        if (c->block_out_channels[i] % c->norm_num_groups)
            json_reader_fail(&j, "norm_num_groups", "must divide every block's channels");
    json_require_string(&j, "act_fn", "silu");
    // Pipelines shift and rescale latents with these (SD3, some SDXL fine-tunes).
    json_require_absent(&j, "shift_factor", "is not supported (only null or absent)");
    json_require_absent(&j, "latents_mean", "is not supported (only null or absent)");
    json_require_absent(&j, "latents_std", "is not supported (only null or absent)");
    return json_reader_close(&j);
}

void vae_config_sd15(vae_config *c) {
    *c = (vae_config){
        .in_channels = 3, .out_channels = 3, .latent_channels = 4, .sample_size = 512,
        .n_blocks = 4, .block_out_channels = {128, 256, 512, 512}, .layers_per_block = 2,
        .norm_num_groups = 32, .scaling_factor = 0.18215f, .use_quant_conv = true,
        .use_post_quant_conv = true, .mid_block_add_attention = true,
    };
}
