// HOST_DEVICE marks an inline function that both the CPU code and CUDA kernels call,
// so the two backends share one definition of a formula instead of two copies.
#pragma once
#if defined(__CUDACC__)
#define HOST_DEVICE __host__ __device__ static inline
#else
#define HOST_DEVICE static inline
#endif
