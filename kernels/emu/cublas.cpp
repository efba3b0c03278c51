// cuBLAS answered on the host: OpenBLAS's sgemm with cuBLAS's column-major argument
// rules. 16-bit operands are widened to float first (exact), products accumulate in
// float as with CUBLAS_COMPUTE_32F, and a 16-bit C is rounded to nearest even at the end.
#include <cblas.h>
#include <vector>

#include "kernels/emu/cuda_emu.h"

struct cublasContext {
    cudaStream_t stream = nullptr;
};

namespace {

bool is_op(cublasOperation_t op) { return op == CUBLAS_OP_N || op == CUBLAS_OP_T; }

// The checks cuBLAS makes before it computes anything.
bool valid_gemm(cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k,
                int lda, int ldb, int ldc) {
    int a_rows = transa == CUBLAS_OP_N ? m : k, b_rows = transb == CUBLAS_OP_N ? k : n;
    return is_op(transa) && is_op(transb) && m >= 0 && n >= 0 && k >= 0 &&
           lda >= (a_rows > 1 ? a_rows : 1) && ldb >= (b_rows > 1 ? b_rows : 1) &&
           ldc >= (m > 1 ? m : 1);
}

bool known_type(cudaDataType t) { return t == CUDA_R_32F || t == CUDA_R_16BF || t == CUDA_R_16F; }

float load(const void *p, cudaDataType t, size_t i) {
    switch (t) {
    case CUDA_R_16BF: return bf16_to_f32(static_cast<const uint16_t *>(p)[i]);
    case CUDA_R_16F: return f16_to_f32(static_cast<const uint16_t *>(p)[i]);
    default: return static_cast<const float *>(p)[i];
    }
}

void store(void *p, cudaDataType t, size_t i, float v) {
    switch (t) {
    case CUDA_R_16BF: static_cast<uint16_t *>(p)[i] = f32_to_bf16(v); break;
    case CUDA_R_16F: static_cast<uint16_t *>(p)[i] = f32_to_f16(v); break;
    default: static_cast<float *>(p)[i] = v; break;
    }
}

// The rows x cols column-major matrix at p (leading dimension ld) as float, in the same
// layout; only the elements a GEMM reads are touched. f32 needs no copy.
const float *as_float(std::vector<float> &buf, const void *p, cudaDataType t, int rows, int cols,
                      int ld) {
    if (t == CUDA_R_32F) return static_cast<const float *>(p);
    buf.assign(cols ? (size_t)ld * (cols - 1) + rows : 0, 0.0f);
    for (int c = 0; c < cols; c++)
        for (int r = 0; r < rows; r++) buf[(size_t)c * ld + r] = load(p, t, (size_t)c * ld + r);
    return buf.data();
}

// One column-major product C = alpha op(A) op(B) + beta C in float; C is m x n. BLAS
// has cuBLAS's rule that C is not read when beta is 0 (it may hold NaN).
void gemm_f32(cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k,
              float alpha, const float *A, int lda, const float *B, int ldb, float beta,
              float *C, int ldc) {
    cblas_sgemm(CblasColMajor, transa == CUBLAS_OP_N ? CblasNoTrans : CblasTrans,
                transb == CUBLAS_OP_N ? CblasNoTrans : CblasTrans, m, n, k, alpha, A, lda, B,
                ldb, beta, C, ldc);
}

}  // namespace

cublasStatus_t cublasCreate(cublasHandle_t *handle) {
    if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
    *handle = new cublasContext;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->stream = stream;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa,
                           cublasOperation_t transb, int m, int n, int k, const float *alpha,
                           const float *A, int lda, const float *B, int ldb, const float *beta,
                           float *C, int ldc) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!valid_gemm(transa, transb, m, n, k, lda, ldb, ldc) || !alpha || !beta)
        return CUBLAS_STATUS_INVALID_VALUE;
    if (m && n) gemm_f32(transa, transb, m, n, k, *alpha, A, lda, B, ldb, *beta, C, ldc);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGemmStridedBatchedEx(
    cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
    int k, const void *alpha, const void *A, cudaDataType Atype, int lda, long long strideA,
    const void *B, cudaDataType Btype, int ldb, long long strideB, const void *beta, void *C,
    cudaDataType Ctype, int ldc, long long strideC, int batchCount,
    cublasComputeType_t computeType, cublasGemmAlgo_t algo) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!valid_gemm(transa, transb, m, n, k, lda, ldb, ldc) || batchCount < 0 || !alpha || !beta)
        return CUBLAS_STATUS_INVALID_VALUE;
    // cuBLAS pairs A and B of one type with C of that type or f32.
    if (computeType != CUBLAS_COMPUTE_32F || algo != CUBLAS_GEMM_DEFAULT || !known_type(Atype) ||
        Atype != Btype || (Ctype != Atype && Ctype != CUDA_R_32F))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (!m || !n) return CUBLAS_STATUS_SUCCESS;
    float a = *static_cast<const float *>(alpha), b = *static_cast<const float *>(beta);
    int a_rows = transa == CUBLAS_OP_N ? m : k, a_cols = transa == CUBLAS_OP_N ? k : m;
    int b_rows = transb == CUBLAS_OP_N ? k : n, b_cols = transb == CUBLAS_OP_N ? n : k;
    size_t a_elem = Atype == CUDA_R_32F ? 4 : 2, c_elem = Ctype == CUDA_R_32F ? 4 : 2;
    std::vector<float> a_buf, b_buf, c_buf;
    for (int batch = 0; batch < batchCount; batch++) {
        const char *Ab = static_cast<const char *>(A) + batch * strideA * (long long)a_elem;
        const char *Bb = static_cast<const char *>(B) + batch * strideB * (long long)a_elem;
        char *Cb = static_cast<char *>(C) + batch * strideC * (long long)c_elem;
        const float *Af = as_float(a_buf, Ab, Atype, a_rows, a_cols, lda);
        const float *Bf = as_float(b_buf, Bb, Btype, b_rows, b_cols, ldb);
        if (Ctype == CUDA_R_32F) {
            gemm_f32(transa, transb, m, n, k, a, Af, lda, Bf, ldb, b, reinterpret_cast<float *>(Cb), ldc);
            continue;
        }
        // Read C only when beta needs it; write back only the m x n elements.
        if (b != 0.0f)
            as_float(c_buf, Cb, Ctype, m, n, ldc);
        else
            c_buf.assign((size_t)ldc * (n - 1) + m, 0.0f);
        gemm_f32(transa, transb, m, n, k, a, Af, lda, Bf, ldb, b, c_buf.data(), ldc);
        for (int c = 0; c < n; c++)
            for (int r = 0; r < m; r++)
                store(Cb, Ctype, (size_t)c * ldc + r, c_buf[(size_t)c * ldc + r]);
    }
    return CUBLAS_STATUS_SUCCESS;
}
