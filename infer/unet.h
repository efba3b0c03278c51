// diffusers' UNet2DConditionModel as SD1.x and SD2.x configure it: sinusoidal time
// embedding and its MLP, down blocks of ResNet blocks (with Transformer2DModel
// cross-attention in CrossAttn blocks) and a strided-conv downsampler, a middle
// block, up blocks that concatenate the matching skip connection before each
// ResNet block and upsample by nearest 2x + conv, and a GroupNorm-SiLU-conv head.
// Parameters live under "unet.".
#pragma once
#include "infer/config.h"
#include "infer/nn.h"

// BasicTransformerBlock: self-attention, cross-attention, GEGLU feed-forward, each
// pre-normed with a LayerNorm and added back.
typedef struct {
    nn_norm norm1, norm2, norm3;
    nn_attention attn1, attn2;
    nn_linear ff_in, ff_out;  // ff.net.0.proj (to 2 x 4C for GEGLU), ff.net.2
} unet_transformer_block;

// Transformer2DModel: GroupNorm, proj_in, the blocks over the H*W tokens, proj_out,
// plus the input. proj_in/proj_out are 1x1 convs in SD1 and linears in SD2; on
// channels-last data both are the same matrix product.
typedef struct {
    nn_norm norm;
    nn_linear proj_in, proj_out;
    int n_blocks;
    unet_transformer_block *blocks;
} unet_transformer;

// A ResNet block and the transformer after it (if any): the unit that gradient
// checkpointing recomputes.
typedef struct {
    const nn_resnet *resnet;
    const unet_transformer *attention;  // NULL when none
} unet_layer;

typedef struct {
    int n_layers;
    nn_resnet *resnets;
    unet_transformer *attentions;  // NULL in DownBlock2D / UpBlock2D
    unet_layer *layers;            // [n_layers]
    bool has_sampler;
    nn_conv sampler;  // downsamplers.0.conv (stride 2) or upsamplers.0.conv
} unet_block;

typedef struct {
    unet_config cfg;
    nn_linear time_linear_1, time_linear_2;
    nn_conv conv_in, conv_out;
    nn_norm conv_norm_out;
    unet_block down[CFG_MAX_BLOCKS], up[CFG_MAX_BLOCKS];
    nn_resnet mid_resnets[2];
    unet_transformer mid_attention;
    unet_layer mid_layers[2];  // resnet 0 + attention, resnet 1
    // Gradient checkpointing: each layer's activations are recomputed in the backward
    // pass instead of kept (the trainer sets it; no effect without gradients).
    bool checkpoint;
} unet_model;

void unet_init(unet_model *m, const unet_config *cfg, param_set *ps, const char *prefix);
void unet_free(unet_model *m);
// sample [N, h, w, in_channels] (any size; odd sizes as diffusers handles them), timesteps [N]
// (f32), context [N, T, cross_attention_dim] -> the model output [N, h, w, out_channels].
tensor *unet_forward(const unet_model *m, tensor *sample, tensor *timesteps, tensor *context);
