// 2-D convolution over NHWC images as implicit GEMM: the three products of a conv
// (forward, input gradient, weight gradient) run through one tiled GEMM kernel whose
// operands are gathered from the images on the fly into shared memory, so no im2col
// matrix ever exists in global memory.
//
//   forward  out[p, co]  = sum_k cols(x)[p, k] w[co, k]      M = N*Ho*Wo, N = Cout, K = KH*KW*Cin
//   dgrad    dx[q, ci]   = sum_k dy~[q, k] w~[k, ci]          per stride phase, see below
//   wgrad    dw[co, k]   = sum_p dy[p, co] cols(x)[p, k]      M = Cout, N = KH*KW*Cin, K = N*Ho*Wo
//
// cols(x)[p, k] is the im2col matrix: output pixel p's receptive field in the order
// of a weight row [KH, KW, Cin], zero in the padding.
//
// The input gradient is a gather per input pixel: pixel (ih, iw) receives dy[oh, ow]
// through the kernel tap (kh, kw) when ih + pad - kh = oh * stride. Which taps can
// reach a pixel depends only on its phase ((ih + pad) % stride, (iw + pad) % stride),
// so the pixels are grouped by phase and each phase is its own GEMM over exactly the
// taps that reach it (a quarter of them each for stride 2). No product is spent on
// the zeros a stride-2 transposed conv would otherwise multiply.
//
// Tiles: bf16 storage runs on the tensor cores (wmma 16x16x16, fp32 accumulate),
// 128x128x32 tiles, 8 warps as 2 x 4, each warp 64 x 32 of the output. f32 storage
// runs plain FMAs, 128x128x8 tiles, 16 x 16 threads with 8 x 8 outputs each (register
// blocking). Both stage operands in shared memory as [BK][BM] (k-major), the layout
// the FMA loop reads as vectors and wmma reads as col-major A / row-major B; two
// buffers, with the next tile's global loads in registers during the current tile's
// math. Operands load as 16-byte vectors along their contiguous channel dimension
// when the channel counts allow, else element by element (Cin = 3 or 4).
//
// When the output has fewer tiles than the GPU has SMs, K is split over blocks
// (gridDim.z): the weight gradient's K is every pixel of the batch, and small images
// give few output tiles. Block z stores its partial sums in slice z of an f32 buffer
// and one more kernel adds the slices in a fixed order (plus the bias) and rounds,
// rather than meeting by atomicAdd: the order of float additions then does not
// depend on which block finished first, so a training step gives the same bits on
// every run (resume stays exact on a GPU too). The bias gradient's row slices meet the
// same way.
#include <type_traits>

#include "kernels/cuda/kernels.cuh"

// Internal linkage for everything but the entries: the emulated build links every
// family's kernels into one program, where same-named templates would merge.
namespace {

// --- geometry and shared pieces ---------------------------------------------------------

struct conv_shape {
    int N, H, W, Cin, Cout, KH, KW, stride, pad, Ho, Wo;
};

conv_shape conv_shape_of(const int64_t g[9]) {
    int64_t Ho = (g[CG_H] + 2 * g[CG_PAD] - g[CG_KH]) / g[CG_STRIDE] + 1;
    int64_t Wo = (g[CG_W] + 2 * g[CG_PAD] - g[CG_KW]) / g[CG_STRIDE] + 1;
    int64_t widest = g[CG_CIN] > g[CG_COUT] ? g[CG_CIN] : g[CG_COUT];
    CHECK(Ho > 0 && Wo > 0, "conv2d: empty output");
    // Pixel and GEMM indices are ints; element offsets are int64.
    CHECK(g[CG_N] * g[CG_H] * g[CG_W] <= INT32_MAX && g[CG_N] * Ho * Wo <= INT32_MAX &&
              g[CG_KH] * g[CG_KW] * widest <= INT32_MAX,
          "conv2d: dims overflow int");
    return {(int)g[CG_N],  (int)g[CG_H],  (int)g[CG_W],      (int)g[CG_CIN],
            (int)g[CG_COUT], (int)g[CG_KH], (int)g[CG_KW], (int)g[CG_STRIDE],
            (int)g[CG_PAD],  (int)Ho,       (int)Wo};
}


// VEC consecutive elements moved as one load or store (16 bytes at full width).
template <typename T, int VEC> struct alignas(sizeof(T) * VEC) vec {
    T v[VEC];
};

template <typename T, int VEC> __device__ __forceinline__ void set_zero(vec<T, VEC> &r) {
    for (int e = 0; e < VEC; e++) r.v[e] = from_float<T>(0.0f);
}

template <typename T, int VEC>
__device__ __forceinline__ void load_vec(vec<T, VEC> &r, const T *src) {
    r = *reinterpret_cast<const vec<T, VEC> *>(src);
}

// --- GEMM operands: where element (i, j) comes from ---------------------------------------
// A source is a virtual row-major matrix along its contiguous dimension j: prepare(i)
// resolves row i once (a pixel's coordinates, a weight row's address), load() reads
// VEC elements (i, j..j+VEC-1), zero outside the matrix or the image. VEC > 1 is
// only used when the contiguous channel count is a multiple of VEC, so a vector
// never straddles a kernel tap or the end of a row.

// A plain row-major [rows, cols] matrix: the weights in the forward, dy in wgrad.
template <typename T, int V> struct matrix_source {
    static constexpr int VEC = V;
    const T *m;
    int rows, cols;
    struct row {
        const T *ptr;  // NULL past the last row
    };
    __device__ row prepare(int i) const { return {i < rows ? m + (int64_t)i * cols : nullptr}; }
    __device__ void load(vec<T, VEC> &r, const row &at, int j) const {
        if (at.ptr && j < cols) load_vec(r, at.ptr + j);
        else set_zero(r);
    }
};

// cols(x) [N*Ho*Wo, KH*KW*Cin]: the forward's A and wgrad's B.
template <typename T, int V> struct im2col_source {
    static constexpr int VEC = V;
    const T *x;  // [N, H, W, Cin]
    conv_shape s;
    struct row {
        int image;     // the first pixel of the pixel's image (n*H*W), -1 past the last pixel
        int ih0, iw0;  // input coordinates of kernel tap (0, 0)
    };
    __device__ row prepare(int p) const {
        if (p >= s.N * s.Ho * s.Wo) return {-1, 0, 0};
        int ow = p % s.Wo, t = p / s.Wo, oh = t % s.Ho, n = t / s.Ho;
        return {n * s.H * s.W, oh * s.stride - s.pad, ow * s.stride - s.pad};
    }
    __device__ void load(vec<T, VEC> &r, const row &at, int k) const {
        if (at.image >= 0 && k < s.KH * s.KW * s.Cin) {
            int ci = k % s.Cin, tap = k / s.Cin;
            int ih = at.ih0 + tap / s.KW, iw = at.iw0 + tap % s.KW;
            if ((unsigned)ih < (unsigned)s.H && (unsigned)iw < (unsigned)s.W) {
                load_vec(r, x + (int64_t)(at.image + ih * s.W + iw) * s.Cin + ci);
                return;
            }
        }
        set_zero(r);
    }
};

// The input pixels of one stride phase and the kernel taps that reach them: pixel
// (i, j) of the phase is (ih0 + stride*i, iw0 + stride*j), tap (th, tw) of the phase
// is kernel position (rh + stride*th, rw + stride*tw).
struct stride_phase {
    int rh, rw;      // (ih + pad) % stride of the phase's pixels
    int ih0, iw0;    // its first pixel
    int Hp, Wp;      // its pixels per image, rows and columns
    int nkh, nkw;    // the taps that reach it, rows and columns
};

stride_phase stride_phase_of(const conv_shape &s, int rh, int rw) {
    stride_phase ph;
    ph.rh = rh, ph.rw = rw;
    ph.ih0 = ((rh - s.pad) % s.stride + s.stride) % s.stride;
    ph.iw0 = ((rw - s.pad) % s.stride + s.stride) % s.stride;
    ph.Hp = ph.ih0 < s.H ? (s.H - ph.ih0 + s.stride - 1) / s.stride : 0;
    ph.Wp = ph.iw0 < s.W ? (s.W - ph.iw0 + s.stride - 1) / s.stride : 0;
    ph.nkh = rh < s.KH ? (s.KH - rh + s.stride - 1) / s.stride : 0;
    ph.nkw = rw < s.KW ? (s.KW - rw + s.stride - 1) / s.stride : 0;
    return ph;
}

// dgrad's A [N*Hp*Wp, nkh*nkw*Cout]: row q is a pixel of the phase, column
// (th, tw, co) is dy at the output pixel that read it through that tap.
template <typename T, int V> struct dy_gather_source {
    static constexpr int VEC = V;
    const T *dy;  // [N, Ho, Wo, Cout]
    conv_shape s;
    stride_phase ph;
    struct row {
        int image;     // the first output pixel of the pixel's image, -1 past the last pixel
        int ihp, iwp;  // ih + pad, iw + pad
    };
    __device__ row prepare(int q) const {
        if (q >= s.N * ph.Hp * ph.Wp) return {-1, 0, 0};
        int j = q % ph.Wp, t = q / ph.Wp, i = t % ph.Hp, n = t / ph.Hp;
        return {n * s.Ho * s.Wo, ph.ih0 + s.stride * i + s.pad, ph.iw0 + s.stride * j + s.pad};
    }
    __device__ void load(vec<T, VEC> &r, const row &at, int k) const {
        if (at.image >= 0 && k < ph.nkh * ph.nkw * s.Cout) {
            int co = k % s.Cout, tap = k / s.Cout;
            // Exact divisions: the phase makes ihp - kh a multiple of the stride.
            int dh = at.ihp - (ph.rh + s.stride * (tap / ph.nkw));
            int dw = at.iwp - (ph.rw + s.stride * (tap % ph.nkw));
            if (dh >= 0 && dw >= 0 && dh / s.stride < s.Ho && dw / s.stride < s.Wo) {
                int o = at.image + dh / s.stride * s.Wo + dw / s.stride;
                load_vec(r, dy + (int64_t)o * s.Cout + co);
                return;
            }
        }
        set_zero(r);
    }
};

// dgrad's B [nkh*nkw*Cout, Cin]: row (th, tw, co) is w[co, kh, kw, :] of that tap.
template <typename T, int V> struct w_tap_source {
    static constexpr int VEC = V;
    const T *w;  // [Cout, KH, KW, Cin]
    conv_shape s;
    stride_phase ph;
    struct row {
        const T *ptr;  // NULL past the last row
    };
    __device__ row prepare(int k) const {
        if (k >= ph.nkh * ph.nkw * s.Cout) return {nullptr};
        int co = k % s.Cout, tap = k / s.Cout;
        int kh = ph.rh + s.stride * (tap / ph.nkw), kw = ph.rw + s.stride * (tap % ph.nkw);
        return {w + (((int64_t)co * s.KH + kh) * s.KW + kw) * s.Cin};
    }
    __device__ void load(vec<T, VEC> &r, const row &at, int ci) const {
        if (at.ptr && ci < s.Cin) load_vec(r, at.ptr + ci);
        else set_zero(r);
    }
};

// Where output row m of the GEMM starts; columns are contiguous from there.
struct matrix_dest {
    int ld;
    __device__ int64_t offset(int m) const { return (int64_t)m * ld; }
};

// dgrad's rows are the phase's pixels, scattered over dx [N, H, W, Cin].
struct phase_dest {
    conv_shape s;
    stride_phase ph;
    __device__ int64_t offset(int q) const {
        int j = q % ph.Wp, t = q / ph.Wp, i = t % ph.Hp, n = t / ph.Hp;
        return (((int64_t)n * s.H + ph.ih0 + s.stride * i) * s.W + ph.iw0 + s.stride * j) *
               s.Cin;
    }
};

// A GEMM: its operands' sources, whether each is contiguous along K (true) or along
// M / N (false), and where the rows of C go.
template <typename ASource, bool A_K_CONTIG, typename BSource, bool B_K_CONTIG, typename Dest>
struct gemm_problem {
    static constexpr bool a_k_contig = A_K_CONTIG, b_k_contig = B_K_CONTIG;
    using a_source = ASource;
    using b_source = BSource;
    ASource a;
    BSource b;
    Dest dest;
};

template <typename T, int V>
using forward_gemm =
    gemm_problem<im2col_source<T, V>, true, matrix_source<T, V>, true, matrix_dest>;
template <typename T, int V>
using dgrad_gemm =
    gemm_problem<dy_gather_source<T, V>, true, w_tap_source<T, V>, false, phase_dest>;
template <typename T, int V>
using wgrad_gemm =
    gemm_problem<matrix_source<T, V>, false, im2col_source<T, V>, false, matrix_dest>;

// The results: stored (plus the bias) when one block owns the whole K range, else
// stored into the split's slice of the f32 partial sums.
template <typename T> struct gemm_out {
    T *out;          // [M rows at dest offsets, N], NULL when K is split
    float *partial;  // [splits][same layout] in f32, or NULL
    int64_t slice;   // elements per split in partial
    const T *bias;   // [N] or NULL, direct stores only
    int N;
    __device__ void put(int64_t row, int n, float v) const {
        if (row < 0 || n >= N) return;
        if (partial) partial[blockIdx.z * slice + row + n] = v;
        else out[row + n] = from_float<T>(bias ? v + to_float(bias[n]) : v);
    }
};

// --- the tiled kernel ----------------------------------------------------------------------

constexpr int GEMM_THREADS = 256;

template <typename T> struct tile_config;
// bf16: BK 32 is two wmma k-steps per barrier; rows padded by 8 elements (16 bytes)
// so that wmma's row reads spread over the banks and stay 32-byte aligned.
template <> struct tile_config<__nv_bfloat16> {
    static constexpr int BM = 128, BN = 128, BK = 32, PAD = 8;
};
// f32: BK 8 keeps both buffers at 17 KB; padded by 4 floats to stay 16-byte aligned.
template <> struct tile_config<float> {
    static constexpr int BM = 128, BN = 128, BK = 8, PAD = 4;
};

// How an operand's tile (TILE rows of M or N by BK) sits in shared memory. The f32
// FMA loop reads vectors along M and N, so f32 tiles are k-major [BK][TILE]. wmma
// reads either layout (as col- or row-major fragments), so bf16 keeps each operand
// in the layout it comes in: k-inner [TILE][BK] when its source is contiguous along
// K, which makes the store a plain 16-byte vector store instead of a transpose.
template <typename T, bool K_CONTIG, int TILE> struct tile_layout {
    static constexpr bool K_MAJOR = !(K_CONTIG && sizeof(T) == 2);
    static constexpr int BK = tile_config<T>::BK, PAD = tile_config<T>::PAD;
    static constexpr int LD = K_MAJOR ? TILE + PAD : BK + PAD;
    static constexpr int ELEMS = K_MAJOR ? BK * LD : TILE * LD;
    __device__ static int at(int row, int k) { return K_MAJOR ? k * LD + row : row * LD + k; }
};

// Moves one operand's BK-deep tile from its source to shared memory through
// registers. Chunks of VEC elements are spread over the threads with the contiguous
// dimension fastest (coalesced), except for scalar loads along K: those walk the
// rows fastest so that each thread keeps a single row, prepared once.
template <typename T, typename Source, bool K_CONTIG, int TILE> struct operand_loader {
    using layout = tile_layout<T, K_CONTIG, TILE>;
    static constexpr int VEC = Source::VEC, BK = tile_config<T>::BK;
    static constexpr int OUTER = K_CONTIG ? TILE : BK, INNER = K_CONTIG ? BK : TILE;
    static constexpr int CHUNKS = OUTER * INNER / VEC / GEMM_THREADS;
    static constexpr bool ROWS_FASTEST = K_CONTIG && VEC == 1;
    // Rows prepared once (K-contiguous operands keep their rows for the whole K loop).
    static constexpr int KEPT_ROWS = !K_CONTIG ? 1 : ROWS_FASTEST ? 1 : CHUNKS;
    static_assert(OUTER * INNER / VEC % GEMM_THREADS == 0, "tile must split evenly");
    static_assert(!ROWS_FASTEST || GEMM_THREADS % OUTER == 0, "one row per thread");

    vec<T, VEC> reg[CHUNKS];
    typename Source::row kept[KEPT_ROWS];
    int tid;

    __device__ int outer(int c) const {
        int i = c * GEMM_THREADS + tid;
        return ROWS_FASTEST ? i % OUTER : i / (INNER / VEC);
    }
    __device__ int inner(int c) const {
        int i = c * GEMM_THREADS + tid;
        return ROWS_FASTEST ? i / OUTER : i % (INNER / VEC) * VEC;
    }
    __device__ void begin(const Source &src, int tile0) {
        tid = threadIdx.x;
        if constexpr (K_CONTIG)
            for (int r = 0; r < KEPT_ROWS; r++) kept[r] = src.prepare(tile0 + outer(r));
    }
    __device__ void load(const Source &src, int tile0, int k0) {
        for (int c = 0; c < CHUNKS; c++) {
            if constexpr (K_CONTIG) src.load(reg[c], kept[ROWS_FASTEST ? 0 : c], k0 + inner(c));
            else src.load(reg[c], src.prepare(k0 + outer(c)), tile0 + inner(c));
        }
    }
    __device__ void store(T *tile /*[layout::ELEMS]*/) const {
        for (int c = 0; c < CHUNKS; c++) {
            if constexpr (K_CONTIG && layout::K_MAJOR)  // a transpose: the vector runs along k
                for (int e = 0; e < VEC; e++)
                    tile[layout::at(outer(c), inner(c) + e)] = reg[c].v[e];
            else  // the vector runs along the tile's rows in memory
                *reinterpret_cast<vec<T, VEC> *>(tile + outer(c) * layout::LD + inner(c)) = reg[c];
        }
    }
};

template <typename T> struct mma_core;

// bf16: 8 warps as 2 (m) x 4 (n), each warp 64 x 32 of C in 4 x 2 wmma accumulators.
template <> struct mma_core<__nv_bfloat16> {
    using T = __nv_bfloat16;
    // The epilogue stages one 16x16 accumulator per warp (floats) to reach its elements.
    static constexpr int SCRATCH = GEMM_THREADS / 32 * 256;
    nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> acc[4][2];
    int warp, wm, wn;

    __device__ void begin() {
        warp = threadIdx.x / 32, wm = warp / 4, wn = warp % 4;
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 2; j++) nvcuda::wmma::fill_fragment(acc[i][j], 0.0f);
    }
    // A k-major tile is a col-major A / row-major B fragment source, a k-inner one
    // the other way round.
    template <typename ALayout, typename BLayout>
    __device__ void step(const T *a_tile, const T *b_tile) {
        using namespace nvcuda;
        using a_major = std::conditional_t<ALayout::K_MAJOR, wmma::col_major, wmma::row_major>;
        using b_major = std::conditional_t<BLayout::K_MAJOR, wmma::row_major, wmma::col_major>;
        for (int kk = 0; kk < tile_config<T>::BK; kk += 16) {
            // Both B fragments, then one A fragment at a time: fewer live registers.
            wmma::fragment<wmma::matrix_b, 16, 16, 16, T, b_major> b[2];
            for (int j = 0; j < 2; j++)
                wmma::load_matrix_sync(b[j], b_tile + BLayout::at(wn * 32 + j * 16, kk),
                                       BLayout::LD);
            for (int i = 0; i < 4; i++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, T, a_major> a;
                wmma::load_matrix_sync(a, a_tile + ALayout::at(wm * 64 + i * 16, kk), ALayout::LD);
                for (int j = 0; j < 2; j++) wmma::mma_sync(acc[i][j], a, b[j], acc[i][j]);
            }
        }
    }
    __device__ void finish(const gemm_out<T> &out, const int64_t *row_off, int n0,
                           float *scratch) {
        float *mine = scratch + warp * 256;
        int lane = threadIdx.x % 32;
        UNROLL
        for (int i = 0; i < 4; i++)
            UNROLL
            for (int j = 0; j < 2; j++) {
                nvcuda::wmma::store_matrix_sync(mine, acc[i][j], 16, nvcuda::wmma::mem_row_major);
                __syncwarp();
                for (int e = lane; e < 256; e += 32)
                    out.put(row_off[wm * 64 + i * 16 + e / 16], n0 + wn * 32 + j * 16 + e % 16,
                            mine[e]);
                __syncwarp();
            }
    }
};

// f32: 16 x 16 threads, each 8 x 8 of C as two 4-row by two 4-column halves (rows
// ty*4 and 64 + ty*4): per k step a thread reads four 16-byte vectors from shared
// memory, which the warp's lanes share (A) or read conflict-free (B).
template <> struct mma_core<float> {
    static constexpr int SCRATCH = 0;
    float acc[8][8];
    int ty, tx;

    __device__ void begin() {
        ty = threadIdx.x / 16, tx = threadIdx.x % 16;
        for (int i = 0; i < 8; i++)
            for (int j = 0; j < 8; j++) acc[i][j] = 0.0f;
    }
    template <typename ALayout, typename BLayout>
    __device__ void step(const float *a_tile /*[BK][LD]*/, const float *b_tile /*[BK][LD]*/) {
        static_assert(ALayout::K_MAJOR && BLayout::K_MAJOR, "f32 tiles are k-major");
        for (int k = 0; k < tile_config<float>::BK; k++) {
            vec<float, 4> a[2], b[2];
            for (int h = 0; h < 2; h++) {
                load_vec(a[h], a_tile + ALayout::at(h * 64 + ty * 4, k));
                load_vec(b[h], b_tile + BLayout::at(h * 64 + tx * 4, k));
            }
            for (int i = 0; i < 8; i++)
                for (int j = 0; j < 8; j++)
                    acc[i][j] = fmaf(a[i / 4].v[i % 4], b[j / 4].v[j % 4], acc[i][j]);
        }
    }
    __device__ void finish(const gemm_out<float> &out, const int64_t *row_off, int n0,
                           float *scratch) {
        for (int i = 0; i < 8; i++)
            for (int j = 0; j < 8; j++)
                out.put(row_off[i / 4 * 64 + ty * 4 + i % 4], n0 + j / 4 * 64 + tx * 4 + j % 4,
                        acc[i][j]);
    }
};

// C tile (blockIdx.x, blockIdx.y) over the K range of split blockIdx.z.
template <typename T, typename P>
__global__ void __launch_bounds__(GEMM_THREADS, 2)
    implicit_gemm_kernel(P p, gemm_out<T> out, int M, int K, int k_per_split) {
    using cfg = tile_config<T>;
    constexpr int BM = cfg::BM, BN = cfg::BN, BK = cfg::BK;
    using a_loader = operand_loader<T, typename P::a_source, P::a_k_contig, BM>;
    using b_loader = operand_loader<T, typename P::b_source, P::b_k_contig, BN>;
    using a_layout = typename a_loader::layout;
    using b_layout = typename b_loader::layout;
    __shared__ __align__(32) T a_tile[2][a_layout::ELEMS];
    __shared__ __align__(32) T b_tile[2][b_layout::ELEMS];
    __shared__ int64_t row_off[BM];  // where C's rows go, -1 past M
    static_assert(sizeof a_tile >= mma_core<T>::SCRATCH * sizeof(float), "epilogue scratch");

    int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
    int k_begin = blockIdx.z * k_per_split;
    int k_end = k_begin + k_per_split < K ? k_begin + k_per_split : K;
    int tiles = k_end > k_begin ? (k_end - k_begin + BK - 1) / BK : 0;
    for (int r = threadIdx.x; r < BM; r += GEMM_THREADS)
        row_off[r] = m0 + r < M ? p.dest.offset(m0 + r) : -1;

    a_loader a_load;
    b_loader b_load;
    mma_core<T> core;
    a_load.begin(p.a, m0);
    b_load.begin(p.b, n0);
    core.begin();
    if (tiles > 0) {
        a_load.load(p.a, m0, k_begin);
        b_load.load(p.b, n0, k_begin);
        a_load.store(a_tile[0]);
        b_load.store(b_tile[0]);
    }
    __syncthreads();
    // One barrier per tile: the buffer filled during tile t was last read during
    // tile t-1, which every thread finished before the previous barrier.
    for (int t = 0; t < tiles; t++) {
        bool more = t + 1 < tiles;
        if (more) {  // issue the next tile's global loads before this tile's math
            a_load.load(p.a, m0, k_begin + (t + 1) * BK);
            b_load.load(p.b, n0, k_begin + (t + 1) * BK);
        }
        core.template step<a_layout, b_layout>(a_tile[t % 2], b_tile[t % 2]);
        if (more) {
            a_load.store(a_tile[(t + 1) % 2]);
            b_load.store(b_tile[(t + 1) % 2]);
        }
        __syncthreads();
    }
    // The epilogue's scratch reuses the A buffers: every thread is past the last read.
    core.finish(out, row_off, n0, reinterpret_cast<float *>(&a_tile[0][0]));
}

// An H100/H200 has 132 SMs, and these kernels fit two blocks on each.
constexpr int SM_COUNT = 132, BLOCKS_PER_SM = 2;
// Each split keeps at least this many K tiles, so the extra pass stays a small cost.
constexpr int MIN_TILES_PER_SPLIT = 4;

// K splits for an M x N x K product: none when the output tiles already cover the
// SMs, else as many as fit in one round of resident blocks (rounded down, so no
// partial second round).
template <typename T> int split_count(int M, int N, int K) {
    using cfg = tile_config<T>;
    int64_t tiles = (int64_t)blocks_for(M, cfg::BM) * blocks_for(N, cfg::BN);
    int64_t k_tiles = blocks_for(K, cfg::BK);
    if (tiles >= SM_COUNT) return 1;
    int64_t splits = SM_COUNT * BLOCKS_PER_SM / tiles;
    if (splits > k_tiles / MIN_TILES_PER_SPLIT) splits = k_tiles / MIN_TILES_PER_SPLIT;
    return splits > 1 ? (int)splits : 1;
}

template <typename T, typename P>
void launch_gemm(const P &p, const gemm_out<T> &out, int M, int N, int K, int splits) {
    using cfg = tile_config<T>;
    // Splits start on tile boundaries, so no tile straddles two of them.
    int k_per_split = (int)blocks_for(blocks_for(K, splits), cfg::BK) * cfg::BK;
    unsigned z = K > 0 ? blocks_for(K, k_per_split) : 1;
    dim3 grid(blocks_for(M, cfg::BM), blocks_for(N, cfg::BN), z);
    auto kernel = implicit_gemm_kernel<T, P>;
    LAUNCH(kernel, grid, GEMM_THREADS, 0, p, out, M, K, k_per_split);
}

// --- split-K partial sums and the bias gradient ---------------------------------------------

// out[i] = bias[i % C] + partial[0][i] + partial[1][i] + ..., in that order.
template <typename T>
__global__ void sum_splits_kernel(T *out, const float *partial /*[splits, n]*/, const T *bias /*[C]*/,
                                  int64_t n, int splits, int C) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float sum = bias ? to_float(bias[i % C]) : 0.0f;
    for (int z = 0; z < splits; z++) sum += partial[z * n + i];
    out[i] = from_float<T>(sum);
}

// The f32 slices that split blocks store into, one per split of out's elements,
// zeroed (a split or a stride phase with an empty K range stores nothing), and their
// sum into out.
template <typename T> struct split_sums {
    tensor *scratch = nullptr;
    float *partial = nullptr;  // NULL until begin(): results are stored directly
    int64_t n = 0;
    int splits = 0;

    void begin(const tensor *out, int split_count) {
        n = tensor_numel(out);
        splits = split_count;
        int64_t total = n * splits;
        scratch = tensor_new(DT_F32, out->dev, 1, &total);
        partial = dev_ptr<float>(scratch);
        CUDA_CHECK(cudaMemset(partial, 0, (size_t)total * sizeof(float)));
    }
    void finish(tensor *out, const tensor *bias) {
        if (!scratch) return;
        const float *src = partial;  // LAUNCH captures by value: locals, not members
        int64_t count = n;
        int z = splits, C = bias ? (int)tensor_numel(bias) : 1;
        auto kernel = sum_splits_kernel<T>;
        LAUNCH(kernel, blocks_for(count, 256), 256, 0, dev_ptr<T>(out), src, bias ? dev_ptr<const T>(bias) : nullptr,
               count, z, C);
        tensor_free(scratch);
    }
};

// partial[blockIdx.y][c] = sum over rows [blockIdx.y slice] of dy[:, c]. A block is 32
// channels (coalesced along the channels-last rows) by 8 row lanes.
template <typename T>
__global__ void bias_grad_kernel(float *partial /*[slices, C]*/, const T *dy /*[P, C]*/, int64_t P, int C,
                                 int64_t rows_per_block) {
    __shared__ float lanes[8][33];
    int c = blockIdx.x * 32 + threadIdx.x;
    int64_t p0 = blockIdx.y * rows_per_block;
    int64_t p1 = p0 + rows_per_block < P ? p0 + rows_per_block : P;
    float sum = 0.0f;
    if (c < C)
        for (int64_t p = p0 + threadIdx.y; p < p1; p += 8) sum += to_float(dy[p * C + c]);
    lanes[threadIdx.y][threadIdx.x] = sum;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        for (int y = 1; y < 8; y++) sum += lanes[y][threadIdx.x];
        partial[blockIdx.y * (int64_t)C + c] = sum;
    }
}

// --- the three products -----------------------------------------------------------------------

bool aligned16(const tensor *t) { return t && (uintptr_t)tensor_data(t) % 16 == 0; }

// 16-byte vectors when every operand's contiguous channel count allows them.
template <typename T> constexpr int VEC_WIDTH = 16 / sizeof(T);

template <typename T, int V>
void conv_forward(tensor *out, const tensor *x, const tensor *w, const tensor *bias,
                  const conv_shape &s) {
    int M = s.N * s.Ho * s.Wo, N = s.Cout, K = s.KH * s.KW * s.Cin;
    forward_gemm<T, V> p = {{dev_ptr<const T>(x), s}, {dev_ptr<const T>(w), N, K}, {N}};
    int splits = split_count<T>(M, N, K);
    if (splits == 1) {
        launch_gemm(p, gemm_out<T>{dev_ptr<T>(out), nullptr, 0, dev_ptr<const T>(bias), N}, M, N,
                    K, 1);
        return;
    }
    split_sums<T> sums;
    sums.begin(out, splits);
    launch_gemm(p, gemm_out<T>{nullptr, sums.partial, sums.n, nullptr, N}, M, N, K, splits);
    sums.finish(out, bias);
}

template <typename T, int V>
void conv_input_grad(tensor *d_x, const tensor *d_out, const tensor *w, const conv_shape &s) {
    // Every phase's GEMM; one of them splitting K makes them all store partial sums
    // (the phases' rows are disjoint: each fills its rows of the first slices).
    int most_splits = 1;
    for (int rh = 0; rh < s.stride; rh++)
        for (int rw = 0; rw < s.stride; rw++) {
            stride_phase ph = stride_phase_of(s, rh, rw);
            int M = s.N * ph.Hp * ph.Wp, K = ph.nkh * ph.nkw * s.Cout;
            if (M > 0 && split_count<T>(M, s.Cin, K) > most_splits) most_splits = split_count<T>(M, s.Cin, K);
        }
    const bool accumulate = most_splits > 1;
    split_sums<T> sums;
    if (accumulate) sums.begin(d_x, most_splits);
    for (int rh = 0; rh < s.stride; rh++)
        for (int rw = 0; rw < s.stride; rw++) {
            stride_phase ph = stride_phase_of(s, rh, rw);
            int M = s.N * ph.Hp * ph.Wp, K = ph.nkh * ph.nkw * s.Cout;
            // No pixels; or no taps reach them (kernel smaller than the stride): their
            // gradient is zero, which the zeroed slices already hold and a direct
            // launch over an empty K writes.
            if (M == 0 || (accumulate && K == 0)) continue;
            dgrad_gemm<T, V> p = {{dev_ptr<const T>(d_out), s, ph},
                                  {dev_ptr<const T>(w), s, ph},
                                  {s, ph}};
            gemm_out<T> out = {accumulate ? nullptr : dev_ptr<T>(d_x), sums.partial, sums.n, nullptr, s.Cin};
            launch_gemm(p, out, M, s.Cin, K, accumulate ? split_count<T>(M, s.Cin, K) : 1);
        }
    sums.finish(d_x, nullptr);
}

template <typename T, int V>
void conv_weight_grad(tensor *d_w, const tensor *d_out, const tensor *x, const conv_shape &s) {
    int M = s.Cout, N = s.KH * s.KW * s.Cin, K = s.N * s.Ho * s.Wo;
    wgrad_gemm<T, V> p = {{dev_ptr<const T>(d_out), K, M}, {dev_ptr<const T>(x), s}, {N}};
    int splits = split_count<T>(M, N, K);
    if (splits == 1) {
        launch_gemm(p, gemm_out<T>{dev_ptr<T>(d_w), nullptr, 0, nullptr, N}, M, N, K, 1);
        return;
    }
    split_sums<T> sums;
    sums.begin(d_w, splits);
    launch_gemm(p, gemm_out<T>{nullptr, sums.partial, sums.n, nullptr, N}, M, N, K, splits);
    sums.finish(d_w, nullptr);
}

template <typename T>
void conv_bias_grad(tensor *d_bias, const tensor *d_out, const conv_shape &s) {
    int64_t P = (int64_t)s.N * s.Ho * s.Wo;
    // About 256 rows per block, enough blocks to cover the GPU for SD's 64x64 images.
    int64_t slices = (P + 255) / 256;
    if (slices > 1024) slices = 1024;
    int64_t rows_per_block = (P + slices - 1) / slices;
    slices = (P + rows_per_block - 1) / rows_per_block;  // none empty
    split_sums<T> sums;
    sums.begin(d_bias, (int)slices);
    auto kernel = bias_grad_kernel<T>;
    LAUNCH(kernel, dim3(blocks_for(s.Cout, 32), (unsigned)slices), dim3(32, 8), 0, sums.partial,
           dev_ptr<const T>(d_out), P, s.Cout, rows_per_block);
    sums.finish(d_bias, nullptr);
}

}  // namespace

// --- entries ---------------------------------------------------------------------------------

void CUDA_FN(conv2d_forward)(tensor *out, const tensor *x, const tensor *w, const tensor *bias,
                             const int64_t geom[9]) {
    conv_shape s = conv_shape_of(geom);
    DISPATCH_FLOAT(out->dtype, T, {
        constexpr int V = VEC_WIDTH<T>;
        if (s.Cin % V == 0 && aligned16(x) && aligned16(w)) conv_forward<T, V>(out, x, w, bias, s);
        else conv_forward<T, 1>(out, x, w, bias, s);
    });
}

void CUDA_FN(conv2d_backward)(tensor *d_x, tensor *d_w, tensor *d_bias, const tensor *d_out,
                              const tensor *x, const tensor *w, const int64_t geom[9]) {
    conv_shape s = conv_shape_of(geom);
    DISPATCH_FLOAT(d_out->dtype, T, {
        constexpr int V = VEC_WIDTH<T>;
        bool channels_vec = s.Cin % V == 0 && s.Cout % V == 0 && aligned16(d_out);
        if (d_bias) conv_bias_grad<T>(d_bias, d_out, s);
        if (d_x) {
            if (channels_vec && aligned16(w)) conv_input_grad<T, V>(d_x, d_out, w, s);
            else conv_input_grad<T, 1>(d_x, d_out, w, s);
        }
        if (d_w) {
            if (channels_vec && aligned16(x)) conv_weight_grad<T, V>(d_w, d_out, x, s);
            else conv_weight_grad<T, 1>(d_w, d_out, x, s);
        }
    });
}
