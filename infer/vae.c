#include "infer/vae.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/check.h"

// diffusers builds every VAE norm with eps 1e-6.
#define VAE_NORM_EPS 1e-6f

// --- construction -------------------------------------------------------------------------------

static void block_init(vae_block *b, param_set *ps, const char *name, int n_layers, int cin,
                       int cout, const vae_config *cfg) {
    b->n_layers = n_layers;
    b->resnets = xcalloc((size_t)n_layers, sizeof *b->resnets);
    params_push(ps, "%s", name);
    for (int j = 0; j < n_layers; j++) {
        char rn[32];
        snprintf(rn, sizeof rn, "resnets.%d", j);
        nn_resnet_init(&b->resnets[j], ps, rn, j ? cout : cin, cout, 0, cfg->norm_num_groups,
                       VAE_NORM_EPS);
    }
    params_pop(ps);
}

static void mid_init(vae_mid_block *mb, param_set *ps, int channels, const vae_config *cfg) {
    params_push(ps, "mid_block");
    nn_resnet_init(&mb->resnets[0], ps, "resnets.0", channels, channels, 0, cfg->norm_num_groups,
                   VAE_NORM_EPS);
    mb->has_attention = cfg->mid_block_add_attention;
    if (mb->has_attention) {
        params_push(ps, "attentions.0");
        nn_group_norm_init(&mb->attn_norm, ps, "group_norm", channels, cfg->norm_num_groups,
                           VAE_NORM_EPS);
        params_pop(ps);
        nn_attention_init(&mb->attn, ps, "attentions.0", channels, channels, 1, channels, true);
    }
    nn_resnet_init(&mb->resnets[1], ps, "resnets.1", channels, channels, 0, cfg->norm_num_groups,
                   VAE_NORM_EPS);
    params_pop(ps);
}

void vae_init(vae_model *m, const vae_config *cfg, param_set *ps, const char *prefix) {
    *m = (vae_model){.cfg = *cfg};
    const int n = cfg->n_blocks, *ch = cfg->block_out_channels, lat = cfg->latent_channels;
    params_push(ps, "%svae", prefix);

    params_push(ps, "encoder");
    nn_conv_init(&m->enc_conv_in, ps, "conv_in", cfg->in_channels, ch[0], 3, 1, 1);
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "down_blocks.%d", i);
        vae_block *b = &m->enc_blocks[i];
        block_init(b, ps, name, cfg->layers_per_block, i ? ch[i - 1] : ch[0], ch[i], cfg);
        b->has_sampler = i < n - 1;
        if (b->has_sampler) {
            params_push(ps, "%s", name);
            nn_conv_init(&b->sampler, ps, "downsamplers.0.conv", ch[i], ch[i], 3, 2, 0);
            params_pop(ps);
        }
    }
    mid_init(&m->enc_mid, ps, ch[n - 1], cfg);
    nn_group_norm_init(&m->enc_norm_out, ps, "conv_norm_out", ch[n - 1], cfg->norm_num_groups,
                       VAE_NORM_EPS);
    nn_conv_init(&m->enc_conv_out, ps, "conv_out", ch[n - 1], 2 * lat, 3, 1, 1);
    params_pop(ps);

    if (cfg->use_quant_conv) nn_conv_init(&m->quant_conv, ps, "quant_conv", 2 * lat, 2 * lat, 1, 1, 0);
    if (cfg->use_post_quant_conv)
        nn_conv_init(&m->post_quant_conv, ps, "post_quant_conv", lat, lat, 1, 1, 0);

    params_push(ps, "decoder");
    nn_conv_init(&m->dec_conv_in, ps, "conv_in", lat, ch[n - 1], 3, 1, 1);
    mid_init(&m->dec_mid, ps, ch[n - 1], cfg);
    for (int i = 0; i < n; i++) {
        int mirror = n - 1 - i;
        char name[32];
        snprintf(name, sizeof name, "up_blocks.%d", i);
        vae_block *b = &m->dec_blocks[i];
        block_init(b, ps, name, cfg->layers_per_block + 1, ch[i ? mirror + 1 : mirror], ch[mirror],
                   cfg);
        b->has_sampler = i < n - 1;
        if (b->has_sampler) {
            params_push(ps, "%s", name);
            nn_conv_init(&b->sampler, ps, "upsamplers.0.conv", ch[mirror], ch[mirror], 3, 1, 1);
            params_pop(ps);
        }
    }
    nn_group_norm_init(&m->dec_norm_out, ps, "conv_norm_out", ch[0], cfg->norm_num_groups,
                       VAE_NORM_EPS);
    nn_conv_init(&m->dec_conv_out, ps, "conv_out", ch[0], cfg->out_channels, 3, 1, 1);
    params_pop(ps);
    params_pop(ps);
}

void vae_free(vae_model *m) {
    for (int i = 0; i < m->cfg.n_blocks; i++) {
        free(m->enc_blocks[i].resnets);
        free(m->dec_blocks[i].resnets);
    }
    *m = (vae_model){0};
}

// --- forward --------------------------------------------------------------------------------------

static tensor *mid_forward(const vae_mid_block *mb, tensor *x) {
    tensor *h = nn_resnet_forward(&mb->resnets[0], x, NULL);
    if (mb->has_attention) {
        int64_t N = h->shape[0], H = h->shape[1], W = h->shape[2], C = h->shape[3];
        tensor *a = nn_norm_forward(&mb->attn_norm, h);
        a = nn_replace(a, op_reshape(a, SHAPE(N, H * W, C)));
        a = nn_replace(a, nn_attention_forward(&mb->attn, a, NULL, false));
        a = nn_replace(a, op_reshape(a, SHAPE(N, H, W, C)));
        h = nn_replace(h, op_add(h, a));
        tensor_free(a);
    }
    return nn_replace(h, nn_resnet_forward(&mb->resnets[1], h, NULL));
}

// diffusers' encoder downsampler pads only the right and bottom edges by one (the
// stride-2 windows then start at 0, not -1); here that padding is two concats of zeros.
static tensor *pad_right_bottom(tensor *x) {
    int64_t N = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3];
    tensor *col = tensor_zeros(x->dtype, x->dev, SHAPE(N, H, 1, C));
    tensor *wide = op_concat(2, (tensor *[]){x, col}, 2);
    tensor *row = tensor_zeros(x->dtype, x->dev, SHAPE(N, 1, W + 1, C));
    tensor *out = op_concat(2, (tensor *[]){wide, row}, 1);
    tensor_free(row);
    tensor_free(wide);
    tensor_free(col);
    return out;
}

void vae_encode(const vae_model *m, tensor *image, tensor **mean, tensor **logvar) {
    const vae_config *cfg = &m->cfg;
    const int n = cfg->n_blocks, lat = cfg->latent_channels;
    CHECK(image->ndim == 4 && image->shape[3] == cfg->in_channels,
          "vae_encode: image must be [N, H, W, %d]", cfg->in_channels);
    CHECK(image->shape[1] % (1 << (n - 1)) == 0 && image->shape[2] % (1 << (n - 1)) == 0,
          "vae_encode: image %lldx%lld is not divisible by %d", (long long)image->shape[1],
          (long long)image->shape[2], 1 << (n - 1));
    tensor *x = nn_as_param_dtype(image, m->enc_conv_in.w);
    tensor *h = nn_conv_forward(&m->enc_conv_in, x);
    tensor_free(x);
    for (int i = 0; i < n; i++) {
        const vae_block *b = &m->enc_blocks[i];
        for (int j = 0; j < b->n_layers; j++)
            h = nn_replace(h, nn_resnet_forward(&b->resnets[j], h, NULL));
        if (b->has_sampler) {
            h = nn_replace(h, pad_right_bottom(h));
            h = nn_replace(h, nn_conv_forward(&b->sampler, h));
        }
    }
    h = nn_replace(h, mid_forward(&m->enc_mid, h));
    h = nn_replace(h, nn_group_norm_silu_forward(&m->enc_norm_out, h));
    h = nn_replace(h, nn_conv_forward(&m->enc_conv_out, h));
    if (cfg->use_quant_conv) h = nn_replace(h, nn_conv_forward(&m->quant_conv, h));

    tensor *parts[2];
    op_split(parts, h, 3, 2, (const int64_t[]){lat, lat});
    tensor_free(h);
    *mean = nn_replace(parts[0], op_contiguous(parts[0]));
    // The clamp runs on the host: the latents are small and need no gradient.
    int64_t count = tensor_numel(parts[1]);
    float *lv = xmalloc((size_t)count * sizeof(float));
    tensor_copy_to_f32(parts[1], lv, (size_t)count);
    for (int64_t i = 0; i < count; i++) lv[i] = fminf(fmaxf(lv[i], -30.0f), 20.0f);
    *logvar = tensor_from_f32(parts[1]->dtype, parts[1]->dev, parts[1]->ndim, parts[1]->shape, lv);
    free(lv);
    tensor_free(parts[1]);
}

tensor *vae_sample(const tensor *mean, const tensor *logvar, rng_stream *rng) {
    CHECK(tensor_same_shape(mean, logvar), "vae_sample: mean and logvar shapes differ");
    int64_t count = tensor_numel(mean);
    float *mu = xmalloc((size_t)count * sizeof(float)), *lv = xmalloc((size_t)count * sizeof(float));
    float *eps = xmalloc((size_t)count * sizeof(float));
    tensor_copy_to_f32(mean, mu, (size_t)count);
    tensor_copy_to_f32(logvar, lv, (size_t)count);
    rng_fill_normal(rng, eps, (size_t)count);
    for (int64_t i = 0; i < count; i++) mu[i] += expf(0.5f * lv[i]) * eps[i];
    tensor *out = tensor_from_f32(DT_F32, mean->dev, mean->ndim, mean->shape, mu);
    free(eps);
    free(lv);
    free(mu);
    return out;
}

tensor *vae_decode(const vae_model *m, tensor *latent) {
    const vae_config *cfg = &m->cfg;
    CHECK(latent->ndim == 4 && latent->shape[3] == cfg->latent_channels,
          "vae_decode: latent must be [N, h, w, %d]", cfg->latent_channels);
    tensor *h = nn_as_param_dtype(latent, m->dec_conv_in.w);
    if (cfg->use_post_quant_conv) h = nn_replace(h, nn_conv_forward(&m->post_quant_conv, h));
    h = nn_replace(h, nn_conv_forward(&m->dec_conv_in, h));
    h = nn_replace(h, mid_forward(&m->dec_mid, h));
    for (int i = 0; i < cfg->n_blocks; i++) {
        const vae_block *b = &m->dec_blocks[i];
        for (int j = 0; j < b->n_layers; j++)
            h = nn_replace(h, nn_resnet_forward(&b->resnets[j], h, NULL));
        if (b->has_sampler) {
            h = nn_replace(h, op_upsample_nearest2x(h));
            h = nn_replace(h, nn_conv_forward(&b->sampler, h));
        }
    }
    h = nn_replace(h, nn_group_norm_silu_forward(&m->dec_norm_out, h));
    return nn_replace(h, nn_conv_forward(&m->dec_conv_out, h));
}
