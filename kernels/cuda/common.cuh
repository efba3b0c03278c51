// Shared by every kernels/cuda/*.cu file. Each source compiles two ways:
//   nvcc              real CUDA; functions named cuda_*, table cuda_backend ("cuda")
//   g++ -DSDFT_EMU    against kernels/emu/cuda_emu.h, which runs the CUDA execution
//                     model on the CPU; functions named emu_*, table emu_backend
//                     ("cuda-emu"). This is how `make test` runs every kernel here.
// So kernels use only what the emulator provides (kernels/emu/cuda_emu.h lists it),
// launch through LAUNCH, and declare dynamic shared memory with DYNAMIC_SHARED.
//
// Both builds link into one program when nvcc is present, so everything in a .cu
// file except its CUDA_FN entries lives in an anonymous namespace: a kernel template
// defined by both builds would otherwise be merged by the linker, and a GPU launch
// could end up calling the emulated body (tools/check_cuda_symbols.sh, run by make,
// fails the build when that happens).
#pragma once
#ifdef SDFT_EMU
#include "kernels/emu/cuda_emu.h"
#ifndef CUDA_FN  // tests/planted compiles mutated copies under names of their own
#define CUDA_FN(name) emu_##name
#endif
#else
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>
#define CUDA_FN(name) cuda_##name
#endif

#include "core/check.h"
#include "kernels/backend.h"

#ifdef SDFT_EMU
#define CUDA_BACKEND_NAME "cuda-emu"
#else
#define CUDA_BACKEND_NAME "cuda"
#endif

#define CUDA_CHECK(call)                                                                    \
    do {                                                                                    \
        cudaError_t err_ = (call);                                                          \
        if (err_ != cudaSuccess)                                                            \
            die_at(__FILE__, __LINE__, "%s: %s", #call, cudaGetErrorString(err_));          \
    } while (0)

#define CUBLAS_CHECK(call)                                                                  \
    do {                                                                                    \
        cublasStatus_t st_ = (call);                                                        \
        if (st_ != CUBLAS_STATUS_SUCCESS)                                                   \
            die_at(__FILE__, __LINE__, "%s: %s", #call, cublasLtGetStatusName(st_));        \
    } while (0)

// LAUNCH(kernel, grid, block, shared_bytes, args...) runs kernel over the grid on the
// default stream and checks the launch (check_launch below). A template instance with
// commas in its name goes through a variable first: auto k = my_kernel<float, 64>;
// LAUNCH(k, ...).
#ifdef SDFT_EMU
#define LAUNCH(kernel, grid, block, shared_bytes, ...)                                       \
    do {                                                                                     \
        emu_launch(dim3(grid), dim3(block), (shared_bytes), [=] { kernel(__VA_ARGS__); });   \
        check_launch((const void *)kernel, #kernel, __FILE__, __LINE__, __func__);           \
    } while (0)
#else
#define LAUNCH(kernel, grid, block, shared_bytes, ...)                                  \
    do {                                                                                \
        kernel<<<(grid), (block), (shared_bytes)>>>(__VA_ARGS__);                       \
        check_launch((const void *)kernel, #kernel, __FILE__, __LINE__, __func__);      \
    } while (0)
#endif

// kernels/cuda/backend.cu: whether every launch is followed by a device synchronisation
// (SDFT_CUDA_SYNC=1 in the environment, read at the first launch), and reading it again.
// Named per build, not by CUDA_FN: planted copies of kernels (tests/planted) share them.
#ifdef SDFT_EMU
#define BACKEND_SYNC_FN(name) emu_##name
#else
#define BACKEND_SYNC_FN(name) cuda_##name
#endif
extern "C" {
bool BACKEND_SYNC_FN(sync_launches)(void);
void BACKEND_SYNC_FN(sync_launches_from_env)(void);
}

// After a launch: a launch error (a bad grid, too much shared memory) is reported at
// once. A fault inside the kernel (an illegal address, a trap) surfaces only at a later
// synchronising call, naming that call; with SDFT_CUDA_SYNC=1 every launch is followed by
// cudaDeviceSynchronize, so the fault is reported here with the kernel's name and launch
// site (slower; for finding a fault, not for normal runs). kernel is the launched
// function (its name is asked of the runtime: LAUNCH often gets a variable holding a
// template instance; NULL for a library call), expr what the source wrote.
static inline void check_launch(const void *kernel, const char *expr, const char *file, int line,
                                const char *function) {
    cudaError_t err = cudaGetLastError();
    const char *when = "launch";
    if (err == cudaSuccess && BACKEND_SYNC_FN(sync_launches)()) {
        err = cudaDeviceSynchronize();
        when = "run";
    }
    if (err == cudaSuccess) return;
    const char *name = nullptr;
    if (!kernel || cudaFuncGetName(&name, kernel) != cudaSuccess || !name) name = expr;
    (void)cudaGetLastError();  // cudaFuncGetName may have failed in turn
    die_at(file, line, "%s: kernel %s launched in %s failed (%s): %s", CUDA_BACKEND_NAME, name,
           function, when, cudaGetErrorString(err));
}

// DYNAMIC_SHARED(float, tile) declares `float *tile` over the launch's dynamic
// shared memory (16-byte aligned).
#ifdef SDFT_EMU
#define DYNAMIC_SHARED(type, name) type *name = reinterpret_cast<type *>(emu_dynamic_shared())
#else
#define DYNAMIC_SHARED(type, name)                                  \
    extern __shared__ __align__(16) unsigned char name##_bytes_[];  \
    type *name = reinterpret_cast<type *>(name##_bytes_)
#endif

// UNROLL before a loop unrolls it fully, so register arrays (accumulators, wmma
// fragments) stay in registers; NO_UNROLL keeps it rolled. The emulated build's
// compiler has no such pragma.
#ifdef SDFT_EMU
#define UNROLL
#define NO_UNROLL
#else
#define UNROLL _Pragma("unroll")
#define NO_UNROLL _Pragma("unroll 1")
#endif

namespace {

constexpr int WARP = 32;  // lanes per warp on every GPU we target

// Sum of v over the lanes of a full warp, returned to every lane. A butterfly, so the
// order of additions is fixed and results repeat bit for bit.
__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = WARP / 2; offset > 0; offset /= 2)
        v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

}  // namespace

// Storage types: kernels are templates over float or __nv_bfloat16 storage and
// always accumulate in float.
__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T> __device__ __forceinline__ T from_float(float v);
template <> __device__ __forceinline__ float from_float<float>(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
    return __float2bfloat16(v);
}

// DISPATCH_FLOAT(t->dtype, T, body): runs body with T = float or __nv_bfloat16.
#define DISPATCH_FLOAT(dt, T, ...)                                                    \
    do {                                                                              \
        if ((dt) == DT_F32) {                                                         \
            using T = float;                                                          \
            __VA_ARGS__;                                                              \
        } else if ((dt) == DT_BF16) {                                                 \
            using T = __nv_bfloat16;                                                  \
            __VA_ARGS__;                                                              \
        } else {                                                                      \
            DIE("%s kernels take f32 or bf16, not %s", CUDA_BACKEND_NAME,             \
                dtype_name(dt));                                                      \
        }                                                                             \
    } while (0)

// Typed device pointer to element 0 of a contiguous tensor (NULL for NULL).
template <typename T> static inline T *dev_ptr(const tensor *t) {
    return t ? reinterpret_cast<T *>(tensor_data(t)) : nullptr;
}

static inline unsigned blocks_for(int64_t n, int threads) {
    return (unsigned)((n + threads - 1) / threads);
}
