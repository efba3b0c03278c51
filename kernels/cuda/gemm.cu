// Batched matrix product through cuBLASLt (cublasLtMatmul), fp32 or bf16 storage,
// always fp32 accumulation (CUBLAS_COMPUTE_32F: no TF32, so the f32 path matches the
// CPU to rounding; bf16 runs on the tensor cores), the bias added by cuBLASLt's BIAS
// epilogue: C = alpha op(A) op(B) + beta C + bias in one pass over C, rounded once.
//
// Descriptors and the heuristic's algorithm are made once per problem (shapes,
// strides, transposes, type, bias or not, and buffer alignments) and kept: a UNet
// step repeats a few dozen products hundreds of times, and the heuristic costs more
// than a small product. The alignments are part of the problem because an algorithm
// picked for 256-byte aligned buffers may use loads that a view into the middle of a
// tensor cannot serve; each buffer's is the largest power of two (up to 256) dividing
// the start of every batch, which is what the heuristic is told.
#include <array>
#include <map>
#include <mutex>

#include "kernels/cuda/kernels.cuh"
#ifndef SDFT_EMU
#include <cublasLt.h>
#endif

namespace {  // internal linkage: the emulated build links every family into one program

// C[b, m, n] = beta * C[b, m, n] + bias[n] (either part optional): the whole product
// when K = 0, which cuBLASLt's kernels are not promised to handle. C is not read when
// beta is 0 (it may be uninitialised NaN).
template <typename T>
__global__ void scale_add_bias_kernel(T *c /*[batch, M, N] at batch_stride_c*/,
                                      const T *bias /*[N] or NULL*/, int64_t batch, int64_t M,
                                      int64_t N, float beta, int64_t batch_stride_c) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= batch * M * N) return;
    int64_t b = i / (M * N), mn = i % (M * N);
    T *dst = c + b * batch_stride_c + mn;
    float v = bias ? to_float(bias[mn % N]) : 0.0f;
    if (beta != 0.0f) v += beta * to_float(*dst);
    *dst = from_float<T>(v);
}

// cuBLAS's recommendation for Hopper; smaller GPUs use less of it.
const size_t workspace_bytes = 32u << 20;

struct matmul_plan {
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, c;  // cuBLASLt's A, B, C (= D), column-major
    cublasLtMatmulAlgo_t algo;
};

struct gemm_state {
    std::mutex lock;
    cublasLtHandle_t handle = nullptr;
    void *workspace = nullptr;
    std::map<std::array<int64_t, 15>, matmul_plan> plans;
};

gemm_state &state() {
    static gemm_state *s = new gemm_state;  // never destroyed: GEMMs may run at exit
    return *s;
}

uint32_t alignment_of(const void *p, int64_t batch_stride_bytes, int64_t batch) {
    uint64_t bits = (uint64_t)(uintptr_t)p | (batch > 1 ? (uint64_t)batch_stride_bytes : 0) | 256;
    return (uint32_t)(bits & (~bits + 1));
}

cublasLtMatrixLayout_t make_layout(cudaDataType type, int64_t rows, int64_t cols, int64_t batch,
                                   int64_t batch_stride) {
    cublasLtMatrixLayout_t l;
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, type, (uint64_t)rows, (uint64_t)cols,
                                            rows > 1 ? rows : 1));
    int32_t count = (int32_t)batch;
    CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count,
                                                  sizeof count));
    CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                  &batch_stride, sizeof batch_stride));
    return l;
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
    if (K == 0) {
        DISPATCH_FLOAT(c->dtype, T, {
            auto kernel = scale_add_bias_kernel<T>;
            LAUNCH(kernel, blocks_for(batch * M * N, 256), 256, 0, dev_ptr<T>(c),
                   dev_ptr<const T>(bias), batch, M, N, beta, batch_stride_c);
        });
        return;
    }
    cudaDataType type = c->dtype == DT_BF16 ? CUDA_R_16BF : CUDA_R_32F;
    int64_t elem = c->dtype == DT_BF16 ? 2 : 4;
    // cuBLASLt is column-major: a row-major X read column-major is X^T. So row-major
    // C = op(A) op(B) is computed as column-major C^T = op(B)^T op(A)^T: our b is its
    // A, our a its B, and the bias runs along its rows (our N), as the epilogue wants.
    const void *lt_a = tensor_data(b), *lt_b = tensor_data(a), *bias_data = bias ? tensor_data(bias) : nullptr;
    void *lt_c = tensor_data(c);
    // cuBLASLt's A, B, C and D (one buffer: C), as the heuristic's preference lists them.
    const uint32_t align[4] = {alignment_of(lt_a, batch_stride_b * elem, batch),
                               alignment_of(lt_b, batch_stride_a * elem, batch),
                               alignment_of(lt_c, batch_stride_c * elem, batch),
                               alignment_of(lt_c, batch_stride_c * elem, batch)};
    std::array<int64_t, 15> key = {
        c->dtype, trans_a, trans_b, batch, M, N, K, batch_stride_a, batch_stride_b,
        batch_stride_c, bias != nullptr, align[0], align[1], align[2],
        bias ? alignment_of(bias_data, 0, 1) : 0};
    gemm_state &s = state();
    std::lock_guard<std::mutex> hold(s.lock);
    if (!s.handle) {
        CUBLAS_CHECK(cublasLtCreate(&s.handle));
        s.workspace = CUDA_FN(alloc)(workspace_bytes);
    }
    auto found = s.plans.find(key);
    if (found == s.plans.end()) {
        matmul_plan p;
        CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
        int32_t op_a = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
        uint32_t epilogue = bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
        int64_t bias_batch_stride = 0;  // one bias for every batch
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof op_a));
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof op_b));
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                                    sizeof epilogue));
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE,
                                                    &bias_batch_stride, sizeof bias_batch_stride));
        // The heuristic reads the bias pointer's alignment from the descriptor.
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                    &bias_data, sizeof bias_data));
        p.a = trans_b ? make_layout(type, K, N, batch, batch_stride_b) : make_layout(type, N, K, batch, batch_stride_b);
        p.b = trans_a ? make_layout(type, M, K, batch, batch_stride_a) : make_layout(type, K, M, batch, batch_stride_a);
        p.c = make_layout(type, N, M, batch, batch_stride_c);
        cublasLtMatmulPreference_t pref;
        CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
        uint64_t max_workspace = workspace_bytes;
        CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                          &max_workspace, sizeof max_workspace));
        const cublasLtMatmulPreferenceAttributes_t align_attr[4] = {
            CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
            CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
        for (int i = 0; i < 4; i++)
            CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, align_attr[i], &align[i], sizeof align[i]));
        cublasLtMatmulHeuristicResult_t result;
        int n_results = 0;
        CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(s.handle, p.desc, p.a, p.b, p.c, p.c, pref, 1,
                                                    &result, &n_results));
        CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
        CHECK(n_results == 1, "gemm: cuBLASLt has no algorithm for %lld x [%lld x %lld] x [%lld x %lld] %s",
              (long long)batch, (long long)M, (long long)K, (long long)K, (long long)N, dtype_name(c->dtype));
        p.algo = result.algo;
        found = s.plans.emplace(key, p).first;
    }
    const matmul_plan &p = found->second;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_data,
                                                sizeof bias_data));
    // beta = 0 with C = D: cuBLASLt does not read C then, as the CPU does not.
    CUBLAS_CHECK(cublasLtMatmul(s.handle, p.desc, &alpha, lt_a, p.a, lt_b, p.b, &beta, lt_c, p.c,
                                lt_c, p.c, &p.algo, s.workspace, workspace_bytes, 0));
}
