// Layer norm and group norm (optionally fused with the SiLU that follows every group
// norm of a ResNet block) on the GPU: the math of kernels/cpu/norm.c, f32 statistics
// and accumulation for f32 and bf16 storage.
//
// Determinism: no float atomics. Every reduction that spans blocks writes partial
// results to a scratch buffer and a finalize kernel adds them in a fixed order, so a
// run repeats bit for bit (exact training resume).
//
// Layer norm: one warp per row. A row (at most a few thousand values) stays in L1
// between the warp's passes over it, so the two-pass statistics cost one DRAM read.
//
// Group norm: the values of one (sample, group) are Cg (4..40) channels at each of S
// positions, strided by C: reading them group by group would waste most of every
// memory transaction. The statistics kernels instead read whole rows of channels,
// coalesced along C, over a chunk of positions, keep per-channel partial results
// [N, chunks, C], and small finalize kernels fold those into per-(sample, group) and
// per-channel totals. The layer norm's d_gamma and d_beta use the same kernels.
#include "kernels/activation_math.h"
#include "kernels/cuda/kernels.cuh"

namespace {

// Warp-per-row kernels: 8 rows per block.
constexpr int ROW_BLOCK = 256;
// Per-channel kernels: a block is 32 consecutive channels (one warp reads 128 bytes of
// an f32 row at once) by 8 rows read in parallel, one per warp.
constexpr int CHANNEL_LANES = 32, ROW_LANES = 8, CHANNEL_BLOCK = CHANNEL_LANES * ROW_LANES;
// Finalize kernels.
constexpr int THREADS = 256;

// Positions per chunk of the per-channel kernels: at least 128 (16 rows per thread
// keeps loads in flight), and at most 256 chunks per sample, so that the scratch and
// the finalize loops stay small for the VAE's 512x512 images (1024 rows per chunk).
int64_t chunk_rows_for(int64_t S) {
    int64_t rows = (S + 255) / 256;
    return rows < 128 ? 128 : rows;
}

// Sum over a THREADS-thread block through tree[THREADS] in shared memory, in a fixed
// order; every thread gets the result. Calls may follow each other on the same tree.
template <typename V>
__device__ V block_sum(V v, V *tree) {
    __syncthreads();  // readers of the previous result are done with tree
    tree[threadIdx.x] = v;
    __syncthreads();
    for (int half = THREADS / 2; half > 0; half /= 2) {
        if ((int)threadIdx.x < half) tree[threadIdx.x] += tree[threadIdx.x + half];
        __syncthreads();
    }
    return tree[0];
}

// ---------------------------------------------------------------------------------------
// Layer norm

template <typename T>
__global__ void __launch_bounds__(ROW_BLOCK)
    layer_norm_forward_kernel(T *out /*[rows, cols]*/, float *mean /*[rows]*/,
                              float *rstd /*[rows]*/, const T *x /*[rows, cols]*/,
                              const T *gamma /*[cols]*/, const T *beta /*[cols]*/, int64_t rows,
                              int cols, float eps) {
    int64_t row = (int64_t)blockIdx.x * (ROW_BLOCK / WARP) + threadIdx.x / WARP;
    int lane = threadIdx.x % WARP;
    if (row >= rows) return;  // whole warps leave together
    const T *xr = x + row * cols;
    float sum = 0.0f;
    for (int c = lane; c < cols; c += WARP) sum += to_float(xr[c]);
    float mu = warp_sum(sum) / cols;
    // Second pass over the row (from L1) for the variance: no E[x^2] - mean^2 cancellation.
    float sq = 0.0f;
    for (int c = lane; c < cols; c += WARP) {
        float d = to_float(xr[c]) - mu;
        sq += d * d;
    }
    float rs = 1.0f / sqrtf(warp_sum(sq) / cols + eps);
    T *yr = out + row * cols;
    for (int c = lane; c < cols; c += WARP)
        yr[c] = from_float<T>((to_float(xr[c]) - mu) * rs * to_float(gamma[c]) + to_float(beta[c]));
    if (lane == 0) mean[row] = mu, rstd[row] = rs;
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * gamma, per row.
template <typename T>
__global__ void __launch_bounds__(ROW_BLOCK)
    layer_norm_backward_dx_kernel(T *d_x /*[rows, cols]*/, const T *d_out /*[rows, cols]*/,
                                  const T *x /*[rows, cols]*/, const float *mean /*[rows]*/,
                                  const float *rstd /*[rows]*/, const T *gamma /*[cols]*/,
                                  int64_t rows, int cols) {
    int64_t row = (int64_t)blockIdx.x * (ROW_BLOCK / WARP) + threadIdx.x / WARP;
    int lane = threadIdx.x % WARP;
    if (row >= rows) return;
    const T *xr = x + row * cols, *dyr = d_out + row * cols;
    float mu = mean[row], rs = rstd[row];
    float sum_g = 0.0f, sum_g_xhat = 0.0f;
    for (int c = lane; c < cols; c += WARP) {
        float g = to_float(dyr[c]) * to_float(gamma[c]);
        sum_g += g;
        sum_g_xhat += g * (to_float(xr[c]) - mu) * rs;
    }
    float mean_g = warp_sum(sum_g) / cols, mean_g_xhat = warp_sum(sum_g_xhat) / cols;
    T *dxr = d_x + row * cols;
    for (int c = lane; c < cols; c += WARP) {
        float xhat = (to_float(xr[c]) - mu) * rs;
        float g = to_float(dyr[c]) * to_float(gamma[c]);
        dxr[c] = from_float<T>(rs * (g - mean_g - xhat * mean_g_xhat));
    }
}

// ---------------------------------------------------------------------------------------
// Per-channel kernels over chunks of rows, shared by both norms' backward and the group
// norm's forward. Grid: (chunks, channel blocks of 32, samples); block (32, 8).

// Mean and sum of squared deviations of one channel over one chunk.
struct moments {
    float mean, m2;
};

// Each thread sums every 8th row of the chunk for its channel, relative to the
// chunk's first value: x - shift stays small even where |mean| >> std, so the f32
// sum of squares keeps its precision. Row lanes are then added in order.
// The per-channel kernels' last step: each thread holds two partial sums for its
// channel (threadIdx.x) over every ROW_LANES-th row; row lane 0 adds the other lanes'
// in order. Returns whether this thread holds the channel's totals.
__device__ __forceinline__ bool fold_row_lanes(float &a, float &b, bool channel_in_range) {
    __shared__ float a_lanes[ROW_LANES][CHANNEL_LANES], b_lanes[ROW_LANES][CHANNEL_LANES];
    a_lanes[threadIdx.y][threadIdx.x] = a;
    b_lanes[threadIdx.y][threadIdx.x] = b;
    __syncthreads();
    if (threadIdx.y != 0 || !channel_in_range) return false;
    for (int r = 1; r < ROW_LANES; r++) a += a_lanes[r][threadIdx.x], b += b_lanes[r][threadIdx.x];
    return true;
}

template <typename T>
__global__ void __launch_bounds__(CHANNEL_BLOCK)
    group_norm_moments_kernel(moments *partial /*[N, chunks, C]*/, const T *x /*[N, S, C]*/,
                              int64_t S, int C, int64_t chunk_rows) {
    int c = blockIdx.y * CHANNEL_LANES + threadIdx.x;
    int64_t n = blockIdx.z, chunk = blockIdx.x;
    int64_t s0 = chunk * chunk_rows, s1 = s0 + chunk_rows < S ? s0 + chunk_rows : S;
    float sum = 0.0f, sq = 0.0f, shift = 0.0f;
    if (c < C) {
        const T *xc = x + n * S * C + c;
        shift = to_float(xc[s0 * C]);
        for (int64_t s = s0 + threadIdx.y; s < s1; s += ROW_LANES) {
            float d = to_float(xc[s * C]) - shift;
            sum += d;
            sq += d * d;
        }
    }
    if (!fold_row_lanes(sum, sq, c < C)) return;
    float mean_d = sum / (float)(s1 - s0);
    float m2 = sq - sum * mean_d;
    partial[(n * gridDim.x + chunk) * C + c] = moments{shift + mean_d, m2 > 0.0f ? m2 : 0.0f};
}

// Sums of dy' and dy' * xhat of one channel over one chunk, dy' = dy * silu'(gamma *
// xhat + beta) with the fused SiLU, else dy. The statistics of (n, s, c) are at
// n * G + s * stat_row_step + c / Cg: the group norm passes stat_row_step 0, the
// layer norm (one sample of rows, each its own statistics: G 1, Cg = C) passes 1.
struct grad_sums {
    float dy, dy_xhat;
};

template <typename T>
__global__ void __launch_bounds__(CHANNEL_BLOCK)
    norm_grad_sums_kernel(grad_sums *partial /*[N, chunks, C]*/, const T *d_out /*[N, S, C]*/,
                          const T *x /*[N, S, C]*/, const float *mean, const float *rstd,
                          const T *gamma /*[C]*/, const T *beta /*[C], with silu*/, int64_t S,
                          int C, int Cg, int G, int stat_row_step, int64_t chunk_rows,
                          bool silu_out) {
    int c = blockIdx.y * CHANNEL_LANES + threadIdx.x;
    int64_t n = blockIdx.z, chunk = blockIdx.x;
    int64_t s0 = chunk * chunk_rows, s1 = s0 + chunk_rows < S ? s0 + chunk_rows : S;
    float sum_dy = 0.0f, sum_dy_xhat = 0.0f;
    if (c < C) {
        float gam = to_float(gamma[c]), bet = silu_out ? to_float(beta[c]) : 0.0f;
        int64_t offset = n * S * C + c, stat_c = n * G + c / Cg;
        for (int64_t s = s0 + threadIdx.y; s < s1; s += ROW_LANES) {
            int64_t stat = stat_c + s * stat_row_step;
            float xhat = (to_float(x[offset + s * C]) - mean[stat]) * rstd[stat];
            float dy = to_float(d_out[offset + s * C]);
            if (silu_out) dy *= silu_grad(xhat * gam + bet);
            sum_dy += dy;
            sum_dy_xhat += dy * xhat;
        }
    }
    if (!fold_row_lanes(sum_dy, sum_dy_xhat, c < C)) return;
    partial[(n * gridDim.x + chunk) * C + c] = grad_sums{sum_dy, sum_dy_xhat};
}

// d_beta[c] = sum of dy', d_gamma[c] = sum of dy' * xhat over all samples and chunks
// (`parts` of them). Block (32 channels, 8 lanes over the parts), then lanes in order.
template <typename T>
__global__ void __launch_bounds__(CHANNEL_BLOCK)
    norm_affine_grads_kernel(T *d_gamma /*[C] or NULL*/, T *d_beta /*[C] or NULL*/,
                             const grad_sums *partial /*[parts, C]*/, int64_t parts, int C) {
    int c = blockIdx.x * CHANNEL_LANES + threadIdx.x;
    float sum_dy = 0.0f, sum_dy_xhat = 0.0f;
    if (c < C)
        for (int64_t k = threadIdx.y; k < parts; k += ROW_LANES) {
            sum_dy += partial[k * C + c].dy;
            sum_dy_xhat += partial[k * C + c].dy_xhat;
        }
    if (!fold_row_lanes(sum_dy, sum_dy_xhat, c < C)) return;
    if (d_gamma) d_gamma[c] = from_float<T>(sum_dy_xhat);
    if (d_beta) d_beta[c] = from_float<T>(sum_dy);
}

// ---------------------------------------------------------------------------------------
// Group norm: finalize and elementwise kernels

__device__ __forceinline__ int64_t rows_in_chunk(int64_t chunk, int64_t chunk_rows, int64_t S) {
    return S - chunk * chunk_rows < chunk_rows ? S - chunk * chunk_rows : chunk_rows;
}

// One block per (n, g): merges the group's chunk moments in double (mean first, then
// M2 = sum of m2_k + rows_k * (mean_k - mean)^2, exact for any chunk means).
__global__ void __launch_bounds__(THREADS)
    group_norm_stats_kernel(float *mean /*[N, G]*/, float *rstd /*[N, G]*/,
                            const moments *partial /*[N, chunks, C]*/, int64_t S, int C, int G,
                            int64_t chunk_rows, float eps) {
    __shared__ double tree[THREADS];
    int64_t n = blockIdx.x / G;
    int Cg = C / G, g = blockIdx.x % G;
    int64_t chunks = (S + chunk_rows - 1) / chunk_rows, items = chunks * Cg;
    const moments *group = partial + n * chunks * C + g * Cg;
    double count = (double)S * Cg;
    double sum = 0.0;
    for (int64_t i = threadIdx.x; i < items; i += THREADS)
        sum += (double)rows_in_chunk(i / Cg, chunk_rows, S) * group[(i / Cg) * C + i % Cg].mean;
    double mu = block_sum(sum, tree) / count;
    double m2 = 0.0;
    for (int64_t i = threadIdx.x; i < items; i += THREADS) {
        moments m = group[(i / Cg) * C + i % Cg];
        double d = m.mean - mu;
        m2 += m.m2 + (double)rows_in_chunk(i / Cg, chunk_rows, S) * d * d;
    }
    double var = block_sum(m2, tree) / count;
    if (threadIdx.x == 0) {
        mean[blockIdx.x] = (float)mu;
        rstd[blockIdx.x] = (float)(1.0 / sqrt(var + eps));
    }
}

// The elementwise passes run a warp per position (row of C channels): lanes read
// consecutive channels, and the sample index is one division per row, not per value.
template <typename T>
__global__ void __launch_bounds__(ROW_BLOCK)
    group_norm_apply_kernel(T *out /*[N, S, C]*/, const T *x /*[N, S, C]*/,
                            const float *mean /*[N, G]*/, const float *rstd /*[N, G]*/,
                            const T *gamma /*[C]*/, const T *beta /*[C]*/, int64_t rows, int64_t S,
                            int C, int Cg, int G, bool silu_out) {
    int64_t row = (int64_t)blockIdx.x * (ROW_BLOCK / WARP) + threadIdx.x / WARP;
    if (row >= rows) return;
    const float *mean_n = mean + row / S * G, *rstd_n = rstd + row / S * G;
    const T *xr = x + row * C;
    T *yr = out + row * C;
    for (int c = threadIdx.x % WARP; c < C; c += WARP) {
        int g = c / Cg;
        float v =
            (to_float(xr[c]) - mean_n[g]) * rstd_n[g] * to_float(gamma[c]) + to_float(beta[c]);
        yr[c] = from_float<T>(silu_out ? silu(v) : v);
    }
}

// Per-(n, g) means of g = dy' * gamma and of g * xhat, the two terms of dx.
struct dx_terms {
    float mean_g, mean_g_xhat;
};

// One block per (n, g): sum_c gamma[c] * (per-channel sums) over the group's channels
// and every chunk, in double.
template <typename T>
__global__ void __launch_bounds__(THREADS)
    group_norm_dx_terms_kernel(dx_terms *terms /*[N, G]*/,
                               const grad_sums *partial /*[N, chunks, C]*/, const T *gamma /*[C]*/,
                               int64_t S, int C, int G, int64_t chunk_rows) {
    __shared__ double tree[THREADS];
    int64_t n = blockIdx.x / G;
    int Cg = C / G, g = blockIdx.x % G;
    int64_t chunks = (S + chunk_rows - 1) / chunk_rows, items = chunks * Cg;
    const grad_sums *group = partial + n * chunks * C + g * Cg;
    double sum_g = 0.0, sum_g_xhat = 0.0;
    for (int64_t i = threadIdx.x; i < items; i += THREADS) {
        grad_sums p = group[(i / Cg) * C + i % Cg];
        double gam = to_float(gamma[g * Cg + i % Cg]);
        sum_g += gam * p.dy;
        sum_g_xhat += gam * p.dy_xhat;
    }
    double count = (double)S * Cg;
    sum_g = block_sum(sum_g, tree);
    sum_g_xhat = block_sum(sum_g_xhat, tree);
    if (threadIdx.x == 0)
        terms[blockIdx.x] = dx_terms{(float)(sum_g / count), (float)(sum_g_xhat / count)};
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy' * gamma; warp per row.
template <typename T>
__global__ void __launch_bounds__(ROW_BLOCK)
    group_norm_dx_kernel(T *d_x /*[N, S, C]*/, const T *d_out /*[N, S, C]*/,
                         const T *x /*[N, S, C]*/, const float *mean /*[N, G]*/,
                         const float *rstd /*[N, G]*/, const dx_terms *terms /*[N, G]*/,
                         const T *gamma /*[C]*/, const T *beta /*[C], with silu*/, int64_t rows,
                         int64_t S, int C, int Cg, int G, bool silu_out) {
    int64_t row = (int64_t)blockIdx.x * (ROW_BLOCK / WARP) + threadIdx.x / WARP;
    if (row >= rows) return;
    int64_t stat_n = row / S * G;
    const T *xr = x + row * C, *dyr = d_out + row * C;
    T *dxr = d_x + row * C;
    for (int c = threadIdx.x % WARP; c < C; c += WARP) {
        int64_t stat = stat_n + c / Cg;
        float rs = rstd[stat], xhat = (to_float(xr[c]) - mean[stat]) * rs;
        float gam = to_float(gamma[c]), dy = to_float(dyr[c]);
        if (silu_out) dy *= silu_grad(xhat * gam + to_float(beta[c]));
        dx_terms t = terms[stat];
        dxr[c] = from_float<T>(rs * (dy * gam - t.mean_g - xhat * t.mean_g_xhat));
    }
}

tensor *scratch_f32(device dev, int64_t n) { return tensor_new(DT_F32, dev, 1, &n); }

// Per-channel dy' sums over chunks of rows into scratch (caller frees): both norms'
// backward start here. The scratch is [N, chunks, C] grad_sums.
template <typename T>
tensor *grad_sums_of(const tensor *d_out, const tensor *x, const tensor *mean, const tensor *rstd,
                     const tensor *gamma, const tensor *beta, int64_t N, int64_t S, int64_t C,
                     int64_t Cg, int64_t G, int stat_row_step, int64_t chunk_rows, bool silu) {
    int64_t chunks = (S + chunk_rows - 1) / chunk_rows;
    tensor *partial = scratch_f32(x->dev, N * chunks * C * 2);
    auto kernel = norm_grad_sums_kernel<T>;
    LAUNCH(kernel, dim3((unsigned)chunks, blocks_for(C, CHANNEL_LANES), (unsigned)N),
           dim3(CHANNEL_LANES, ROW_LANES), 0, dev_ptr<grad_sums>(partial), dev_ptr<T>(d_out),
           dev_ptr<T>(x), dev_ptr<float>(mean), dev_ptr<float>(rstd), dev_ptr<T>(gamma),
           dev_ptr<T>(beta), S, (int)C, (int)Cg, (int)G, stat_row_step, chunk_rows, silu);
    return partial;
}

template <typename T>
void affine_grads(tensor *d_gamma, tensor *d_beta, const tensor *partial, int64_t parts,
                  int64_t C) {
    if (!d_gamma && !d_beta) return;
    auto kernel = norm_affine_grads_kernel<T>;
    LAUNCH(kernel, blocks_for(C, CHANNEL_LANES), dim3(CHANNEL_LANES, ROW_LANES), 0,
           dev_ptr<T>(d_gamma), dev_ptr<T>(d_beta), dev_ptr<grad_sums>(partial), parts, (int)C);
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Entries

void CUDA_FN(layer_norm_forward)(tensor *out, tensor *mean, tensor *rstd, const tensor *x,
                                 const tensor *gamma, const tensor *beta, int64_t rows,
                                 int64_t cols, float eps) {
    DISPATCH_FLOAT(x->dtype, T, {
        auto kernel = layer_norm_forward_kernel<T>;
        LAUNCH(kernel, blocks_for(rows, ROW_BLOCK / WARP), ROW_BLOCK, 0, dev_ptr<T>(out),
               dev_ptr<float>(mean), dev_ptr<float>(rstd), dev_ptr<T>(x), dev_ptr<T>(gamma),
               dev_ptr<T>(beta), rows, (int)cols, eps);
    });
}

void CUDA_FN(layer_norm_backward)(tensor *d_x, tensor *d_gamma, tensor *d_beta, const tensor *d_out,
                                  const tensor *x, const tensor *mean, const tensor *rstd,
                                  const tensor *gamma, int64_t rows, int64_t cols) {
    DISPATCH_FLOAT(x->dtype, T, {
        if (d_x) {
            auto kernel = layer_norm_backward_dx_kernel<T>;
            LAUNCH(kernel, blocks_for(rows, ROW_BLOCK / WARP), ROW_BLOCK, 0, dev_ptr<T>(d_x),
                   dev_ptr<T>(d_out), dev_ptr<T>(x), dev_ptr<float>(mean), dev_ptr<float>(rstd),
                   dev_ptr<T>(gamma), rows, (int)cols);
        }
        if (d_gamma || d_beta) {
            // The rows as one sample whose every row has its own statistics.
            int64_t chunk_rows = chunk_rows_for(rows);
            tensor *partial = grad_sums_of<T>(d_out, x, mean, rstd, gamma, NULL, 1, rows, cols,
                                              cols, 1, 1, chunk_rows, false);
            affine_grads<T>(d_gamma, d_beta, partial, (rows + chunk_rows - 1) / chunk_rows, cols);
            tensor_free(partial);
        }
    });
}

void CUDA_FN(group_norm_forward)(tensor *out, tensor *mean, tensor *rstd, const tensor *x,
                                 const tensor *gamma, const tensor *beta, int64_t N, int64_t S,
                                 int64_t C, int64_t G, float eps, bool silu) {
    int64_t chunk_rows = chunk_rows_for(S), chunks = (S + chunk_rows - 1) / chunk_rows;
    tensor *partial = scratch_f32(x->dev, N * chunks * C * 2);
    DISPATCH_FLOAT(x->dtype, T, {
        auto moments_kernel = group_norm_moments_kernel<T>;
        LAUNCH(moments_kernel, dim3((unsigned)chunks, blocks_for(C, CHANNEL_LANES), (unsigned)N),
               dim3(CHANNEL_LANES, ROW_LANES), 0, dev_ptr<moments>(partial), dev_ptr<T>(x), S,
               (int)C, chunk_rows);
        LAUNCH(group_norm_stats_kernel, (unsigned)(N * G), THREADS, 0, dev_ptr<float>(mean),
               dev_ptr<float>(rstd), dev_ptr<moments>(partial), S, (int)C, (int)G, chunk_rows, eps);
        auto apply = group_norm_apply_kernel<T>;
        LAUNCH(apply, blocks_for(N * S, ROW_BLOCK / WARP), ROW_BLOCK, 0, dev_ptr<T>(out),
               dev_ptr<T>(x), dev_ptr<float>(mean), dev_ptr<float>(rstd), dev_ptr<T>(gamma),
               dev_ptr<T>(beta), N * S, S, (int)C, (int)(C / G), (int)G, silu);
    });
    tensor_free(partial);
}

void CUDA_FN(group_norm_backward)(tensor *d_x, tensor *d_gamma, tensor *d_beta, const tensor *d_out,
                                  const tensor *x, const tensor *mean, const tensor *rstd,
                                  const tensor *gamma, const tensor *beta, int64_t N, int64_t S,
                                  int64_t C, int64_t G, bool silu) {
    int64_t chunk_rows = chunk_rows_for(S), chunks = (S + chunk_rows - 1) / chunk_rows;
    DISPATCH_FLOAT(x->dtype, T, {
        tensor *partial = grad_sums_of<T>(d_out, x, mean, rstd, gamma, beta, N, S, C, C / G, G, 0,
                                          chunk_rows, silu);
        affine_grads<T>(d_gamma, d_beta, partial, N * chunks, C);
        if (d_x) {
            tensor *terms = scratch_f32(x->dev, N * G * 2);
            auto terms_kernel = group_norm_dx_terms_kernel<T>;
            LAUNCH(terms_kernel, (unsigned)(N * G), THREADS, 0, dev_ptr<dx_terms>(terms),
                   dev_ptr<grad_sums>(partial), dev_ptr<T>(gamma), S, (int)C, (int)G, chunk_rows);
            auto dx_kernel = group_norm_dx_kernel<T>;
            LAUNCH(dx_kernel, blocks_for(N * S, ROW_BLOCK / WARP), ROW_BLOCK, 0, dev_ptr<T>(d_x),
                   dev_ptr<T>(d_out), dev_ptr<T>(x), dev_ptr<float>(mean), dev_ptr<float>(rstd),
                   dev_ptr<dx_terms>(terms), dev_ptr<T>(gamma), dev_ptr<T>(beta), N * S, S, (int)C,
                   (int)(C / G), (int)G, silu);
            tensor_free(terms);
        }
        tensor_free(partial);
    });
}
