// Nearest-neighbour 2x upsampling of NHWC images (the UNet's and VAE's Upsample2D):
// input pixel (n, h, w) becomes output pixels (n, 2h + dy, 2w + dx), dy, dx in {0, 1}.
// Pure data movement, so both directions go by the input's pixels: a thread takes one
// 16-byte vector of channels of an input pixel, then moves it to (or sums it from)
// the four output pixels. Each output access of a warp is a contiguous run of the
// channel dim, and the index arithmetic (two divisions) is shared by four vectors.
#include "kernels/cuda/kernels.cuh"
#include "kernels/cuda/pointwise.cuh"

constexpr int UPSAMPLE_THREADS = 256;

// The input element `start` is (n, h, w, c); out_pixel is its top-left output pixel
// (n, 2h, 2w). Input pixel p = (n H + h) W + w, and output row 2(n H + h) + dy of
// width 2W, so out_pixel = 2 (n H + h) 2W + 2w with no need to split n from h.
static __device__ __forceinline__ void upsample_place(int64_t start, int64_t W, int64_t C,
                                                      int64_t *c, int64_t *out_pixel) {
    int64_t pixel = start / C, nh = pixel / W;
    *c = start - pixel * C;
    *out_pixel = 2 * nh * 2 * W + 2 * (pixel - nh * W);
}

// N elements of one pixel per thread: a 16-byte vector when C is a multiple of it
// (no vector straddles two pixels), else 1.
template <typename T, int N>
static __global__ void __launch_bounds__(UPSAMPLE_THREADS)
    upsample2x_forward_kernel(T *__restrict__ out /*[N, 2H, 2W, C]*/,
                              const T *__restrict__ x /*[N, H, W, C]*/, int64_t n /*numel x*/,
                              int64_t W, int64_t C) {
    int64_t start = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * N;
    if (start >= n) return;
    int64_t c, out_pixel;
    upsample_place(start, W, C, &c, &out_pixel);
    packed<T, N> v = *reinterpret_cast<const packed<T, N> *>(x + start);
    for (int dy = 0; dy < 2; dy++)
        for (int dx = 0; dx < 2; dx++)
            *reinterpret_cast<packed<T, N> *>(out + (out_pixel + dy * 2 * W + dx) * C + c) = v;
}

// d_x = the sum of the four d_out pixels, in the CPU's order (top-left, top-right,
// bottom-left, bottom-right), so f32 results are the CPU's bits.
template <typename T, int N>
static __global__ void __launch_bounds__(UPSAMPLE_THREADS)
    upsample2x_backward_kernel(T *__restrict__ d_x /*[N, H, W, C]*/,
                               const T *__restrict__ d_out /*[N, 2H, 2W, C]*/,
                               int64_t n /*numel d_x*/, int64_t W, int64_t C) {
    int64_t start = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * N;
    if (start >= n) return;
    int64_t c, out_pixel;
    upsample_place(start, W, C, &c, &out_pixel);
    float sum[N], v[N];
    load_floats<N, true>(sum, d_out + out_pixel * C + c, 0, N);
    for (int q = 1; q < 4; q++) {  // q = 2 dy + dx
        load_floats<N, true>(v, d_out + (out_pixel + q / 2 * 2 * W + q % 2) * C + c, 0, N);
        for (int k = 0; k < N; k++) sum[k] += v[k];
    }
    store_floats<N, true>(d_x, sum, start, n);
}

// Vectors of 16 bytes when C and the pointers allow, else single elements.
void CUDA_FN(upsample2x_forward)(tensor *out, const tensor *x, int64_t N, int64_t H, int64_t W,
                                 int64_t C) {
    CHECK(x->dtype == out->dtype, "upsample2x_forward: operands differ");
    int64_t n = N * H * W * C;
    if (n == 0) return;
    DISPATCH_FLOAT(out->dtype, T, {
        constexpr int V = 16 / sizeof(T);
        T *y = dev_ptr<T>(out);
        const T *xp = dev_ptr<T>(x);
        bool vec = C % V == 0 && all_aligned_16({y, xp});
        auto kernel = vec ? upsample2x_forward_kernel<T, V> : upsample2x_forward_kernel<T, 1>;
        LAUNCH(kernel, blocks_for(n / (vec ? V : 1), UPSAMPLE_THREADS), UPSAMPLE_THREADS, 0, y, xp,
               n, W, C);
    });
}

void CUDA_FN(upsample2x_backward)(tensor *d_x, const tensor *d_out, int64_t N, int64_t H, int64_t W,
                                  int64_t C) {
    CHECK(d_out->dtype == d_x->dtype, "upsample2x_backward: operands differ");
    int64_t n = N * H * W * C;
    if (n == 0) return;
    DISPATCH_FLOAT(d_x->dtype, T, {
        constexpr int V = 16 / sizeof(T);
        T *dx = dev_ptr<T>(d_x);
        const T *dy = dev_ptr<T>(d_out);
        bool vec = C % V == 0 && all_aligned_16({dx, dy});
        auto kernel = vec ? upsample2x_backward_kernel<T, V> : upsample2x_backward_kernel<T, 1>;
        LAUNCH(kernel, blocks_for(n / (vec ? V : 1), UPSAMPLE_THREADS), UPSAMPLE_THREADS, 0, dx, dy,
               n, W, C);
    });
}
