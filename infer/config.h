// The three models' configurations, read from the config.json files diffusers and
// transformers write (keys and defaults as their constructors define them), or
// built in for SD1.x single-file checkpoints.
//
// A config key we do not implement that would change the computation (an SDXL
// addition embedding, a different time-embedding type) is an error naming the file
// and key, never silently ignored.
#pragma once
#include <stdbool.h>

// The largest counts and sizes a config.json may give (SD1/SD2 and SDXL stay well
// inside them); a file beyond one is an error naming the file and the key. Arrays
// sized by these, such as unet_forward's stack of skip connections, cannot overflow.
#define CFG_MAX_BLOCKS 6             // resolution levels of a UNet or a VAE (SD: 4)
#define CFG_MAX_LAYERS_PER_BLOCK 8   // ResNets in a down block (SD: 2; an up block has one more)
#define CFG_MAX_DEPTH 64             // transformer layers: the text encoder's, or per UNet block
#define CFG_MAX_WIDTH 16384          // channels, hidden and feed-forward sizes, head counts
#define CFG_MAX_VOCAB (1 << 20)      // token ids (CLIP: 49408)
#define CFG_MAX_POSITIONS 4096       // text encoder positions (CLIP: 77)
#define CFG_MAX_SAMPLE_SIZE 8192     // sample_size: a side in pixels or latent pixels

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
