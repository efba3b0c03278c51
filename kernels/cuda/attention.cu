// Flash attention, forward and backward: tiled, with an online softmax, so no Nq x Nk
// matrix ever exists; only per-row log-sum-exps (lse) are saved for the backward.
//
// q [B, Nq, H*D], k and v [B, Nk, H*D], out like q: head h of a token is channels
// [h*D, (h+1)*D), so one head is a matrix with row stride H*D that the kernels read in
// place. Each block owns one (batch, head) and a run of rows; B and H are grid.z/y.
//
// Tiles and why:
//   - A block has WARPS warps, each owning 16 rows of its "resident" matrix (queries in
//     the forward, keys in the dK/dV pass), the row count of a wmma tile. Warps never
//     share rows, so the softmax and the accumulators need no cross-warp reduction.
//   - The other side is streamed through shared memory STREAM rows at a time: all warps
//     of the block reuse every K/V (or Q/dO) tile the block loads.
//   - Head dims are padded to DP, a multiple of 16, in shared memory only: the loads
//     zero-fill channels [D, DP) and the stores skip them, so D = 40 computes like 48
//     (wmma needs k in steps of 16) but reads and writes exactly 40 channels per row.
//     The alternative, padding to 64 in memory, costs 60% more traffic for D = 40.
//   - Products accumulate in 16x16 fp32 tiles per warp (acc_tile below): tensor cores
//     (wmma m16n16k16, bf16 in, fp32 accumulate) for bf16 storage, plain fp32 FMAs for
//     f32 storage, which must match the CPU to 1e-5 and so cannot use bf16 tensor
//     cores. wmma fragments cannot be indexed portably, so scores reach the softmax
//     through a small per-warp fp32 tile in shared memory, and the forward rescales
//     its output accumulators (another round trip) only when a row's running max
//     grows by more than RESCALE_MARGIN, which after the first key tiles is rare.
//   - Without cudaFuncSetAttribute a block gets at most 48 KB of dynamic shared
//     memory; attention_tiles picks the most warps (4, 2 or 1) and then the longest
//     stream tile (64 .. 16 rows) that fit for each storage type and head dim.
//   - Shared-memory rows are padded by 16 bytes, so their starts step through the
//     banks and 16 rows read at one column (wmma loads, the fp32 products) do not
//     collide.
#include <math.h>

#include <algorithm>
#include <type_traits>

#include "kernels/cuda/kernels.cuh"
#include "kernels/ops.h"

using namespace nvcuda;

#define FULL_MASK 0xffffffffu

// UNROLL keeps register arrays (acc_tile arrays, acc_tile<float>'s values) in
// registers. The fp32 product's k loop stays rolled (NO_UNROLL): unrolled, nvcc hoists
// all its 16 x 9 shared loads and spills.

// Head dims up to 160 (SD1.5's deepest level) have kernels; 40, 80 and 160 (SD1.5),
// 64 (CLIP, SD2, SDXL) and every smaller dim get their own padded size.
#define MAX_HEAD_DIM ATTENTION_MAX_HEAD_DIM

// --- tile geometry ------------------------------------------------------------------------

// Elements per shared-memory row of COLS columns: one extra 16-byte chunk, so row
// starts are an odd number of 16-byte chunks apart and spread over the banks.
template <typename T, int COLS> constexpr int PITCH = COLS + 16 / (int)sizeof(T);

// Shared memory of one block: RESIDENT matrices of 16*warps rows (the forward keeps Q;
// the backward keeps Q and dO, or K and V), two streamed tiles of `stream` rows, per
// warp an fp32 tile [16][stream] (scores) and a T tile [16][stream] (probabilities,
// then dS), and in the backward two per-row statistics (lse, rowsum(dO * O)).
template <typename T, int DP, int RESIDENT> struct attention_tiles {
    static constexpr int bytes(int warps, int stream) {
        int pad = 16 / (int)sizeof(T), rows = RESIDENT * 16 * warps + 2 * stream;
        int per_warp = 16 * (stream + 4) * 4 + 16 * (stream + pad) * (int)sizeof(T);
        int stats = RESIDENT == 2 ? 2 * 4 * std::max(16 * warps, stream) : 0;
        // + 16: block_tiles may skip that much to align the tiles
        return rows * (DP + pad) * (int)sizeof(T) + warps * per_warp + stats + 16;
    }
    // The first that fits: more warps share each streamed tile (less traffic per row),
    // then longer stream tiles mean fewer block-wide barriers per key.
    static constexpr int choice() {
        for (int warps : {4, 2, 1})
            for (int stream : {64, 48, 32, 16})
                if (bytes(warps, stream) <= 48 * 1024) return warps * 1000 + stream;
        return 0;
    }
    static_assert(choice() > 0, "attention tiles do not fit in 48 KB of shared memory");
    static constexpr int WARPS = choice() / 1000;
    static constexpr int ROWS = 16 * WARPS;      // resident rows per block
    static constexpr int STREAM = choice() % 1000;  // streamed rows per tile
    static constexpr int LD = PITCH<T, DP>;       // resident and streamed tiles
    static constexpr int LDS = STREAM + 4;        // fp32 score tile (odd 16-byte chunks)
    static constexpr int LDP = PITCH<T, STREAM>;  // T probability tile
    static constexpr int SHARED = bytes(WARPS, STREAM);
    // Register budget, as blocks that must fit on an SM: 16 warps (128 registers a
    // thread) for bf16 up to DP 80, where the accumulators fit in that, else 8 (up to
    // 255 registers, which the dK/dV pass holds at DP >= 96).
    static constexpr int MIN_BLOCKS = std::max(1, (sizeof(T) == 2 && DP <= 80 ? 16 : 8) / WARPS);
};

// The block's shared memory as attention_tiles counts it, and this warp's part.
template <typename T, int DP, int RESIDENT> struct block_tiles {
    using tiles = attention_tiles<T, DP, RESIDENT>;
    T *resident[RESIDENT];  // [ROWS][LD] each
    T *stream[2];           // [STREAM][LD] each
    float *s;               // the warp's fp32 tile [16][LDS]
    T *p;                   // the warp's T tile [16][LDP]
    float *stats;           // backward: lse and delta, [2][max(ROWS, STREAM)]

    __device__ explicit block_tiles(unsigned char *dynamic) {
        constexpr int W = tiles::WARPS, LD = tiles::LD;
        // wmma needs 32-byte aligned tiles, DYNAMIC_SHARED promises 16.
        T *at = reinterpret_cast<T *>((reinterpret_cast<uintptr_t>(dynamic) + 31) &
                                      ~(uintptr_t)31);
        for (int r = 0; r < RESIDENT; r++, at += tiles::ROWS * LD) resident[r] = at;
        for (int t = 0; t < 2; t++, at += tiles::STREAM * LD) stream[t] = at;
        float *s_all = reinterpret_cast<float *>(at);
        T *p_all = reinterpret_cast<T *>(s_all + W * 16 * tiles::LDS);
        int warp = threadIdx.x / 32;
        s = s_all + warp * 16 * tiles::LDS;
        p = p_all + warp * 16 * tiles::LDP;
        stats = reinterpret_cast<float *>(p_all + W * 16 * tiles::LDP);
    }
};

// --- warp tile products -------------------------------------------------------------------

// A 16x16 fp32 accumulator owned by one warp.
template <typename T> struct acc_tile;
template <> struct acc_tile<__nv_bfloat16> {
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> frag;
};
// Lane l holds row LANE_ROW = l/2 of the tile and columns LANE_COL(e) = l%2 + 2e: a
// lane pair covers a row, so B's values are broadcast to every row and A's to both
// lanes of a pair. The same lane-to-element map serves wherever lanes meet
// accumulators of either type (through an fp32 tile for the wmma fragments).
template <> struct acc_tile<float> {
    float v[8];
};
#define LANE_ROW (threadIdx.x % 32 / 2)
#define LANE_COL(e) (threadIdx.x % 2 + 2 * (e))

__device__ __forceinline__ void acc_zero(acc_tile<__nv_bfloat16> &acc) {
    wmma::fill_fragment(acc.frag, 0.0f);
}
__device__ __forceinline__ void acc_zero(acc_tile<float> &acc) {
UNROLL
    for (int e = 0; e < 8; e++) acc.v[e] = 0.0f;
}

// The A operand of one product step: 16x16 of a row-major matrix in shared memory.
// Loaded once and used against every B tile of the step, so each A fragment is read
// from shared memory once per k step, not once per output tile.
template <typename T> struct a_tile;
template <> struct a_tile<__nv_bfloat16> {
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> frag;
};
template <> struct a_tile<float> {
    const float *a;
    int lda;
};

__device__ __forceinline__ void a_load(a_tile<__nv_bfloat16> &t, const __nv_bfloat16 *a,
                                       int lda) {
    wmma::load_matrix_sync(t.frag, a, lda);
}
__device__ __forceinline__ void a_load(a_tile<float> &t, const float *a, int lda) {
    t.a = a, t.lda = lda;
}

// acc += A B for one 16-wide k step. B is 16x16 in shared memory, row-major, or
// stored as its transpose when B_T (then b points at Bᵀ's rows). Shared memory
// written by other lanes must be behind a __syncwarp.
template <bool B_T>
__device__ __forceinline__ void mma(acc_tile<__nv_bfloat16> &acc,
                                    const a_tile<__nv_bfloat16> &a, const __nv_bfloat16 *b,
                                    int ldb) {
    using b_layout = std::conditional_t<B_T, wmma::col_major, wmma::row_major>;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, b_layout> fb;
    wmma::load_matrix_sync(fb, b, ldb);
    wmma::mma_sync(acc.frag, a.frag, fb, acc.frag);
}
template <bool B_T>
__device__ __forceinline__ void mma(acc_tile<float> &acc, const a_tile<float> &a,
                                    const float *b, int ldb) {
NO_UNROLL
    for (int kk = 0; kk < 16; kk++) {
        float av = a.a[LANE_ROW * a.lda + kk];
UNROLL
        for (int e = 0; e < 8; e++) {
            int c = LANE_COL(e);
            acc.v[e] = fmaf(av, B_T ? b[c * ldb + kk] : b[kk * ldb + c], acc.v[e]);
        }
    }
}

// c[16][16] (fp32, pitch ldc) = acc. Read it back only after a __syncwarp.
__device__ __forceinline__ void acc_store(float *c, int ldc,
                                          const acc_tile<__nv_bfloat16> &acc) {
    wmma::store_matrix_sync(c, acc.frag, ldc, wmma::mem_row_major);
}
__device__ __forceinline__ void acc_store(float *c, int ldc, const acc_tile<float> &acc) {
UNROLL
    for (int e = 0; e < 8; e++) c[LANE_ROW * ldc + LANE_COL(e)] = acc.v[e];
}

// s[16][COLS] (fp32, pitch lds) = a bᵀ: the dot products of 16 rows of a with COLS
// rows of b, both [rows][PITCH<T, DP>] in shared memory.
template <typename T, int DP, int COLS>
__device__ __forceinline__ void warp_scores(float *s, int lds, const T *a, const T *b) {
    constexpr int LD = PITCH<T, DP>;
    acc_tile<T> acc[COLS / 16];
UNROLL
    for (int n = 0; n < COLS / 16; n++) acc_zero(acc[n]);
UNROLL
    for (int k = 0; k < DP / 16; k++) {
        a_tile<T> at;
        a_load(at, a + 16 * k, LD);
UNROLL
        for (int n = 0; n < COLS / 16; n++) mma<true>(acc[n], at, b + 16 * n * LD + 16 * k, LD);
    }
UNROLL
    for (int n = 0; n < COLS / 16; n++) acc_store(s + 16 * n, lds, acc[n]);
}

// acc[n] += p b[:, 16n:16n+16]: p [16][K] (pitch PITCH<T, K>) times b [K][DP].
template <typename T, int DP, int K>
__device__ __forceinline__ void warp_accumulate(acc_tile<T> (&acc)[DP / 16], const T *p,
                                                const T *b) {
    constexpr int LD = PITCH<T, DP>;
UNROLL
    for (int k = 0; k < K / 16; k++) {
        a_tile<T> at;
        a_load(at, p + 16 * k, PITCH<T, K>);
UNROLL
        for (int n = 0; n < DP / 16; n++) mma<false>(acc[n], at, b + 16 * k * LD + 16 * n, LD);
    }
}

// Multiplies row LANE_ROW of every acc[n] by row_scale; s is an fp32 tile [16][lds]
// that the bf16 fragments pass through, since their elements cannot be addressed.
template <int N>
__device__ __forceinline__ void acc_scale_rows(acc_tile<__nv_bfloat16> (&acc)[N],
                                               float row_scale, float *s, int lds) {
UNROLL
    for (int n = 0; n < N; n++) {
        __syncwarp();
        wmma::store_matrix_sync(s, acc[n].frag, lds, wmma::mem_row_major);
        __syncwarp();
UNROLL
        for (int e = 0; e < 8; e++) s[LANE_ROW * lds + LANE_COL(e)] *= row_scale;
        __syncwarp();
        wmma::load_matrix_sync(acc[n].frag, s, lds, wmma::mem_row_major);
    }
}
template <int N>
__device__ __forceinline__ void acc_scale_rows(acc_tile<float> (&acc)[N], float row_scale,
                                               float *, int) {
UNROLL
    for (int n = 0; n < N; n++)
UNROLL
        for (int e = 0; e < 8; e++) acc[n].v[e] *= row_scale;
}

// rows[16][DP] (T, pitch PITCH<T, DP>) = acc, row LANE_ROW times row_scale, through
// the fp32 tile s [16][lds].
template <typename T, int DP>
__device__ __forceinline__ void acc_to_rows(T *rows, const acc_tile<T> (&acc)[DP / 16],
                                            float row_scale, float *s, int lds) {
UNROLL
    for (int n = 0; n < DP / 16; n++) {
        acc_store(s, lds, acc[n]);
        __syncwarp();
UNROLL
        for (int e = 0; e < 8; e++)
            rows[LANE_ROW * PITCH<T, DP> + 16 * n + LANE_COL(e)] =
                from_float<T>(row_scale * s[LANE_ROW * lds + LANE_COL(e)]);
        __syncwarp();
    }
}

// --- global <-> shared --------------------------------------------------------------------

// 16 bytes, for vector loads and stores of whole chunks of a row.
struct alignas(16) chunk16 {
    unsigned int w[4];
};
// Two adjacent elements, read or written with one access.
template <typename T> struct alignas(2 * sizeof(T)) pair_of {
    T x, y;
};

// tile[ROWS][DP] (shared, pitch PITCH<T, DP>) = src rows [0, rows) x channels [0, D),
// zero elsewhere, so ragged tiles and padded channels add nothing to any product (and
// masked rows hold no stale NaNs). The whole block loads; vec (16-byte chunks) when D
// fills whole chunks and the tensors are 16-byte aligned.
template <typename T, int ROWS, int DP>
__device__ __forceinline__ void load_tile(T *tile, const T *src, int64_t row_stride, int rows,
                                          int D, bool vec) {
    constexpr int LD = PITCH<T, DP>;
    if (vec) {
        constexpr int V = 16 / sizeof(T), CHUNKS = DP / V;
        for (int idx = threadIdx.x; idx < ROWS * CHUNKS; idx += blockDim.x) {
            int r = idx / CHUNKS, c = idx % CHUNKS * V;
            chunk16 val = {};
            if (r < rows && c < D)
                val = *reinterpret_cast<const chunk16 *>(src + r * row_stride + c);
            *reinterpret_cast<chunk16 *>(tile + r * LD + c) = val;
        }
    } else {
        for (int idx = threadIdx.x; idx < ROWS * DP; idx += blockDim.x) {
            int r = idx / DP, c = idx % DP;
            tile[r * LD + c] = r < rows && c < D ? src[r * row_stride + c] : from_float<T>(0.0f);
        }
    }
}

// dst rows [0, rows) x channels [0, D) = rows[16][DP] (shared); one warp.
template <typename T, int DP>
__device__ __forceinline__ void store_rows(T *dst, int64_t row_stride, const T *rows_s, int rows,
                                           int D, bool vec) {
    constexpr int LD = PITCH<T, DP>;
    int lane = threadIdx.x % 32;
    if (vec) {
        constexpr int V = 16 / sizeof(T);
        int chunks = D / V;
        for (int idx = lane; idx < rows * chunks; idx += 32) {
            int r = idx / chunks, c = idx % chunks * V;
            *reinterpret_cast<chunk16 *>(dst + r * row_stride + c) =
                *reinterpret_cast<const chunk16 *>(rows_s + r * LD + c);
        }
    } else {
        for (int idx = lane; idx < rows * D; idx += 32)
            dst[(idx / D) * row_stride + idx % D] = rows_s[(idx / D) * LD + idx % D];
    }
}

// --- forward ------------------------------------------------------------------------------

// Scores may exceed a row's reference max m by this much (natural log) before m is
// raised and the row's output rescaled: probabilities up to e^8 ~ 3000 lose nothing
// in fp32 sums or in bf16 (whose exponent range is fp32's), and after the first tiles
// a rescale, a round trip of the output through shared memory, becomes rare.
#define RESCALE_MARGIN 8.0f

// One block: ROWS query rows of one (batch, head), 16 per warp. K and V stream
// through shared memory STREAM keys at a time; each warp computes its 16 x STREAM
// scores, folds them into its rows' reference max m and sum l (online softmax), and
// adds P V to its output, held in acc_tiles for the whole key loop.
template <typename T, int DP>
__global__ void __launch_bounds__(attention_tiles<T, DP, 1>::WARPS * 32,
                                  attention_tiles<T, DP, 1>::MIN_BLOCKS)
    attention_forward_kernel(T *out, float *lse, const T *q, const T *k, const T *v, int Nq,
                             int Nk, int H, int D, float scale, bool causal, bool vec) {
    using tiles = attention_tiles<T, DP, 1>;
    constexpr int ROWS = tiles::ROWS, STREAM = tiles::STREAM, LD = tiles::LD,
                  LDS = tiles::LDS, LDP = tiles::LDP;
    int warp = threadIdx.x / 32;
    int b = blockIdx.z, head = blockIdx.y, q0 = blockIdx.x * ROWS;
    int64_t C = (int64_t)H * D;
    const T *q_head = q + (int64_t)b * Nq * C + head * D;  // row i at q_head + i * C
    const T *k_head = k + (int64_t)b * Nk * C + head * D;
    const T *v_head = v + (int64_t)b * Nk * C + head * D;

    DYNAMIC_SHARED(unsigned char, dynamic);
    block_tiles<T, DP, 1> sh(dynamic);
    T *q_tile = sh.resident[0], *k_tile = sh.stream[0], *v_tile = sh.stream[1];
    float *s = sh.s;
    T *p = sh.p;

    load_tile<T, ROWS, DP>(q_tile, q_head + q0 * C, C, min(ROWS, Nq - q0), D, vec);
    const T *q_warp = q_tile + 16 * warp * LD;
    int row0 = q0 + 16 * warp;  // the warp's first query
    // The lane pair of row LANE_ROW keeps its m and l; of each score tile a lane takes
    // the column pairs 4t + 2 * (lane % 2): 8-byte reads, and a half-warp's 8 rows x 4
    // words cover the 32 banks (the row pitch LDS is an odd number of 16-byte chunks).
    int i = row0 + LANE_ROW, pair0 = 2 * (threadIdx.x % 2);
    const float *s_row = s + LANE_ROW * LDS + pair0;
    T *p_row = p + LANE_ROW * LDP + pair0;

    acc_tile<T> o[DP / 16];
UNROLL
    for (int n = 0; n < DP / 16; n++) acc_zero(o[n]);
    float m = -INFINITY, l = 0.0f;
    // Under the causal mask the block's last query sees keys up to q0 + ROWS - 1.
    int key_end = causal ? min(Nk, q0 + ROWS) : Nk;
    for (int j0 = 0; j0 < key_end; j0 += STREAM) {
        __syncthreads();  // every warp is done with the previous K and V tiles
        load_tile<T, STREAM, DP>(k_tile, k_head + j0 * C, C, min(STREAM, Nk - j0), D, vec);
        load_tile<T, STREAM, DP>(v_tile, v_head + j0 * C, C, min(STREAM, Nk - j0), D, vec);
        __syncthreads();
        if (row0 >= Nq || (causal && j0 > row0 + 15)) continue;  // nothing visible here

        warp_scores<T, DP, STREAM>(s, LDS, q_warp, k_tile);
        __syncwarp();
        float x[STREAM / 2], tile_max = -INFINITY;
UNROLL
        for (int t = 0; t < STREAM / 4; t++) {
            pair_of<float> pair = *reinterpret_cast<const pair_of<float> *>(s_row + 4 * t);
            int j = j0 + 4 * t + pair0;
            x[2 * t] = j < Nk && (!causal || j <= i) ? pair.x * scale : -INFINITY;
            x[2 * t + 1] = j + 1 < Nk && (!causal || j + 1 <= i) ? pair.y * scale : -INFINITY;
            tile_max = fmaxf(tile_max, fmaxf(x[2 * t], x[2 * t + 1]));
        }
        tile_max = fmaxf(tile_max, __shfl_xor_sync(FULL_MASK, tile_max, 1));
        // The first tile always raises m from -inf (key 0 is visible to every row and
        // tile 0 is never skipped), so m is finite from then on.
        bool raise = tile_max > m + RESCALE_MARGIN;
        float m_new = raise ? tile_max : m, alpha = raise ? __expf(m - m_new) : 1.0f;
        if (__any_sync(FULL_MASK, raise)) acc_scale_rows(o, alpha, s, LDS);
        float sum = 0.0f;
UNROLL
        for (int t = 0; t < STREAM / 4; t++) {
            float p0 = __expf(x[2 * t] - m_new), p1 = __expf(x[2 * t + 1] - m_new);
            sum += p0 + p1;
            *reinterpret_cast<pair_of<T> *>(p_row + 4 * t) = {from_float<T>(p0), from_float<T>(p1)};
        }
        l = l * alpha + sum + __shfl_xor_sync(FULL_MASK, sum, 1);
        m = m_new;
        __syncwarp();
        warp_accumulate<T, DP, STREAM>(o, p, v_tile);
    }
    if (row0 >= Nq) return;

    // Only this warp reads its Q rows: stage the normalised output there, then write
    // whole rows out.
    T *rows = q_tile + 16 * warp * LD;
    acc_to_rows<T, DP>(rows, o, 1.0f / l, s, LDS);
    if (threadIdx.x % 2 == 0 && i < Nq) lse[((int64_t)b * H + head) * Nq + i] = m + logf(l);
    store_rows<T, DP>(out + (int64_t)b * Nq * C + head * D + row0 * C, C, rows,
                      min(16, Nq - row0), D, vec);
}

// --- backward -----------------------------------------------------------------------------
//
// FlashAttention-2's scheme: P = exp(scale q kᵀ - lse) is recomputed tile by tile, and
//   dV = Pᵀ dO,  dP = dO Vᵀ,  dS = P ∘ (dP - delta),  dK = scale dSᵀ Q,  dQ = scale dS K
// with delta_i = rowsum(dO ∘ O)_i. Two passes instead of one with atomics: the dK/dV
// pass is parallel over key blocks (each block owns its keys' dK and dV rows), the dQ
// pass over query blocks (each owns its dQ rows). That recomputes Q Kᵀ and dO Vᵀ once
// more (7 tile products per tile pair instead of 5), but no fp32 dQ buffer, no float
// atomics (whose order makes every run differ in the last bits), and each pass runs
// only when its gradients are wanted (a NULL d_q skips the second one).

// delta [B, H, Nq] = rowsum(dO ∘ O) per head; one thread per (token, head).
template <typename T>
__global__ void attention_delta_kernel(float *delta, const T *d_out, const T *out, int Nq, int H,
                                       int D, int64_t rows) {
    int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;  // (b * Nq + i) * H + h
    if (idx >= rows) return;
    int h = (int)(idx % H);
    int64_t token = idx / H, b = token / Nq, i = token % Nq;
    const T *dor = d_out + idx * D, *orow = out + idx * D;
    float dot = 0.0f;
    for (int d = 0; d < D; d++) dot += to_float(dor[d]) * to_float(orow[d]);
    delta[(b * H + h) * Nq + i] = dot;
}

// dK and dV: one block owns ROWS keys (16 per warp) and streams the queries, with
// their dO, lse and delta, STREAM rows at a time. A warp works in transposed form
// (its 16 keys are the rows: Sᵀ = K Qᵀ, dPᵀ = V dOᵀ) so that dV += Pᵀ dO and
// dK += dSᵀ Q are plain row-major products accumulated in its acc_tiles.
template <typename T, int DP>
__global__ void __launch_bounds__(attention_tiles<T, DP, 2>::WARPS * 32,
                                  attention_tiles<T, DP, 2>::MIN_BLOCKS)
    attention_backward_kv_kernel(T *d_k, T *d_v, const T *d_out, const T *q, const T *k,
                                 const T *v, const float *lse, const float *delta, int Nq,
                                 int Nk, int H, int D, float scale, bool causal, bool vec) {
    using tiles = attention_tiles<T, DP, 2>;
    constexpr int ROWS = tiles::ROWS, STREAM = tiles::STREAM, LD = tiles::LD,
                  LDS = tiles::LDS, LDP = tiles::LDP;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int b = blockIdx.z, head = blockIdx.y, k0 = blockIdx.x * ROWS;
    int64_t C = (int64_t)H * D;
    int64_t q_base = (int64_t)b * Nq * C + head * D, k_base = (int64_t)b * Nk * C + head * D;
    const float *lse_head = lse + ((int64_t)b * H + head) * Nq;      // [Nq]
    const float *delta_head = delta + ((int64_t)b * H + head) * Nq;  // [Nq]

    DYNAMIC_SHARED(unsigned char, dynamic);
    block_tiles<T, DP, 2> sh(dynamic);
    T *k_tile = sh.resident[0], *v_tile = sh.resident[1];
    T *q_tile = sh.stream[0], *do_tile = sh.stream[1];
    float *s = sh.s, *lse_s = sh.stats, *delta_s = sh.stats + STREAM;  // [STREAM] each
    T *p = sh.p;

    load_tile<T, ROWS, DP>(k_tile, k + k_base + k0 * C, C, min(ROWS, Nk - k0), D, vec);
    load_tile<T, ROWS, DP>(v_tile, v + k_base + k0 * C, C, min(ROWS, Nk - k0), D, vec);
    const T *k_warp = k_tile + 16 * warp * LD, *v_warp = v_tile + 16 * warp * LD;
    int key0 = k0 + 16 * warp;  // the warp's first key

    acc_tile<T> dk[DP / 16], dv[DP / 16];
UNROLL
    for (int n = 0; n < DP / 16; n++) acc_zero(dk[n]), acc_zero(dv[n]);
    // Under the causal mask only queries i >= k0 see the block's keys.
    for (int i0 = causal ? k0 / STREAM * STREAM : 0; i0 < Nq; i0 += STREAM) {
        __syncthreads();  // every warp is done with the previous tiles
        int rows = min(STREAM, Nq - i0);
        load_tile<T, STREAM, DP>(q_tile, q + q_base + i0 * C, C, rows, D, vec);
        load_tile<T, STREAM, DP>(do_tile, d_out + q_base + i0 * C, C, rows, D, vec);
        for (int t = threadIdx.x; t < STREAM; t += blockDim.x) {
            lse_s[t] = t < rows ? lse_head[i0 + t] : 0.0f;
            delta_s[t] = t < rows ? delta_head[i0 + t] : 0.0f;
        }
        __syncthreads();
        if (key0 >= Nk || (causal && i0 + STREAM - 1 < key0)) continue;  // nothing visible

        // Pᵀ [16 keys][STREAM queries], masked entries 0.
        warp_scores<T, DP, STREAM>(s, LDS, k_warp, q_tile);
        __syncwarp();
        for (int idx = lane; idx < 16 * STREAM; idx += 32) {
            int jr = idx / STREAM, c = idx % STREAM, j = key0 + jr, i = i0 + c;
            bool seen = j < Nk && i < Nq && (!causal || j <= i);
            p[jr * LDP + c] = from_float<T>(seen ? __expf(s[jr * LDS + c] * scale - lse_s[c]) : 0.0f);
        }
        __syncwarp();
        if (d_v) warp_accumulate<T, DP, STREAM>(dv, p, do_tile);
        if (!d_k) continue;
        // dPᵀ = V dOᵀ, then dSᵀ = Pᵀ ∘ (dPᵀ - delta) over Pᵀ in place.
        warp_scores<T, DP, STREAM>(s, LDS, v_warp, do_tile);
        __syncwarp();
        for (int idx = lane; idx < 16 * STREAM; idx += 32) {
            int jr = idx / STREAM, c = idx % STREAM;
            p[jr * LDP + c] = from_float<T>(to_float(p[jr * LDP + c]) * (s[jr * LDS + c] - delta_s[c]));
        }
        __syncwarp();
        warp_accumulate<T, DP, STREAM>(dk, p, q_tile);
    }
    if (key0 >= Nk) return;

    // Only this warp reads its K and V rows: stage the gradients there.
    int rows = min(16, Nk - key0);
    if (d_k) {
        acc_to_rows<T, DP>(k_tile + 16 * warp * LD, dk, scale, s, LDS);
        store_rows<T, DP>(d_k + k_base + key0 * C, C, k_warp, rows, D, vec);
    }
    if (d_v) {
        acc_to_rows<T, DP>(v_tile + 16 * warp * LD, dv, 1.0f, s, LDS);
        store_rows<T, DP>(d_v + k_base + key0 * C, C, v_warp, rows, D, vec);
    }
}

// dQ: one block owns ROWS queries (16 per warp) with their dO, lse and delta, and
// streams K and V, as the forward does.
template <typename T, int DP>
__global__ void __launch_bounds__(attention_tiles<T, DP, 2>::WARPS * 32,
                                  attention_tiles<T, DP, 2>::MIN_BLOCKS)
    attention_backward_q_kernel(T *d_q, const T *d_out, const T *q, const T *k, const T *v,
                                const float *lse, const float *delta, int Nq, int Nk, int H,
                                int D, float scale, bool causal, bool vec) {
    using tiles = attention_tiles<T, DP, 2>;
    constexpr int ROWS = tiles::ROWS, STREAM = tiles::STREAM, LD = tiles::LD,
                  LDS = tiles::LDS, LDP = tiles::LDP;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int b = blockIdx.z, head = blockIdx.y, q0 = blockIdx.x * ROWS;
    int64_t C = (int64_t)H * D;
    int64_t q_base = (int64_t)b * Nq * C + head * D, k_base = (int64_t)b * Nk * C + head * D;
    const float *lse_head = lse + ((int64_t)b * H + head) * Nq;      // [Nq]
    const float *delta_head = delta + ((int64_t)b * H + head) * Nq;  // [Nq]

    DYNAMIC_SHARED(unsigned char, dynamic);
    block_tiles<T, DP, 2> sh(dynamic);
    T *q_tile = sh.resident[0], *do_tile = sh.resident[1];
    T *k_tile = sh.stream[0], *v_tile = sh.stream[1];
    float *s = sh.s, *lse_s = sh.stats, *delta_s = sh.stats + ROWS;  // [ROWS] each
    T *p = sh.p;

    int rows = min(ROWS, Nq - q0);
    load_tile<T, ROWS, DP>(q_tile, q + q_base + q0 * C, C, rows, D, vec);
    load_tile<T, ROWS, DP>(do_tile, d_out + q_base + q0 * C, C, rows, D, vec);
    for (int t = threadIdx.x; t < ROWS; t += blockDim.x) {
        lse_s[t] = t < rows ? lse_head[q0 + t] : 0.0f;
        delta_s[t] = t < rows ? delta_head[q0 + t] : 0.0f;
    }
    const T *q_warp = q_tile + 16 * warp * LD, *do_warp = do_tile + 16 * warp * LD;
    const float *lse_w = lse_s + 16 * warp, *delta_w = delta_s + 16 * warp;
    int row0 = q0 + 16 * warp;  // the warp's first query

    acc_tile<T> dq[DP / 16];
UNROLL
    for (int n = 0; n < DP / 16; n++) acc_zero(dq[n]);
    int key_end = causal ? min(Nk, q0 + ROWS) : Nk;
    for (int j0 = 0; j0 < key_end; j0 += STREAM) {
        __syncthreads();  // every warp is done with the previous K and V tiles
        load_tile<T, STREAM, DP>(k_tile, k + k_base + j0 * C, C, min(STREAM, Nk - j0), D, vec);
        load_tile<T, STREAM, DP>(v_tile, v + k_base + j0 * C, C, min(STREAM, Nk - j0), D, vec);
        __syncthreads();
        if (row0 >= Nq || (causal && j0 > row0 + 15)) continue;  // nothing visible here

        // P [16 queries][STREAM keys], masked entries 0.
        warp_scores<T, DP, STREAM>(s, LDS, q_warp, k_tile);
        __syncwarp();
        for (int idx = lane; idx < 16 * STREAM; idx += 32) {
            int r = idx / STREAM, c = idx % STREAM, i = row0 + r, j = j0 + c;
            bool seen = j < Nk && (!causal || j <= i);
            p[r * LDP + c] = from_float<T>(seen ? __expf(s[r * LDS + c] * scale - lse_w[r]) : 0.0f);
        }
        __syncwarp();
        // dP = dO Vᵀ, then dS = P ∘ (dP - delta) over P in place.
        warp_scores<T, DP, STREAM>(s, LDS, do_warp, v_tile);
        __syncwarp();
        for (int idx = lane; idx < 16 * STREAM; idx += 32) {
            int r = idx / STREAM, c = idx % STREAM;
            p[r * LDP + c] = from_float<T>(to_float(p[r * LDP + c]) * (s[r * LDS + c] - delta_w[r]));
        }
        __syncwarp();
        warp_accumulate<T, DP, STREAM>(dq, p, k_tile);
    }
    if (row0 >= Nq) return;

    // Only this warp reads its Q rows: stage dQ there.
    acc_to_rows<T, DP>(q_tile + 16 * warp * LD, dq, scale, s, LDS);
    store_rows<T, DP>(d_q + q_base + row0 * C, C, q_warp, min(16, Nq - row0), D, vec);
}

// --- launchers ----------------------------------------------------------------------------

// Calls f(std::integral_constant<int, DP>) with the padded head dim for D.
template <typename F> static void with_padded_head_dim(int64_t D, F &&f) {
    if (D <= 16) f(std::integral_constant<int, 16>{});
    else if (D <= 32) f(std::integral_constant<int, 32>{});
    else if (D <= 48) f(std::integral_constant<int, 48>{});
    else if (D <= 64) f(std::integral_constant<int, 64>{});
    else if (D <= 80) f(std::integral_constant<int, 80>{});
    else if (D <= 96) f(std::integral_constant<int, 96>{});
    else if (D <= 128) f(std::integral_constant<int, 128>{});
    else if (D <= MAX_HEAD_DIM) f(std::integral_constant<int, 160>{});
    else DIE("%s attention: head dim %lld is above %d", CUDA_BACKEND_NAME, (long long)D, MAX_HEAD_DIM);
}

// Whole 16-byte chunks: D fills them and every tensor starts on one.
template <typename T>
static bool vector_rows(int64_t D, std::initializer_list<const tensor *> ts) {
    if (D % (16 / (int64_t)sizeof(T)) != 0) return false;
    for (const tensor *t : ts)
        if (t && reinterpret_cast<uintptr_t>(tensor_data(t)) % 16 != 0) return false;
    return true;
}

void CUDA_FN(attention_forward)(tensor *out, tensor *lse, const tensor *q, const tensor *k,
                                const tensor *v, int64_t B, int64_t Nq, int64_t Nk, int64_t H,
                                int64_t D, float scale, bool causal) {
    if (B * Nq * H == 0) return;  // an empty grid is a launch error
    DISPATCH_FLOAT(q->dtype, T, {
        bool vec = vector_rows<T>(D, {out, q, k, v});
        with_padded_head_dim(D, [&](auto dp) {
            constexpr int DP = decltype(dp)::value;
            using tiles = attention_tiles<T, DP, 1>;
            dim3 grid(blocks_for(Nq, tiles::ROWS), (unsigned)H, (unsigned)B);
            auto kernel = attention_forward_kernel<T, DP>;
            LAUNCH(kernel, grid, tiles::WARPS * 32, tiles::SHARED, dev_ptr<T>(out),
                   dev_ptr<float>(lse), dev_ptr<T>(q), dev_ptr<T>(k), dev_ptr<T>(v), (int)Nq,
                   (int)Nk, (int)H, (int)D, scale, causal, vec);
        });
    });
}

void CUDA_FN(attention_backward)(tensor *d_q, tensor *d_k, tensor *d_v, const tensor *d_out,
                                 const tensor *q, const tensor *k, const tensor *v,
                                 const tensor *out, const tensor *lse, int64_t B, int64_t Nq,
                                 int64_t Nk, int64_t H, int64_t D, float scale, bool causal) {
    if (!d_q && !d_k && !d_v) return;
    if (B * Nq * H == 0) {
        // No queries, so no gradient reaches k or v; an empty grid is a launch error.
        for (tensor *g : {d_k, d_v})
            if (g && tensor_numel(g) > 0) CUDA_FN(fill)(g, 0.0f);
        return;
    }
    int64_t delta_shape[3] = {B, H, Nq};
    tensor *delta = tensor_new(DT_F32, q->dev, 3, delta_shape);
    DISPATCH_FLOAT(q->dtype, T, {
        bool vec = vector_rows<T>(D, {d_q, d_k, d_v, d_out, q, k, v});
        int64_t rows = B * Nq * H;
        auto delta_kernel = attention_delta_kernel<T>;
        LAUNCH(delta_kernel, blocks_for(rows, 256), 256, 0, dev_ptr<float>(delta),
               dev_ptr<T>(d_out), dev_ptr<T>(out), (int)Nq, (int)H, (int)D, rows);
        with_padded_head_dim(D, [&](auto dp) {
            constexpr int DP = decltype(dp)::value;
            using tiles = attention_tiles<T, DP, 2>;
            if (d_k || d_v) {
                dim3 grid(blocks_for(Nk, tiles::ROWS), (unsigned)H, (unsigned)B);
                auto kernel = attention_backward_kv_kernel<T, DP>;
                LAUNCH(kernel, grid, tiles::WARPS * 32, tiles::SHARED, dev_ptr<T>(d_k),
                       dev_ptr<T>(d_v), dev_ptr<T>(d_out), dev_ptr<T>(q), dev_ptr<T>(k),
                       dev_ptr<T>(v), dev_ptr<float>(lse), dev_ptr<float>(delta), (int)Nq,
                       (int)Nk, (int)H, (int)D, scale, causal, vec);
            }
            if (d_q) {
                dim3 grid(blocks_for(Nq, tiles::ROWS), (unsigned)H, (unsigned)B);
                auto kernel = attention_backward_q_kernel<T, DP>;
                LAUNCH(kernel, grid, tiles::WARPS * 32, tiles::SHARED, dev_ptr<T>(d_q),
                       dev_ptr<T>(d_out), dev_ptr<T>(q), dev_ptr<T>(k), dev_ptr<T>(v),
                       dev_ptr<float>(lse), dev_ptr<float>(delta), (int)Nq, (int)Nk, (int)H,
                       (int)D, scale, causal, vec);
            }
        });
    });
    tensor_free(delta);
}
