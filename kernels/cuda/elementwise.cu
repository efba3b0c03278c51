// Broadcasting add/sub/mul and sum_reduce, the reduction behind sum/mean and every
// bias gradient.
#include "kernels/cuda/kernels.cuh"
#include "kernels/cuda/pointwise.cuh"

constexpr int ELEMENTWISE_THREADS = 256;

static __device__ __forceinline__ float apply(float a, float b, binary_op op) {
    switch (op) {
    case BIN_ADD: return a + b;
    case BIN_SUB: return a - b;
    case BIN_MUL: return a * b;
    }
    return 0.0f;
}

// --- binary ------------------------------------------------------------------------------
// No __restrict__ here: gradient accumulation calls binary(grad, grad, g, BIN_ADD), so
// out may be a. Every element is read and written by one thread, which keeps that safe.

// a and b contiguous: one 16-byte vector of each per thread.
template <typename T, bool VEC>
static __global__ void __launch_bounds__(ELEMENTWISE_THREADS)
    binary_contiguous_kernel(T *out /*[n]*/, const T *a /*[n]*/, const T *b /*[n]*/, int64_t n,
                             binary_op op) {
    constexpr int N = 16 / sizeof(T);
    int64_t start = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * N;
    if (start >= n) return;
    float va[N] = {}, vb[N] = {};
    load_floats<N, VEC>(va, a, start, n);
    load_floats<N, VEC>(vb, b, start, n);
    for (int k = 0; k < N; k++) va[k] = apply(va[k], vb[k], op);
    store_floats<N, VEC>(out, va, start, n);
}

// Broadcast or strided operands: one element per thread, offsets from the merged walk
// of (a, b). out is contiguous, so its offset is the index itself. A bias [C] over
// [N, H, W, C] merges to [NHW, C]: one division per element.
template <typename T>
static __global__ void __launch_bounds__(ELEMENTWISE_THREADS)
    binary_strided_kernel(T *out /*[n]*/, const T *a, const T *b, walk<2> w, int64_t n,
                          binary_op op) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    int64_t off[2];
    walk_offsets(w, i, off);
    out[i] = from_float<T>(apply(to_float(a[off[0]]), to_float(b[off[1]]), op));
}

void CUDA_FN(binary)(tensor *out, const tensor *a, const tensor *b, binary_op op) {
    CHECK(tensor_is_contiguous(out) && tensor_same_shape(out, a) && tensor_same_shape(out, b),
          "binary: operands must be views of the output shape");
    CHECK(a->dtype == out->dtype && b->dtype == out->dtype, "binary: one dtype for all operands");
    int64_t n = tensor_numel(out);
    if (n == 0) return;
    DISPATCH_FLOAT(out->dtype, T, {
        T *y = dev_ptr<T>(out);
        const T *pa = dev_ptr<T>(a), *pb = dev_ptr<T>(b);
        if (tensor_is_contiguous(a) && tensor_is_contiguous(b)) {
            constexpr int N = 16 / sizeof(T);
            bool vec = all_aligned_16({y, pa, pb});
            auto kernel =
                vec ? binary_contiguous_kernel<T, true> : binary_contiguous_kernel<T, false>;
            LAUNCH(kernel, blocks_for((n + N - 1) / N, ELEMENTWISE_THREADS), ELEMENTWISE_THREADS, 0,
                   y, pa, pb, n, op);
        } else {
            const int64_t *strides[2] = {a->stride, b->stride};
            auto kernel = binary_strided_kernel<T>;
            LAUNCH(kernel, blocks_for(n, ELEMENTWISE_THREADS), ELEMENTWISE_THREADS, 0, y, pa, pb,
                   make_walk<2>(out->ndim, out->shape, strides), n, op);
        }
    });
}

// --- sum_reduce ----------------------------------------------------------------------------
// out[j] = sum over the box of in behind output j. After merging dims, in is a walk
// of kept dims (j, the output index, row-major over them, since out is contiguous)
// and a walk of reduced dims (r, the position in the box): in[kept(j) + reduced(r)].
//
// Deterministic by construction: the split of the work depends only on the shapes,
// every partial sum is formed in a fixed order, no atomics. Long boxes are cut into
// chunks; pass 1 writes one float partial per (chunk, j), pass 2 adds a column of
// partials in chunk order. With a single chunk pass 1 writes out directly.
//
// Two pass-1 kernels, by which dim of in is innermost (unit stride, in practice):
//   kept    columns: [rows, C] -> [C], the bias gradient. Threads run along j, so a
//           warp reads a row segment; 8 row lanes per block, folded in shared memory.
//   reduced rows: [M, R] -> [M], sum-all and per-sample sums. A warp per (j, chunk)
//           reads a row segment and folds it with shuffles.
constexpr int SUM_COLUMNS = 32, SUM_ROW_LANES = 8;  // the column kernel's block
constexpr int SUM_COLUMN_THREADS = SUM_COLUMNS * SUM_ROW_LANES;
constexpr int SUM_MIN_CHUNK_ROWS = 128;  // 16 rows per lane at least
constexpr int SUM_MIN_CHUNK_LEN = 512;   // 16 elements per lane at least
// About one full wave of 256-thread blocks on an A100/H100 (108/132 SMs x 8): enough
// loads in flight to stream at full bandwidth, few enough partials to add.
constexpr int64_t SUM_TARGET_BLOCKS = 1024;

template <typename T, typename Dst>
static __global__ void __launch_bounds__(SUM_COLUMN_THREADS)
    sum_columns_kernel(Dst *dst /*[chunks, M]*/, const T *__restrict__ in, walk<1> kept,
                       walk<1> reduced, int64_t M, int64_t R, int64_t chunk_rows) {
    __shared__ float lanes[SUM_ROW_LANES][SUM_COLUMNS];
    int64_t j = (int64_t)blockIdx.x * SUM_COLUMNS + threadIdx.x;
    int64_t r_end = (int64_t)(blockIdx.y + 1) * chunk_rows;
    if (r_end > R) r_end = R;
    float acc = 0.0f;
    if (j < M) {
        int64_t base;
        walk_offsets(kept, j, &base);
        for (int64_t r = (int64_t)blockIdx.y * chunk_rows + threadIdx.y; r < r_end;
             r += SUM_ROW_LANES) {
            int64_t off;
            walk_offsets(reduced, r, &off);
            acc += to_float(in[base + off]);
        }
    }
    lanes[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && j < M) {
        float sum = 0.0f;
        for (int y = 0; y < SUM_ROW_LANES; y++) sum += lanes[y][threadIdx.x];
        dst[(int64_t)blockIdx.y * M + j] = from_float<Dst>(sum);
    }
}

template <typename T, typename Dst>
static __global__ void __launch_bounds__(ELEMENTWISE_THREADS)
    sum_rows_kernel(Dst *dst /*[chunks, M]*/, const T *__restrict__ in, walk<1> kept,
                    walk<1> reduced, int64_t M, int64_t R, int64_t chunk_len, int64_t chunks) {
    int64_t task = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / warpSize;
    if (task >= M * chunks) return;  // whole warps leave together
    int64_t chunk = task / M, j = task % M;
    int64_t r_end = (chunk + 1) * chunk_len;
    if (r_end > R) r_end = R;
    int64_t base;
    walk_offsets(kept, j, &base);
    float acc = 0.0f;
    for (int64_t r = chunk * chunk_len + threadIdx.x % warpSize; r < r_end; r += warpSize) {
        int64_t off;
        walk_offsets(reduced, r, &off);
        acc += to_float(in[base + off]);
    }
    for (int offset = warpSize / 2; offset > 0; offset /= 2)
        acc += __shfl_xor_sync(0xffffffffu, acc, offset);
    if (threadIdx.x % warpSize == 0) dst[chunk * M + j] = from_float<Dst>(acc);
}

template <typename T>
static __global__ void __launch_bounds__(ELEMENTWISE_THREADS)
    sum_partials_kernel(T *__restrict__ out /*[M]*/,
                        const float *__restrict__ partials /*[chunks, M]*/, int64_t M,
                        int64_t chunks) {
    int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= M) return;
    float sum = 0.0f;
    for (int64_t c = 0; c < chunks; c++) sum += partials[c * M + j];
    out[j] = from_float<T>(sum);
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Chunks for a box of R elements when `tasks` blocks already run per chunk: enough
// for SUM_TARGET_BLOCKS in all, none shorter than min_len.
static int64_t chunk_count(int64_t R, int64_t tasks, int64_t min_len) {
    int64_t wanted = ceil_div(SUM_TARGET_BLOCKS, tasks), most = ceil_div(R, min_len);
    int64_t chunks = wanted < most ? wanted : most;
    return chunks > 1 ? chunks : 1;
}

template <typename T, typename Dst>
static void launch_sum_pass1(Dst *dst, const T *x, const walk<1> &kept, const walk<1> &reduced,
                             bool columns, int64_t M, int64_t R, int64_t chunk_len,
                             int64_t chunks) {
    if (columns) {
        auto kernel = sum_columns_kernel<T, Dst>;
        dim3 grid(blocks_for(M, SUM_COLUMNS), (unsigned)chunks);
        LAUNCH(kernel, grid, dim3(SUM_COLUMNS, SUM_ROW_LANES), 0, dst, x, kept, reduced, M, R,
               chunk_len);
    } else {
        auto kernel = sum_rows_kernel<T, Dst>;
        int64_t warps_per_block = ELEMENTWISE_THREADS / 32;
        LAUNCH(kernel, (unsigned)ceil_div(M * chunks, warps_per_block), ELEMENTWISE_THREADS, 0, dst,
               x, kept, reduced, M, R, chunk_len, chunks);
    }
}

void CUDA_FN(sum_reduce)(tensor *out, const tensor *in) {
    CHECK(out->ndim == in->ndim && tensor_is_contiguous(out), "sum_reduce: rank");
    CHECK(out->dtype == in->dtype, "sum_reduce: one dtype for in and out");
    int nd = in->ndim;
    // out's strides as a broadcast view over in's shape (0 on reduced dims): merging
    // the walk of (in, that) keeps kept and reduced dims apart.
    int64_t out_stride[TENSOR_MAX_DIMS], s = 1;
    for (int d = nd - 1; d >= 0; d--) {
        CHECK(out->shape[d] == in->shape[d] || out->shape[d] == 1, "sum_reduce: dim %d", d);
        out_stride[d] = out->shape[d] == in->shape[d] ? s : 0;
        s *= out->shape[d];
    }
    const int64_t *strides[2] = {in->stride, out_stride};
    walk<2> w = make_walk<2>(nd, in->shape, strides);
    walk<1> kept = {}, reduced = {};
    int64_t M = 1, R = 1;
    for (int d = 0; d < w.ndim; d++) {
        walk<1> &part = w.stride[1][d] ? kept : reduced;
        part.shape[part.ndim] = w.shape[d];
        part.stride[0][part.ndim++] = w.stride[0][d];
        (w.stride[1][d] ? M : R) *= w.shape[d];
    }
    if (M == 0) return;
    if (R == 0) {  // an empty box sums to zero
        CUDA_CHECK(cudaMemset(tensor_data(out), 0, (size_t)M * dtype_size(out->dtype)));
        return;
    }
    bool columns = w.ndim == 0 || w.stride[1][w.ndim - 1] != 0;
    int64_t chunks = columns
                         ? chunk_count(R, blocks_for(M, SUM_COLUMNS), SUM_MIN_CHUNK_ROWS)
                         : chunk_count(R, ceil_div(M, ELEMENTWISE_THREADS / 32), SUM_MIN_CHUNK_LEN);
    int64_t chunk_len = ceil_div(R, chunks);
    chunks = ceil_div(R, chunk_len);
    DISPATCH_FLOAT(out->dtype, T, {
        const T *x = dev_ptr<T>(in);
        if (chunks == 1) {
            launch_sum_pass1(dev_ptr<T>(out), x, kept, reduced, columns, M, R, chunk_len, chunks);
        } else {
            int64_t shape[2] = {chunks, M};
            tensor *partials = tensor_new(DT_F32, out->dev, 2, shape);
            launch_sum_pass1(dev_ptr<float>(partials), x, kept, reduced, columns, M, R, chunk_len,
                             chunks);
            auto kernel = sum_partials_kernel<T>;
            LAUNCH(kernel, blocks_for(M, ELEMENTWISE_THREADS), ELEMENTWISE_THREADS, 0,
                   dev_ptr<T>(out), dev_ptr<float>(partials), M, chunks);
            tensor_free(partials);
        }
    });
}
