// The op API: one entry per op, dispatching on the tensors' device and recording
// autograd nodes. Inputs are borrowed; the result is a new reference.
// Float operands are cast to the backend's compute dtype on entry (f32 on the CPU).
// Shape mistakes are program bugs: they abort with the op name and the shapes.
#pragma once
#include "kernels/autograd.h"
#include "kernels/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

// Matrix products.
tensor *op_linear(tensor *x /*[..., in]*/, tensor *w /*[out, in]*/, tensor *b /*[out] or NULL*/);
tensor *op_matmul(tensor *a /*[B, M, K]*/, tensor *b /*[B, K, N]*/);  // -> [B, M, N]

// conv2d: x [N, H, W, Cin], w [Cout, KH, KW, Cin], b [Cout] or NULL.
tensor *op_conv2d(tensor *x, tensor *w, tensor *b, int stride, int pad);

// Normalisation; x channels-last [N, ..., C] for group norm, [..., C] for layer norm.
tensor *op_group_norm(tensor *x, tensor *gamma, tensor *beta, int groups, float eps);
tensor *op_layer_norm(tensor *x, tensor *gamma, tensor *beta, float eps);
// silu(group_norm(x)) in one pass, the pair every ResNet block starts with.
tensor *op_group_norm_silu(tensor *x, tensor *gamma, tensor *beta, int groups, float eps);

// Attention: q [B, Nq, H*D], k and v [B, Nk, H*D] -> [B, Nq, H*D], scale 1/sqrt(D).
// Head dims up to ATTENTION_MAX_HEAD_DIM on every backend (the fused CUDA kernel
// keeps a row of Q, K and V in registers and shared memory).
#define ATTENTION_MAX_HEAD_DIM 160
tensor *op_attention(tensor *q, tensor *k, tensor *v, int heads, bool causal);
tensor *op_softmax(tensor *x);  // over the last dim

// Activations.
tensor *op_silu(tensor *x);
tensor *op_gelu(tensor *x, bool tanh_approx);
tensor *op_quick_gelu(tensor *x);  // x * sigmoid(1.702 x), CLIP's activation
tensor *op_geglu(tensor *x);       // [..., 2F] -> [..., F]: x[..., :F] * gelu(x[..., F:])

// Elementwise with numpy broadcasting.
tensor *op_add(tensor *a, tensor *b);
tensor *op_sub(tensor *a, tensor *b);
tensor *op_mul(tensor *a, tensor *b);
tensor *op_scale(tensor *x, float s);
// Inverted dropout, torch.nn.Dropout in training mode: x * mask with the mask of
// backend fill_dropout_mask(seed, offset, p). The mask is a pure function of (seed,
// offset), so a recomputed forward (gradient checkpointing) drops the same elements.
tensor *op_dropout(tensor *x, float p, uint64_t seed, uint64_t offset);

// Shape ops. reshape, permute and slice return views when they can.
tensor *op_reshape(tensor *x, int ndim, const int64_t *shape);  // one dim may be -1
tensor *op_permute(tensor *x, const int *perm);
tensor *op_slice(tensor *x, int axis, int64_t start, int64_t end);
tensor *op_contiguous(tensor *x);
tensor *op_concat(int n, tensor *const *xs, int axis);
// Splits x along axis into n parts of the given sizes, written to outs[0..n).
void op_split(tensor **outs, tensor *x, int axis, int n, const int64_t *sizes);
tensor *op_upsample_nearest2x(tensor *x);  // [N, H, W, C] -> [N, 2H, 2W, C]

// Embeddings.
tensor *op_embedding(tensor *ids /*i32 [...]*/, tensor *table /*[V, D]*/);  // -> [..., D]
// t [B] -> [B, dim], with diffusers' get_timestep_embedding options (defaults there:
// flip_sin_to_cos false, downscale_freq_shift 1, scale 1, max_period 10000).
tensor *op_timestep_embedding(tensor *t, int dim, bool flip_sin_to_cos,
                              float downscale_freq_shift, float scale, float max_period);

// Losses and reductions.
// mean over samples of weights[n] * mean over the sample's elements of (pred - target)^2;
// weights [N] or NULL. Returns a scalar (shape [1]).
tensor *op_mse_loss(tensor *pred, tensor *target, tensor *weights);
#define ALL_AXES (-100)
tensor *op_sum(tensor *x, int axis);   // axis kept with size 1; ALL_AXES gives shape [1]
tensor *op_mean(tensor *x, int axis);

tensor *op_cast(tensor *x, dtype dt);

// Optimizer steps: in place, outside autograd.
typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
} adamw_config;
// One AdamW step (torch.optim.AdamW) of param with its gradient and moment tensors m
// and v (f32, param's shape); step counts from 1.
void op_adamw_step(tensor *param, tensor *m, tensor *v, const tensor *grad,
                   const adamw_config *cfg, int64_t step);
// sqrt of the sum of squares of every element of the n tensors (all on one device).
double op_global_norm(int n, tensor *const *xs);

#ifdef __cplusplus
}
#endif
