// Embedding lookup (CLIP's token and position tables) with its scatter-add backward,
// and the sinusoidal timestep embedding.
#include <limits.h>

#include "kernels/cuda/kernels.cuh"
#include "kernels/cuda/pointwise.cuh"
#include "kernels/embedding_math.h"

constexpr int EMBEDDING_THREADS = 256;

// --- embedding ---------------------------------------------------------------------------

// Threads take 16-byte vectors of out's rows (when D and the pointers allow, else
// single elements). A row whose id lies outside [0, V) is left unwritten and its
// position goes to first_bad (the smallest such position wins), for the host to name.
template <typename T, int N>
static __global__ void __launch_bounds__(EMBEDDING_THREADS)
    embedding_forward_kernel(T *__restrict__ out /*[n, D]*/, int *__restrict__ first_bad /*[1]*/,
                             const int32_t *__restrict__ ids /*[n]*/,
                             const T *__restrict__ table /*[V, D]*/, int64_t n, int64_t D,
                             int64_t V) {
    int64_t start = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * N;
    if (start >= n * D) return;
    int64_t row = start / D, col = start - row * D;
    int32_t id = ids[row];
    if (id < 0 || id >= V) {
        if (col == 0) atomicMin(first_bad, (int)row);
        return;
    }
    *reinterpret_cast<packed<T, N> *>(out + start) =
        *reinterpret_cast<const packed<T, N> *>(table + id * D + col);
}

void CUDA_FN(embedding_forward)(tensor *out, const tensor *ids, const tensor *table, int64_t n,
                                int64_t D) {
    CHECK(ids->dtype == DT_I32 && table->dtype == out->dtype, "embedding_forward: dtypes");
    CHECK(n < INT_MAX, "embedding_forward: %lld ids", (long long)n);
    if (n == 0 || D == 0) return;
    int64_t V = table->shape[0];
    const int32_t *id_ptr = dev_ptr<int32_t>(ids);
    int64_t flag_shape[1] = {1};
    tensor *flag = tensor_new(DT_I32, out->dev, 1, flag_shape);
    int none = (int)n;  // no position is bad
    CUDA_CHECK(cudaMemcpy(tensor_data(flag), &none, sizeof none, cudaMemcpyHostToDevice));
    DISPATCH_FLOAT(out->dtype, T, {
        constexpr int VEC = 16 / sizeof(T);
        T *y = dev_ptr<T>(out);
        const T *tp = dev_ptr<T>(table);
        bool vec = D % VEC == 0 && all_aligned_16({y, tp});
        auto kernel = vec ? embedding_forward_kernel<T, VEC> : embedding_forward_kernel<T, 1>;
        LAUNCH(kernel, blocks_for(n * D / (vec ? VEC : 1), EMBEDDING_THREADS), EMBEDDING_THREADS, 0,
               y, dev_ptr<int>(flag), id_ptr, tp, n, D, V);
    });
    int bad;
    CUDA_CHECK(cudaMemcpy(&bad, tensor_data(flag), sizeof bad, cudaMemcpyDeviceToHost));
    tensor_free(flag);
    if (bad < n) {
        int32_t id;
        CUDA_CHECK(cudaMemcpy(&id, id_ptr + bad, sizeof id, cudaMemcpyDeviceToHost));
        DIE("embedding: id %d at position %lld is outside [0, %lld)", (int)id, (long long)bad,
            (long long)V);
    }
}

// The backward adds d_out's rows into d_table, and repeated ids (CLIP's padding
// token, dozens per prompt) add into one row. Deterministically and without atomics
// (bf16 has none, and their order would vary): link each position to the next one
// with the same id, then let the first position of every id walk its chain in
// ascending order, as the CPU does, so f32 sums are the CPU's bits.

// next[i] = the next position with ids[i]'s id (-1 at the last), first[i] = whether no
// earlier position has it. A thread per position compares its id with all others,
// tiles of ids staged in shared memory: O(n^2) integer compares, microseconds for a
// batch of prompts (77 ids each), tens of microseconds for thousands of ids.
static __global__ void __launch_bounds__(EMBEDDING_THREADS)
    id_links_kernel(int *__restrict__ next /*[n]*/, int *__restrict__ first /*[n]*/,
                    const int32_t *__restrict__ ids /*[n]*/, int n) {
    __shared__ int32_t tile[EMBEDDING_THREADS];
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int32_t id = i < n ? ids[i] : 0;
    int next_i = -1, first_i = 1;
    for (int base = 0; base < n; base += EMBEDDING_THREADS) {
        if (base + (int)threadIdx.x < n) tile[threadIdx.x] = ids[base + threadIdx.x];
        __syncthreads();
        int count = n - base < EMBEDDING_THREADS ? n - base : EMBEDDING_THREADS;
        for (int k = 0; k < count; k++) {
            int j = base + k;
            if (tile[k] != id) continue;
            if (j < i) first_i = 0;
            if (j > i && next_i < 0) next_i = j;
        }
        __syncthreads();
    }
    if (i < n) next[i] = next_i, first[i] = first_i;
}

// A block per position; only first positions work: threads take vectors of the row
// and add the chain's d_out rows onto d_table's row in float. A chain is walked
// serially (two dependent loads per link, roughly half a microsecond), so the padding
// id's chain bounds the time: ~0.25 ms for the ~500 padding positions of 8 prompts,
// negligible next to a training step.
template <typename T, int N>
static __global__ void __launch_bounds__(EMBEDDING_THREADS)
    embedding_backward_kernel(T *__restrict__ d_table /*[V, D]*/,
                              const T *__restrict__ d_out /*[n, D]*/,
                              const int32_t *__restrict__ ids /*[n]*/,
                              const int *__restrict__ next /*[n]*/,
                              const int *__restrict__ first /*[n]*/, int64_t D) {
    int i = blockIdx.x;
    if (!first[i]) return;
    T *row = d_table + (int64_t)ids[i] * D;
    for (int64_t col = (int64_t)threadIdx.x * N; col < D; col += (int64_t)blockDim.x * N) {
        float acc[N], v[N];
        load_floats<N, true>(acc, row + col, 0, N);
        for (int j = i; j >= 0; j = next[j]) {
            load_floats<N, true>(v, d_out + j * D + col, 0, N);
            for (int k = 0; k < N; k++) acc[k] += v[k];
        }
        store_floats<N, true>(row + col, acc, 0, N);
    }
}

void CUDA_FN(embedding_backward)(tensor *d_table, const tensor *d_out, const tensor *ids, int64_t n,
                                 int64_t D) {
    CHECK(ids->dtype == DT_I32 && d_out->dtype == d_table->dtype, "embedding_backward: dtypes");
    CHECK(n < INT_MAX, "embedding_backward: %lld ids", (long long)n);
    if (n == 0 || D == 0) return;
    int64_t links_shape[2] = {2, n};
    tensor *links = tensor_new(DT_I32, d_table->dev, 2, links_shape);
    int *next = dev_ptr<int>(links), *first = next + n;
    const int32_t *id_ptr = dev_ptr<int32_t>(ids);
    LAUNCH(id_links_kernel, blocks_for(n, EMBEDDING_THREADS), EMBEDDING_THREADS, 0, next, first,
           id_ptr, (int)n);
    DISPATCH_FLOAT(d_table->dtype, T, {
        constexpr int VEC = 16 / sizeof(T);
        T *dt = dev_ptr<T>(d_table);
        const T *dy = dev_ptr<T>(d_out);
        bool vec = D % VEC == 0 && all_aligned_16({dt, dy});
        auto kernel = vec ? embedding_backward_kernel<T, VEC> : embedding_backward_kernel<T, 1>;
        LAUNCH(kernel, (unsigned)n, EMBEDDING_THREADS, 0, dt, dy, id_ptr, next, first, D);
    });
    tensor_free(links);
}

// --- timestep embedding --------------------------------------------------------------------
// In double, as the CPU reference (kernels/cpu/embedding.c explains why): the result
// is exact to its final rounding to float, which hides the last-ulp differences
// between the device's and glibc's double exp/log/sin/cos in all but rare cases.
// B x dim/2 is small (2 x 160 for SD), so the cost of double math is nothing.

// A thread per (b, i) over i in [0, dim - half): frequency i writes its sin and cos,
// and when dim is odd, i == half writes the zero column.
template <typename T>
static __global__ void __launch_bounds__(EMBEDDING_THREADS)
    timestep_forward_kernel(T *__restrict__ out /*[B, dim]*/, const T *__restrict__ t /*[B]*/,
                            int64_t B, int64_t dim, bool flip_sin_to_cos,
                            float downscale_freq_shift, float scale, float max_period) {
    int64_t half = dim / 2, per_row = dim - half;
    int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= B * per_row) return;
    int64_t b = idx / per_row, i = idx % per_row;
    T *row = out + b * dim;
    if (i == half) {
        row[dim - 1] = from_float<T>(0.0f);
        return;
    }
    double arg = (double)scale * to_float(t[b]) *
                 timestep_frequency(i, half, downscale_freq_shift, max_period);
    row[(flip_sin_to_cos ? half : 0) + i] = from_float<T>((float)sin(arg));
    row[(flip_sin_to_cos ? 0 : half) + i] = from_float<T>((float)cos(arg));
}

// A block per b: threads sum strided shares of the frequencies in double, then a
// fixed tree in shared memory adds them.
//   d_t = sum_i scale freq_i (d_sin_i cos(arg_i) - d_cos_i sin(arg_i))
template <typename T>
static __global__ void __launch_bounds__(EMBEDDING_THREADS)
    timestep_backward_kernel(T *__restrict__ d_t /*[B]*/, const T *__restrict__ d_out /*[B, dim]*/,
                             const T *__restrict__ t /*[B]*/, int64_t dim, bool flip_sin_to_cos,
                             float downscale_freq_shift, float scale, float max_period) {
    __shared__ double partial[EMBEDDING_THREADS];
    int64_t b = blockIdx.x, half = dim / 2;
    const T *dy = d_out + b * dim;
    int64_t sin_at = flip_sin_to_cos ? half : 0, cos_at = flip_sin_to_cos ? 0 : half;
    double tb = to_float(t[b]), sum = 0.0;
    for (int64_t i = threadIdx.x; i < half; i += blockDim.x) {
        double darg = (double)scale * timestep_frequency(i, half, downscale_freq_shift, max_period);
        double arg = darg * tb;
        sum += darg * (to_float(dy[sin_at + i]) * cos(arg) - to_float(dy[cos_at + i]) * sin(arg));
    }
    partial[threadIdx.x] = sum;
    __syncthreads();
    for (int width = EMBEDDING_THREADS / 2; width > 0; width /= 2) {
        if ((int)threadIdx.x < width) partial[threadIdx.x] += partial[threadIdx.x + width];
        __syncthreads();
    }
    if (threadIdx.x == 0) d_t[b] = from_float<T>((float)partial[0]);
}

void CUDA_FN(timestep_embedding_forward)(tensor *out, const tensor *t, int64_t B, int64_t dim,
                                         bool flip_sin_to_cos, float downscale_freq_shift,
                                         float scale, float max_period) {
    CHECK(t->dtype == out->dtype, "timestep_embedding_forward: dtypes");
    int64_t threads = B * (dim - dim / 2);
    if (threads == 0) return;
    DISPATCH_FLOAT(out->dtype, T, {
        auto kernel = timestep_forward_kernel<T>;
        LAUNCH(kernel, blocks_for(threads, EMBEDDING_THREADS), EMBEDDING_THREADS, 0,
               dev_ptr<T>(out), dev_ptr<T>(t), B, dim, flip_sin_to_cos, downscale_freq_shift, scale,
               max_period);
    });
}

void CUDA_FN(timestep_embedding_backward)(tensor *d_t, const tensor *d_out, const tensor *t,
                                          int64_t B, int64_t dim, bool flip_sin_to_cos,
                                          float downscale_freq_shift, float scale,
                                          float max_period) {
    CHECK(d_out->dtype == d_t->dtype && t->dtype == d_t->dtype,
          "timestep_embedding_backward: dtypes");
    if (B == 0) return;
    DISPATCH_FLOAT(d_t->dtype, T, {
        auto kernel = timestep_backward_kernel<T>;
        LAUNCH(kernel, (unsigned)B, EMBEDDING_THREADS, 0, dev_ptr<T>(d_t), dev_ptr<T>(d_out),
               dev_ptr<T>(t), dim, flip_sin_to_cos, downscale_freq_shift, scale, max_period);
    });
}
