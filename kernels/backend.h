// A backend: memory plus the compute kernels of every op, one table per device.
//
// Op front-ends (kernels/ops/*.c) check shapes, allocate outputs, record autograd
// nodes and call these entries; backends (kernels/cpu/*.c for "cpu", kernels/cuda/*.cu
// for "cuda" and, compiled against the emulator, "cuda-emu") only compute. Every
// buffer argument is a tensor whose dtype the kernel can read; front-ends pass
// contiguous tensors unless an entry says it takes strides.
// Arguments come in a fixed order: outputs, inputs, weights, then sizes and options.
// Backward entries take NULL for a gradient nobody needs and skip that work.
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "kernels/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { BIN_ADD, BIN_SUB, BIN_MUL } binary_op;
typedef enum { UN_SILU, UN_GELU, UN_GELU_TANH, UN_QUICK_GELU, UN_SCALE } unary_op;

typedef struct backend {
    const char *name;
    // The float dtypes the kernels read and write natively, as bits (1 << dtype);
    // front-ends cast any other float operand to f32 (kernels/ops/common.h).
    unsigned native_floats;

    // memory
    void *(*alloc)(size_t nbytes);
    void (*free)(void *p);
    void (*upload)(void *dst, const void *host_src, size_t nbytes);
    void (*download)(void *host_dst, const void *src, size_t nbytes);

    // out = in, elementwise over equal shapes, any strides on both sides, converting
    // dtype (this is also the cast kernel).
    void (*copy)(tensor *out, const tensor *in);
    void (*fill)(tensor *out, float value);
    // out[j] = normal draw (seed, offset + j), as core/rng.h defines it.
    void (*fill_normal)(tensor *out, uint64_t seed, uint64_t offset);
    // out[j] = 0 where uniform draw (seed, offset + j) < p, else 1 / (1 - p): an
    // inverted-dropout mask, the same on every backend.
    void (*fill_dropout_mask)(tensor *out, uint64_t seed, uint64_t offset, float p);

    // out = a op b; a and b may be stride-0 broadcast views of out's shape.
    void (*binary)(tensor *out, const tensor *a, const tensor *b, binary_op op);
    // out (same ndim as in, some dims 1) = in summed over those dims.
    void (*sum_reduce)(tensor *out, const tensor *in);

    // Pointwise activations; param is the factor for UN_SCALE.
    void (*unary_forward)(tensor *out, const tensor *in, unary_op op, float param);
    void (*unary_backward)(tensor *d_in, const tensor *d_out, const tensor *in, unary_op op,
                           float param);
    // x [rows, 2F] -> out [rows, F] = x[:, :F] * gelu(x[:, F:])
    void (*geglu_forward)(tensor *out, const tensor *x, int64_t rows, int64_t F);
    void (*geglu_backward)(tensor *d_x, const tensor *d_out, const tensor *x, int64_t rows,
                           int64_t F);

    // C[b] = alpha * op(A[b]) op(B[b]) + beta * C[b] (+ bias[n] on every row)
    // A[b] is M x K (K x M when trans_a), B[b] is K x N (N x K when trans_b), all
    // row-major and contiguous; batch_stride_* in elements, 0 shares one matrix.
    void (*gemm)(tensor *c, const tensor *a, const tensor *b, const tensor *bias, int64_t batch,
                 int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b, float alpha,
                 float beta, int64_t batch_stride_a, int64_t batch_stride_b,
                 int64_t batch_stride_c);

    // Convolution, NHWC activations, weight [Cout, KH, KW, Cin], symmetric padding.
    void (*conv2d_forward)(tensor *out, const tensor *x, const tensor *w, const tensor *bias,
                           const int64_t geom[9]);
    void (*conv2d_backward)(tensor *d_x, tensor *d_w, tensor *d_bias, const tensor *d_out,
                            const tensor *x, const tensor *w, const int64_t geom[9]);

    // Normalisation. x is [rows, cols] (layer norm) or [N, S, C] (group norm over G
    // groups of C/G channels); mean and rstd are saved per row / per (n, group).
    void (*layer_norm_forward)(tensor *out, tensor *mean, tensor *rstd, const tensor *x,
                               const tensor *gamma, const tensor *beta, int64_t rows,
                               int64_t cols, float eps);
    void (*layer_norm_backward)(tensor *d_x, tensor *d_gamma, tensor *d_beta,
                                const tensor *d_out, const tensor *x, const tensor *mean,
                                const tensor *rstd, const tensor *gamma, int64_t rows,
                                int64_t cols);
    // With silu, out = silu(group_norm(x)) (every ResNet block's norm is followed by
    // one); the backward recomputes the normalised value from x, mean and rstd.
    void (*group_norm_forward)(tensor *out, tensor *mean, tensor *rstd, const tensor *x,
                               const tensor *gamma, const tensor *beta, int64_t N, int64_t S,
                               int64_t C, int64_t G, float eps, bool silu);
    void (*group_norm_backward)(tensor *d_x, tensor *d_gamma, tensor *d_beta,
                                const tensor *d_out, const tensor *x, const tensor *mean,
                                const tensor *rstd, const tensor *gamma, const tensor *beta,
                                int64_t N, int64_t S, int64_t C, int64_t G, bool silu);

    // Softmax over the last dim of [rows, cols].
    void (*softmax_forward)(tensor *out, const tensor *x, int64_t rows, int64_t cols);
    void (*softmax_backward)(tensor *d_x, const tensor *d_out, const tensor *out, int64_t rows,
                             int64_t cols);

    // Scaled dot-product attention. q [B, Nq, H*D], k and v [B, Nk, H*D], out like q;
    // lse [B, H, Nq] keeps each row's log-sum-exp for the backward.
    void (*attention_forward)(tensor *out, tensor *lse, const tensor *q, const tensor *k,
                              const tensor *v, int64_t B, int64_t Nq, int64_t Nk, int64_t H,
                              int64_t D, float scale, bool causal);
    void (*attention_backward)(tensor *d_q, tensor *d_k, tensor *d_v, const tensor *d_out,
                               const tensor *q, const tensor *k, const tensor *v,
                               const tensor *out, const tensor *lse, int64_t B, int64_t Nq,
                               int64_t Nk, int64_t H, int64_t D, float scale, bool causal);

    // Nearest-neighbour 2x upsampling of NHWC images.
    void (*upsample2x_forward)(tensor *out, const tensor *x, int64_t N, int64_t H, int64_t W,
                               int64_t C);
    void (*upsample2x_backward)(tensor *d_x, const tensor *d_out, int64_t N, int64_t H,
                                int64_t W, int64_t C);

    // out [n, D] = table[ids[i]]; the backward adds rows into d_table.
    void (*embedding_forward)(tensor *out, const tensor *ids, const tensor *table, int64_t n,
                              int64_t D);
    void (*embedding_backward)(tensor *d_table, const tensor *d_out, const tensor *ids, int64_t n,
                               int64_t D);

    // Sinusoidal timestep embedding [B, dim], as diffusers' get_timestep_embedding.
    void (*timestep_embedding_forward)(tensor *out, const tensor *t, int64_t B, int64_t dim,
                                       bool flip_sin_to_cos, float downscale_freq_shift,
                                       float scale, float max_period);
    void (*timestep_embedding_backward)(tensor *d_t, const tensor *d_out, const tensor *t,
                                        int64_t B, int64_t dim, bool flip_sin_to_cos,
                                        float downscale_freq_shift, float scale,
                                        float max_period);

    // loss = mean_n( w[n] * mean_j (pred[n, j] - target[n, j])^2 ), w NULL means 1.
    void (*mse_loss_forward)(tensor *loss, const tensor *pred, const tensor *target,
                             const tensor *weights, int64_t N, int64_t per_sample);
    void (*mse_loss_backward)(tensor *d_pred, tensor *d_target, const tensor *d_loss,
                              const tensor *pred, const tensor *target, const tensor *weights,
                              int64_t N, int64_t per_sample);

    // Optimizer (no autograd). One AdamW step on f32 master weights, in place, as
    // torch.optim.AdamW: p -= lr*wd*p; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
    // p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps), with bc_i = 1 - b_i^step.
    void (*adamw_update)(tensor *param, tensor *m, tensor *v, const tensor *grad, float lr,
                         float beta1, float beta2, float eps, float weight_decay, float bc1,
                         float bc2);
    // total[0] (f32, on the device) += sum of x^2: the global gradient norm is built
    // from one call per gradient, without a round trip to the host for each.
    void (*sum_squares)(tensor *total, const tensor *x);
} backend;

const backend *backend_for(device dev);
// Whether dev can run here: the CPU and cuda-emu always; cuda when this build has it
// and a GPU answers.
bool backend_available(device dev);
extern const backend cpu_backend;

// The CUDA backends' block cache (kernels/cuda/memory.cu): bytes of live blocks now
// and at most, bytes of freed blocks kept for reuse, and how many blocks were
// actually asked of the device.
typedef struct {
    size_t in_use, peak_in_use, cached;
    uint64_t device_allocs;
} device_memory_stats;
#ifdef SDFT_HAVE_EMU
extern const backend emu_backend;
void emu_memory_stats(device_memory_stats *out);
void emu_release_cached(void);  // frees the cached blocks and restarts the peak
#endif
#ifdef SDFT_HAVE_CUDA
extern const backend cuda_backend;
int cuda_device_count(void);
void cuda_memory_stats(device_memory_stats *out);
void cuda_release_cached(void);
#endif

// conv2d geometry, in this order, for geom[9].
enum { CG_N, CG_H, CG_W, CG_CIN, CG_COUT, CG_KH, CG_KW, CG_STRIDE, CG_PAD };

#ifdef __cplusplus
}
#endif
