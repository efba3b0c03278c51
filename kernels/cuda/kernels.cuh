// Every kernel entry of the CUDA backend, named cuda_* (nvcc) or emu_* (the
// emulator): the signatures of kernels/backend.h, one family per .cu file.
#pragma once
#include "kernels/cuda/common.cuh"

// C linkage: the backend table and the C tests call these.
extern "C" {

// memory.cu
void *CUDA_FN(alloc)(size_t nbytes);
void CUDA_FN(free)(void *p);
void CUDA_FN(upload)(void *dst, const void *src, size_t nbytes);
void CUDA_FN(download)(void *dst, const void *src, size_t nbytes);
void CUDA_FN(memory_stats)(device_memory_stats *out);
void CUDA_FN(release_cached)(void);

// copy.cu
void CUDA_FN(copy)(tensor *out, const tensor *in);
void CUDA_FN(fill)(tensor *out, float value);
void CUDA_FN(fill_normal)(tensor *out, uint64_t seed, uint64_t offset);
void CUDA_FN(fill_dropout_mask)(tensor *out, uint64_t seed, uint64_t offset, float p);

// elementwise.cu
void CUDA_FN(binary)(tensor *out, const tensor *a, const tensor *b, binary_op op);
void CUDA_FN(sum_reduce)(tensor *out, const tensor *in);

// activation.cu
void CUDA_FN(unary_forward)(tensor *out, const tensor *in, unary_op op, float param);
void CUDA_FN(unary_backward)(tensor *d_in, const tensor *d_out, const tensor *in, unary_op op,
                        float param);
void CUDA_FN(geglu_forward)(tensor *out, const tensor *x, int64_t rows, int64_t F);
void CUDA_FN(geglu_backward)(tensor *d_x, const tensor *d_out, const tensor *x, int64_t rows,
                        int64_t F);

// gemm.cu
void CUDA_FN(gemm)(tensor *c, const tensor *a, const tensor *b, const tensor *bias, int64_t batch,
              int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b, float alpha,
              float beta, int64_t batch_stride_a, int64_t batch_stride_b,
              int64_t batch_stride_c);

// conv2d.cu
void CUDA_FN(conv2d_forward)(tensor *out, const tensor *x, const tensor *w, const tensor *bias,
                        const int64_t geom[9]);
void CUDA_FN(conv2d_backward)(tensor *d_x, tensor *d_w, tensor *d_bias, const tensor *d_out,
                         const tensor *x, const tensor *w, const int64_t geom[9]);

// norm.cu
void CUDA_FN(layer_norm_forward)(tensor *out, tensor *mean, tensor *rstd, const tensor *x,
                            const tensor *gamma, const tensor *beta, int64_t rows, int64_t cols,
                            float eps);
void CUDA_FN(layer_norm_backward)(tensor *d_x, tensor *d_gamma, tensor *d_beta, const tensor *d_out,
                             const tensor *x, const tensor *mean, const tensor *rstd,
                             const tensor *gamma, int64_t rows, int64_t cols);
void CUDA_FN(group_norm_forward)(tensor *out, tensor *mean, tensor *rstd, const tensor *x,
                            const tensor *gamma, const tensor *beta, int64_t N, int64_t S,
                            int64_t C, int64_t G, float eps, bool silu);
void CUDA_FN(group_norm_backward)(tensor *d_x, tensor *d_gamma, tensor *d_beta, const tensor *d_out,
                             const tensor *x, const tensor *mean, const tensor *rstd,
                             const tensor *gamma, const tensor *beta, int64_t N, int64_t S,
                             int64_t C, int64_t G, bool silu);

// softmax.cu
void CUDA_FN(softmax_forward)(tensor *out, const tensor *x, int64_t rows, int64_t cols);
void CUDA_FN(softmax_backward)(tensor *d_x, const tensor *d_out, const tensor *out, int64_t rows,
                          int64_t cols);

// attention.cu
void CUDA_FN(attention_forward)(tensor *out, tensor *lse, const tensor *q, const tensor *k,
                           const tensor *v, int64_t B, int64_t Nq, int64_t Nk, int64_t H,
                           int64_t D, float scale, bool causal);
void CUDA_FN(attention_backward)(tensor *d_q, tensor *d_k, tensor *d_v, const tensor *d_out,
                            const tensor *q, const tensor *k, const tensor *v,
                            const tensor *out, const tensor *lse, int64_t B, int64_t Nq,
                            int64_t Nk, int64_t H, int64_t D, float scale, bool causal);

// upsample.cu
void CUDA_FN(upsample2x_forward)(tensor *out, const tensor *x, int64_t N, int64_t H, int64_t W,
                            int64_t C);
void CUDA_FN(upsample2x_backward)(tensor *d_x, const tensor *d_out, int64_t N, int64_t H, int64_t W,
                             int64_t C);

// embedding.cu
void CUDA_FN(embedding_forward)(tensor *out, const tensor *ids, const tensor *table, int64_t n,
                           int64_t D);
void CUDA_FN(embedding_backward)(tensor *d_table, const tensor *d_out, const tensor *ids, int64_t n,
                            int64_t D);
void CUDA_FN(timestep_embedding_forward)(tensor *out, const tensor *t, int64_t B, int64_t dim,
                                    bool flip_sin_to_cos, float downscale_freq_shift,
                                    float scale, float max_period);
void CUDA_FN(timestep_embedding_backward)(tensor *d_t, const tensor *d_out, const tensor *t,
                                     int64_t B, int64_t dim, bool flip_sin_to_cos,
                                     float downscale_freq_shift, float scale,
                                     float max_period);

// loss.cu
void CUDA_FN(mse_loss_forward)(tensor *loss, const tensor *pred, const tensor *target,
                          const tensor *weights, int64_t N, int64_t per_sample);
void CUDA_FN(mse_loss_backward)(tensor *d_pred, tensor *d_target, const tensor *d_loss,
                           const tensor *pred, const tensor *target, const tensor *weights,
                           int64_t N, int64_t per_sample);

// optim.cu
void CUDA_FN(adamw_update)(tensor *param, tensor *m, tensor *v, const tensor *grad, float lr,
                      float beta1, float beta2, float eps, float weight_decay, float bc1,
                      float bc2);
void CUDA_FN(sum_squares)(tensor *total, const tensor *x);

}  // extern "C"
