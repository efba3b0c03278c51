#include "infer/unet.h"

#include <stdio.h>
#include <stdlib.h>

#include "core/check.h"

// GroupNorm eps inside Transformer2DModel, fixed in diffusers whatever norm_eps says.
#define TRANSFORMER_GROUP_NORM_EPS 1e-6f
#define TRANSFORMER_LAYER_NORM_EPS 1e-5f

// --- construction -----------------------------------------------------------------------------------

static void transformer_init(unet_transformer *t, param_set *ps, const char *name, int channels,
                             int heads, int n_blocks, const unet_config *cfg) {
    int head_dim = channels / heads;
    params_push(ps, "%s", name);
    nn_group_norm_init(&t->norm, ps, "norm", channels, cfg->norm_num_groups,
                       TRANSFORMER_GROUP_NORM_EPS);
    nn_linear_init(&t->proj_in, ps, "proj_in", channels, channels, true);
    t->n_blocks = n_blocks;
    t->blocks = xcalloc((size_t)n_blocks, sizeof *t->blocks);
    for (int i = 0; i < n_blocks; i++) {
        unet_transformer_block *b = &t->blocks[i];
        params_push(ps, "transformer_blocks.%d", i);
        nn_layer_norm_init(&b->norm1, ps, "norm1", channels, TRANSFORMER_LAYER_NORM_EPS);
        nn_attention_init(&b->attn1, ps, "attn1", channels, channels, heads, head_dim, false);
        nn_layer_norm_init(&b->norm2, ps, "norm2", channels, TRANSFORMER_LAYER_NORM_EPS);
        nn_attention_init(&b->attn2, ps, "attn2", channels, cfg->cross_attention_dim, heads,
                          head_dim, false);
        nn_layer_norm_init(&b->norm3, ps, "norm3", channels, TRANSFORMER_LAYER_NORM_EPS);
        nn_linear_init(&b->ff_in, ps, "ff.net.0.proj", channels, 8 * channels, true);
        nn_linear_init(&b->ff_out, ps, "ff.net.2", 4 * channels, channels, true);
        params_pop(ps);
    }
    nn_linear_init(&t->proj_out, ps, "proj_out", channels, channels, true);
    params_pop(ps);
}

static void block_init(unet_block *b, int n_layers, bool cross_attn) {
    b->n_layers = n_layers;
    b->resnets = xcalloc((size_t)n_layers, sizeof *b->resnets);
    b->attentions = cross_attn ? xcalloc((size_t)n_layers, sizeof *b->attentions) : NULL;
    b->layers = xcalloc((size_t)n_layers, sizeof *b->layers);
    for (int j = 0; j < n_layers; j++)
        b->layers[j] = (unet_layer){&b->resnets[j], b->attentions ? &b->attentions[j] : NULL};
}

void unet_init(unet_model *m, const unet_config *cfg, param_set *ps, const char *prefix) {
    *m = (unet_model){.cfg = *cfg};
    const int n = cfg->n_blocks, *ch = cfg->block_out_channels;
    const int temb = 4 * ch[0], groups = cfg->norm_num_groups;
    const float eps = cfg->norm_eps;
    params_push(ps, "%sunet", prefix);
    nn_conv_init(&m->conv_in, ps, "conv_in", cfg->in_channels, ch[0], 3, 1, 1);
    nn_linear_init(&m->time_linear_1, ps, "time_embedding.linear_1", ch[0], temb, true);
    nn_linear_init(&m->time_linear_2, ps, "time_embedding.linear_2", temb, temb, true);

    for (int i = 0; i < n; i++) {
        unet_block *b = &m->down[i];
        int cin = i ? ch[i - 1] : ch[0], cout = ch[i];
        block_init(b, cfg->layers_per_block, cfg->down[i] == BLOCK_CROSS_ATTN);
        params_push(ps, "down_blocks.%d", i);
        for (int j = 0; j < b->n_layers; j++) {
            char name[32];
            snprintf(name, sizeof name, "resnets.%d", j);
            nn_resnet_init(&b->resnets[j], ps, name, j ? cout : cin, cout, temb, groups, eps);
            if (b->attentions) {
                snprintf(name, sizeof name, "attentions.%d", j);
                transformer_init(&b->attentions[j], ps, name, cout, cfg->heads[i],
                                 cfg->transformer_layers[i], cfg);
            }
        }
        b->has_sampler = i < n - 1;
        if (b->has_sampler)
            nn_conv_init(&b->sampler, ps, "downsamplers.0.conv", cout, cout, 3, 2,
                         cfg->downsample_padding);
        params_pop(ps);
    }

    params_push(ps, "mid_block");
    nn_resnet_init(&m->mid_resnets[0], ps, "resnets.0", ch[n - 1], ch[n - 1], temb, groups, eps);
    transformer_init(&m->mid_attention, ps, "attentions.0", ch[n - 1], cfg->heads[n - 1],
                     cfg->transformer_layers[n - 1], cfg);
    nn_resnet_init(&m->mid_resnets[1], ps, "resnets.1", ch[n - 1], ch[n - 1], temb, groups, eps);
    m->mid_resnets[0].output_scale = m->mid_resnets[1].output_scale = cfg->mid_block_scale_factor;
    m->mid_layers[0] = (unet_layer){&m->mid_resnets[0], &m->mid_attention};
    m->mid_layers[1] = (unet_layer){&m->mid_resnets[1], NULL};
    params_pop(ps);

    // Up block i mirrors down block n-1-i; its ResNet j takes the running features
    // plus the skip connection pushed by the matching down-path layer.
    for (int i = 0; i < n; i++) {
        unet_block *b = &m->up[i];
        int mirror = n - 1 - i;
        int cout = ch[mirror], prev = ch[i ? mirror + 1 : mirror], skip_in = ch[mirror ? mirror - 1 : 0];
        block_init(b, cfg->layers_per_block + 1, cfg->up[i] == BLOCK_CROSS_ATTN);
        params_push(ps, "up_blocks.%d", i);
        for (int j = 0; j < b->n_layers; j++) {
            int skip = j == b->n_layers - 1 ? skip_in : cout;
            char name[32];
            snprintf(name, sizeof name, "resnets.%d", j);
            nn_resnet_init(&b->resnets[j], ps, name, (j ? cout : prev) + skip, cout, temb, groups,
                           eps);
            if (b->attentions) {
                snprintf(name, sizeof name, "attentions.%d", j);
                transformer_init(&b->attentions[j], ps, name, cout, cfg->heads[mirror],
                                 cfg->transformer_layers[mirror], cfg);
            }
        }
        b->has_sampler = i < n - 1;
        if (b->has_sampler) nn_conv_init(&b->sampler, ps, "upsamplers.0.conv", cout, cout, 3, 1, 1);
        params_pop(ps);
    }

    nn_group_norm_init(&m->conv_norm_out, ps, "conv_norm_out", ch[0], groups, eps);
    nn_conv_init(&m->conv_out, ps, "conv_out", ch[0], cfg->out_channels, 3, 1, 1);
    params_pop(ps);
}

static void transformer_free(unet_transformer *t) { free(t->blocks); }

static void block_free(unet_block *b) {
    if (b->attentions)
        for (int j = 0; j < b->n_layers; j++) transformer_free(&b->attentions[j]);
    free(b->attentions);
    free(b->resnets);
    free(b->layers);
}

void unet_free(unet_model *m) {
    for (int i = 0; i < m->cfg.n_blocks; i++) {
        block_free(&m->down[i]);
        block_free(&m->up[i]);
    }
    transformer_free(&m->mid_attention);
    *m = (unet_model){0};
}

// --- forward ------------------------------------------------------------------------------------------

static tensor *transformer_block_forward(const unet_transformer_block *b, tensor *x,
                                         tensor *context) {
    tensor *h = nn_norm_forward(&b->norm1, x);
    h = nn_replace(h, nn_attention_forward(&b->attn1, h, NULL, false));
    x = op_add(x, h);
    h = nn_replace(h, nn_norm_forward(&b->norm2, x));
    h = nn_replace(h, nn_attention_forward(&b->attn2, h, context, false));
    x = nn_replace(x, op_add(x, h));
    h = nn_replace(h, nn_norm_forward(&b->norm3, x));
    h = nn_replace(h, nn_linear_forward(&b->ff_in, h));
    h = nn_replace(h, op_geglu(h));
    h = nn_replace(h, nn_linear_forward(&b->ff_out, h));
    x = nn_replace(x, op_add(x, h));
    tensor_free(h);
    return x;
}

// x [N, H, W, C] -> the same shape.
static tensor *transformer_forward(const unet_transformer *t, tensor *x, tensor *context) {
    int64_t N = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3];
    tensor *h = nn_norm_forward(&t->norm, x);
    h = nn_replace(h, op_reshape(h, SHAPE(N, H * W, C)));
    h = nn_replace(h, nn_linear_forward(&t->proj_in, h));
    for (int i = 0; i < t->n_blocks; i++)
        h = nn_replace(h, transformer_block_forward(&t->blocks[i], h, context));
    h = nn_replace(h, nn_linear_forward(&t->proj_out, h));
    h = nn_replace(h, op_reshape(h, SHAPE(N, H, W, C)));
    return nn_replace(h, op_add(h, x));
}

// inputs: h, silu(temb), context.
static tensor *layer_block(void *ctx, tensor *const *in) {
    const unet_layer *l = ctx;
    tensor *h = nn_resnet_forward(l->resnet, in[0], in[1]);
    if (l->attention) h = nn_replace(h, transformer_forward(l->attention, h, in[2]));
    return h;
}

static tensor *layer_forward(const unet_model *m, const unet_layer *l, tensor *h, tensor *temb_act, tensor *ctx) {
    tensor *in[3] = {h, temb_act, ctx};
    return m->checkpoint ? op_checkpoint(layer_block, (void *)l, 3, in) : layer_block((void *)l, in);
}

// Nearest 2x upsampling to the size of the skip connection it meets next. An odd
// size on the way down (a latent side not divisible by 8) leaves the skip one
// smaller than 2x; torch's nearest interpolation to 2s-1 picks the same rows as 2x
// does, minus the last, so a crop gives diffusers' result.
static tensor *upsample_to(tensor *h, const tensor *skip) {
    tensor *up = op_upsample_nearest2x(h);
    if (up->shape[1] == skip->shape[1] && up->shape[2] == skip->shape[2]) return up;
    tensor *rows = op_slice(up, 1, 0, skip->shape[1]);
    tensor *cropped = op_slice(rows, 2, 0, skip->shape[2]);
    tensor *out = op_contiguous(cropped);
    tensor_free(cropped), tensor_free(rows), tensor_free(up);
    return out;
}

// The compute dtype is the parameters': inputs are cast to it once, at the entry.
tensor *unet_forward(const unet_model *m, tensor *sample, tensor *timesteps, tensor *context) {
    const unet_config *cfg = &m->cfg;
    const int n = cfg->n_blocks;
    CHECK(sample->ndim == 4 && sample->shape[3] == cfg->in_channels,
          "unet_forward: sample must be [N, h, w, %d]", cfg->in_channels);
    CHECK(timesteps->ndim == 1 && timesteps->shape[0] == sample->shape[0],
          "unet_forward: timesteps must be [N]");
    CHECK(context->ndim == 3 && context->shape[0] == sample->shape[0] &&
              context->shape[2] == cfg->cross_attention_dim,
          "unet_forward: context must be [N, T, %d]", cfg->cross_attention_dim);
    const tensor *dt = m->conv_in.w;

    tensor *temb = op_timestep_embedding(timesteps, cfg->block_out_channels[0],
                                         cfg->flip_sin_to_cos, cfg->freq_shift, 1.0f, 10000.0f);
    temb = nn_replace(temb, nn_as_param_dtype(temb, dt));
    temb = nn_replace(temb, nn_linear_forward(&m->time_linear_1, temb));
    temb = nn_replace(temb, op_silu(temb));
    temb = nn_replace(temb, nn_linear_forward(&m->time_linear_2, temb));
    // Every ResNet block applies SiLU to the embedding first: once here is enough.
    tensor *temb_act = op_silu(temb);
    tensor_free(temb);
    tensor *ctx = nn_as_param_dtype(context, dt);

    tensor *x = nn_as_param_dtype(sample, dt);
    tensor *h = nn_conv_forward(&m->conv_in, x);
    tensor_free(x);

    // Skip connections, pushed on the way down and popped on the way up: conv_in's
    // output, each down layer's and each downsampler's. unet_config_load bounds the
    // counts, so the stack holds them all.
    tensor *skips[1 + CFG_MAX_BLOCKS * (CFG_MAX_LAYERS_PER_BLOCK + 1)];
    const int max_skips = (int)(sizeof skips / sizeof *skips);
    int n_skips = 0;
    skips[n_skips++] = tensor_retain(h);
    for (int i = 0; i < n; i++) {
        const unet_block *b = &m->down[i];
        CHECK(n_skips + b->n_layers + b->has_sampler <= max_skips, "unet_forward: more skip connections than %d",
              max_skips);
        for (int j = 0; j < b->n_layers; j++) {
            h = nn_replace(h, layer_forward(m, &b->layers[j], h, temb_act, ctx));
            skips[n_skips++] = tensor_retain(h);
        }
        if (b->has_sampler) {
            h = nn_replace(h, nn_conv_forward(&b->sampler, h));
            skips[n_skips++] = tensor_retain(h);
        }
    }

    h = nn_replace(h, layer_forward(m, &m->mid_layers[0], h, temb_act, ctx));
    h = nn_replace(h, layer_forward(m, &m->mid_layers[1], h, temb_act, ctx));

    for (int i = 0; i < n; i++) {
        const unet_block *b = &m->up[i];
        for (int j = 0; j < b->n_layers; j++) {
            tensor *skip = skips[--n_skips];
            h = nn_replace(h, op_concat(2, (tensor *[]){h, skip}, 3));
            tensor_free(skip);
            h = nn_replace(h, layer_forward(m, &b->layers[j], h, temb_act, ctx));
        }
        if (b->has_sampler) {
            h = nn_replace(h, upsample_to(h, skips[n_skips - 1]));
            h = nn_replace(h, nn_conv_forward(&b->sampler, h));
        }
    }
    CHECK(n_skips == 0, "unet_forward: %d skip connections left over", n_skips);
    tensor_free(temb_act);
    tensor_free(ctx);

    h = nn_replace(h, nn_group_norm_silu_forward(&m->conv_norm_out, h));
    return nn_replace(h, nn_conv_forward(&m->conv_out, h));
}
