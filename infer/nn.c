#include "infer/nn.h"

#include <math.h>

#include "core/check.h"

// --- layers -----------------------------------------------------------------------------------

void nn_linear_init(nn_linear *l, param_set *ps, const char *name, int in, int out, bool bias) {
    l->lora = NULL;
    params_push(ps, "%s", name);
    params_add(ps, &l->w, PARAM_LINEAR, "weight", SHAPE(out, in))->linear = l;
    if (bias) params_add(ps, &l->b, PARAM_PLAIN, "bias", SHAPE(out));
    else l->b = NULL;
    params_pop(ps);
}

void nn_conv_init(nn_conv *c, param_set *ps, const char *name, int cin, int cout, int kernel,
                  int stride, int pad) {
    c->stride = stride;
    c->pad = pad;
    params_push(ps, "%s", name);
    params_add(ps, &c->w, PARAM_CONV, "weight", SHAPE(cout, cin, kernel, kernel));
    params_add(ps, &c->b, PARAM_PLAIN, "bias", SHAPE(cout));
    params_pop(ps);
}

static void norm_init(nn_norm *n, param_set *ps, const char *name, int channels, int groups,
                      float eps) {
    n->groups = groups;
    n->eps = eps;
    params_push(ps, "%s", name);
    params_add(ps, &n->gamma, PARAM_PLAIN, "weight", SHAPE(channels));
    params_add(ps, &n->beta, PARAM_PLAIN, "bias", SHAPE(channels));
    params_pop(ps);
}

void nn_group_norm_init(nn_norm *n, param_set *ps, const char *name, int channels, int groups,
                        float eps) {
    CHECK(groups > 0 && channels % groups == 0, "%s%s: %d channels do not split into %d groups",
          ps->prefix, name, channels, groups);
    norm_init(n, ps, name, channels, groups, eps);
}

void nn_layer_norm_init(nn_norm *n, param_set *ps, const char *name, int channels, float eps) {
    norm_init(n, ps, name, channels, 0, eps);
}

tensor *nn_linear_forward(const nn_linear *l, tensor *x) {
    tensor *y = op_linear(x, l->w, l->b);
    for (const nn_lora *a = l->lora; a; a = a->next) {
        tensor *h;
        if (a->dropout > 0) {
            tensor *dropped = op_dropout(x, a->dropout, a->dropout_seed, a->dropout_offset);
            h = op_linear(dropped, a->down, NULL);
            tensor_free(dropped);
        } else {
            h = op_linear(x, a->down, NULL);
        }
        h = nn_replace(h, op_linear(h, a->up, NULL));
        h = nn_replace(h, op_scale(h, a->scale));
        y = nn_replace(y, op_add(y, h));
        tensor_free(h);
    }
    return y;
}

tensor *nn_conv_forward(const nn_conv *c, tensor *x) {
    return op_conv2d(x, c->w, c->b, c->stride, c->pad);
}

tensor *nn_norm_forward(const nn_norm *n, tensor *x) {
    if (n->groups) return op_group_norm(x, n->gamma, n->beta, n->groups, n->eps);
    return op_layer_norm(x, n->gamma, n->beta, n->eps);
}

tensor *nn_group_norm_silu_forward(const nn_norm *n, tensor *x) {
    return op_group_norm_silu(x, n->gamma, n->beta, n->groups, n->eps);
}

tensor *nn_as_param_dtype(tensor *x, const tensor *param) {
    return x->dtype == param->dtype ? tensor_retain(x) : op_cast(x, param->dtype);
}

// --- ResnetBlock2D ------------------------------------------------------------------------------

void nn_resnet_init(nn_resnet *r, param_set *ps, const char *name, int cin, int cout,
                    int temb_channels, int groups, float eps) {
    params_push(ps, "%s", name);
    nn_group_norm_init(&r->norm1, ps, "norm1", cin, groups, eps);
    nn_conv_init(&r->conv1, ps, "conv1", cin, cout, 3, 1, 1);
    r->has_time = temb_channels > 0;
    if (r->has_time) nn_linear_init(&r->time_emb_proj, ps, "time_emb_proj", temb_channels, cout, true);
    nn_group_norm_init(&r->norm2, ps, "norm2", cout, groups, eps);
    nn_conv_init(&r->conv2, ps, "conv2", cout, cout, 3, 1, 1);
    r->has_shortcut = cin != cout;
    if (r->has_shortcut) nn_conv_init(&r->conv_shortcut, ps, "conv_shortcut", cin, cout, 1, 1, 0);
    r->output_scale = 1.0f;
    params_pop(ps);
}

tensor *nn_resnet_forward(const nn_resnet *r, tensor *x, tensor *temb_act) {
    tensor *h = nn_group_norm_silu_forward(&r->norm1, x);
    h = nn_replace(h, nn_conv_forward(&r->conv1, h));
    if (r->has_time) {
        CHECK(temb_act, "resnet block with time_emb_proj needs a time embedding");
        tensor *t = nn_linear_forward(&r->time_emb_proj, temb_act);  // [N, cout]
        tensor *t4 = op_reshape(t, SHAPE(t->shape[0], 1, 1, t->shape[1]));
        h = nn_replace(h, op_add(h, t4));
        tensor_free(t4);
        tensor_free(t);
    }
    h = nn_replace(h, nn_group_norm_silu_forward(&r->norm2, h));
    h = nn_replace(h, nn_conv_forward(&r->conv2, h));
    tensor *shortcut = r->has_shortcut ? nn_conv_forward(&r->conv_shortcut, x) : tensor_retain(x);
    tensor *out = op_add(shortcut, h);
    tensor_free(shortcut);
    tensor_free(h);
    if (r->output_scale != 1.0f) out = nn_replace(out, op_scale(out, 1.0f / r->output_scale));
    return out;
}

// --- Attention ----------------------------------------------------------------------------------

void nn_attention_init(nn_attention *a, param_set *ps, const char *name, int query_dim,
                       int context_dim, int heads, int head_dim, bool qkv_bias) {
    int inner = heads * head_dim;
    a->heads = heads;
    params_push(ps, "%s", name);
    nn_linear_init(&a->to_q, ps, "to_q", query_dim, inner, qkv_bias);
    nn_linear_init(&a->to_k, ps, "to_k", context_dim, inner, qkv_bias);
    nn_linear_init(&a->to_v, ps, "to_v", context_dim, inner, qkv_bias);
    nn_linear_init(&a->to_out, ps, "to_out.0", inner, query_dim, true);
    params_pop(ps);
}

tensor *nn_sdpa(tensor *q, tensor *k, tensor *v, int heads, bool causal) {
    int64_t D = q->shape[2] / heads;
    if (D <= ATTENTION_MAX_HEAD_DIM) return op_attention(q, k, v, heads, causal);
    CHECK(heads == 1 && !causal, "attention: head dim %lld above %d needs a single non-causal head",
          (long long)D, ATTENTION_MAX_HEAD_DIM);
    // softmax(q k^T / sqrt(D)) v with the scores in memory: fine for the VAE's
    // middle block, whose 512-wide head exceeds the fused kernel.
    tensor *kt_view = op_permute(k, (const int[]){0, 2, 1});
    tensor *kt = op_contiguous(kt_view);
    tensor *scores = op_matmul(q, kt);
    scores = nn_replace(scores, op_scale(scores, 1.0f / sqrtf((float)D)));
    scores = nn_replace(scores, op_softmax(scores));
    tensor *out = op_matmul(scores, v);
    tensor_free(scores);
    tensor_free(kt);
    tensor_free(kt_view);
    return out;
}

tensor *nn_attention_forward(const nn_attention *a, tensor *x, tensor *context, bool causal) {
    tensor *ctx = context ? context : x;
    tensor *q = nn_linear_forward(&a->to_q, x);
    tensor *k = nn_linear_forward(&a->to_k, ctx);
    tensor *v = nn_linear_forward(&a->to_v, ctx);
    tensor *o = nn_sdpa(q, k, v, a->heads, causal);
    tensor_free(q);
    tensor_free(k);
    tensor_free(v);
    return nn_replace(o, nn_linear_forward(&a->to_out, o));
}
