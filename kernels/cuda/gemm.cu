// Batched matrix product through cuBLAS (cublasGemmStridedBatchedEx), fp32 or bf16
// storage, always fp32 accumulation (CUBLAS_COMPUTE_32F: no TF32, so the f32 path
// matches the CPU to rounding; bf16 runs on the tensor cores).
//
// The bias is an epilogue done as a prologue: a small kernel first writes
// C = bias + beta * C (never reading C when beta is 0: it may be uninitialised
// NaN), then the product accumulates onto it with beta = 1. That is the CPU's order
// of operations exactly, costs one extra pass over C (written here, read back by the
// GEMM) and needs nothing beyond the plain GEMM call. cuBLASLt's BIAS epilogue would
// save that pass but has no emulated counterpart, so it could not be tested here.
#include "kernels/cuda/kernels.cuh"

namespace {  // internal linkage: the emulated build links every family into one program

// C[b, m, n] = bias[n] + beta * C[b, m, n] (beta 0: bias alone), for every batch b.
template <typename T>
__global__ void bias_prologue_kernel(T *c /*[batch, M, N] at batch_stride_c*/,
                                     const T *bias /*[N]*/, int64_t batch, int64_t M, int64_t N,
                                     float beta, int64_t batch_stride_c) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= batch * M * N) return;
    int64_t b = i / (M * N), mn = i % (M * N);
    T *dst = c + b * batch_stride_c + mn;
    float v = to_float(bias[mn % N]);
    if (beta != 0.0f) v += beta * to_float(*dst);
    *dst = from_float<T>(v);
}

}  // namespace

void CUDA_FN(gemm)(tensor *c, const tensor *a, const tensor *b, const tensor *bias, int64_t batch,
                   int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b, float alpha,
                   float beta, int64_t batch_stride_a, int64_t batch_stride_b,
                   int64_t batch_stride_c) {
    CHECK(M <= INT32_MAX && N <= INT32_MAX && K <= INT32_MAX && batch <= INT32_MAX,
          "gemm: dims overflow int");
    CHECK(c->dtype == DT_F32 || c->dtype == DT_BF16, "gemm: %s takes f32 or bf16, not %s",
          CUDA_BACKEND_NAME, dtype_name(c->dtype));
    if (batch == 0 || M == 0 || N == 0) return;
    if (bias) {
        DISPATCH_FLOAT(c->dtype, T, {
            auto kernel = bias_prologue_kernel<T>;
            LAUNCH(kernel, blocks_for(batch * M * N, 256), 256, 0, dev_ptr<T>(c),
                   dev_ptr<const T>(bias), batch, M, N, beta, batch_stride_c);
        });
        beta = 1.0f;
    }
    cudaDataType type = c->dtype == DT_BF16 ? CUDA_R_16BF : CUDA_R_32F;
    // cuBLAS is column-major: a row-major X read column-major is X^T. So row-major
    // C = op(A) op(B) is computed as column-major C^T = op(B)^T op(A)^T, B first.
    int64_t k_ld = K > 0 ? K : 1;  // cuBLAS wants leading dimensions >= 1, even for K = 0
    int lda = (int)(trans_a ? M : k_ld), ldb = (int)(trans_b ? k_ld : N);
    CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        CUDA_FN(blas_handle)(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
        trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, (int)N, (int)M, (int)K, &alpha, tensor_data(b), type,
        ldb, batch_stride_b, tensor_data(a), type, lda, batch_stride_a, &beta, tensor_data(c),
        type, (int)N, batch_stride_c, (int)batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}
