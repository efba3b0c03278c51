// Optimizer kernels: the fused AdamW update and the sum of squares behind the global
// gradient norm. Both are pure streaming (a few flops per byte), so what matters is
// moving whole 16-byte vectors per thread and keeping enough of them in flight.
#include "kernels/cuda/kernels.cuh"
#include "kernels/cuda/pointwise.cuh"

// Kernels and helpers have internal linkage: the emulated build of this file links
// into the same program as the nvcc one.
namespace {

// --- AdamW ---------------------------------------------------------------------------------

// 4 f32 per thread: one 16-byte access to each of param, m, v (and to an f32 grad;
// a bf16 grad reads 8 bytes). One thread per vector and no grid-stride loop: every
// element is touched once, so launching n/4 threads is the whole schedule.
constexpr int ADAMW_WIDTH = 4;
constexpr int ADAMW_THREADS = 256;

// The float expressions of cpu_adamw_update (torch.optim.AdamW's order), with the
// per-call scalars decay = 1 - lr*wd, step_size = lr/bc1 and sqrt(bc2) from the host
// (equal to the CPU to rounding: nvcc contracts some products into FMAs).
template <typename G, bool VEC>
__global__ void __launch_bounds__(ADAMW_THREADS)
    adamw_kernel(float *__restrict__ param, float *__restrict__ m, float *__restrict__ v,
                 const G *__restrict__ grad, int64_t n, float beta1, float beta2, float eps,
                 float decay, float step_size, float bc2_sqrt) {
    int64_t start = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * ADAMW_WIDTH;
    if (start >= n) return;
    float p[ADAMW_WIDTH], mk[ADAMW_WIDTH], vk[ADAMW_WIDTH], g[ADAMW_WIDTH];
    load_floats<ADAMW_WIDTH, VEC>(p, param, start, n);
    load_floats<ADAMW_WIDTH, VEC>(mk, m, start, n);
    load_floats<ADAMW_WIDTH, VEC>(vk, v, start, n);
    load_floats<ADAMW_WIDTH, VEC>(g, grad, start, n);
    for (int k = 0; k < ADAMW_WIDTH; k++) {
        mk[k] = beta1 * mk[k] + (1.0f - beta1) * g[k];
        vk[k] = beta2 * vk[k] + (1.0f - beta2) * g[k] * g[k];
        p[k] = p[k] * decay - step_size * (mk[k] / (sqrtf(vk[k]) / bc2_sqrt + eps));
    }
    store_floats<ADAMW_WIDTH, VEC>(param, p, start, n);
    store_floats<ADAMW_WIDTH, VEC>(m, mk, start, n);
    store_floats<ADAMW_WIDTH, VEC>(v, vk, start, n);
}

}  // namespace

// param, m, v: f32 [n]; grad: f32 or bf16 [n] (a bf16 gradient is widened on load).
void CUDA_FN(adamw_update)(tensor *param, tensor *m, tensor *v, const tensor *grad, float lr,
                           float beta1, float beta2, float eps, float weight_decay, float bc1,
                           float bc2) {
    int64_t n = tensor_numel(param);
    CHECK(param->dtype == DT_F32 && m->dtype == DT_F32 && v->dtype == DT_F32,
          "adamw_update: param, m and v must be f32");
    CHECK(tensor_numel(m) == n && tensor_numel(v) == n && tensor_numel(grad) == n,
          "adamw_update: param, m, v and grad must have one element count");
    if (n == 0) return;
    float decay = 1.0f - lr * weight_decay, step_size = lr / bc1, bc2_sqrt = sqrtf(bc2);
    unsigned blocks = blocks_for((n + ADAMW_WIDTH - 1) / ADAMW_WIDTH, ADAMW_THREADS);
    float *p = dev_ptr<float>(param), *mp = dev_ptr<float>(m), *vp = dev_ptr<float>(v);
    DISPATCH_FLOAT(grad->dtype, G, {
        const G *g = dev_ptr<G>(grad);
        bool vec = aligned_to(p, 16) && aligned_to(mp, 16) && aligned_to(vp, 16) &&
                   aligned_to(g, sizeof(G) * ADAMW_WIDTH);
        auto kernel = vec ? adamw_kernel<G, true> : adamw_kernel<G, false>;
        LAUNCH(kernel, blocks, ADAMW_THREADS, 0, p, mp, vp, g, n, beta1, beta2, eps, decay,
               step_size, bc2_sqrt);
    });
}

// --- sum of squares ------------------------------------------------------------------------

namespace {

// Deterministic two-pass reduction: a fixed grid (it depends on n only) of blocks
// each sums a grid-stride share of the 16-byte vectors into one partial, then one
// block adds the partials in a fixed tree and adds the result to total. No atomics,
// so the bits are the same run to run. SUMSQ_MAX_BLOCKS x 256 threads is about one
// full wave of resident threads on an A100/H100 (108/132 SMs x 2048), which with
// 16-byte loads keeps enough bytes in flight to stream at full bandwidth.
constexpr int SUMSQ_THREADS = 256;
constexpr int SUMSQ_MAX_BLOCKS = 1024;

// The sum of v over the block, in a fixed order (warp shuffles, then the first warp
// over the per-warp sums); valid in thread 0. warp_sums: __shared__ [32].
__device__ __forceinline__ float block_sum(float v, float *warp_sums) {
    for (int offset = warpSize / 2; offset > 0; offset /= 2)
        v += __shfl_down_sync(0xffffffffu, v, offset);
    int tid = threadIdx.x, lane = tid % warpSize, warp = tid / warpSize;
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();
    int n_warps = ((int)blockDim.x + warpSize - 1) / warpSize;
    v = tid < n_warps ? warp_sums[tid] : 0.0f;
    if (warp == 0)
        for (int offset = warpSize / 2; offset > 0; offset /= 2)
            v += __shfl_down_sync(0xffffffffu, v, offset);
    return v;
}

// Each thread squares and sums its vectors in float (at most a few dozen per thread
// for the largest SD weight, ~15M elements, so the serial part stays short); the
// rest of the sum is a tree.
template <typename T, bool VEC>
__global__ void __launch_bounds__(SUMSQ_THREADS)
    sum_squares_partial_kernel(float *__restrict__ partials /*[gridDim.x]*/,
                               const T *__restrict__ x /*[n]*/, int64_t n) {
    constexpr int N = 16 / sizeof(T);
    float acc = 0.0f;
    int64_t stride = (int64_t)gridDim.x * blockDim.x * N;
    for (int64_t start = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * N; start < n;
         start += stride) {
        float vals[N];
        load_floats<N, VEC>(vals, x, start, n);
        for (int k = 0; k < N && start + k < n; k++) acc += vals[k] * vals[k];
    }
    __shared__ float warp_sums[32];
    float sum = block_sum(acc, warp_sums);
    if (threadIdx.x == 0) partials[blockIdx.x] = sum;
}

__global__ void __launch_bounds__(SUMSQ_THREADS)
    sum_squares_final_kernel(float *__restrict__ total /*[1]*/,
                             const float *__restrict__ partials /*[n_partials]*/,
                             int n_partials) {
    float acc = 0.0f;
    for (int i = threadIdx.x; i < n_partials; i += blockDim.x) acc += partials[i];
    __shared__ float warp_sums[32];
    float sum = block_sum(acc, warp_sums);
    if (threadIdx.x == 0) total[0] += sum;
}

}  // namespace

// total: f32 [1] on the device; x: f32 or bf16 [n].
void CUDA_FN(sum_squares)(tensor *total, const tensor *x) {
    CHECK(total->dtype == DT_F32 && tensor_numel(total) == 1, "sum_squares: total must be f32 [1]");
    int64_t n = tensor_numel(x);
    if (n == 0) return;
    DISPATCH_FLOAT(x->dtype, T, {
        constexpr int N = 16 / sizeof(T);
        const T *xp = dev_ptr<T>(x);
        int64_t blocks_needed = blocks_for((n + N - 1) / N, SUMSQ_THREADS);
        int blocks = (int)(blocks_needed < SUMSQ_MAX_BLOCKS ? blocks_needed : SUMSQ_MAX_BLOCKS);
        int64_t partials_shape[1] = {blocks};
        tensor *partials = tensor_new(DT_F32, total->dev, 1, partials_shape);
        auto partial = aligned_to(xp, 16) ? sum_squares_partial_kernel<T, true>
                                          : sum_squares_partial_kernel<T, false>;
        LAUNCH(partial, blocks, SUMSQ_THREADS, 0, dev_ptr<float>(partials), xp, n);
        LAUNCH(sum_squares_final_kernel, 1, SUMSQ_THREADS, 0, dev_ptr<float>(total),
               dev_ptr<float>(partials), blocks);
        tensor_free(partials);
    });
}
