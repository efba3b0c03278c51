// Mean squared error with optional per-sample weights on the GPU, as kernels/cpu/loss.c.
//
// The forward is a deterministic two-step reduction (no float atomics, so a run
// repeats bit for bit): blocks sum squared differences over fixed chunks of one
// sample into a scratch [N, chunks], then one block adds those in a fixed order, in
// double, weighting each sample. The backward is elementwise.
#include "kernels/cuda/kernels.cuh"

namespace {

constexpr int THREADS = 256;
// Values per block of the partial sums: 16 per thread, so a 4x64x64 latent is 4
// blocks per sample.
constexpr int CHUNK = THREADS * 16;

// Grid (chunks, N): partial[n, chunk] = sum of (pred - target)^2 over the chunk.
template <typename T>
__global__ void __launch_bounds__(THREADS)
    mse_partials_kernel(float *partial /*[N, chunks]*/, const T *pred /*[N, per_sample]*/,
                        const T *target /*[N, per_sample]*/, int64_t per_sample) {
    __shared__ float warp_sums[THREADS / WARP];
    int64_t n = blockIdx.y, begin = (int64_t)blockIdx.x * CHUNK;
    int64_t end = begin + CHUNK < per_sample ? begin + CHUNK : per_sample;
    const T *p = pred + n * per_sample, *t = target + n * per_sample;
    float sum = 0.0f;
    for (int64_t j = begin + threadIdx.x; j < end; j += THREADS) {
        float diff = to_float(p[j]) - to_float(t[j]);
        sum += diff * diff;
    }
    sum = warp_sum(sum);
    if (threadIdx.x % WARP == 0) warp_sums[threadIdx.x / WARP] = sum;
    __syncthreads();
    if (threadIdx.x != 0) return;
    for (int w = 1; w < THREADS / WARP; w++) sum += warp_sums[w];
    partial[n * gridDim.x + blockIdx.x] = sum;
}

// One block: loss = mean_n(w[n] * sum_k partial[n, k] / per_sample).
template <typename T>
__global__ void __launch_bounds__(THREADS)
    mse_finalize_kernel(T *loss /*[1]*/, const float *partial /*[N, chunks]*/,
                        const T *weights /*[N] or NULL*/, int64_t N, int64_t chunks,
                        int64_t per_sample) {
    __shared__ double tree[THREADS];
    double sum = 0.0;
    for (int64_t i = threadIdx.x; i < N * chunks; i += THREADS)
        sum += (weights ? (double)to_float(weights[i / chunks]) : 1.0) * partial[i];
    tree[threadIdx.x] = sum;
    __syncthreads();
    for (int half = THREADS / 2; half > 0; half /= 2) {
        if ((int)threadIdx.x < half) tree[threadIdx.x] += tree[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) loss[0] = from_float<T>((float)(tree[0] / per_sample / N));
}

// d_pred = scale * d_loss * w[n] * (pred - target) = -d_target, scale = 2 / (N per_sample).
template <typename T>
__global__ void __launch_bounds__(THREADS)
    mse_backward_kernel(T *d_pred /*[N, per_sample] or NULL*/,
                        T *d_target /*[N, per_sample] or NULL*/, const T *d_loss /*[1]*/,
                        const T *pred /*[N, per_sample]*/, const T *target /*[N, per_sample]*/,
                        const T *weights /*[N] or NULL*/, int64_t total, int64_t per_sample,
                        float scale) {
    int64_t i = (int64_t)blockIdx.x * THREADS + threadIdx.x;
    if (i >= total) return;
    float coef = scale * to_float(d_loss[0]);
    if (weights) coef *= to_float(weights[i / per_sample]);
    float d = coef * (to_float(pred[i]) - to_float(target[i]));
    if (d_pred) d_pred[i] = from_float<T>(d);
    if (d_target) d_target[i] = from_float<T>(-d);
}

}  // namespace

void CUDA_FN(mse_loss_forward)(tensor *loss, const tensor *pred, const tensor *target,
                               const tensor *weights, int64_t N, int64_t per_sample) {
    int64_t chunks = (per_sample + CHUNK - 1) / CHUNK, len = N * chunks;
    tensor *partial = tensor_new(DT_F32, pred->dev, 1, &len);
    DISPATCH_FLOAT(pred->dtype, T, {
        auto partials = mse_partials_kernel<T>;
        LAUNCH(partials, dim3((unsigned)chunks, (unsigned)N), THREADS, 0, dev_ptr<float>(partial),
               dev_ptr<T>(pred), dev_ptr<T>(target), per_sample);
        auto finalize = mse_finalize_kernel<T>;
        LAUNCH(finalize, 1, THREADS, 0, dev_ptr<T>(loss), dev_ptr<float>(partial),
               dev_ptr<T>(weights), N, chunks, per_sample);
    });
    tensor_free(partial);
}

void CUDA_FN(mse_loss_backward)(tensor *d_pred, tensor *d_target, const tensor *d_loss,
                                const tensor *pred, const tensor *target, const tensor *weights,
                                int64_t N, int64_t per_sample) {
    if (!d_pred && !d_target) return;
    float scale = (float)(2.0 / ((double)N * (double)per_sample));
    DISPATCH_FLOAT(pred->dtype, T, {
        auto kernel = mse_backward_kernel<T>;
        LAUNCH(kernel, blocks_for(N * per_sample, THREADS), THREADS, 0, dev_ptr<T>(d_pred),
               dev_ptr<T>(d_target), dev_ptr<T>(d_loss), dev_ptr<T>(pred), dev_ptr<T>(target),
               dev_ptr<T>(weights), N * per_sample, per_sample, scale);
    });
}
