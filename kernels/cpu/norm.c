// Layer norm and group norm, PyTorch semantics: biased variance, eps inside the
// square root, then the per-channel affine gamma * xhat + beta. Statistics and the
// backward's reductions accumulate in double: a group of SD's group norm holds
// 64*64*10 values.
//
// With xhat = (x - mean) * rstd and g = dy * gamma, over the m values of one row
// (layer norm) or one (sample, group) (group norm):
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
//   d_gamma[c] = sum of dy * xhat over everything normalised with channel c
//   d_beta[c]  = sum of dy over the same
// Group norm with the fused SiLU outputs silu(n), n = gamma * xhat + beta; its
// backward recomputes n and first turns dy into dy * silu'(n), then proceeds as above.
#include <math.h>
#include <stdlib.h>

#include "core/check.h"
#include "kernels/activation_math.h"
#include "kernels/cpu/cpu.h"

void cpu_layer_norm_forward(tensor *out, tensor *mean_t, tensor *rstd_t, const tensor *x_t,
                            const tensor *gamma_t, const tensor *beta_t, int64_t rows,
                            int64_t cols, float eps) {
    float *y = cpu_f32(out);                // [rows, cols]
    float *mean = cpu_f32(mean_t);          // [rows]
    float *rstd = cpu_f32(rstd_t);          // [rows]
    const float *x = cpu_f32(x_t);          // [rows, cols]
    const float *gamma = cpu_f32(gamma_t);  // [cols]
    const float *beta = cpu_f32(beta_t);    // [cols]
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        double sum = 0.0, sq = 0.0;
        for (int64_t c = 0; c < cols; c++) sum += xr[c];
        double mu = sum / (double)cols;
        for (int64_t c = 0; c < cols; c++) sq += (xr[c] - mu) * (xr[c] - mu);
        double rs = 1.0 / sqrt(sq / (double)cols + eps);
        for (int64_t c = 0; c < cols; c++)
            y[r * cols + c] = (float)((xr[c] - mu) * rs) * gamma[c] + beta[c];
        mean[r] = (float)mu;
        rstd[r] = (float)rs;
    }
}

void cpu_layer_norm_backward(tensor *d_x, tensor *d_gamma, tensor *d_beta, const tensor *d_out,
                             const tensor *x_t, const tensor *mean_t, const tensor *rstd_t,
                             const tensor *gamma_t, int64_t rows, int64_t cols) {
    float *dx = cpu_f32(d_x);               // [rows, cols] or NULL
    float *dgamma = cpu_f32(d_gamma);       // [cols] or NULL
    float *dbeta = cpu_f32(d_beta);         // [cols] or NULL
    const float *dy = cpu_f32(d_out);       // [rows, cols]
    const float *x = cpu_f32(x_t);          // [rows, cols]
    const float *mean = cpu_f32(mean_t);    // [rows]
    const float *rstd = cpu_f32(rstd_t);    // [rows]
    const float *gamma = cpu_f32(gamma_t);  // [cols]
    if (dx) {
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            const float *xr = x + r * cols, *dyr = dy + r * cols;
            double sum_g = 0.0, sum_g_xhat = 0.0;
            for (int64_t c = 0; c < cols; c++) {
                double g = (double)dyr[c] * gamma[c];
                sum_g += g;
                sum_g_xhat += g * (xr[c] - mean[r]) * rstd[r];
            }
            double mean_g = sum_g / (double)cols, mean_g_xhat = sum_g_xhat / (double)cols;
            for (int64_t c = 0; c < cols; c++) {
                double xhat = (double)(xr[c] - mean[r]) * rstd[r];
                dx[r * cols + c] =
                    (float)(rstd[r] * ((double)dyr[c] * gamma[c] - mean_g - xhat * mean_g_xhat));
            }
        }
    }
    if (!dgamma && !dbeta) return;
    // Column sums over rows; one pass in row order keeps the reads sequential.
    double *acc_gamma = xcalloc((size_t)cols, sizeof(double));
    double *acc_beta = xcalloc((size_t)cols, sizeof(double));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            double g = dy[r * cols + c];
            acc_beta[c] += g;
            if (dgamma) acc_gamma[c] += g * (x[r * cols + c] - mean[r]) * rstd[r];
        }
    for (int64_t c = 0; c < cols; c++) {
        if (dgamma) dgamma[c] = (float)acc_gamma[c];
        if (dbeta) dbeta[c] = (float)acc_beta[c];
    }
    free(acc_gamma);
    free(acc_beta);
}

// Per-group sums over one sample's [S, C] rows of x, or of (x - center[group])^2 when
// center is given. The rows are cut into fixed blocks summed in parallel, then the
// blocks are added in order: two streaming passes over the data instead of a strided
// walk per group, and sums that do not depend on the thread count.
static void group_sums(double *sums /*[G]*/, const float *x /*[S, C]*/, const double *center,
                       int64_t S, int64_t C, int64_t G) {
    enum { ROWS_PER_BLOCK = 64 };
    int64_t blocks = (S + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK, Cg = C / G;
    double *partial = xcalloc((size_t)(blocks * C), sizeof(double));  // [blocks, C]
#pragma omp parallel for schedule(static)
    for (int64_t blk = 0; blk < blocks; blk++) {
        double *acc = partial + blk * C;
        int64_t end = (blk + 1) * ROWS_PER_BLOCK < S ? (blk + 1) * ROWS_PER_BLOCK : S;
        for (int64_t s = blk * ROWS_PER_BLOCK; s < end; s++)
            for (int64_t c = 0; c < C; c++) {
                double v = x[s * C + c];
                if (center) v = (v - center[c / Cg]) * (v - center[c / Cg]);
                acc[c] += v;
            }
    }
    for (int64_t g = 0; g < G; g++) sums[g] = 0.0;
    for (int64_t blk = 0; blk < blocks; blk++)
        for (int64_t c = 0; c < C; c++) sums[c / Cg] += partial[blk * C + c];
    free(partial);
}

// x is [N, S, C]; group g of sample n is channels [g*Cg, (g+1)*Cg) at every s.
void cpu_group_norm_forward(tensor *out, tensor *mean_t, tensor *rstd_t, const tensor *x_t,
                            const tensor *gamma_t, const tensor *beta_t, int64_t N, int64_t S,
                            int64_t C, int64_t G, float eps, bool silu_out) {
    float *y = cpu_f32(out);                // [N, S, C]
    float *mean = cpu_f32(mean_t);          // [N, G]
    float *rstd = cpu_f32(rstd_t);          // [N, G]
    const float *x = cpu_f32(x_t);          // [N, S, C]
    const float *gamma = cpu_f32(gamma_t);  // [C]
    const float *beta = cpu_f32(beta_t);    // [C]
    int64_t Cg = C / G;
    double count = (double)(S * Cg);
    double *mu = xmalloc((size_t)G * sizeof *mu), *sq = xmalloc((size_t)G * sizeof *sq);
    for (int64_t n = 0; n < N; n++) {
        group_sums(mu, x + n * S * C, NULL, S, C, G);
        for (int64_t g = 0; g < G; g++) mu[g] /= count;
        group_sums(sq, x + n * S * C, mu, S, C, G);
        for (int64_t g = 0; g < G; g++) {
            mean[n * G + g] = (float)mu[g];
            rstd[n * G + g] = (float)(1.0 / sqrt(sq[g] / count + eps));
        }
    }
    free(mu);
    free(sq);
#pragma omp parallel for schedule(static)
    for (int64_t ns = 0; ns < N * S; ns++) {
        const float *xr = x + ns * C;
        const float *mean_n = mean + (ns / S) * G, *rstd_n = rstd + (ns / S) * G;
        for (int64_t c = 0; c < C; c++) {
            int64_t g = c / Cg;
            float v = (xr[c] - mean_n[g]) * rstd_n[g] * gamma[c] + beta[c];
            y[ns * C + c] = silu_out ? silu(v) : v;
        }
    }
}

void cpu_group_norm_backward(tensor *d_x, tensor *d_gamma, tensor *d_beta, const tensor *d_out,
                             const tensor *x_t, const tensor *mean_t, const tensor *rstd_t,
                             const tensor *gamma_t, const tensor *beta_t, int64_t N, int64_t S,
                             int64_t C, int64_t G, bool silu_out) {
    float *dx = cpu_f32(d_x);               // [N, S, C] or NULL
    float *dgamma = cpu_f32(d_gamma);       // [C] or NULL
    float *dbeta = cpu_f32(d_beta);         // [C] or NULL
    const float *dy = cpu_f32(d_out);       // [N, S, C]
    const float *x = cpu_f32(x_t);          // [N, S, C]
    const float *mean = cpu_f32(mean_t);    // [N, G]
    const float *rstd = cpu_f32(rstd_t);    // [N, G]
    const float *gamma = cpu_f32(gamma_t);  // [C]
    const float *beta = cpu_f32(beta_t);    // [C]
    int64_t Cg = C / G;
    double count = (double)(S * Cg);
    float *dy_silu = NULL;  // [N, S, C]: d_out * silu'(n) when the SiLU is fused
    if (silu_out) {
        dy_silu = xmalloc((size_t)(N * S * C) * sizeof(float));
#pragma omp parallel for schedule(static)
        for (int64_t ns = 0; ns < N * S; ns++) {
            const float *mean_n = mean + (ns / S) * G, *rstd_n = rstd + (ns / S) * G;
            for (int64_t c = 0; c < C; c++) {
                int64_t i = ns * C + c, g = c / Cg;
                float v = (x[i] - mean_n[g]) * rstd_n[g] * gamma[c] + beta[c];
                dy_silu[i] = dy[i] * silu_grad(v);
            }
        }
        dy = dy_silu;
    }
    // Per-sample channel sums of dy * xhat and dy: each (n, g) owns its own entries,
    // so the group loop runs in parallel and the sum over samples comes after.
    double *part_gamma = xcalloc((size_t)(N * C), sizeof(double));  // [N, C]
    double *part_beta = xcalloc((size_t)(N * C), sizeof(double));  // [N, C]
#pragma omp parallel for schedule(static)
    for (int64_t ng = 0; ng < N * G; ng++) {
        int64_t n = ng / G, c0 = (ng % G) * Cg;
        const float *xg = x + n * S * C + c0, *dyg = dy + n * S * C + c0;
        double mu = mean[ng], rs = rstd[ng];
        double sum_g = 0.0, sum_g_xhat = 0.0;
        double *pg = part_gamma + n * C + c0, *pb = part_beta + n * C + c0;
        for (int64_t s = 0; s < S; s++)
            for (int64_t c = 0; c < Cg; c++) {
                double d = dyg[s * C + c], xhat = (xg[s * C + c] - mu) * rs;
                double g = d * gamma[c0 + c];
                sum_g += g;
                sum_g_xhat += g * xhat;
                pg[c] += d * xhat;
                pb[c] += d;
            }
        if (!dx) continue;
        double mean_g = sum_g / count, mean_g_xhat = sum_g_xhat / count;
        float *dxg = dx + n * S * C + c0;
        for (int64_t s = 0; s < S; s++)
            for (int64_t c = 0; c < Cg; c++) {
                double xhat = (xg[s * C + c] - mu) * rs;
                double g = (double)dyg[s * C + c] * gamma[c0 + c];
                dxg[s * C + c] = (float)(rs * (g - mean_g - xhat * mean_g_xhat));
            }
    }
    for (int64_t c = 0; c < C; c++) {
        double sum_gamma = 0.0, sum_beta = 0.0;
        for (int64_t n = 0; n < N; n++) {
            sum_gamma += part_gamma[n * C + c];
            sum_beta += part_beta[n * C + c];
        }
        if (dgamma) dgamma[c] = (float)sum_gamma;
        if (dbeta) dbeta[c] = (float)sum_beta;
    }
    free(part_gamma);
    free(part_beta);
    free(dy_silu);
}
