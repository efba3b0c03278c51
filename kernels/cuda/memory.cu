// Device memory and the cuBLAS handle. Allocations go straight to cudaMalloc; a
// caching allocator is a later step when profiles ask for it.
#include "kernels/cuda/kernels.cuh"

void *CUDA_FN(alloc)(size_t nbytes) {
    void *p = nullptr;
    CUDA_CHECK(cudaMalloc(&p, nbytes ? nbytes : 1));
    return p;
}

void CUDA_FN(free)(void *p) {
    if (p) CUDA_CHECK(cudaFree(p));
}

void CUDA_FN(upload)(void *dst, const void *src, size_t nbytes) {
    CUDA_CHECK(cudaMemcpy(dst, src, nbytes, cudaMemcpyHostToDevice));
}

void CUDA_FN(download)(void *dst, const void *src, size_t nbytes) {
    CUDA_CHECK(cudaMemcpy(dst, src, nbytes, cudaMemcpyDeviceToHost));
}

cublasHandle_t CUDA_FN(blas_handle)(void) {
    static cublasHandle_t handle = nullptr;
    if (!handle) CUBLAS_CHECK(cublasCreate(&handle));
    return handle;
}

#ifndef SDFT_EMU
extern "C" int cuda_device_count(void) {
    int n = 0;
    // No driver or no GPU reads as zero devices: the backend is then unavailable.
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}
#endif
