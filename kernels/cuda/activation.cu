// Pointwise activations (silu, gelu erf/tanh, quick_gelu, scale) and geglu. A few
// flops per element against 4 to 12 bytes moved: bandwidth-bound, so every thread
// moves one 16-byte vector of each operand (4 f32 or 8 bf16) and computes in float
// with the CPU reference's formulas (kernels/activation_math.h).
#include "kernels/cuda/kernels.cuh"
#include "kernels/cuda/pointwise.cuh"
#include "kernels/activation_math.h"

constexpr int ACTIVATION_THREADS = 256;

// First element of this thread's vector of N.
template <int N> static __device__ __forceinline__ int64_t vector_start() {
    return ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * N;
}

// --- unary -------------------------------------------------------------------------------

template <typename T, bool VEC>
static __global__ void __launch_bounds__(ACTIVATION_THREADS)
    unary_forward_kernel(T *__restrict__ out /*[n]*/, const T *__restrict__ in /*[n]*/, int64_t n,
                         unary_op op, float param) {
    constexpr int N = 16 / sizeof(T);
    int64_t start = vector_start<N>();
    if (start >= n) return;
    float v[N] = {};
    load_floats<N, VEC>(v, in, start, n);
    for (int k = 0; k < N; k++) v[k] = activate(v[k], op, param);
    store_floats<N, VEC>(out, v, start, n);
}

template <typename T, bool VEC>
static __global__ void __launch_bounds__(ACTIVATION_THREADS)
    unary_backward_kernel(T *__restrict__ d_in /*[n]*/, const T *__restrict__ d_out /*[n]*/,
                          const T *__restrict__ in /*[n]*/, int64_t n, unary_op op, float param) {
    constexpr int N = 16 / sizeof(T);
    int64_t start = vector_start<N>();
    if (start >= n) return;
    float g[N] = {}, x[N] = {};
    load_floats<N, VEC>(g, d_out, start, n);
    load_floats<N, VEC>(x, in, start, n);
    for (int k = 0; k < N; k++) g[k] *= activate_grad(x[k], op, param);
    store_floats<N, VEC>(d_in, g, start, n);
}

void CUDA_FN(unary_forward)(tensor *out, const tensor *in, unary_op op, float param) {
    int64_t n = tensor_numel(out);
    CHECK(tensor_numel(in) == n && in->dtype == out->dtype, "unary_forward: operands differ");
    if (n == 0) return;
    DISPATCH_FLOAT(out->dtype, T, {
        constexpr int N = 16 / sizeof(T);
        T *y = dev_ptr<T>(out);
        const T *x = dev_ptr<T>(in);
        auto kernel =
            all_aligned_16({y, x}) ? unary_forward_kernel<T, true> : unary_forward_kernel<T, false>;
        LAUNCH(kernel, blocks_for((n + N - 1) / N, ACTIVATION_THREADS), ACTIVATION_THREADS, 0, y, x,
               n, op, param);
    });
}

void CUDA_FN(unary_backward)(tensor *d_in, const tensor *d_out, const tensor *in, unary_op op,
                             float param) {
    int64_t n = tensor_numel(d_in);
    CHECK(tensor_numel(d_out) == n && tensor_numel(in) == n && d_out->dtype == d_in->dtype &&
              in->dtype == d_in->dtype,
          "unary_backward: operands differ");
    if (n == 0) return;
    DISPATCH_FLOAT(d_in->dtype, T, {
        constexpr int N = 16 / sizeof(T);
        T *dx = dev_ptr<T>(d_in);
        const T *dy = dev_ptr<T>(d_out), *x = dev_ptr<T>(in);
        auto kernel = all_aligned_16({dx, dy, x}) ? unary_backward_kernel<T, true>
                                                  : unary_backward_kernel<T, false>;
        LAUNCH(kernel, blocks_for((n + N - 1) / N, ACTIVATION_THREADS), ACTIVATION_THREADS, 0, dx,
               dy, x, n, op, param);
    });
}

// --- geglu -------------------------------------------------------------------------------
// x [rows, 2F] is [value | gate] per row; out [rows, F] = value * gelu(gate). Threads
// take vectors of out's (row, col) index space. Vectors need F to be a multiple of
// the vector, so that none straddles two rows (SD's F, 1280..5120, always is);
// otherwise elements go one by one, stepping to the next row where one ends.

// value[k], gate[k] = the two halves of x behind out's elements start + k (up to n).
template <int N, bool VEC, typename T>
static __device__ __forceinline__ void load_halves(float *value, float *gate, const T *x,
                                                   int64_t start, int64_t n, int64_t F) {
    int64_t row = start / F, col = start % F;
    if constexpr (VEC) {
        load_floats<N, true>(value, x + row * 2 * F, col, F);
        load_floats<N, true>(gate, x + row * 2 * F + F, col, F);
    } else {
        for (int k = 0; k < N && start + k < n; k++, col++) {
            if (col == F) col = 0, row++;
            value[k] = to_float(x[row * 2 * F + col]);
            gate[k] = to_float(x[row * 2 * F + F + col]);
        }
    }
}

// The reverse: stores value and gate into the halves of x.
template <int N, bool VEC, typename T>
static __device__ __forceinline__ void store_halves(T *x, const float *value, const float *gate,
                                                    int64_t start, int64_t n, int64_t F) {
    int64_t row = start / F, col = start % F;
    if constexpr (VEC) {
        store_floats<N, true>(x + row * 2 * F, value, col, F);
        store_floats<N, true>(x + row * 2 * F + F, gate, col, F);
    } else {
        for (int k = 0; k < N && start + k < n; k++, col++) {
            if (col == F) col = 0, row++;
            x[row * 2 * F + col] = from_float<T>(value[k]);
            x[row * 2 * F + F + col] = from_float<T>(gate[k]);
        }
    }
}

template <typename T, bool VEC>
static __global__ void __launch_bounds__(ACTIVATION_THREADS)
    geglu_forward_kernel(T *__restrict__ out /*[rows, F]*/, const T *__restrict__ x /*[rows, 2F]*/,
                         int64_t n /*rows * F*/, int64_t F) {
    constexpr int N = 16 / sizeof(T);
    int64_t start = vector_start<N>();
    if (start >= n) return;
    float value[N] = {}, gate[N] = {};
    load_halves<N, VEC>(value, gate, x, start, n, F);
    for (int k = 0; k < N; k++) value[k] *= gelu(gate[k]);
    store_floats<N, VEC>(out, value, start, n);
}

// d_value = d_out * gelu(gate), d_gate = d_out * value * gelu'(gate).
template <typename T, bool VEC>
static __global__ void __launch_bounds__(ACTIVATION_THREADS)
    geglu_backward_kernel(T *__restrict__ d_x /*[rows, 2F]*/,
                          const T *__restrict__ d_out /*[rows, F]*/,
                          const T *__restrict__ x /*[rows, 2F]*/, int64_t n /*rows * F*/,
                          int64_t F) {
    constexpr int N = 16 / sizeof(T);
    int64_t start = vector_start<N>();
    if (start >= n) return;
    float g[N] = {}, value[N] = {}, gate[N] = {}, d_value[N], d_gate[N];
    load_floats<N, VEC>(g, d_out, start, n);
    load_halves<N, VEC>(value, gate, x, start, n, F);
    for (int k = 0; k < N; k++) {
        d_value[k] = g[k] * gelu(gate[k]);
        d_gate[k] = g[k] * value[k] * gelu_grad(gate[k]);
    }
    store_halves<N, VEC>(d_x, d_value, d_gate, start, n, F);
}

void CUDA_FN(geglu_forward)(tensor *out, const tensor *x, int64_t rows, int64_t F) {
    CHECK(x->dtype == out->dtype, "geglu_forward: operands differ");
    int64_t n = rows * F;
    if (n == 0) return;
    DISPATCH_FLOAT(out->dtype, T, {
        constexpr int N = 16 / sizeof(T);
        T *y = dev_ptr<T>(out);
        const T *xp = dev_ptr<T>(x);
        bool vec = F % N == 0 && all_aligned_16({y, xp});
        auto kernel = vec ? geglu_forward_kernel<T, true> : geglu_forward_kernel<T, false>;
        LAUNCH(kernel, blocks_for((n + N - 1) / N, ACTIVATION_THREADS), ACTIVATION_THREADS, 0, y,
               xp, n, F);
    });
}

void CUDA_FN(geglu_backward)(tensor *d_x, const tensor *d_out, const tensor *x, int64_t rows,
                             int64_t F) {
    CHECK(d_out->dtype == d_x->dtype && x->dtype == d_x->dtype, "geglu_backward: operands differ");
    int64_t n = rows * F;
    if (n == 0) return;
    DISPATCH_FLOAT(d_x->dtype, T, {
        constexpr int N = 16 / sizeof(T);
        T *dx = dev_ptr<T>(d_x);
        const T *dy = dev_ptr<T>(d_out), *xp = dev_ptr<T>(x);
        bool vec = F % N == 0 && all_aligned_16({dx, dy, xp});
        auto kernel = vec ? geglu_backward_kernel<T, true> : geglu_backward_kernel<T, false>;
        LAUNCH(kernel, blocks_for((n + N - 1) / N, ACTIVATION_THREADS), ACTIVATION_THREADS, 0, dx,
               dy, xp, n, F);
    });
}
