// Attention on the CPU, one (batch, head) at a time and in blocks of query rows, so
// the scores in flight are a ROW_BLOCK x Nk matrix, not Nq x Nk. Head h of a token
// is channels [h*D, (h+1)*D) of its H*D, so every per-head matrix is a strided view
// with leading dimension H*D that cblas_sgemm reads in place.
//
// BLAS calls stay outside OpenMP regions (Debian's OpenBLAS runs its own threads);
// the row loops between them are OpenMP.
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/exp.h"

// 1024 query rows of 4096 keys (SD1.5's largest self-attention) make a 16 MB block.
// Larger blocks mean fewer hand-overs of the cores between OpenMP and OpenBLAS, each
// of which can cost milliseconds while libgomp's idle threads spin.
#define ROW_BLOCK 1024

// Keys that query row i can see: all of them, or j <= i under the causal mask.
static inline int64_t keys_seen(int64_t i, int64_t Nk, bool causal) { return causal ? i + 1 : Nk; }

// s[rows, keys] = scale * q_block k_headᵀ
static void scores(float *s, const float *q_block, const float *k_head, int64_t rows, int64_t keys,
                   int64_t D, int64_t C, float scale) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)keys, (int)D, scale,
                q_block, (int)C, k_head, (int)C, 0.0f, s, (int)keys);
}

void cpu_attention_forward(tensor *out_t, tensor *lse_t, const tensor *q_t, const tensor *k_t,
                           const tensor *v_t, int64_t B, int64_t Nq, int64_t Nk, int64_t H,
                           int64_t D, float scale, bool causal) {
    float *out = cpu_f32(out_t);                       // [B, Nq, H*D]
    float *lse = cpu_f32(lse_t);                       // [B, H, Nq]
    const float *q = cpu_f32(q_t);                     // [B, Nq, H*D]
    const float *k = cpu_f32(k_t), *v = cpu_f32(v_t);  // [B, Nk, H*D]
    int64_t C = H * D;
    float *p = xmalloc(sizeof(float) * ROW_BLOCK * Nk);  // [rows, keys] scores, then probabilities

    for (int64_t b = 0; b < B; b++) {
        for (int64_t h = 0; h < H; h++) {
            const float *k_head = k + b * Nk * C + h * D, *v_head = v + b * Nk * C + h * D;
            float *lse_head = lse + (b * H + h) * Nq;
            for (int64_t i0 = 0; i0 < Nq; i0 += ROW_BLOCK) {
                int64_t rows = Nq - i0 < ROW_BLOCK ? Nq - i0 : ROW_BLOCK;
                // Under the causal mask the block's last row sees the most keys.
                int64_t keys = keys_seen(i0 + rows - 1, Nk, causal);
                int64_t block = (b * Nq + i0) * C + h * D;  // first element of the block's rows
                scores(p, q + block, k_head, rows, keys, D, C, scale);
#pragma omp parallel for schedule(static)
                for (int64_t r = 0; r < rows; r++) {
                    float *pr = p + r * keys;
                    int64_t seen = keys_seen(i0 + r, Nk, causal);
                    lse_head[i0 + r] = cpu_softmax_row(pr, pr, seen);
                    for (int64_t j = seen; j < keys; j++) pr[j] = 0.0f;
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)D, (int)keys,
                            1.0f, p, (int)keys, v_head, (int)C, 0.0f, out + block, (int)C);
            }
        }
    }
    free(p);
}

// With P = exp(S - lse) recomputed block by block:
//   dV = Pᵀ dO,  dP = dO Vᵀ,  dS = P ∘ (dP - rowsum(dO ∘ O)),
//   dQ = scale dS K,  dK = scale dSᵀ Q.
// rowsum(dO ∘ O) equals rowsum(P ∘ dP), the softmax backward's dot, in D steps, not Nk.
void cpu_attention_backward(tensor *d_q, tensor *d_k, tensor *d_v, const tensor *d_out,
                            const tensor *q_t, const tensor *k_t, const tensor *v_t,
                            const tensor *out_t, const tensor *lse_t, int64_t B, int64_t Nq,
                            int64_t Nk, int64_t H, int64_t D, float scale, bool causal) {
    float *dq = cpu_f32(d_q);                                   // [B, Nq, H*D] or NULL
    float *dk = cpu_f32(d_k), *dv = cpu_f32(d_v);               // [B, Nk, H*D] or NULL
    const float *dout = cpu_f32(d_out), *out = cpu_f32(out_t);  // [B, Nq, H*D]
    const float *q = cpu_f32(q_t);                              // [B, Nq, H*D]
    const float *k = cpu_f32(k_t), *v = cpu_f32(v_t);           // [B, Nk, H*D]
    const float *lse = cpu_f32(lse_t);                          // [B, H, Nq]
    int64_t C = H * D;
    // dK and dV sum over every query block.
    if (dk) memset(dk, 0, sizeof(float) * B * Nk * C);
    if (dv) memset(dv, 0, sizeof(float) * B * Nk * C);
    float *p = xmalloc(sizeof(float) * ROW_BLOCK * Nk);  // [rows, keys]
    // dP, then dS in place; only needed for dQ or dK.
    float *ds = dq || dk ? xmalloc(sizeof(float) * ROW_BLOCK * Nk) : NULL;

    for (int64_t b = 0; b < B; b++) {
        for (int64_t h = 0; h < H; h++) {
            const float *k_head = k + b * Nk * C + h * D, *v_head = v + b * Nk * C + h * D;
            const float *lse_head = lse + (b * H + h) * Nq;
            for (int64_t i0 = 0; i0 < Nq; i0 += ROW_BLOCK) {
                int64_t rows = Nq - i0 < ROW_BLOCK ? Nq - i0 : ROW_BLOCK;
                int64_t keys = keys_seen(i0 + rows - 1, Nk, causal);
                int64_t block = (b * Nq + i0) * C + h * D;  // first element of the block's rows
                scores(p, q + block, k_head, rows, keys, D, C, scale);
#pragma omp parallel for schedule(static)
                for (int64_t r = 0; r < rows; r++) {
                    float *pr = p + r * keys;
                    int64_t seen = keys_seen(i0 + r, Nk, causal);
                    cpu_exp_shifted(pr, pr, seen, lse_head[i0 + r]);
                    for (int64_t j = seen; j < keys; j++) pr[j] = 0.0f;
                }
                if (dv)
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)keys, (int)D,
                                (int)rows, 1.0f, p, (int)keys, dout + block, (int)C, 1.0f,
                                dv + b * Nk * C + h * D, (int)C);
                if (!ds) continue;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)keys, (int)D,
                            1.0f, dout + block, (int)C, v_head, (int)C, 0.0f, ds, (int)keys);
#pragma omp parallel for schedule(static)
                for (int64_t r = 0; r < rows; r++) {
                    const float *do_r = dout + block + r * C, *o_r = out + block + r * C;
                    float dot = 0.0f;
                    for (int64_t d = 0; d < D; d++) dot += do_r[d] * o_r[d];
                    // Masked keys have p = 0, so their dS is 0 too.
                    float *ds_r = ds + r * keys, *p_r = p + r * keys;
#pragma omp simd
                    for (int64_t j = 0; j < keys; j++) ds_r[j] = p_r[j] * (ds_r[j] - dot);
                }
                if (dq)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)D,
                                (int)keys, scale, ds, (int)keys, k_head, (int)C, 0.0f, dq + block,
                                (int)C);
                if (dk)
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)keys, (int)D,
                                (int)rows, scale, ds, (int)keys, q + block, (int)C, 1.0f,
                                dk + b * Nk * C + h * D, (int)C);
            }
        }
    }
    free(p);
    free(ds);
}
