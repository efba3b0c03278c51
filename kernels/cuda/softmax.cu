// Softmax over the last dim of [rows, cols] on the GPU, as kernels/cpu/softmax.c.
//
// One warp per row, 8 rows per block: lanes read consecutive columns (coalesced), the
// row reductions are shuffles, and a row (up to a few thousand values) stays in L1
// between the passes over it (max, sum of exponentials, write), so it is read from
// DRAM once. No atomics: results repeat bit for bit.
#include "kernels/cuda/kernels.cuh"

namespace {

constexpr int ROW_BLOCK = 256;

__device__ __forceinline__ float warp_max(float v) {
    for (int offset = WARP / 2; offset > 0; offset /= 2)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

template <typename T>
__global__ void __launch_bounds__(ROW_BLOCK)
    softmax_forward_kernel(T *out /*[rows, cols]*/, const T *x /*[rows, cols]*/, int64_t rows,
                           int cols) {
    int64_t row = (int64_t)blockIdx.x * (ROW_BLOCK / WARP) + threadIdx.x / WARP;
    int lane = threadIdx.x % WARP;
    if (row >= rows) return;  // whole warps leave together
    const T *xr = x + row * cols;
    // Subtracting the row max keeps expf from overflowing; lanes past a short row
    // start from element 0, which never raises the max.
    float row_max = to_float(xr[0]);
    for (int c = lane; c < cols; c += WARP) row_max = fmaxf(row_max, to_float(xr[c]));
    row_max = warp_max(row_max);
    float sum = 0.0f;
    for (int c = lane; c < cols; c += WARP) sum += expf(to_float(xr[c]) - row_max);
    float inv = 1.0f / warp_sum(sum);
    T *yr = out + row * cols;
    for (int c = lane; c < cols; c += WARP)
        yr[c] = from_float<T>(expf(to_float(xr[c]) - row_max) * inv);
}

// dx = y * (dy - sum(dy * y)) per row.
template <typename T>
__global__ void __launch_bounds__(ROW_BLOCK)
    softmax_backward_kernel(T *d_x /*[rows, cols]*/, const T *d_out /*[rows, cols]*/,
                            const T *out /*[rows, cols]*/, int64_t rows, int cols) {
    int64_t row = (int64_t)blockIdx.x * (ROW_BLOCK / WARP) + threadIdx.x / WARP;
    int lane = threadIdx.x % WARP;
    if (row >= rows) return;
    const T *dyr = d_out + row * cols, *yr = out + row * cols;
    float dot = 0.0f;
    for (int c = lane; c < cols; c += WARP) dot += to_float(dyr[c]) * to_float(yr[c]);
    dot = warp_sum(dot);
    T *dxr = d_x + row * cols;
    for (int c = lane; c < cols; c += WARP)
        dxr[c] = from_float<T>(to_float(yr[c]) * (to_float(dyr[c]) - dot));
}

}  // namespace

void CUDA_FN(softmax_forward)(tensor *out, const tensor *x, int64_t rows, int64_t cols) {
    DISPATCH_FLOAT(x->dtype, T, {
        auto kernel = softmax_forward_kernel<T>;
        LAUNCH(kernel, blocks_for(rows, ROW_BLOCK / WARP), ROW_BLOCK, 0, dev_ptr<T>(out),
               dev_ptr<T>(x), rows, (int)cols);
    });
}

void CUDA_FN(softmax_backward)(tensor *d_x, const tensor *d_out, const tensor *out, int64_t rows,
                               int64_t cols) {
    DISPATCH_FLOAT(out->dtype, T, {
        auto kernel = softmax_backward_kernel<T>;
        LAUNCH(kernel, blocks_for(rows, ROW_BLOCK / WARP), ROW_BLOCK, 0, dev_ptr<T>(d_x),
               dev_ptr<T>(d_out), dev_ptr<T>(out), rows, (int)cols);
    });
}
