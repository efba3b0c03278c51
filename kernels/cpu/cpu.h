// The CPU reference backend: plain loops in f32, OpenBLAS for matrix products,
// OpenMP over outer loops. Declarations of every entry of cpu_backend; each family
// lives in its own file, forward and backward side by side.
#pragma once
#include "kernels/backend.h"

// Float pointer to element 0 of a contiguous f32 tensor (NULL for NULL).
float *cpu_f32(const tensor *t);

// Element offset of linear index i (row-major over shape) under the given strides.
static inline int64_t cpu_strided_offset(int64_t i, int ndim, const int64_t *shape,
                                         const int64_t *stride) {
    int64_t off = 0;
    for (int d = ndim - 1; d >= 0; d--) {
        off += (i % shape[d]) * stride[d];
        i /= shape[d];
    }
    return off;
}

// memory.c. Guard mode surrounds every allocation with canary bytes so that the op
// harness catches out-of-bounds writes; cpu_guard_check verifies every live block.
void *cpu_alloc(size_t nbytes);
void cpu_free(void *p);
void cpu_upload(void *dst, const void *src, size_t nbytes);
void cpu_download(void *dst, const void *src, size_t nbytes);
void cpu_guard_mode(bool on);
// Returns the number of corrupted blocks, live or freed since the last call (0 when
// every canary was intact).
int cpu_guard_check(void);

// copy.c
void cpu_copy(tensor *out, const tensor *in);
void cpu_fill(tensor *out, float value);
void cpu_fill_normal(tensor *out, uint64_t seed, uint64_t offset);
void cpu_fill_dropout_mask(tensor *out, uint64_t seed, uint64_t offset, float p);

// elementwise.c
void cpu_binary(tensor *out, const tensor *a, const tensor *b, binary_op op);
void cpu_sum_reduce(tensor *out, const tensor *in);

// activation.c
void cpu_unary_forward(tensor *out, const tensor *in, unary_op op, float param);
void cpu_unary_backward(tensor *d_in, const tensor *d_out, const tensor *in, unary_op op,
                        float param);
void cpu_geglu_forward(tensor *out, const tensor *x, int64_t rows, int64_t F);
void cpu_geglu_backward(tensor *d_x, const tensor *d_out, const tensor *x, int64_t rows,
                        int64_t F);

// gemm.c
void cpu_gemm(tensor *c, const tensor *a, const tensor *b, const tensor *bias, int64_t batch,
              int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b, float alpha,
              float beta, int64_t batch_stride_a, int64_t batch_stride_b,
              int64_t batch_stride_c);

// conv2d.c
void cpu_conv2d_forward(tensor *out, const tensor *x, const tensor *w, const tensor *bias,
                        const int64_t geom[9]);
void cpu_conv2d_backward(tensor *d_x, tensor *d_w, tensor *d_bias, const tensor *d_out,
                         const tensor *x, const tensor *w, const int64_t geom[9]);

// norm.c
void cpu_layer_norm_forward(tensor *out, tensor *mean, tensor *rstd, const tensor *x,
                            const tensor *gamma, const tensor *beta, int64_t rows, int64_t cols,
                            float eps);
void cpu_layer_norm_backward(tensor *d_x, tensor *d_gamma, tensor *d_beta, const tensor *d_out,
                             const tensor *x, const tensor *mean, const tensor *rstd,
                             const tensor *gamma, int64_t rows, int64_t cols);
void cpu_group_norm_forward(tensor *out, tensor *mean, tensor *rstd, const tensor *x,
                            const tensor *gamma, const tensor *beta, int64_t N, int64_t S,
                            int64_t C, int64_t G, float eps, bool silu);
void cpu_group_norm_backward(tensor *d_x, tensor *d_gamma, tensor *d_beta, const tensor *d_out,
                             const tensor *x, const tensor *mean, const tensor *rstd,
                             const tensor *gamma, const tensor *beta, int64_t N, int64_t S,
                             int64_t C, int64_t G, bool silu);

// softmax.c
// y = softmax(x) over n values (y may be x); returns the log-sum-exp of x.
float cpu_softmax_row(float *y, const float *x, int64_t n);
void cpu_softmax_forward(tensor *out, const tensor *x, int64_t rows, int64_t cols);
void cpu_softmax_backward(tensor *d_x, const tensor *d_out, const tensor *out, int64_t rows,
                          int64_t cols);

// attention.c
void cpu_attention_forward(tensor *out, tensor *lse, const tensor *q, const tensor *k,
                           const tensor *v, int64_t B, int64_t Nq, int64_t Nk, int64_t H,
                           int64_t D, float scale, bool causal);
void cpu_attention_backward(tensor *d_q, tensor *d_k, tensor *d_v, const tensor *d_out,
                            const tensor *q, const tensor *k, const tensor *v,
                            const tensor *out, const tensor *lse, int64_t B, int64_t Nq,
                            int64_t Nk, int64_t H, int64_t D, float scale, bool causal);

// upsample.c
void cpu_upsample2x_forward(tensor *out, const tensor *x, int64_t N, int64_t H, int64_t W,
                            int64_t C);
void cpu_upsample2x_backward(tensor *d_x, const tensor *d_out, int64_t N, int64_t H, int64_t W,
                             int64_t C);

// embedding.c
void cpu_embedding_forward(tensor *out, const tensor *ids, const tensor *table, int64_t n,
                           int64_t D);
void cpu_embedding_backward(tensor *d_table, const tensor *d_out, const tensor *ids, int64_t n,
                            int64_t D);
void cpu_timestep_embedding_forward(tensor *out, const tensor *t, int64_t B, int64_t dim,
                                    bool flip_sin_to_cos, float downscale_freq_shift,
                                    float scale, float max_period);
void cpu_timestep_embedding_backward(tensor *d_t, const tensor *d_out, const tensor *t,
                                     int64_t B, int64_t dim, bool flip_sin_to_cos,
                                     float downscale_freq_shift, float scale,
                                     float max_period);

// loss.c
void cpu_mse_loss_forward(tensor *loss, const tensor *pred, const tensor *target,
                          const tensor *weights, int64_t N, int64_t per_sample);
void cpu_mse_loss_backward(tensor *d_pred, tensor *d_target, const tensor *d_loss,
                           const tensor *pred, const tensor *target, const tensor *weights,
                           int64_t N, int64_t per_sample);

// optim.c
void cpu_adamw_update(tensor *param, tensor *m, tensor *v, const tensor *grad, float lr,
                      float beta1, float beta2, float eps, float weight_decay, float bc1,
                      float bc2);
void cpu_sum_squares(tensor *total, const tensor *x);
