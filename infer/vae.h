// diffusers' AutoencoderKL as SD uses it: an encoder of ResNet down blocks (the
// downsampler pads right and bottom by one, then a stride-2 conv), a middle block
// with one single-head self-attention, and a conv to the latent moments; a decoder
// that mirrors it with nearest 2x upsampling. Parameters live under "vae.".
#pragma once
#include "core/rng.h"
#include "infer/config.h"
#include "infer/nn.h"

typedef struct {
    int n_layers;
    nn_resnet *resnets;
    bool has_sampler;
    nn_conv sampler;  // downsamplers.0.conv (stride 2, pad 0) or upsamplers.0.conv
} vae_block;

// UNetMidBlock2D: resnet, attention (GroupNorm, one head as wide as the channels,
// plus the input), resnet.
typedef struct {
    nn_resnet resnets[2];
    bool has_attention;
    nn_norm attn_norm;
    nn_attention attn;
} vae_mid_block;

typedef struct {
    vae_config cfg;
    nn_conv enc_conv_in, enc_conv_out;
    vae_block enc_blocks[CFG_MAX_BLOCKS];
    vae_mid_block enc_mid;
    nn_norm enc_norm_out;
    nn_conv quant_conv, post_quant_conv;
    nn_conv dec_conv_in, dec_conv_out;
    vae_mid_block dec_mid;
    vae_block dec_blocks[CFG_MAX_BLOCKS];
    nn_norm dec_norm_out;
} vae_model;

void vae_init(vae_model *m, const vae_config *cfg, param_set *ps, const char *prefix);
void vae_free(vae_model *m);
// image [N, H, W, in_channels] in [-1, 1] (H, W divisible by 2^(blocks-1)) ->
// the latent distribution: *mean and *logvar [N, H/f, W/f, latent_channels], logvar
// clamped to [-30, 20] as diffusers' DiagonalGaussianDistribution does.
void vae_encode(const vae_model *m, tensor *image, tensor **mean, tensor **logvar);
// mean + exp(logvar / 2) * eps with eps drawn from the stream (f32, mean's device).
tensor *vae_sample(const tensor *mean, const tensor *logvar, rng_stream *rng);
// latent [N, h, w, latent_channels] (unscaled: divide by scaling_factor first) ->
// image [N, h*f, w*f, out_channels].
tensor *vae_decode(const vae_model *m, tensor *latent);
