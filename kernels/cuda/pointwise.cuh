// Helpers of the memory-bound kernels (copy, elementwise, activation, upsample,
// embedding, optim): 16-byte vector access to contiguous runs, and index walks
// over strided views.
#pragma once
#include <initializer_list>

#include "kernels/cuda/common.cuh"

// --- vector access ---------------------------------------------------------------------------

// N elements of T as one aligned unit: a copy of one compiles to a single vector
// load/store (16 bytes for 4 f32 or 8 bf16). A warp then moves 512 contiguous bytes
// per instruction, where scalar bf16 accesses move 64: eight times the instructions
// and requests in flight for the same bandwidth.
template <typename T, int N> struct alignas(sizeof(T) * N) packed {
    T v[N];
};

static inline bool aligned_to(const void *p, size_t bytes) { return (uintptr_t)p % bytes == 0; }

// Whether every pointer takes 16-byte vectors (a view with an offset may not).
static inline bool all_aligned_16(std::initializer_list<const void *> ptrs) {
    for (const void *p : ptrs)
        if (!aligned_to(p, 16)) return false;
    return true;
}

// Loads the N elements of src from start, as floats: one packed load when the
// vector is whole and VEC allows it (aligned pointers), else element by element up
// to n (the tail of the last vector reads nothing past the end).
template <int N, bool VEC, typename T>
static __device__ __forceinline__ void load_floats(float *dst, const T *src, int64_t start,
                                                   int64_t n) {
    if (VEC && start + N <= n) {
        packed<T, N> pack = *reinterpret_cast<const packed<T, N> *>(src + start);
        for (int k = 0; k < N; k++) dst[k] = to_float(pack.v[k]);
    } else {
        for (int k = 0; k < N && start + k < n; k++) dst[k] = to_float(src[start + k]);
    }
}

// Stores N floats to dst from start, rounded to T, the same way.
template <int N, bool VEC, typename T>
static __device__ __forceinline__ void store_floats(T *dst, const float *src, int64_t start,
                                                    int64_t n) {
    if (VEC && start + N <= n) {
        packed<T, N> pack;
        for (int k = 0; k < N; k++) pack.v[k] = from_float<T>(src[k]);
        *reinterpret_cast<packed<T, N> *>(dst + start) = pack;
    } else {
        for (int k = 0; k < N && start + k < n; k++) dst[start + k] = from_float<T>(src[k]);
    }
}

// --- strided walks ---------------------------------------------------------------------------

// K views of one shape: the shape and each view's strides (elements), passed to
// kernels by value.
template <int K> struct walk {
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    int64_t stride[K][TENSOR_MAX_DIMS];
};

// The walk of K views of shape, with size-1 dims dropped and neighbouring dims merged
// wherever every view steps through them as one (stride[d] == stride[d+1] * shape[d+1]).
// A concat window or a bias broadcast becomes 2 dims and a contiguous view 1, so the
// kernels below divide once per element or not at all.
template <int K>
static inline walk<K> make_walk(int ndim, const int64_t *shape, const int64_t *const *strides) {
    walk<K> w = {};
    for (int d = 0; d < ndim; d++) {
        if (shape[d] == 1) continue;
        int last = w.ndim - 1;
        bool merge = last >= 0;
        for (int k = 0; k < K && merge; k++) merge = w.stride[k][last] == strides[k][d] * shape[d];
        if (merge) {
            w.shape[last] *= shape[d];
            for (int k = 0; k < K; k++) w.stride[k][last] = strides[k][d];
            continue;
        }
        w.shape[w.ndim] = shape[d];
        for (int k = 0; k < K; k++) w.stride[k][w.ndim] = strides[k][d];
        w.ndim++;
    }
    return w;
}

// off[k] = offset in view k of the row-major index i. The loop has a constant trip
// count so that it unrolls and the walk stays in kernel parameters (a dynamic index
// would copy it to local memory); the outermost dim takes what is left of i without
// a division, so a 1-dim walk divides nothing.
template <int K>
static __device__ __forceinline__ void walk_offsets(const walk<K> &w, int64_t i, int64_t off[K]) {
    for (int k = 0; k < K; k++) off[k] = 0;
    for (int d = TENSOR_MAX_DIMS - 1; d > 0; d--) {
        if (d >= w.ndim) continue;
        int64_t q = i / w.shape[d], r = i - q * w.shape[d];
        for (int k = 0; k < K; k++) off[k] += r * w.stride[k][d];
        i = q;
    }
    for (int k = 0; k < K; k++) off[k] += i * w.stride[k][0];  // stride 0 when ndim is 0
}
