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
//
// What cuBLASLt may refuse: the heuristic can answer NOT_SUPPORTED (no algorithm for the
// problem) and an algorithm it chose can still be refused by the matmul. So the heuristic
// is asked for several algorithms, tried best first until one runs (remembered for the
// problem); when none does, a plain kernel of ours computes the product, with a warning
// once per problem. Split-K algorithms that add the partial sums in the output type (in
// place in D, or through workspace in D's type) would round them to bf16 before the
// final sum: the preference excludes them, so a product is rounded once. A bias pointer
// less than 16-byte aligned (a view into a larger tensor) is copied to an aligned buffer
// first, as the bias epilogue needs 16-byte alignment.
#include <array>
#include <map>
#include <mutex>

extern "C" {  // core/log.h has no C++ guards
#include "core/log.h"
}

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

// C[b] = alpha op(A[b]) op(B[b]) + beta C[b] + bias, row-major as the backend's gemm
// takes them, one thread per element of C, f32 products summed in k order: the path for a
// problem that no cuBLASLt algorithm runs. Slow, but right.
template <typename T>
__global__ void plain_gemm_kernel(T *c, const T *a, const T *b, const T *bias /*[N] or NULL*/,
                                  int64_t batch, int64_t M, int64_t N, int64_t K, bool trans_a,
                                  bool trans_b, float alpha, float beta, int64_t batch_stride_a,
                                  int64_t batch_stride_b, int64_t batch_stride_c) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= batch * M * N) return;
    int64_t bt = i / (M * N), m = i % (M * N) / N, n = i % N;
    const T *ab = a + bt * batch_stride_a, *bb = b + bt * batch_stride_b;
    float sum = 0.0f;
    for (int64_t k = 0; k < K; k++)
        sum += to_float(ab[trans_a ? k * M + m : m * K + k]) * to_float(bb[trans_b ? n * K + k : k * N + n]);
    T *dst = c + bt * batch_stride_c + m * N + n;
    float v = alpha * sum + (bias ? to_float(bias[n]) : 0.0f);
    if (beta != 0.0f) v += beta * to_float(*dst);
    *dst = from_float<T>(v);
}

// cuBLAS's recommendation for Hopper; smaller GPUs use less of it.
const size_t workspace_bytes = 32u << 20;
// Algorithms asked of the heuristic per problem: the best, and others to fall back on.
const int max_algorithms = 8;
// The bias epilogue's alignment.
const uint32_t bias_alignment = 16;

struct matmul_plan {
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, c;  // cuBLASLt's A, B, C (= D), column-major
    cublasLtMatmulAlgo_t algos[max_algorithms];  // the heuristic's answers, best first
    int n_algos = 0;
    int algo = 0;  // the first of them that ran
    bool plain = false;  // no algorithm runs this problem: plain_gemm_kernel does
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

// Why cuBLASLt did not run a problem, for the warning.
void warn_plain(const char *why, cublasStatus_t st, dtype dt, int64_t batch, int64_t M, int64_t N,
                int64_t K) {
    log_warn("gemm: %s (%s) for %lld x [%lld x %lld] x [%lld x %lld] %s; using the plain kernel, "
             "which is much slower", why, cublasLtGetStatusName(st), (long long)batch, (long long)M,
             (long long)K, (long long)K, (long long)N, dtype_name(dt));
}

// The heuristic's algorithms for plan p, asked once: fp32 accumulation in every split.
void choose_algorithms(matmul_plan &p, cublasLtHandle_t handle, const uint32_t align[4], dtype dt,
                       int64_t batch, int64_t M, int64_t N, int64_t K) {
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
    // Split-K partial sums only in the compute type (f32): in place in D or in D's type
    // they would be rounded to bf16 before they are added.
    uint32_t reductions = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
                                                      &reductions, sizeof reductions));
    cublasLtMatmulHeuristicResult_t results[max_algorithms];
    int n_results = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(handle, p.desc, p.a, p.b, p.c, p.c, pref, max_algorithms,
                                                       results, &n_results);
    CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    if (st != CUBLAS_STATUS_SUCCESS && st != CUBLAS_STATUS_NOT_SUPPORTED) CUBLAS_CHECK(st);
    for (int i = 0; st == CUBLAS_STATUS_SUCCESS && i < n_results; i++)
        if (results[i].state == CUBLAS_STATUS_SUCCESS) p.algos[p.n_algos++] = results[i].algo;
    if (p.n_algos == 0) {
        warn_plain("cuBLASLt's heuristic has no algorithm", st == CUBLAS_STATUS_SUCCESS ? CUBLAS_STATUS_NOT_SUPPORTED : st,
                   dt, batch, M, N, K);
        p.plain = true;
    }
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
    void *bias_copy = nullptr;  // freed after the launch: later work on the stream reuses it
    if (bias && alignment_of(bias_data, 0, 1) < bias_alignment) {
        bias_copy = CUDA_FN(alloc)((size_t)(N * elem));
        CUDA_CHECK(cudaMemcpyAsync(bias_copy, bias_data, (size_t)(N * elem), cudaMemcpyDeviceToDevice, 0));
        bias_data = bias_copy;
    }
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
    std::unique_lock<std::mutex> hold(s.lock);
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
        choose_algorithms(p, s.handle, align, c->dtype, batch, M, N, K);
        found = s.plans.emplace(key, p).first;
    }
    matmul_plan &p = found->second;
    if (!p.plain) {
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_data,
                                                    sizeof bias_data));
        // beta = 0 with C = D: cuBLASLt does not read C then, as the CPU does not. An
        // algorithm the matmul refuses is dropped for this problem and the next one tried.
        cublasStatus_t st = CUBLAS_STATUS_NOT_SUPPORTED;
        for (; p.algo < p.n_algos; p.algo++) {
            st = cublasLtMatmul(s.handle, p.desc, &alpha, lt_a, p.a, lt_b, p.b, &beta, lt_c, p.c, lt_c, p.c,
                                &p.algos[p.algo], s.workspace, workspace_bytes, 0);
            if (st != CUBLAS_STATUS_NOT_SUPPORTED) break;
        }
        if (st == CUBLAS_STATUS_NOT_SUPPORTED) {
            warn_plain("cuBLASLt refused every algorithm of its heuristic", st, c->dtype, batch, M, N, K);
            p.plain = true;
        } else {
            CUBLAS_CHECK(st);
            check_launch(nullptr, "cublasLtMatmul", __FILE__, __LINE__, __func__);
        }
    }
    bool plain = p.plain;
    hold.unlock();
    if (plain) {
        DISPATCH_FLOAT(c->dtype, T, {
            auto kernel = plain_gemm_kernel<T>;
            LAUNCH(kernel, blocks_for(batch * M * N, 256), 256, 0, dev_ptr<T>(c), dev_ptr<const T>(a),
                   dev_ptr<const T>(b), static_cast<const T *>(bias_data), batch, M, N, K, trans_a, trans_b, alpha,
                   beta, batch_stride_a, batch_stride_b, batch_stride_c);
        });
    }
    if (bias_copy) CUDA_FN(free)(bias_copy);
}
