// The layers the three models are built from, each registering its parameters
// under diffusers' names and running forward through the op API (so the same code
// runs on every backend, with autograd). Activations are channels-last: images
// [N, H, W, C], sequences [B, T, C].
//
// Forward functions borrow their input and return a new reference.
#pragma once
#include "infer/params.h"
#include "kernels/ops.h"

// A low-rank adapter applied at run time: y += scale * up(down(x)). The base
// weight stays untouched (the trainer's mode, and run-time adapter switching).
typedef struct nn_lora {
    tensor *down;  // [rank, in]  (PEFT's lora_A, kohya's lora_down)
    tensor *up;    // [out, rank] (lora_B, lora_up)
    float scale;   // alpha / rank x the user's multiplier
    // Training only (0 otherwise): peft's lora_dropout on the adapter's input, its
    // mask drawn at (dropout_seed, dropout_offset) so a recompute repeats it.
    float dropout;
    uint64_t dropout_seed, dropout_offset;
    struct nn_lora *next;
} nn_lora;

typedef struct nn_linear {
    tensor *w;  // [out, in]
    tensor *b;  // [out] or NULL
    nn_lora *lora;  // run-time adapters (borrowed; their owner frees them)
} nn_linear;

typedef struct {
    tensor *w;  // [Cout, KH, KW, Cin]
    tensor *b;  // [Cout]
    int stride, pad;
} nn_conv;

typedef struct {
    tensor *gamma, *beta;  // [C]
    int groups;            // 0 for a layer norm
    float eps;
} nn_norm;

void nn_linear_init(nn_linear *l, param_set *ps, const char *name, int in, int out, bool bias);
void nn_conv_init(nn_conv *c, param_set *ps, const char *name, int cin, int cout, int kernel,
                  int stride, int pad);
void nn_group_norm_init(nn_norm *n, param_set *ps, const char *name, int channels, int groups,
                        float eps);
void nn_layer_norm_init(nn_norm *n, param_set *ps, const char *name, int channels, float eps);

// x w^T + b, plus every run-time adapter's scale * (dropout(x) down^T) up^T.
tensor *nn_linear_forward(const nn_linear *l, tensor *x);
tensor *nn_conv_forward(const nn_conv *c, tensor *x);
tensor *nn_norm_forward(const nn_norm *n, tensor *x);
tensor *nn_group_norm_silu_forward(const nn_norm *n, tensor *x);  // silu(group_norm(x))

// x in param's dtype, the models' compute dtype (a new reference; a cast when they differ).
tensor *nn_as_param_dtype(tensor *x, const tensor *param);

// Drops old and returns new: `h = nn_replace(h, op_silu(h))`.
static inline tensor *nn_replace(tensor *old, tensor *new_) {
    tensor_free(old);
    return new_;
}

// diffusers' ResnetBlock2D with the "default" time-embedding shift:
// h = conv1(silu(norm1(x))) (+ time_emb_proj(silu(temb))); h = conv2(silu(norm2(h)));
// out = (shortcut(x) + h) / output_scale_factor.
typedef struct {
    nn_norm norm1, norm2;
    nn_conv conv1, conv2;
    nn_linear time_emb_proj;  // absent (w NULL) in the VAE
    nn_conv conv_shortcut;    // 1x1, present when cin != cout
    bool has_shortcut, has_time;
    float output_scale;
} nn_resnet;

// temb_channels 0: no time embedding (VAE).
void nn_resnet_init(nn_resnet *r, param_set *ps, const char *name, int cin, int cout,
                    int temb_channels, int groups, float eps);
// x [N, H, W, cin], temb_act = silu(temb) [N, temb_channels] or NULL -> [N, H, W, cout].
tensor *nn_resnet_forward(const nn_resnet *r, tensor *x, tensor *temb_act);

// diffusers' Attention: to_q/to_k/to_v (optional bias), to_out.0 (with bias).
typedef struct {
    nn_linear to_q, to_k, to_v, to_out;
    int heads;
} nn_attention;

void nn_attention_init(nn_attention *a, param_set *ps, const char *name, int query_dim,
                       int context_dim, int heads, int head_dim, bool qkv_bias);
// x [B, N, query_dim], context [B, M, context_dim] or NULL for self-attention.
tensor *nn_attention_forward(const nn_attention *a, tensor *x, tensor *context, bool causal);

// Scaled dot-product attention for any head dim: the fused op up to its limit,
// matmul-softmax-matmul above it (the VAE's single 512-wide head).
tensor *nn_sdpa(tensor *q, tensor *k, tensor *v, int heads, bool causal);
