// Copy (any strides, converting among f32/f16/bf16: also the cast kernel), fill and
// the normal fill. All are streaming: the work is moving bytes, so contiguous
// same-dtype copies go to cudaMemcpy, contiguous casts move 16-byte vectors, and
// strided views walk merged dims (kernels/cuda/pointwise.cuh).
#include "core/half.h"
#include "core/rng.h"
#include "kernels/cuda/kernels.cuh"
#include "kernels/cuda/pointwise.cuh"

constexpr int COPY_THREADS = 256;

// f16 is a storage type only here (checkpoints hold it); the other families never see it.
static __device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ __half from_float<__half>(float v) {
    return __float2half(v);
}

// DISPATCH_STORAGE(t->dtype, T, body): body with T = the storage type of a float dtype.
#define DISPATCH_STORAGE(dt, T, ...)            \
    do {                                        \
        if ((dt) == DT_F16) {                   \
            using T = __half;                   \
            __VA_ARGS__;                        \
        } else {                                \
            DISPATCH_FLOAT(dt, T, __VA_ARGS__); \
        }                                       \
    } while (0)

// DISPATCH_BITS(size, T, body): body with T = the unsigned integer of size bytes. Same-dtype
// copies and fills move bit patterns, which serves every dtype (ints included) and
// leaves NaN payloads alone.
#define DISPATCH_BITS(size, T, ...) \
    do {                            \
        if ((size) == 2) {          \
            using T = uint16_t;     \
            __VA_ARGS__;            \
        } else if ((size) == 4) {   \
            using T = uint32_t;     \
            __VA_ARGS__;            \
        } else {                    \
            using T = uint64_t;     \
            __VA_ARGS__;            \
        }                           \
    } while (0)

// --- copy --------------------------------------------------------------------------------

// A contiguous cast: each thread converts one vector of N elements, N = 16 bytes of
// the wider type (4 for f32 <-> 16-bit, 8 between the two 16-bit types).
template <typename To, typename From, bool VEC>
static __global__ void __launch_bounds__(COPY_THREADS)
    cast_kernel(To *__restrict__ out /*[n]*/, const From *__restrict__ in /*[n]*/, int64_t n) {
    constexpr int N = 16 / (sizeof(To) > sizeof(From) ? sizeof(To) : sizeof(From));
    int64_t start = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * N;
    if (start >= n) return;
    float v[N] = {};
    load_floats<N, VEC>(v, in, start, n);
    store_floats<N, VEC>(out, v, start, n);
}

// One element per thread; each view walks its own shape (the element counts agree,
// the shapes need not). To == From moves bits; else the value goes through float,
// which holds all three float types exactly.
template <typename To, typename From>
static __global__ void __launch_bounds__(COPY_THREADS)
    strided_copy_kernel(To *__restrict__ out, const From *__restrict__ in, walk<1> out_walk,
                        walk<1> in_walk, int64_t n) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    int64_t out_off, in_off;
    walk_offsets(out_walk, i, &out_off);
    walk_offsets(in_walk, i, &in_off);
    if constexpr (std::is_same_v<To, From>)
        out[out_off] = in[in_off];
    else
        out[out_off] = from_float<To>(to_float(in[in_off]));
}

static walk<1> walk_of(const tensor *t) {
    const int64_t *strides[1] = {t->stride};
    return make_walk<1>(t->ndim, t->shape, strides);
}

// Contiguous once merged: one dim of unit stride (or none, for a single element).
static bool walk_is_contiguous(const walk<1> &w) {
    return w.ndim == 0 || (w.ndim == 1 && w.stride[0][0] == 1);
}

template <typename To, typename From>
static void launch_strided_copy(tensor *out, const tensor *in, int64_t n) {
    auto kernel = strided_copy_kernel<To, From>;
    LAUNCH(kernel, blocks_for(n, COPY_THREADS), COPY_THREADS, 0,
           static_cast<To *>(tensor_data(out)), static_cast<const From *>(tensor_data(in)),
           walk_of(out), walk_of(in), n);
}

static bool both_contiguous(const tensor *out, const tensor *in) {
    return walk_is_contiguous(walk_of(out)) && walk_is_contiguous(walk_of(in));
}

template <typename To, typename From>
static void launch_cast(tensor *out, const tensor *in, int64_t n) {
    if (!both_contiguous(out, in)) {
        launch_strided_copy<To, From>(out, in, n);
        return;
    }
    constexpr int N = 16 / (sizeof(To) > sizeof(From) ? sizeof(To) : sizeof(From));
    To *dst = static_cast<To *>(tensor_data(out));
    const From *src = static_cast<const From *>(tensor_data(in));
    bool vec = aligned_to(dst, sizeof(To) * N) && aligned_to(src, sizeof(From) * N);
    auto kernel = vec ? cast_kernel<To, From, true> : cast_kernel<To, From, false>;
    LAUNCH(kernel, blocks_for((n + N - 1) / N, COPY_THREADS), COPY_THREADS, 0, dst, src, n);
}

void CUDA_FN(copy)(tensor *out, const tensor *in) {
    CHECK(tensor_numel(out) == tensor_numel(in), "copy of %lld into %lld elements",
          (long long)tensor_numel(in), (long long)tensor_numel(out));
    CHECK(out->dtype == in->dtype || (dtype_is_float(out->dtype) && dtype_is_float(in->dtype)),
          "copy from %s to %s", dtype_name(in->dtype), dtype_name(out->dtype));
    int64_t n = tensor_numel(out);
    if (n == 0) return;
    if (out->dtype != in->dtype) {
        DISPATCH_STORAGE(out->dtype, To,
                         DISPATCH_STORAGE(in->dtype, From, launch_cast<To, From>(out, in, n)));
    } else if (both_contiguous(out, in)) {
        CUDA_CHECK(cudaMemcpy(tensor_data(out), tensor_data(in), (size_t)n * dtype_size(in->dtype),
                              cudaMemcpyDeviceToDevice));
    } else {
        DISPATCH_BITS(dtype_size(in->dtype), T, launch_strided_copy<T, T>(out, in, n));
    }
}

// --- fill --------------------------------------------------------------------------------

template <typename T>
static __global__ void __launch_bounds__(COPY_THREADS)
    fill_kernel(T *out /*[n]*/, T bits, int64_t n) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = bits;
}

// The value's bit pattern is made on the host with the CPU's own conversions, so a
// fill is the same bits on every backend; zero (most fills) is a memset.
void CUDA_FN(fill)(tensor *out, float value) {
    CHECK(tensor_is_contiguous(out), "fill needs a contiguous tensor");
    int64_t n = tensor_numel(out);
    if (n == 0) return;
    uint64_t bits;
    switch (out->dtype) {
    case DT_F32: bits = f32_bits(value); break;
    case DT_F16: bits = f32_to_f16(value); break;
    case DT_BF16: bits = f32_to_bf16(value); break;
    case DT_I32: bits = (uint32_t)(int32_t)value; break;
    case DT_I64: bits = (uint64_t)(int64_t)value; break;
    default: DIE("fill: dtype %s", dtype_name(out->dtype));
    }
    size_t size = dtype_size(out->dtype);
    if (bits == 0) {
        CUDA_CHECK(cudaMemset(tensor_data(out), 0, (size_t)n * size));
        return;
    }
    DISPATCH_BITS(size, T, {
        auto kernel = fill_kernel<T>;
        LAUNCH(kernel, blocks_for(n, COPY_THREADS), COPY_THREADS, 0,
               static_cast<T *>(tensor_data(out)), (T)bits, n);
    });
}

// One element per thread through rng_normal_at itself (core/rng.h), so the draws
// are the CPU's by construction. Each element recomputes its Philox block and its
// Box-Muller pair in double; noise is a small share of a step, so sharing a block
// across 4 threads is not worth a second copy of the formula.
template <typename T>
static __global__ void __launch_bounds__(COPY_THREADS)
    fill_normal_kernel(T *__restrict__ out /*[n]*/, uint64_t seed, uint64_t offset, int64_t n) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = from_float<T>(rng_normal_at(seed, offset + (uint64_t)i));
}

void CUDA_FN(fill_normal)(tensor *out, uint64_t seed, uint64_t offset) {
    CHECK(tensor_is_contiguous(out), "fill_normal needs a contiguous tensor");
    int64_t n = tensor_numel(out);
    if (n == 0) return;
    DISPATCH_STORAGE(out->dtype, T, {
        auto kernel = fill_normal_kernel<T>;
        LAUNCH(kernel, blocks_for(n, COPY_THREADS), COPY_THREADS, 0, dev_ptr<T>(out), seed, offset,
               n);
    });
}

// The dropout mask from rng_uniform_at, element for element as the CPU draws it.
template <typename T>
static __global__ void __launch_bounds__(COPY_THREADS)
    fill_dropout_mask_kernel(T *__restrict__ out /*[n]*/, uint64_t seed, uint64_t offset, float p,
                             float keep, int64_t n) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = from_float<T>(rng_uniform_at(seed, offset + (uint64_t)i) < p ? 0.0f : keep);
}

void CUDA_FN(fill_dropout_mask)(tensor *out, uint64_t seed, uint64_t offset, float p) {
    CHECK(tensor_is_contiguous(out), "fill_dropout_mask needs a contiguous tensor");
    int64_t n = tensor_numel(out);
    if (n == 0) return;
    const float keep = 1.0f / (1.0f - p);
    DISPATCH_STORAGE(out->dtype, T, {
        auto kernel = fill_dropout_mask_kernel<T>;
        LAUNCH(kernel, blocks_for(n, COPY_THREADS), COPY_THREADS, 0, dev_ptr<T>(out), seed, offset,
               p, keep, n);
    });
}
