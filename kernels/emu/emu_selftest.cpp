// Self-test of the CUDA emulator: small kernels that use every feature cuda_emu.h
// offers, each checked against a plain host computation, in both schedule orders;
// kernels with a barrier removed, which must give wrong answers; and misuses that must
// stop the program (run by tests/test_emu.c in child processes). A .cpp file, so the
// Makefile builds it with the emulator's runtime (kernels/emu/*.cpp) and nvcc never
// sees it.
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <vector>

#include "kernels/cuda/common.cuh"
#include "kernels/emu/emu.h"

namespace {

int failures;

#define SELF_CHECK(cond, ...)                                               \
    do {                                                                    \
        if (!(cond)) {                                                      \
            failures++;                                                     \
            printf("  emu self-test (%s order) %s:%d: ",                    \
                   emu_reverse_order() ? "reverse" : "thread", __FILE__, __LINE__); \
            printf(__VA_ARGS__);                                            \
            printf("\n");                                                   \
        }                                                                   \
    } while (0)

constexpr unsigned full_mask = 0xffffffffu;

// Small multiples of 1/8: exact in float and bf16, so sums of them are exact too.
float test_value(int i) { return (float)((i * 37 + 11) % 23 - 11) / 8.0f; }

// Device memory holding n values of T, freed with the last copy. Copies are cheap
// because LAUNCH's lambda captures the arrays whose .ptr it passes.
template <class T> struct device_array {
    T *ptr = nullptr;
    size_t n;
    std::shared_ptr<T> owner;
    explicit device_array(size_t count) : n(count) {
        CUDA_CHECK(cudaMalloc(&ptr, n * sizeof(T)));
        owner.reset(ptr, [](T *p) { CUDA_CHECK(cudaFree(p)); });
    }
    device_array(const std::vector<T> &host) : device_array(host.size()) { upload(host); }
    void upload(const std::vector<T> &host) {
        CUDA_CHECK(cudaMemcpy(ptr, host.data(), n * sizeof(T), cudaMemcpyHostToDevice));
    }
    std::vector<T> download() const {
        std::vector<T> host(n);
        CUDA_CHECK(cudaMemcpy(host.data(), ptr, n * sizeof(T), cudaMemcpyDeviceToHost));
        return host;
    }
};

// --- blocks, shared memory, barriers ----------------------------------------------------
// A tree reduction: each round halves the live slots, so every round needs a barrier.
__global__ void block_sum_kernel(const float *x, float *sums, int n) {
    __shared__ float partial[256];
    int t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
    partial[t] = i < n ? x[i] : 0.0f;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
        if (t < stride) partial[t] += partial[t + stride];
        __syncthreads();
    }
    if (t == 0) sums[blockIdx.x] = partial[0];
}

void check_block_sum() {
    const int n = 37 * 256 - 100, blocks = 37;
    std::vector<float> x(n);
    for (int i = 0; i < n; i++) x[i] = test_value(i);
    device_array<float> dx(x), dsums(blocks);
    LAUNCH(block_sum_kernel, blocks, 256, 0, dx.ptr, dsums.ptr, n);
    std::vector<float> sums = dsums.download();
    for (int b = 0; b < blocks; b++) {
        float want = 0;
        for (int i = b * 256; i < n && i < (b + 1) * 256; i++) want += x[i];
        SELF_CHECK(sums[b] == want, "block sum %d: %g, want %g", b, sums[b], want);
    }
}

// Rows x cols to cols x rows through a 32x33 tile (the pad column keeps a real GPU
// free of bank conflicts); blocks of 32x8 threads, each moving four elements.
__global__ void transpose_kernel(const float *in, float *out, int rows, int cols) {
    __shared__ float tile[32][33];
    int c0 = blockIdx.x * 32, r0 = blockIdx.y * 32;
    for (int dy = threadIdx.y; dy < 32; dy += blockDim.y) {
        int r = r0 + dy, c = c0 + threadIdx.x;
        if (r < rows && c < cols) tile[dy][threadIdx.x] = in[r * cols + c];
    }
    __syncthreads();
    for (int dy = threadIdx.y; dy < 32; dy += blockDim.y) {
        int c = c0 + dy, r = r0 + threadIdx.x;
        if (r < rows && c < cols) out[c * rows + r] = tile[threadIdx.x][dy];
    }
}

void check_transpose() {
    const int rows = 70, cols = 45;
    std::vector<float> in(rows * cols);
    for (int i = 0; i < rows * cols; i++) in[i] = (float)i;
    device_array<float> din(in), dout(rows * cols);
    LAUNCH(transpose_kernel, dim3(2, 3), dim3(32, 8), 0, din.ptr, dout.ptr, rows, cols);
    std::vector<float> out = dout.download();
    int wrong = 0;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) wrong += out[c * rows + r] != in[r * cols + c];
    SELF_CHECK(wrong == 0, "transpose: %d of %d elements wrong", wrong, rows * cols);
}

// Every thread records where it is: CUDA's linearisation x + y Dx + z Dx Dy.
__global__ void coordinates_kernel(unsigned *out) {
    unsigned block = blockIdx.x + blockIdx.y * gridDim.x + blockIdx.z * gridDim.x * gridDim.y;
    unsigned thread = threadIdx.x + threadIdx.y * blockDim.x + threadIdx.z * blockDim.x * blockDim.y;
    unsigned *o = out + 8 * (block * blockDim.x * blockDim.y * blockDim.z + thread);
    o[0] = threadIdx.x, o[1] = threadIdx.y, o[2] = threadIdx.z;
    o[3] = blockIdx.x, o[4] = blockIdx.y, o[5] = blockIdx.z;
    o[6] = blockDim.x * 100 + blockDim.y * 10 + blockDim.z;
    o[7] = gridDim.x * 100 + gridDim.y * 10 + gridDim.z;
}

void check_coordinates() {
    dim3 grid(2, 3, 2), block(4, 3, 2);
    device_array<unsigned> d(8 * 12 * 24);
    LAUNCH(coordinates_kernel, grid, block, 0, d.ptr);
    std::vector<unsigned> o = d.download();
    int wrong = 0;
    for (unsigned b = 0; b < 12; b++)
        for (unsigned t = 0; t < 24; t++) {
            const unsigned *r = &o[8 * (b * 24 + t)];
            unsigned want[8] = {t % 4, t / 4 % 3, t / 12, b % 2, b / 2 % 3, b / 6, 432, 232};
            wrong += memcmp(r, want, sizeof want) != 0;
        }
    SELF_CHECK(wrong == 0, "thread/block coordinates: %d of 288 threads wrong", wrong);
}

// Each block owns its static shared variable even while other blocks run on other
// OS threads.
__global__ void shared_per_block_kernel(int *mismatches) {
    __shared__ unsigned owner;
    if (threadIdx.x == 0) owner = blockIdx.x;
    __syncthreads();
    for (int spin = 0; spin < 3; spin++) __syncthreads();  // give other blocks time
    if (owner != blockIdx.x) atomicAdd(mismatches, 1);
}

void check_shared_per_block() {
    device_array<int> d(std::vector<int>{0});
    LAUNCH(shared_per_block_kernel, 64, 128, 0, d.ptr);
    SELF_CHECK(d.download()[0] == 0, "static shared memory leaked between blocks");
}

// Dynamic shared memory is 16-byte aligned and starts as garbage, never as zeros.
__global__ void dynamic_shared_kernel(unsigned *first_words, float *sums, int n) {
    DYNAMIC_SHARED(float, buf);
    int t = threadIdx.x;
    if ((uintptr_t)buf % 16 != 0) first_words[t] = 1;
    else first_words[t] = __float_as_uint(buf[t]);  // read before anything was written
    __syncthreads();
    for (int i = t; i < n; i += blockDim.x) buf[i] = (float)i;
    __syncthreads();
    float sum = 0;
    for (int i = 0; i < n; i++) sum += buf[i];
    sums[t] = sum;
}

void check_dynamic_shared() {
    const int n = 750, threads = 64;
    device_array<unsigned> words(threads);
    device_array<float> sums(threads);
    LAUNCH(dynamic_shared_kernel, 1, threads, n * sizeof(float), words.ptr, sums.ptr, n);
    std::vector<unsigned> w = words.download();
    std::vector<float> s = sums.download();
    int zero_or_misaligned = 0, wrong_sum = 0;
    for (int t = 0; t < threads; t++) {
        zero_or_misaligned += w[t] == 0 || w[t] == 1;
        wrong_sum += s[t] != (float)(n * (n - 1) / 2);
    }
    SELF_CHECK(zero_or_misaligned == 0, "dynamic shared memory: %d threads saw zeros or a "
               "misaligned buffer", zero_or_misaligned);
    SELF_CHECK(wrong_sum == 0, "dynamic shared memory: %d threads summed wrong", wrong_sum);
}

// More than 48 KiB of dynamic shared memory after opting in.
__global__ void large_shared_kernel(float *out) {
    DYNAMIC_SHARED(float, buf);
    const int n = 64 * 1024 / 4;
    for (int i = threadIdx.x; i < n; i += blockDim.x) buf[i] = 1.0f;
    __syncthreads();
    if (threadIdx.x == 0) {
        float sum = 0;
        for (int i = 0; i < n; i++) sum += buf[i];
        *out = sum;
    }
}

// In a child process: the opt-in lasts for the rest of the program and would let later
// launches of other kernels skip the check. One block, so the child starts no threads.
void check_large_shared() {
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        bool ok = cudaFuncSetAttribute(large_shared_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       64 * 1024) == cudaSuccess;
        device_array<float> out(1);
        LAUNCH(large_shared_kernel, 1, 128, 64 * 1024, out.ptr);
        _exit(ok && out.download()[0] == 16384.0f ? 0 : 1);
    }
    int status = -1;
    waitpid(child, &status, 0);
    SELF_CHECK(child > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
               "64 KiB of dynamic shared memory after opting in failed (status %d)", status);
}

// --- warps ---------------------------------------------------------------------------------
struct shuffle_result {
    float down_sum, xor_sum, up_scan, broadcast8, down16, up8, xor8;
    double reversed;
    unsigned ballot;
    int any, all, not_all;
};

__global__ void shuffle_kernel(shuffle_result *out) {
    int t = threadIdx.x, lane = t % 32;
    float v = (float)(t + 1);
    shuffle_result r;
    r.down_sum = v;
    for (int o = 16; o > 0; o /= 2) r.down_sum += __shfl_down_sync(full_mask, r.down_sum, o);
    r.xor_sum = v;
    for (int o = 1; o < 32; o *= 2) r.xor_sum += __shfl_xor_sync(full_mask, r.xor_sum, o);
    r.up_scan = v;
    for (int o = 1; o < 32; o *= 2) {
        float y = __shfl_up_sync(full_mask, r.up_scan, o);
        if (lane >= o) r.up_scan += y;
    }
    r.broadcast8 = __shfl_sync(full_mask, v, 5, 8);
    r.down16 = __shfl_down_sync(full_mask, v, 12, 16);
    r.up8 = __shfl_up_sync(full_mask, v, 3, 8);
    r.xor8 = __shfl_xor_sync(full_mask, v, 9, 8);  // may reach an earlier group, not a later one
    r.reversed = __shfl_sync(full_mask, (double)t * 0.5, 31 - lane);
    __syncwarp();
    r.ballot = __ballot_sync(full_mask, lane % 3 == 0);
    r.any = __any_sync(full_mask, lane == 7);
    r.all = __all_sync(full_mask, lane < 32);
    r.not_all = __all_sync(full_mask, lane != 3);
    out[t] = r;
}

void check_shuffles() {
    const int threads = 64;
    device_array<shuffle_result> d(threads);
    LAUNCH(shuffle_kernel, 1, threads, 0, d.ptr);
    std::vector<shuffle_result> r = d.download();
    int wrong = 0;
    for (int t = 0; t < threads; t++) {
        int lane = t % 32, base = t - lane;
        float v = (float)(t + 1), warp_sum = 0, scan = 0;
        for (int l = 0; l < 32; l++) warp_sum += (float)(base + l + 1);
        for (int l = 0; l <= lane; l++) scan += (float)(base + l + 1);
        int d16 = lane + 12 < (lane & ~15) + 16 ? t + 12 : t;
        int u8 = lane % 8 >= 3 ? t - 3 : t, x8 = (lane ^ 9) < (lane & ~7) + 8 ? base + (lane ^ 9) : t;
        bool ok = (lane != 0 || r[t].down_sum == warp_sum) && r[t].xor_sum == warp_sum &&
                  r[t].up_scan == scan && r[t].broadcast8 == (float)(base + (lane & ~7) + 5 + 1) &&
                  r[t].down16 == (float)(d16 + 1) && r[t].up8 == (float)(u8 + 1) &&
                  r[t].xor8 == (float)(x8 + 1) && r[t].reversed == (base + 31 - lane) * 0.5 &&
                  r[t].ballot == 0x49249249u && r[t].any == 1 && r[t].all == 1 && r[t].not_all == 0;
        if (!ok && wrong++ < 3)
            printf("  thread %d: down %g xor %g scan %g bcast %g down16 %g rev %g ballot %08x "
                   "any %d all %d %d (v %g)\n", t, r[t].down_sum, r[t].xor_sum, r[t].up_scan,
                   r[t].broadcast8, r[t].down16, r[t].reversed, r[t].ballot, r[t].any, r[t].all,
                   r[t].not_all, v);
    }
    SELF_CHECK(wrong == 0, "warp shuffles/votes: %d of %d threads wrong", wrong, threads);
}

// A block of 48 threads: the second warp has 16 lanes, and reading a lane that does not
// exist gives garbage.
__global__ void partial_warp_kernel(unsigned *ballots, unsigned *active, float *down) {
    int t = threadIdx.x;
    ballots[t] = __ballot_sync(full_mask, 1);
    active[t] = __activemask();
    down[t] = __shfl_down_sync(full_mask, (float)t, 16);
}

void check_partial_warp() {
    device_array<unsigned> ballots(48), active(48);
    device_array<float> down(48);
    LAUNCH(partial_warp_kernel, 1, 48, 0, ballots.ptr, active.ptr, down.ptr);
    std::vector<unsigned> b = ballots.download(), a = active.download();
    std::vector<float> d = down.download();
    int wrong = 0;
    for (int t = 0; t < 48; t++) {
        unsigned lanes = t < 32 ? full_mask : 0xffffu;
        bool garbage = t >= 32 && !(fabsf(d[t]) < 1e6f);
        float want = t < 16 ? (float)(t + 16) : (float)t;  // lanes 16-31 keep their own
        wrong += b[t] != lanes || a[t] != lanes || (t < 32 ? d[t] != want : !garbage);
    }
    SELF_CHECK(wrong == 0, "partial warp: %d of 48 threads wrong (down[40] = %g)", wrong, d[40]);
}

// --- atomics --------------------------------------------------------------------------------
struct atomic_totals {
    int add_i, sub_i, max_i, min_i, cas_i, exch_i;
    unsigned add_u, sub_u, max_u, min_u, cas_u, exch_u;
    unsigned long long add_ull, cas_ull, exch_ull, exch_returned;
    float add_f, exch_f;
    double add_d, exch_f_returned;
};

__global__ void atomics_kernel(atomic_totals *a) {
    int id = blockIdx.x * blockDim.x + threadIdx.x;
    atomicAdd(&a->add_i, 1);
    atomicAdd(&a->add_u, 2u);
    atomicAdd(&a->add_ull, 3ull);
    atomicAdd(&a->add_f, 1.0f);
    atomicAdd(&a->add_d, 0.5);
    atomicSub(&a->sub_i, 1);
    atomicSub(&a->sub_u, 1u);
    atomicMax(&a->max_i, id - 5000);
    atomicMin(&a->min_i, id - 5000);
    atomicMax(&a->max_u, (unsigned)id * 3);
    atomicMin(&a->min_u, (unsigned)id + 7);
    // Increments by compare-and-swap loops.
    for (int seen = 0;;) {
        int old = atomicCAS(&a->cas_i, seen, seen + 1);
        if (old == seen) break;
        seen = old;
    }
    for (unsigned seen = 0;;) {
        unsigned old = atomicCAS(&a->cas_u, seen, seen + 2);
        if (old == seen) break;
        seen = old;
    }
    for (unsigned long long seen = 0;;) {
        unsigned long long old = atomicCAS(&a->cas_ull, seen, seen + 3);
        if (old == seen) break;
        seen = old;
    }
    // Each exchange takes one value out and puts one in, so what came out plus what
    // is left equals what was there plus what went in.
    atomicAdd(&a->exch_returned, (unsigned long long)atomicExch(&a->exch_u, (unsigned)id));
    atomicAdd(&a->exch_returned, (unsigned long long)atomicExch(&a->exch_i, id));
    atomicAdd(&a->exch_returned, atomicExch(&a->exch_ull, (unsigned long long)id));
    atomicAdd(&a->exch_f_returned, (double)atomicExch(&a->exch_f, (float)id));
    __threadfence();
    __threadfence_block();
}

void check_atomics() {
    const int blocks = 64, threads = 256, n = blocks * threads;
    atomic_totals init = {};
    init.max_i = -1000000, init.min_i = 1000000, init.min_u = 1000000;
    init.sub_i = n, init.sub_u = n;
    device_array<atomic_totals> d(std::vector<atomic_totals>{init});
    LAUNCH(atomics_kernel, blocks, threads, 0, d.ptr);
    atomic_totals a = d.download()[0];
    unsigned long long ids = (unsigned long long)n * (n - 1) / 2;
    SELF_CHECK(a.add_i == n && a.add_u == 2u * n && a.add_ull == 3ull * n, "atomicAdd int/unsigned/ull");
    SELF_CHECK(a.add_f == (float)n && a.add_d == 0.5 * n, "atomicAdd float %g double %g", a.add_f, a.add_d);
    SELF_CHECK(a.sub_i == 0 && a.sub_u == 0, "atomicSub %d %u", a.sub_i, a.sub_u);
    SELF_CHECK(a.max_i == n - 1 - 5000 && a.min_i == -5000 && a.max_u == 3u * (n - 1) && a.min_u == 7,
               "atomicMax/Min %d %d %u %u", a.max_i, a.min_i, a.max_u, a.min_u);
    SELF_CHECK(a.cas_i == n && a.cas_u == 2u * n && a.cas_ull == 3ull * n, "atomicCAS %d %u %llu",
               a.cas_i, a.cas_u, a.cas_ull);
    SELF_CHECK(a.exch_returned + a.exch_u + (unsigned)a.exch_i + a.exch_ull == 3 * ids,
               "atomicExch int/unsigned/ull lost or duplicated a value");
    SELF_CHECK(a.exch_f_returned + a.exch_f == (double)ids, "atomicExch float lost a value");
}

// --- 16-bit floats and math -------------------------------------------------------------------
__global__ void convert_kernel(const float *in, unsigned short *bf16_bits, unsigned short *f16_bits,
                               float *bf16_back, float *f16_back, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    __nv_bfloat16 b = __float2bfloat16(in[i]);
    __half h = __float2half(in[i]);
    memcpy(&bf16_bits[i], &b, 2);
    memcpy(&f16_bits[i], &h, 2);
    bf16_back[i] = __bfloat162float(__float2bfloat16_rn(in[i]));
    f16_back[i] = __half2float(h);
}

void check_conversions() {
    // Value, its bf16 and its f16 bits (round to nearest, ties to even).
    struct {
        float v;
        unsigned short bf16, f16;
    } cases[] = {
        {1.0f, 0x3f80, 0x3c00},
        {1.0f + 1.0f / 256, 0x3f80, 0x3c04},               // bf16 tie: down to even
        {1.0f + 3.0f / 256, 0x3f82, 0x3c0c},               // bf16 tie: up to even
        {1.0f + 1.0f / 256 + 1.0f / 1048576, 0x3f81, 0x3c04},  // just above the tie
        {-2.5f, 0xc020, 0xc100},
        {65504.0f, 0x4780, 0x7bff},
        {65520.0f, 0x4780, 0x7c00},                        // f16 overflows to inf
        {5.9604645e-8f, 0x3380, 0x0001},                   // 2^-24: the smallest f16
        {INFINITY, 0x7f80, 0x7c00},
        {3.4028235e38f, 0x7f80, 0x7c00},                   // FLT_MAX rounds to inf in bf16
    };
    const int n = sizeof cases / sizeof cases[0] + 1;
    std::vector<float> in(n);
    for (int i = 0; i < n - 1; i++) in[i] = cases[i].v;
    in[n - 1] = NAN;
    device_array<float> din(in), bb(n), hb(n);
    device_array<unsigned short> bbits(n), hbits(n);
    LAUNCH(convert_kernel, 1, 32, 0, din.ptr, bbits.ptr, hbits.ptr, bb.ptr, hb.ptr, n);
    std::vector<unsigned short> b = bbits.download(), h = hbits.download();
    std::vector<float> bf = bb.download(), hf = hb.download();
    for (int i = 0; i < n - 1; i++) {
        SELF_CHECK(b[i] == cases[i].bf16 && h[i] == cases[i].f16,
                   "%.9g: bf16 %04x (want %04x), f16 %04x (want %04x)", in[i], b[i],
                   cases[i].bf16, h[i], cases[i].f16);
        SELF_CHECK(bf[i] == bf16_to_f32(cases[i].bf16) && hf[i] == f16_to_f32(cases[i].f16),
                   "%.9g: round trips give %.9g and %.9g", in[i], bf[i], hf[i]);
    }
    SELF_CHECK(isnan(bf[n - 1]) && isnan(hf[n - 1]), "NaN does not stay NaN");
}

__global__ void math_kernel(float *out) {
    out[0] = rsqrtf(4.0f);
    out[1] = __saturatef(NAN) + __saturatef(2.0f) + __saturatef(-1.0f);  // 0 + 1 + 0
    out[2] = __fdividef(1.0f, 4.0f) + __frcp_rn(2.0f) + __fmaf_rn(2.0f, 3.0f, 1.0f);
    out[3] = __expf(0.0f) + __logf(1.0f) + __powf(2.0f, 3.0f) + __sinf(0.0f) + __cosf(0.0f);
    out[4] = (float)(min(3, -4) + max(3u, 4u) + min(2.0f, 1.0f) + max(-1.0, 5.0));
    out[5] = (float)(__popc(0xf0f0u) + __ffs(8) + __clz(1));
    out[6] = __int_as_float(__float_as_int(1.5f)) + __uint_as_float(__float_as_uint(2.5f));
    out[7] = __ldg(out);
}

void check_math() {
    device_array<float> d(8);
    LAUNCH(math_kernel, 1, 1, 0, d.ptr);
    std::vector<float> o = d.download();
    const float want[8] = {0.5f, 1.0f, 7.75f, 10.0f, 6.0f, 43.0f, 4.0f, 0.5f};
    for (int i = 0; i < 8; i++) SELF_CHECK(o[i] == want[i], "math[%d] = %g, want %g", i, o[i], want[i]);
}

// --- runtime API -------------------------------------------------------------------------------
void check_runtime_api() {
    int count = 0;
    SELF_CHECK(cudaGetDeviceCount(&count) == cudaSuccess && count == 1, "device count %d", count);
    char *p = nullptr, host[64] = {0}, back[64];
    SELF_CHECK(cudaMalloc(&p, 64) == cudaSuccess && (uintptr_t)p % 256 == 0, "cudaMalloc");
    SELF_CHECK(cudaMemset(p, 7, 64) == cudaSuccess, "cudaMemset");
    SELF_CHECK(cudaMemcpy(back, p, 64, cudaMemcpyDeviceToHost) == cudaSuccess && back[63] == 7,
               "cudaMemcpy device to host");
    SELF_CHECK(cudaMemcpyAsync(p + 32, p, 32, cudaMemcpyDeviceToDevice) == cudaSuccess &&
                   cudaMemsetAsync(p, 1, 8) == cudaSuccess,
               "async copy and set");
    SELF_CHECK(cudaMemcpy(back, p, 64, cudaMemcpyDefault) == cudaSuccess && back[0] == 1 &&
                   back[40] == 7, "cudaMemcpyDefault");
    // Copies that name host memory as device memory, or run past an allocation, fail.
    SELF_CHECK(cudaMemcpy(host, back, 8, cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
               "copy to host memory as device memory accepted");
    SELF_CHECK(cudaGetLastError() == cudaErrorInvalidValue && cudaGetLastError() == cudaSuccess,
               "cudaGetLastError does not report and reset");
    SELF_CHECK(cudaMemcpy(back, p + 8, 64, cudaMemcpyDeviceToHost) == cudaErrorInvalidValue,
               "copy past the end of an allocation accepted");
    SELF_CHECK(cudaPeekAtLastError() == cudaErrorInvalidValue &&
                   cudaPeekAtLastError() == cudaErrorInvalidValue,
               "cudaPeekAtLastError resets");
    cudaGetLastError();
    SELF_CHECK(cudaFree(host) == cudaErrorInvalidValue, "cudaFree of host memory accepted");
    cudaGetLastError();
    SELF_CHECK(cudaFree(p) == cudaSuccess && cudaFree(nullptr) == cudaSuccess, "cudaFree");
    SELF_CHECK(strcmp(cudaGetErrorString(cudaErrorMemoryAllocation), "out of memory") == 0,
               "cudaGetErrorString");
    cudaStream_t stream;
    cudaEvent_t start, end;
    float ms = -1;
    SELF_CHECK(cudaStreamCreate(&stream) == cudaSuccess && cudaEventCreate(&start) == cudaSuccess &&
                   cudaEventCreate(&end) == cudaSuccess && cudaEventRecord(start, stream) == cudaSuccess &&
                   cudaEventRecord(end) == cudaSuccess && cudaEventSynchronize(end) == cudaSuccess &&
                   cudaEventElapsedTime(&ms, start, end) == cudaSuccess && ms >= 0 &&
                   cudaStreamSynchronize(stream) == cudaSuccess && cudaDeviceSynchronize() == cudaSuccess &&
                   cudaEventDestroy(start) == cudaSuccess && cudaEventDestroy(end) == cudaSuccess &&
                   cudaStreamDestroy(stream) == cudaSuccess,
               "streams and events");
}

// --- cuBLASLt ----------------------------------------------------------------------------------
float round_to(cudaDataType t, float v) {
    return t == CUDA_R_16BF ? bf16_to_f32(f32_to_bf16(v)) : v;
}

// Column-major C = alpha op(A) op(B) + beta C in double, on host copies.
void reference_gemm(bool ta, bool tb, int m, int n, int k, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc) {
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double sum = 0;
            for (int l = 0; l < k; l++)
                sum += (double)(ta ? A[l + i * lda] : A[i + l * lda]) *
                       (tb ? B[j + l * ldb] : B[l + j * ldb]);
            C[i + j * ldc] = (float)(alpha * sum + (beta == 0 ? 0.0 : beta * C[i + j * ldc]));
        }
}

std::vector<unsigned char> to_type(const std::vector<float> &v, cudaDataType t) {
    std::vector<unsigned char> out(v.size() * (t == CUDA_R_32F ? 4 : 2));
    for (size_t i = 0; i < v.size(); i++) {
        if (t == CUDA_R_32F) memcpy(&out[4 * i], &v[i], 4);
        else {
            uint16_t h = f32_to_bf16(v[i]);
            memcpy(&out[2 * i], &h, 2);
        }
    }
    return out;
}

float from_type(const std::vector<unsigned char> &bytes, cudaDataType t, size_t i) {
    if (t == CUDA_R_32F) {
        float f;
        memcpy(&f, &bytes[4 * i], 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, &bytes[2 * i], 2);
    return bf16_to_f32(h);
}

// A column-major layout with a batch count and stride (elements).
cublasLtMatrixLayout_t lt_layout(cudaDataType t, int rows, int cols, int ld, int batch, long long stride) {
    cublasLtMatrixLayout_t l = nullptr;
    int32_t count = batch;
    int64_t offset = stride;
    SELF_CHECK(cublasLtMatrixLayoutCreate(&l, t, rows, cols, ld) == CUBLAS_STATUS_SUCCESS &&
                   cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count,
                                                    sizeof count) == CUBLAS_STATUS_SUCCESS &&
                   cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                    &offset, sizeof offset) == CUBLAS_STATUS_SUCCESS,
               "matrix layout %d x %d", rows, cols);
    return l;
}

// A heuristic preference that promises every buffer is aligned to `align` bytes and
// allows split-K only with partial sums in f32 (the others round them to D's type).
cublasLtMatmulPreference_t lt_preference(uint32_t align) {
    cublasLtMatmulPreference_t p = nullptr;
    SELF_CHECK(cublasLtMatmulPreferenceCreate(&p) == CUBLAS_STATUS_SUCCESS, "preference");
    for (int a = CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES; a <= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES; a++)
        SELF_CHECK(cublasLtMatmulPreferenceSetAttribute(p, (cublasLtMatmulPreferenceAttributes_t)a, &align,
                                                        sizeof align) == CUBLAS_STATUS_SUCCESS,
                   "alignment preference");
    uint32_t reductions = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
    SELF_CHECK(cublasLtMatmulPreferenceSetAttribute(p, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &reductions,
                                                    sizeof reductions) == CUBLAS_STATUS_SUCCESS,
               "reduction scheme preference");
    return p;
}

// The heuristic's algorithm for a problem, then the matmul; returns the matmul's status.
cublasStatus_t lt_run(cublasLtHandle_t h, cublasLtMatmulDesc_t desc, uint32_t align, const void *A,
                      cublasLtMatrixLayout_t la, const void *B, cublasLtMatrixLayout_t lb, const void *C,
                      cublasLtMatrixLayout_t lc, void *D, cublasLtMatrixLayout_t ld, float alpha, float beta) {
    cublasLtMatmulPreference_t pref = lt_preference(align);
    cublasLtMatmulHeuristicResult_t result;
    int found = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(h, desc, la, lb, lc, ld, pref, 1, &result, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    SELF_CHECK(found == 1 && result.state == CUBLAS_STATUS_SUCCESS, "heuristic found %d", found);
    return cublasLtMatmul(h, desc, &alpha, A, la, B, lb, &beta, C, lc, D, ld, &result.algo, nullptr, 0, nullptr);
}

// One batched cublasLtMatmul with padded leading dimensions and strides, in place
// (D = C, as the backend runs it) or into a separate D; beta == 0 runs on C straight
// from cudaMalloc (garbage, including NaN), which must not be read. With a bias,
// bias[row] is added to every column of every batch.
void check_gemm_case(cudaDataType ab, cudaDataType c_type, bool ta, bool tb, float beta, bool with_bias,
                     bool in_place) {
    const int m = 5, n = 7, k = 3, batch = 3;
    int lda = (ta ? k : m) + 2, ldb = (tb ? n : k) + 1, ldc = m + 3;
    long long sa = (long long)lda * (ta ? m : k) + 5, sb = (long long)ldb * (tb ? k : n) + 3,
              sc = (long long)ldc * n + 4;
    std::vector<float> A(sa * batch), B(sb * batch), C(sc * batch), bias(m);
    for (size_t i = 0; i < A.size(); i++) A[i] = round_to(ab, test_value((int)i));
    for (size_t i = 0; i < B.size(); i++) B[i] = round_to(ab, test_value((int)i + 5));
    for (size_t i = 0; i < C.size(); i++) C[i] = round_to(c_type, test_value((int)i + 9));
    for (int i = 0; i < m; i++) bias[i] = round_to(c_type, test_value(i + 3));
    size_t c_size = c_type == CUDA_R_32F ? 4 : 2;
    device_array<unsigned char> dA(to_type(A, ab)), dB(to_type(B, ab)), dC(C.size() * c_size),
        dD(C.size() * c_size), dbias(to_type(bias, c_type));
    if (beta != 0) dC.upload(to_type(C, c_type));
    unsigned char *out = in_place ? dC.ptr : dD.ptr;
    std::vector<unsigned char> before = (in_place ? dC : dD).download();

    cublasLtHandle_t h;
    cublasLtMatmulDesc_t desc;
    SELF_CHECK(cublasLtCreate(&h) == CUBLAS_STATUS_SUCCESS &&
                   cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F) == CUBLAS_STATUS_SUCCESS,
               "cuBLASLt handle and descriptor");
    int32_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    uint32_t epilogue = with_bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    const void *bias_ptr = dbias.ptr;
    SELF_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa) == 0 &&
                   cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb) == 0 &&
                   cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                                  sizeof epilogue) == 0 &&
                   cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_ptr,
                                                  sizeof bias_ptr) == 0,
               "descriptor attributes");
    cublasLtMatrixLayout_t la = lt_layout(ab, ta ? k : m, ta ? m : k, lda, batch, sa),
                           lb = lt_layout(ab, tb ? n : k, tb ? k : n, ldb, batch, sb),
                           lc = lt_layout(c_type, m, n, ldc, batch, sc);
    // The odd batch strides leave later batches aligned to one element only.
    cublasStatus_t st = lt_run(h, desc, (uint32_t)(ab == CUDA_R_32F ? 4 : 2), dA.ptr, la, dB.ptr, lb,
                               dC.ptr, lc, out, lc, 1.5f, beta);
    SELF_CHECK(st == CUBLAS_STATUS_SUCCESS, "cublasLtMatmul status %d", (int)st);
    std::vector<unsigned char> got = (in_place ? dC : dD).download();
    int wrong = 0, touched = 0;
    for (int b = 0; b < batch; b++) {
        reference_gemm(ta, tb, m, n, k, 1.5f, &A[b * sa], lda, &B[b * sb], ldb, beta, &C[b * sc], ldc);
        for (long long i = 0; i < sc; i++) {
            size_t at = b * sc + i;
            bool inside = i % ldc < m && i / ldc < n;
            float g = from_type(got, c_type, at);
            if (!inside) {  // padding and the gap between batches stay as they were
                touched += memcmp(&got[at * c_size], &before[at * c_size], c_size) != 0;
                continue;
            }
            float want = round_to(c_type, C[at] + (with_bias ? bias[i % ldc] : 0.0f));
            if (!(fabsf(g - want) <= 1e-5f * (1 + fabsf(want))) && wrong++ < 3)
                printf("  batch %d D(%lld,%lld) = %g, want %g\n", b, i % ldc, i / ldc, g, want);
        }
    }
    SELF_CHECK(wrong == 0 && touched == 0,
               "cublasLtMatmul %s->%s op(A)=%c op(B)=%c beta %g%s%s: %d wrong, %d outside D written",
               ab == CUDA_R_32F ? "f32" : "bf16", c_type == CUDA_R_32F ? "f32" : "bf16", ta ? 'T' : 'N',
               tb ? 'T' : 'N', beta, with_bias ? " bias" : "", in_place ? " in place" : "", wrong, touched);
    cublasLtMatrixLayoutDestroy(la), cublasLtMatrixLayoutDestroy(lb), cublasLtMatrixLayoutDestroy(lc);
    cublasLtMatmulDescDestroy(desc);
    cublasLtDestroy(h);
}

// What cuBLASLt refuses, so that the backend cannot rely on it here and fail on a GPU.
void check_cublaslt_refusals() {
    cublasLtHandle_t h;
    cublasLtMatmulDesc_t desc;
    SELF_CHECK(cublasLtCreate(&h) == CUBLAS_STATUS_SUCCESS &&
                   cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F) == CUBLAS_STATUS_SUCCESS,
               "cuBLASLt handle and descriptor");
    int64_t wide = CUBLAS_OP_T;
    SELF_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &wide, sizeof wide) ==
                   CUBLAS_STATUS_INVALID_VALUE, "an int64 accepted for the int32 TRANSA");
    cublasLtMatrixLayout_t l;
    SELF_CHECK(cublasLtMatrixLayoutCreate(&l, CUDA_R_32F, 4, 4, 3) == CUBLAS_STATUS_INVALID_VALUE,
               "ld < rows accepted");
    device_array<float> buf(64);
    cublasLtMatrixLayout_t f32 = lt_layout(CUDA_R_32F, 4, 4, 4, 1, 0), bf16 = lt_layout(CUDA_R_16BF, 4, 4, 4, 1, 0);
    SELF_CHECK(lt_run(h, desc, 256, buf.ptr, bf16, buf.ptr, f32, buf.ptr, f32, buf.ptr, f32, 1, 0) ==
                   CUBLAS_STATUS_NOT_SUPPORTED, "mixed A and B types accepted");
    // An algorithm chosen for 256-byte alignment, run on a buffer 4 bytes in.
    SELF_CHECK(lt_run(h, desc, 256, buf.ptr + 1, f32, buf.ptr, f32, buf.ptr, f32, buf.ptr, f32, 1, 0) ==
                   CUBLAS_STATUS_NOT_SUPPORTED, "a misaligned A run with a 256-byte algorithm");
    SELF_CHECK(lt_run(h, desc, 4, buf.ptr + 1, f32, buf.ptr + 16, f32, buf.ptr, f32, buf.ptr + 32, f32, 1, 0) ==
                   CUBLAS_STATUS_SUCCESS, "a 4-byte algorithm refused a 4-byte aligned A");
    uint32_t bias_epilogue = CUBLASLT_EPILOGUE_BIAS;
    SELF_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &bias_epilogue,
                                              sizeof bias_epilogue) == CUBLAS_STATUS_SUCCESS,
               "bias epilogue");
    SELF_CHECK(lt_run(h, desc, 4, buf.ptr, f32, buf.ptr + 16, f32, buf.ptr, f32, buf.ptr, f32, 1, 0) ==
                   CUBLAS_STATUS_INVALID_VALUE, "the bias epilogue without a bias pointer accepted");
    cublasLtMatrixLayoutDestroy(f32), cublasLtMatrixLayoutDestroy(bf16);
    cublasLtMatmulDescDestroy(desc);
    cublasLtDestroy(h);
}

void check_cublas() {
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            check_gemm_case(CUDA_R_32F, CUDA_R_32F, ta, tb, 0.5f, false, true);
            check_gemm_case(CUDA_R_32F, CUDA_R_32F, ta, tb, 0.0f, true, true);
            check_gemm_case(CUDA_R_32F, CUDA_R_32F, ta, tb, 0.5f, true, false);
            check_gemm_case(CUDA_R_16BF, CUDA_R_16BF, ta, tb, 0.5f, true, true);
            check_gemm_case(CUDA_R_16BF, CUDA_R_16BF, ta, tb, 0.0f, false, true);
            check_gemm_case(CUDA_R_16BF, CUDA_R_32F, ta, tb, 0.0f, true, false);
        }
    check_cublaslt_refusals();
}

// --- tensor cores ------------------------------------------------------------------------------
// D (32 x 32, column-major) = A (32 x K, row-major) B (K x 32, column-major) + C (row-major)
// by four warps, one 16 x 16 tile each; C is zero when from_zero.
__global__ void wmma_kernel(const __nv_bfloat16 *A, const __nv_bfloat16 *B, const float *C,
                            float *D, int K, int ld, bool from_zero) {
    using namespace nvcuda;
    int warp = threadIdx.x / 32, ti = warp / 2, tj = warp % 2;
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> b;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    if (from_zero) wmma::fill_fragment(acc, 0.0f);
    else wmma::load_matrix_sync(acc, C + ti * 16 * 32 + tj * 16, 32, wmma::mem_row_major);
    for (int k0 = 0; k0 < K; k0 += 16) {
        wmma::load_matrix_sync(a, A + ti * 16 * ld + k0, ld);
        wmma::load_matrix_sync(b, B + tj * 16 * ld + k0, ld);
        wmma::mma_sync(acc, a, b, acc);
    }
    wmma::store_matrix_sync(D + ti * 16 + tj * 16 * 32, acc, 32, wmma::mem_col_major);
}

void check_wmma() {
    const int K = 32, ld = K + 8;
    std::vector<__nv_bfloat16> A(32 * ld), B(32 * ld);
    std::vector<float> C(32 * 32);
    for (int i = 0; i < 32 * ld; i++) A[i] = __float2bfloat16(test_value(i)), B[i] = __float2bfloat16(test_value(i + 3));
    for (int i = 0; i < 32 * 32; i++) C[i] = test_value(i + 7);
    device_array<__nv_bfloat16> dA(A), dB(B);
    device_array<float> dC(C), dD(32 * 32);
    for (int from_zero = 0; from_zero < 2; from_zero++) {
        LAUNCH(wmma_kernel, 1, 128, 0, dA.ptr, dB.ptr, dC.ptr, dD.ptr, K, ld, (bool)from_zero);
        std::vector<float> D = dD.download();
        int wrong = 0;
        for (int i = 0; i < 32; i++)
            for (int j = 0; j < 32; j++) {
                double want = from_zero ? 0 : C[i * 32 + j];
                for (int k = 0; k < K; k++)
                    want += (double)__bfloat162float(A[i * ld + k]) * __bfloat162float(B[j * ld + k]);
                wrong += fabs(D[i + j * 32] - want) > 1e-5 * (1 + fabs(want));
            }
        SELF_CHECK(wrong == 0, "wmma 32x32x%d (%s): %d of 1024 wrong", K,
                   from_zero ? "fill_fragment" : "accumulator load", wrong);
    }
}

// --- missing barriers --------------------------------------------------------------------------
// A classic tiled matrix product, C = A B for n x n row-major matrices. Barrier 1 keeps
// a thread from reading a tile before all of it is loaded; barrier 2 keeps a thread
// from loading the next tile while others still read this one. Missing = 1 or 2
// removes that barrier.
template <int Missing>
__global__ void tiled_matmul_kernel(const float *A, const float *B, float *C, int n) {
    const int T = 16;
    __shared__ float As[T][T], Bs[T][T];
    int tx = threadIdx.x, ty = threadIdx.y;
    int row = blockIdx.y * T + ty, col = blockIdx.x * T + tx;
    float acc = 0;
    for (int t0 = 0; t0 < n; t0 += T) {
        As[ty][tx] = row < n && t0 + tx < n ? A[row * n + t0 + tx] : 0.0f;
        Bs[ty][tx] = col < n && t0 + ty < n ? B[(t0 + ty) * n + col] : 0.0f;
        if (Missing != 1) __syncthreads();
        for (int k = 0; k < T; k++) acc += As[ty][k] * Bs[k][tx];
        if (Missing != 2) __syncthreads();
    }
    if (row < n && col < n) C[row * n + col] = acc;
}

// Whether the tiled product with barrier `missing` removed (0: none) is right.
template <int Missing> bool tiled_matmul_right() {
    const int n = 40;
    std::vector<float> A(n * n), B(n * n), want(n * n, 0.0f);
    for (int i = 0; i < n * n; i++) A[i] = test_value(i), B[i] = test_value(3 * i + 1);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < n; k++)
            for (int j = 0; j < n; j++) want[i * n + j] += A[i * n + k] * B[k * n + j];
    device_array<float> dA(A), dB(B), dC(n * n);
    auto kernel = tiled_matmul_kernel<Missing>;
    LAUNCH(kernel, dim3(3, 3), dim3(16, 16), 0, dA.ptr, dB.ptr, dC.ptr, n);
    std::vector<float> C = dC.download();
    for (int i = 0; i < n * n; i++)
        if (fabsf(C[i] - want[i]) > 1e-4f * (1 + fabsf(want[i]))) return false;
    return true;
}

// Data that flows one way only: thread t reads the slot thread t + 1 (FromLater) or
// t - 1 wrote. Without the barrier only one of the orders catches it: thread order
// when reading from later threads (they have not run yet), reversed order when reading
// from earlier ones.
template <bool FromLater, bool Sync> __global__ void neighbour_kernel(const float *x, float *y) {
    __shared__ float slots[128];
    int t = threadIdx.x, i = blockIdx.x * 128 + t;
    slots[t] = x[i];
    if (Sync) __syncthreads();
    int src = FromLater ? t + 1 : t - 1;
    y[i] = src >= 0 && src < 128 ? slots[src] : slots[t];
}

template <bool FromLater, bool Sync> bool neighbour_right() {
    const int blocks = 4, n = blocks * 128;
    std::vector<float> x(n);
    for (int i = 0; i < n; i++) x[i] = (float)i;
    device_array<float> dx(x), dy(n);
    auto kernel = neighbour_kernel<FromLater, Sync>;
    LAUNCH(kernel, blocks, 128, 0, dx.ptr, dy.ptr);
    std::vector<float> y = dy.download();
    for (int i = 0; i < n; i++) {
        int src = i % 128 + (FromLater ? 1 : -1);
        if (y[i] != (src >= 0 && src < 128 ? x[i - i % 128 + src] : x[i])) return false;
    }
    return true;
}

// 1 when, in the given order, the complete kernels are right and the broken ones
// that this order must catch are wrong.
int missing_barrier_caught(bool reverse) {
    bool saved = emu_reverse_order();
    emu_set_reverse_order(reverse);
    bool complete_right = tiled_matmul_right<0>() && neighbour_right<true, true>() &&
                          neighbour_right<false, true>();
    bool broken_wrong = !tiled_matmul_right<1>() && !tiled_matmul_right<2>() &&
                        (reverse ? !neighbour_right<false, false>() : !neighbour_right<true, false>());
    emu_set_reverse_order(saved);
    return complete_right && broken_wrong;
}

// --- misuses that must stop the program ---------------------------------------------------------
__global__ void early_exit_barrier_kernel() {
    if (threadIdx.x >= 100) return;
    __syncthreads();
}

__global__ void split_barrier_kernel() {
    if (threadIdx.x < 64) __syncthreads();
    else __syncthreads();
}

__global__ void empty_kernel() {}

__global__ void divergent_wmma_kernel(const __nv_bfloat16 *A) {
    nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, __nv_bfloat16, nvcuda::wmma::row_major> a;
    if (threadIdx.x < 16) nvcuda::wmma::load_matrix_sync(a, A, 16);
}

__global__ void outside_mask_kernel(float *out) {
    out[threadIdx.x] = __shfl_sync(0x0000ffffu, (float)threadIdx.x, 0);
}

__global__ void mixed_collectives_kernel(float *out) {
    if (threadIdx.x < 16) out[threadIdx.x] = __shfl_xor_sync(full_mask, 1.0f, 1);
    else out[threadIdx.x] = (float)__ballot_sync(full_mask, 1);
}

struct death_case {
    const char *name, *expect;
    void (*run)();
};

const death_case death_cases[] = {
    {"__syncthreads after some threads returned", "some threads exited",
     [] { LAUNCH(early_exit_barrier_kernel, 1, 128, 0); }},
    {"__syncthreads at two different call sites", "different __syncthreads",
     [] { LAUNCH(split_barrier_kernel, 1, 128, 0); }},
    {"a block of 1025 threads", "a block has 1 to 1024 threads",
     [] { LAUNCH(empty_kernel, 1, 1025, 0); }},
    {"an empty grid", "grid (0,1,1)", [] { LAUNCH(empty_kernel, 0, 32, 0); }},
    {"too much dynamic shared memory", "dynamic shared memory; a block has at most",
     [] { LAUNCH(empty_kernel, 1, 32, 300 * 1024); }},
    {"over 48 KiB of dynamic shared memory without opting in", "without cudaFuncSetAttribute",
     [] { LAUNCH(empty_kernel, 1, 32, 64 * 1024); }},
    {"wmma by half a warp", "wmma needs all 32 lanes",
     [] {
         device_array<__nv_bfloat16> A(256);
         LAUNCH(divergent_wmma_kernel, 1, 32, 0, A.ptr);
     }},
    {"a shuffle by a lane outside its mask", "not in the mask",
     [] {
         device_array<float> out(32);
         LAUNCH(outside_mask_kernel, 1, 32, 0, out.ptr);
     }},
    {"lanes at different warp collectives", "different warp collectives",
     [] {
         device_array<float> out(32);
         LAUNCH(mixed_collectives_kernel, 1, 32, 0, out.ptr);
     }},
};
const int death_case_count = sizeof death_cases / sizeof death_cases[0];

}  // namespace

extern "C" int emu_selftest_run(void) {
    failures = 0;
    bool saved = emu_reverse_order();
    for (int reverse = 0; reverse < 2; reverse++) {
        emu_set_reverse_order(reverse);
        check_block_sum();
        check_transpose();
        check_coordinates();
        check_shared_per_block();
        check_dynamic_shared();
        check_large_shared();
        check_shuffles();
        check_partial_warp();
        check_atomics();
        check_conversions();
        check_math();
        check_wmma();
    }
    emu_set_reverse_order(saved);
    check_runtime_api();
    check_cublas();
    return failures;
}

extern "C" int emu_selftest_missing_barrier(void) { return missing_barrier_caught(false); }
extern "C" int emu_selftest_missing_barrier_reverse(void) { return missing_barrier_caught(true); }

extern "C" int emu_selftest_death_cases(void) { return death_case_count; }
extern "C" const char *emu_selftest_death_name(int i) { return death_cases[i].name; }
extern "C" const char *emu_selftest_death_expect(int i) { return death_cases[i].expect; }
extern "C" void emu_selftest_death_run(int i) { death_cases[i].run(); }
