// The CUDA emulator: kernels/cuda/*.cu compiled with g++ -DSDFT_EMU run on the CPU
// through this header and the runtime in kernels/emu/*.cpp. Every CUDA thread is a
// fiber with its own stack; a block's fibers run on one OS thread, switching only at
// sync points (__syncthreads, warp collectives, wmma), in thread order or reversed
// (emu_set_reverse_order); blocks are spread over OS threads with OpenMP. A missing
// barrier, a divergent warp collective or an out-of-range shuffle therefore gives a
// wrong answer or stops the program, deterministically. docs/emulation.md explains
// the model, what is and is not emulated, and why both orders matter.
//
// Status: everything listed below is implemented and covered by emu_selftest.cpp.
//
// What a kernel may use (and nothing else; nvcc must compile the same source):
//   qualifiers   __global__ __device__ __host__ __forceinline__ __restrict__
//                __launch_bounds__(...) __align__(n) __shared__ (static, per block)
//   geometry     dim3, uint3, threadIdx blockIdx blockDim gridDim warpSize
//   launch       LAUNCH / DYNAMIC_SHARED from common.cuh (emu_launch, emu_dynamic_shared)
//   block        __syncthreads()
//   warp         __syncwarp __shfl_sync __shfl_up_sync __shfl_down_sync __shfl_xor_sync
//                (int, unsigned, long long, float, double, ...) __ballot_sync
//                __any_sync __all_sync __activemask
//   atomics      atomicAdd (int unsigned ull float double) atomicSub (int unsigned)
//                atomicMax atomicMin (int unsigned) atomicCAS (int unsigned ull)
//                atomicExch (int unsigned ull float) __threadfence __threadfence_block
//   types        __nv_bfloat16 __half and __float2bfloat16(_rn) __bfloat162float
//                __float2half(_rn) __half2float (no arithmetic on them: use float)
//   math         the host's <math.h> plus rsqrtf __expf __logf __sinf __cosf __powf
//                __fdividef __frcp_rn __saturatef __fmaf_rn __ldg, min/max of two
//                values of the same type, __popc __ffs __clz __float_as_int
//                __int_as_float __float_as_uint __uint_as_float
//   tensor cores nvcuda::wmma: fragment<matrix_a|matrix_b, 16,16,16, __nv_bfloat16 or
//                __half, row_major|col_major>, fragment<accumulator, 16,16,16, float>,
//                fill_fragment load_matrix_sync mma_sync store_matrix_sync. Fragments
//                have no num_elements / x[]: the element-to-lane layout is unspecified
//                by CUDA, so kernels must not touch fragment elements.
//   printf       as on the host
// Host side: cudaMalloc cudaFree cudaMemcpy(Async) cudaMemset(Async), streams and
// events, cudaDeviceSynchronize, cudaGetLastError cudaPeekAtLastError
// cudaGetErrorString cudaGetDeviceCount cudaFuncSetAttribute cudaFuncGetName; cuBLASLt: handles,
// matmul/layout/preference descriptors, the heuristic and cublasLtMatmul (f32, bf16 and
// f16 data, CUBLAS_COMPUTE_32F, bias epilogue). Launches and copies are synchronous.
//
// Restrictions a kernel author must know (docs/emulation.md has the reasons):
//   - __syncthreads must be reached by every thread of the block, at the same call
//     site; a thread that returned early while others wait is reported as a deadlock.
//   - Warp collectives must be reached by every non-exited lane named in the mask, with
//     the same mask; reading a lane that did not take part (exited, not in the mask,
//     beyond a partial last warp) gives garbage, as the hardware gives an undefined value.
//   - wmma calls need all 32 lanes of a full warp, with identical arguments.
//   - Unwritten dynamic shared memory and fresh cudaMalloc memory hold garbage
//     (NaN, +-3.4e38, -4.3e8 patterns). Static __shared__ memory holds whatever the
//     previous block on the same OS thread left (zeros the first time).
//   - LAUNCH evaluates its arguments inside every emulated thread: no side effects.
//   - A thread's stack is 128 KiB; a wmma fragment takes 1 KiB of it.
//   - g++ warns about `#pragma unroll` (-Wunknown-pragmas) and ignores it.
//   - Do not write `using namespace std;` in a .cu file: min/max would be ambiguous.
#pragma once
#ifndef __cplusplus
#error "cuda_emu.h is C++; include kernels/emu/emu.h from C"
#endif

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <atomic>
#include <type_traits>

#include "core/check.h"
#include "core/half.h"
#include "kernels/emu/emu.h"

// --- qualifiers --------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// One variable per OS thread; an OS thread runs whole blocks, one at a time, so every
// fiber of a block sees the same variable and concurrent blocks see different ones.
#define __shared__ static thread_local

// --- geometry ----------------------------------------------------------------------------
struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};

namespace emu {
// Where the current fiber is; set by the scheduler before it resumes a fiber.
struct coords {
    uint3 thread_idx, block_idx, block_dim, grid_dim;
};
extern __thread coords here;
// Copies, so that they are read-only as in CUDA (threadIdx.x = 0 does not compile).
// Not const references: binding one to a thread-local makes GCC 12's UBSan null
// check test the wrong flags and report a null pointer.
inline uint3 thread_idx() { return here.thread_idx; }
inline uint3 block_idx() { return here.block_idx; }
inline uint3 block_dim() { return here.block_dim; }
inline uint3 grid_dim() { return here.grid_dim; }
}  // namespace emu

#define threadIdx (::emu::thread_idx())
#define blockIdx (::emu::block_idx())
#define blockDim (::emu::block_dim())
#define gridDim (::emu::grid_dim())
// A variable, not a constant expression, as in CUDA: `float a[warpSize]` must not
// compile here when it does not compile with nvcc.
extern const int warpSize;

// --- launch ------------------------------------------------------------------------------
namespace emu {
typedef void (*kernel_body)(const void *closure);
struct launch_site {
    const char *file;
    int line;
    const char *function;
};
void launch(dim3 grid, dim3 block, size_t dynamic_shared_bytes, kernel_body body,
            const void *closure, launch_site site);
}  // namespace emu

// Runs body() once per CUDA thread of the grid; returns when all have finished. The
// default arguments record the launching line for error messages.
template <class Body>
void emu_launch(dim3 grid, dim3 block, size_t dynamic_shared_bytes, Body &&body,
                const char *file = __builtin_FILE(), int line = __builtin_LINE(),
                const char *function = __builtin_FUNCTION()) {
    using closure = std::remove_reference_t<Body>;
    emu::launch(
        grid, block, dynamic_shared_bytes,
        [](const void *c) { (*static_cast<const closure *>(c))(); }, &body,
        {file, line, function});
}

// The current block's dynamic shared memory (16-byte aligned, garbage-filled).
void *emu_dynamic_shared(void);

// --- block and warp synchronisation -----------------------------------------------------
namespace emu {
void sync_threads(const char *file, int line);

enum class warp_op : unsigned char {
    sync,
    shfl,
    shfl_up,
    shfl_down,
    shfl_xor,
    ballot,
    any,
    all,
    wmma_fill,
    wmma_load,
    wmma_store,
    wmma_mma,
};
struct warp_request {
    warp_op op;
    unsigned mask;
    uint64_t value;  // this lane's operand (shuffled value, predicate, wmma arguments)
    int arg;         // source lane, delta or lane mask
    int width;
    const char *file;
    int line;
};
// Blocks until every non-exited lane of mask has made the same request, then returns
// this lane's result.
uint64_t warp_collective(const warp_request &request);
unsigned active_lanes(void);

template <class T> inline constexpr bool shuffleable =
    std::is_arithmetic_v<T> && sizeof(T) <= sizeof(uint64_t);
template <class T> inline uint64_t to_bits(T v) {
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof v);
    return bits;
}
template <class T> inline T from_bits(uint64_t bits) {
    T v;
    memcpy(&v, &bits, sizeof v);
    return v;
}
template <class T>
inline T shuffle(warp_op op, unsigned mask, T var, int arg, int width, const char *file,
                 int line) {
    static_assert(shuffleable<T>, "warp shuffles take arithmetic types of up to 8 bytes");
    return from_bits<T>(warp_collective({op, mask, to_bits(var), arg, width, file, line}));
}
}  // namespace emu

inline void __syncthreads(const char *file = __builtin_FILE(), int line = __builtin_LINE()) {
    emu::sync_threads(file, line);
}
inline void __syncwarp(unsigned mask = 0xffffffffu, const char *file = __builtin_FILE(),
                       int line = __builtin_LINE()) {
    emu::warp_collective({emu::warp_op::sync, mask, 0, 0, 32, file, line});
}
template <class T>
inline T __shfl_sync(unsigned mask, T var, int src_lane, int width = 32,
                     const char *file = __builtin_FILE(), int line = __builtin_LINE()) {
    return emu::shuffle(emu::warp_op::shfl, mask, var, src_lane, width, file, line);
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32,
                        const char *file = __builtin_FILE(), int line = __builtin_LINE()) {
    return emu::shuffle(emu::warp_op::shfl_up, mask, var, (int)delta, width, file, line);
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32,
                          const char *file = __builtin_FILE(), int line = __builtin_LINE()) {
    return emu::shuffle(emu::warp_op::shfl_down, mask, var, (int)delta, width, file, line);
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32,
                         const char *file = __builtin_FILE(), int line = __builtin_LINE()) {
    return emu::shuffle(emu::warp_op::shfl_xor, mask, var, lane_mask, width, file, line);
}
inline unsigned __ballot_sync(unsigned mask, int predicate, const char *file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
    return (unsigned)emu::warp_collective(
        {emu::warp_op::ballot, mask, predicate != 0, 0, 32, file, line});
}
inline int __any_sync(unsigned mask, int predicate, const char *file = __builtin_FILE(),
                      int line = __builtin_LINE()) {
    return (int)emu::warp_collective({emu::warp_op::any, mask, predicate != 0, 0, 32, file, line});
}
inline int __all_sync(unsigned mask, int predicate, const char *file = __builtin_FILE(),
                      int line = __builtin_LINE()) {
    return (int)emu::warp_collective({emu::warp_op::all, mask, predicate != 0, 0, 32, file, line});
}
// The lanes of this warp that have not exited: fibers do not diverge, so there is no
// narrower "currently converged" set to report.
inline unsigned __activemask(void) { return emu::active_lanes(); }

// --- atomics -----------------------------------------------------------------------------
// Blocks run concurrently on several OS threads, so these are real atomics; CUDA's are
// relaxed. Within a block fibers never preempt each other.
namespace emu {
template <class T> inline std::atomic_ref<T> atomic(T *p) { return std::atomic_ref<T>(*p); }
template <class T, class Pick> inline T atomic_update(T *p, T v, Pick pick) {
    std::atomic_ref<T> a(*p);
    T old = a.load(std::memory_order_relaxed);
    while (!a.compare_exchange_weak(old, pick(old, v), std::memory_order_relaxed)) {
    }
    return old;
}
}  // namespace emu

#define EMU_ATOMIC_ADD(T)                                                                \
    inline T atomicAdd(T *p, T v) { return emu::atomic(p).fetch_add(v, std::memory_order_relaxed); }
EMU_ATOMIC_ADD(int)
EMU_ATOMIC_ADD(unsigned)
EMU_ATOMIC_ADD(unsigned long long)
EMU_ATOMIC_ADD(float)
EMU_ATOMIC_ADD(double)
#undef EMU_ATOMIC_ADD
inline int atomicSub(int *p, int v) { return emu::atomic(p).fetch_sub(v, std::memory_order_relaxed); }
inline unsigned atomicSub(unsigned *p, unsigned v) {
    return emu::atomic(p).fetch_sub(v, std::memory_order_relaxed);
}
inline int atomicMax(int *p, int v) {
    return emu::atomic_update(p, v, [](int a, int b) { return a > b ? a : b; });
}
inline unsigned atomicMax(unsigned *p, unsigned v) {
    return emu::atomic_update(p, v, [](unsigned a, unsigned b) { return a > b ? a : b; });
}
inline int atomicMin(int *p, int v) {
    return emu::atomic_update(p, v, [](int a, int b) { return a < b ? a : b; });
}
inline unsigned atomicMin(unsigned *p, unsigned v) {
    return emu::atomic_update(p, v, [](unsigned a, unsigned b) { return a < b ? a : b; });
}
#define EMU_ATOMIC_CAS(T)                                                                    \
    inline T atomicCAS(T *p, T compare, T v) {                                               \
        emu::atomic(p).compare_exchange_strong(compare, v, std::memory_order_relaxed);       \
        return compare; /* the old value either way */                                       \
    }
EMU_ATOMIC_CAS(int)
EMU_ATOMIC_CAS(unsigned)
EMU_ATOMIC_CAS(unsigned long long)
#undef EMU_ATOMIC_CAS
#define EMU_ATOMIC_EXCH(T)                                                                   \
    inline T atomicExch(T *p, T v) { return emu::atomic(p).exchange(v, std::memory_order_relaxed); }
EMU_ATOMIC_EXCH(int)
EMU_ATOMIC_EXCH(unsigned)
EMU_ATOMIC_EXCH(unsigned long long)
EMU_ATOMIC_EXCH(float)
#undef EMU_ATOMIC_EXCH
inline void __threadfence(void) { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block(void) { std::atomic_thread_fence(std::memory_order_seq_cst); }

// --- 16-bit float storage ------------------------------------------------------------------
// Storage only: kernels convert to float for arithmetic. The member is CUDA's name for
// the raw bits; kernels must not touch it.
struct __nv_bfloat16 {
    unsigned short __x;
};
struct __half {
    unsigned short __x;
};
typedef __nv_bfloat16 nv_bfloat16;

inline __nv_bfloat16 __float2bfloat16_rn(float f) { return {f32_to_bf16(f)}; }
inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
inline float __bfloat162float(__nv_bfloat16 h) { return bf16_to_f32(h.__x); }
inline __half __float2half_rn(float f) { return {f32_to_f16(f)}; }
inline __half __float2half(float f) { return __float2half_rn(f); }
inline float __half2float(__half h) { return f16_to_f32(h.__x); }

// --- math ----------------------------------------------------------------------------------
// CUDA's fast intrinsics are approximations; the emulator computes them exactly, so a
// kernel's emulated result is at least as accurate as on the GPU.
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
// Clamps to [0, 1]; NaN becomes 0, as on the GPU.
inline float __saturatef(float x) { return x >= 1.0f ? 1.0f : x > 0.0f ? x : 0.0f; }
template <class T> inline T __ldg(const T *p) { return *p; }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
inline int __float_as_int(float f) { return (int)f32_bits(f); }
inline unsigned __float_as_uint(float f) { return f32_bits(f); }
inline float __int_as_float(int i) { return f32_from_bits((uint32_t)i); }
inline float __uint_as_float(unsigned u) { return f32_from_bits(u); }

#define EMU_MIN_MAX(T)                                    \
    inline T min(T a, T b) { return a < b ? a : b; }      \
    inline T max(T a, T b) { return a > b ? a : b; }
EMU_MIN_MAX(int)
EMU_MIN_MAX(unsigned)
EMU_MIN_MAX(long)
EMU_MIN_MAX(unsigned long)
EMU_MIN_MAX(long long)
EMU_MIN_MAX(unsigned long long)
#undef EMU_MIN_MAX
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }

// --- runtime API -----------------------------------------------------------------------------
enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorInvalidDeviceFunction = 98,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorIllegalAddress = 700,
};
typedef enum cudaError cudaError_t;

enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};

enum cudaFuncAttribute {
    cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
};

typedef struct CUstream_st *cudaStream_t;
typedef struct CUevent_st *cudaEvent_t;

cudaError_t cudaMalloc(void **ptr, size_t bytes);
template <class T> inline cudaError_t cudaMalloc(T **ptr, size_t bytes) {
    return cudaMalloc(reinterpret_cast<void **>(ptr), bytes);
}
cudaError_t cudaFree(void *ptr);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream = 0);
cudaError_t cudaMemset(void *ptr, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void *ptr, int value, size_t bytes, cudaStream_t stream = 0);
cudaError_t cudaStreamCreate(cudaStream_t *stream);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaEventCreate(cudaEvent_t *event);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char *cudaGetErrorString(cudaError_t error);
cudaError_t cudaGetDeviceCount(int *count);
// The emulator keeps no names for kernels (they are plain host functions, mostly in
// anonymous namespaces): answers cudaErrorInvalidDeviceFunction, so callers fall back
// to the name they wrote.
cudaError_t cudaFuncGetName(const char **name, const void *func);

namespace emu {
cudaError_t set_function_attribute(cudaFuncAttribute attribute, int value);
}
// Accepted for any kernel. Launches with more than 48 KiB of dynamic shared memory
// need an opt-in at least that large, as on the GPU (checked across all kernels:
// the emulator cannot tell which kernel a launch runs).
template <class Kernel>
inline cudaError_t cudaFuncSetAttribute(Kernel *kernel, cudaFuncAttribute attribute, int value) {
    return emu::set_function_attribute(attribute, value);
}

// --- cuBLASLt ----------------------------------------------------------------------------------
// The subset of cublasLt.h the project uses, with the real header's names, values and
// attribute types. SetAttribute checks sizeInBytes against the attribute's type, as
// the library does, so an int32 written where an int64 belongs fails here too.
typedef enum {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
} cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum cudaDataType_t { CUDA_R_32F = 0, CUDA_R_16F = 2, CUDA_R_16BF = 14 } cudaDataType;
typedef enum { CUBLAS_COMPUTE_32F = 68 } cublasComputeType_t;

typedef struct cublasLtContext *cublasLtHandle_t;
typedef struct cublasLtMatmulDescOpaque_t *cublasLtMatmulDesc_t;
typedef struct cublasLtMatrixLayoutOpaque_t *cublasLtMatrixLayout_t;
typedef struct cublasLtMatmulPreferenceOpaque_t *cublasLtMatmulPreference_t;
typedef struct {
    uint64_t data[8];
} cublasLtMatmulAlgo_t;
typedef struct {
    cublasLtMatmulAlgo_t algo;
    size_t workspaceSize;
    cublasStatus_t state;
    float wavesCount;
    int reserved[4];
} cublasLtMatmulHeuristicResult_t;

typedef enum {  // types: int32_t, except BIAS_POINTER (const void *) and BIAS_BATCH_STRIDE (int64_t)
    CUBLASLT_MATMUL_DESC_TRANSA = 3,
    CUBLASLT_MATMUL_DESC_TRANSB = 4,
    CUBLASLT_MATMUL_DESC_EPILOGUE = 7,  // uint32_t
    CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8,
    CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE = 10,
} cublasLtMatmulDescAttributes_t;
typedef enum { CUBLASLT_EPILOGUE_DEFAULT = 1, CUBLASLT_EPILOGUE_BIAS = 4 } cublasLtEpilogue_t;
typedef enum {  // BATCH_COUNT int32_t, STRIDED_BATCH_OFFSET int64_t (elements)
    CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT = 5,
    CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET = 6,
} cublasLtMatrixLayoutAttribute_t;
typedef enum {  // MAX_WORKSPACE_BYTES uint64_t, the alignments and the mask uint32_t
    CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK = 3,  // default CUBLASLT_REDUCTION_SCHEME_MASK
    CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8,
} cublasLtMatmulPreferenceAttributes_t;

// How split-K algorithms add their partial sums: in place in D or in D's type (both
// rounded to D's type, bf16 say, before the final sum), or in the compute type.
typedef enum {
    CUBLASLT_REDUCTION_SCHEME_NONE = 0,
    CUBLASLT_REDUCTION_SCHEME_INPLACE = 1,
    CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE = 2,
    CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE = 4,
    CUBLASLT_REDUCTION_SCHEME_MASK = 7,
} cublasLtReductionScheme_t;

const char *cublasLtGetStatusName(cublasStatus_t status);
cublasStatus_t cublasLtCreate(cublasLtHandle_t *handle);
cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle);
// Compute type CUBLAS_COMPUTE_32F with scale type CUDA_R_32F only.
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *desc, cublasComputeType_t compute,
                                        cudaDataType scale);
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc);
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc,
                                              cublasLtMatmulDescAttributes_t attr,
                                              const void *buf, size_t sizeInBytes);
// Column-major rows x cols with leading dimension ld >= rows.
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *layout, cudaDataType type,
                                          uint64_t rows, uint64_t cols, int64_t ld);
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout);
cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t layout,
                                                cublasLtMatrixLayoutAttribute_t attr,
                                                const void *buf, size_t sizeInBytes);
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *pref);
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref);
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr,
                                                    const void *buf, size_t sizeInBytes);
// Up to `requested` algorithms when the problem is valid, best first: when K >= 2,
// split-K ones (K in two halves) with each reduction scheme the preference allows (in
// place first, as a heuristic may rank it for long reductions), then one without a
// split. Like the library's, they may rely on every buffer being as aligned as the
// preference says (256 bytes unless told) and on the bias being as aligned as the
// pointer in the descriptor now; cublasLtMatmul answers CUBLAS_STATUS_NOT_SUPPORTED when
// a buffer of any batch is less aligned than that. A bias pointer less than 16-byte
// aligned has no algorithm (CUBLAS_STATUS_NOT_SUPPORTED, none returned).
// emu_cublaslt_set_faults (kernels/emu/emu.h) makes it answer no algorithm at all, or
// the matmul refuse the first algorithms of the list.
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                                              cublasLtMatrixLayout_t Adesc,
                                              cublasLtMatrixLayout_t Bdesc,
                                              cublasLtMatrixLayout_t Cdesc,
                                              cublasLtMatrixLayout_t Ddesc,
                                              cublasLtMatmulPreference_t pref, int requested,
                                              cublasLtMatmulHeuristicResult_t results[],
                                              int *returned);
// D = alpha op(A) op(B) + beta C (+ bias[row] with CUBLASLT_EPILOGUE_BIAS), per batch;
// C is not read when beta is 0. A and B of one type (f32, bf16, f16), C and D of one
// type, that or f32; the bias has D's type. alpha and beta are host floats.
cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                              const void *alpha, const void *A, cublasLtMatrixLayout_t Adesc,
                              const void *B, cublasLtMatrixLayout_t Bdesc, const void *beta,
                              const void *C, cublasLtMatrixLayout_t Cdesc, void *D,
                              cublasLtMatrixLayout_t Ddesc, const cublasLtMatmulAlgo_t *algo,
                              void *workspace, size_t workspaceSize, cudaStream_t stream);

// --- tensor cores --------------------------------------------------------------------------
// Each lane holds the whole 16x16 tile (the hardware spreads it over the warp); every
// call is a rendezvous of all 32 lanes with identical arguments, so a divergent or
// partial-warp wmma call stops the program instead of silently working.
namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void> class fragment {
    static_assert(M == 16 && N == 16 && K == 16, "the emulator has the 16x16x16 shape only");
    static_assert(std::is_same_v<Use, accumulator> ? std::is_same_v<T, float>
                                                   : std::is_same_v<T, __nv_bfloat16> ||
                                                         std::is_same_v<T, __half>,
                  "fragments: matrix_a/matrix_b of __nv_bfloat16 or __half, accumulator of float");
    static_assert(std::is_same_v<Use, accumulator> == std::is_same_v<Layout, void>,
                  "matrix_a/matrix_b fragments take row_major or col_major; accumulators none");

  public:
    // Emulator internals, row-major whatever Layout says; kernels must not touch them.
    float emu_tile[16][16];
};

namespace detail {
using emu::warp_op;
inline void rendezvous(warp_op op, uint64_t uniform_arguments, const char *file, int line) {
    emu::warp_collective({op, 0xffffffffu, uniform_arguments, 0, 32, file, line});
}
inline float to_float(float v) { return v; }
inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
inline float to_float(__half v) { return __half2float(v); }
// CUDA requires 256-bit aligned pointers and a leading dimension of 16 bytes' worth of
// elements; a kernel that breaks this faults or misreads on the GPU, so stop here.
template <class T> inline void check_tile_address(const T *p, unsigned ldm, const char *what) {
    if ((uintptr_t)p % 32 != 0)
        DIE("wmma::%s: pointer %p is not 32-byte aligned", what, (const void *)p);
    if (ldm % (16 / sizeof(T)) != 0)
        DIE("wmma::%s: ldm %u is not a multiple of %zu elements (16 bytes)", what, ldm,
            16 / sizeof(T));
}
inline uint64_t pack(const void *p, unsigned a, unsigned b = 0) {
    return (uint64_t)(uintptr_t)p * 31 + ((uint64_t)a << 8) + b;
}
}  // namespace detail

// The value has the fragment's element type (not deduced, so 0.0f fills a float
// accumulator; a bf16 fragment takes a __nv_bfloat16).
template <class Use, class T, class Layout>
inline void fill_fragment(fragment<Use, 16, 16, 16, T, Layout> &f,
                          const std::type_identity_t<T> &value,
                          const char *file = __builtin_FILE(), int line = __builtin_LINE()) {
    float v = detail::to_float(value);
    detail::rendezvous(detail::warp_op::wmma_fill, f32_bits(v), file, line);
    for (auto &row : f.emu_tile)
        for (float &x : row) x = v;
}

// matrix_a (16 x K) or matrix_b (K x 16) from memory in the fragment's layout.
template <class Use, class T, class Layout>
inline void load_matrix_sync(fragment<Use, 16, 16, 16, T, Layout> &f, const T *p, unsigned ldm,
                             const char *file = __builtin_FILE(), int line = __builtin_LINE()) {
    static_assert(!std::is_same_v<Use, accumulator>, "accumulators load with a layout_t");
    detail::check_tile_address(p, ldm, "load_matrix_sync");
    detail::rendezvous(detail::warp_op::wmma_load, detail::pack(p, ldm), file, line);
    constexpr bool row = std::is_same_v<Layout, row_major>;
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 16; c++)
            f.emu_tile[r][c] = detail::to_float(row ? p[r * ldm + c] : p[r + c * ldm]);
}

inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float> &f, const float *p,
                             unsigned ldm, layout_t layout, const char *file = __builtin_FILE(),
                             int line = __builtin_LINE()) {
    detail::check_tile_address(p, ldm, "load_matrix_sync");
    detail::rendezvous(detail::warp_op::wmma_load, detail::pack(p, ldm, layout), file, line);
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 16; c++)
            f.emu_tile[r][c] = layout == mem_row_major ? p[r * ldm + c] : p[r + c * ldm];
}

inline void store_matrix_sync(float *p, const fragment<accumulator, 16, 16, 16, float> &f,
                              unsigned ldm, layout_t layout, const char *file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
    detail::check_tile_address(p, ldm, "store_matrix_sync");
    detail::rendezvous(detail::warp_op::wmma_store, detail::pack(p, ldm, layout), file, line);
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 16; c++)
            (layout == mem_row_major ? p[r * ldm + c] : p[r + c * ldm]) = f.emu_tile[r][c];
}

namespace detail {
// The last product this OS thread computed. The 32 lanes of a warp compute the same
// product one after the other, so remembering it (keyed by the operands themselves,
// so it can never be stale) saves 31 of every 32 products.
struct mma_memo {
    bool valid;
    float a[16][16], b[16][16], c[16][16], d[16][16];
};
inline mma_memo &last_mma() {
    static thread_local mma_memo memo;
    return memo;
}
}  // namespace detail

// d = a b + c with float products and sums (d may be c).
template <class T, class LayoutA, class LayoutB>
inline void mma_sync(fragment<accumulator, 16, 16, 16, float> &d,
                     const fragment<matrix_a, 16, 16, 16, T, LayoutA> &a,
                     const fragment<matrix_b, 16, 16, 16, T, LayoutB> &b,
                     const fragment<accumulator, 16, 16, 16, float> &c,
                     const char *file = __builtin_FILE(), int line = __builtin_LINE()) {
    detail::rendezvous(detail::warp_op::wmma_mma, 0, file, line);
    detail::mma_memo &m = detail::last_mma();
    if (!m.valid || memcmp(m.a, a.emu_tile, sizeof m.a) || memcmp(m.b, b.emu_tile, sizeof m.b) ||
        memcmp(m.c, c.emu_tile, sizeof m.c)) {
        memcpy(m.a, a.emu_tile, sizeof m.a);
        memcpy(m.b, b.emu_tile, sizeof m.b);
        memcpy(m.c, c.emu_tile, sizeof m.c);
        // Row by row, so the inner loop runs along j and vectorises; each element still
        // sums c + a0 b0 + a1 b1 + ... in k order.
        memcpy(m.d, m.c, sizeof m.d);
        for (int i = 0; i < 16; i++)
            for (int k = 0; k < 16; k++)
                for (int j = 0; j < 16; j++) m.d[i][j] += m.a[i][k] * m.b[k][j];
        m.valid = true;
    }
    memcpy(d.emu_tile, m.d, sizeof m.d);
}
}  // namespace wmma
}  // namespace nvcuda
