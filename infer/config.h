// The three models' configurations, read from the config.json files diffusers and
// transformers write (keys and defaults as their constructors define them), or
// built in for SD1.x single-file checkpoints.
//
// A config key we do not implement that would change the computation (an SDXL
// addition embedding, a different time-embedding type) is an error naming the file
// and key, never silently ignored.
#pragma once
#include <stdbool.h>

#define CFG_MAX_BLOCKS 6

typedef struct {
    int vocab_size, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads;
    int max_position_embeddings;
    enum { CLIP_QUICK_GELU, CLIP_GELU, CLIP_GELU_TANH } act;  // config's hidden_act
    float layer_norm_eps;
} clip_config;

typedef enum { BLOCK_PLAIN, BLOCK_CROSS_ATTN } unet_block_kind;

typedef struct {
    int in_channels, out_channels, sample_size;
    int n_blocks;
    int block_out_channels[CFG_MAX_BLOCKS];
    unet_block_kind down[CFG_MAX_BLOCKS];
    unet_block_kind up[CFG_MAX_BLOCKS];
    int layers_per_block;
    int heads[CFG_MAX_BLOCKS];               // per down block (diffusers' attention_head_dim)
    int transformer_layers[CFG_MAX_BLOCKS];  // per down block
    int cross_attention_dim;
    int norm_num_groups;
    float norm_eps;
    bool use_linear_projection, upcast_attention;
    bool flip_sin_to_cos;
    float freq_shift;
    int downsample_padding;
    float mid_block_scale_factor;
} unet_config;

typedef struct {
    int in_channels, out_channels, latent_channels, sample_size;
    int n_blocks;
    int block_out_channels[CFG_MAX_BLOCKS];
    int layers_per_block;
    int norm_num_groups;
    float scaling_factor;
    bool use_quant_conv, use_post_quant_conv, mid_block_add_attention;
} vae_config;

// 0, or -1 with err_msg() naming the file and the key.
int clip_config_load(clip_config *c, const char *path);
int unet_config_load(unet_config *c, const char *path);
int vae_config_load(vae_config *c, const char *path);

// Stable Diffusion 1.x (1.4, 1.5 and their fine-tunes): CLIP ViT-L/14's text model,
// the UNet and VAE of runwayml/stable-diffusion-v1-5.
void clip_config_sd15(clip_config *c);
void unet_config_sd15(unet_config *c);
void vae_config_sd15(vae_config *c);
