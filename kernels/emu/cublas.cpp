// cuBLASLt answered on the host: OpenBLAS's sgemm under cuBLASLt's column-major
// descriptors. 16-bit operands are widened to float first (exact), products accumulate
// in float as with CUBLAS_COMPUTE_32F, beta C and the bias are added in float, and a
// 16-bit D is rounded to nearest even once at the end.
//
// The checks are the library's documented ones (descriptor attribute sizes, shapes
// that agree, in-place D only over C's own layout, type pairs, a bias pointer for the
// bias epilogue), plus the alignment contract between the heuristic and the matmul,
// which is what a caller most easily gets wrong: an algorithm chosen for 256-byte
// aligned buffers may not be run on a view that starts 2 bytes in. What else a caller
// must survive is modelled too: split-K algorithms whose reduction scheme rounds the
// partial sums to D's type (unless the preference's mask excludes them), a bias
// epilogue that needs a 16-byte aligned bias, and (emu_cublaslt_set_faults) a heuristic
// with no algorithm or a matmul that refuses the algorithm it was given.
#include <cblas.h>
#include <algorithm>
#include <atomic>
#include <vector>

#include "kernels/emu/cuda_emu.h"

struct cublasLtContext {};

struct cublasLtMatmulDescOpaque_t {
    int32_t transa = CUBLAS_OP_N, transb = CUBLAS_OP_N;
    uint32_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    const void *bias = nullptr;
    int64_t bias_batch_stride = 0;
};

struct cublasLtMatrixLayoutOpaque_t {
    cudaDataType type;
    uint64_t rows, cols;
    int64_t ld;
    int32_t batch = 1;
    int64_t batch_stride = 0;  // elements
};

struct cublasLtMatmulPreferenceOpaque_t {
    uint64_t max_workspace = 0;
    uint32_t alignment[4] = {256, 256, 256, 256};  // A, B, C, D
    uint32_t reduction_schemes = CUBLASLT_REDUCTION_SCHEME_MASK;
};

namespace {

// What an emulated algorithm relies on and how it reduces, kept in
// cublasLtMatmulAlgo_t's opaque words: its position in the heuristic's list, and its
// reduction scheme (NONE: no split of K).
enum { ALGO_MAGIC, ALGO_ALIGN_A, ALGO_ALIGN_B, ALGO_ALIGN_C, ALGO_ALIGN_D, ALGO_ALIGN_BIAS, ALGO_RANK,
       ALGO_REDUCTION };
const uint64_t algo_magic = 0x656d752d6c74616cull;
const uint64_t bias_alignment = 16;  // the bias epilogue's

// emu_cublaslt_set_faults.
std::atomic<bool> fault_no_algorithm{false};
std::atomic<int> fault_refused{0};

bool known_type(cudaDataType t) { return t == CUDA_R_32F || t == CUDA_R_16BF || t == CUDA_R_16F; }
size_t type_size(cudaDataType t) { return t == CUDA_R_32F ? 4 : 2; }

// Copies an attribute of type T out of (buf, size), as the library checks it.
template <typename T> bool read_attribute(T *out, const void *buf, size_t size) {
    if (!buf || size != sizeof(T)) return false;
    memcpy(out, buf, sizeof(T));
    return true;
}

// The largest power of two up to 256 that divides every batch's start address.
uint64_t alignment_of(const void *p, int64_t batch_stride_bytes, int32_t batch) {
    uint64_t bits = (uint64_t)(uintptr_t)p | (batch > 1 ? (uint64_t)batch_stride_bytes : 0) | 256;
    return bits & (~bits + 1);
}

// The library's checks on a problem before it runs or picks anything. A is m x k and
// B is k x n after their ops, C and D are m x n, and every batch count agrees.
cublasStatus_t check_problem(const cublasLtMatmulDescOpaque_t *desc,
                             const cublasLtMatrixLayoutOpaque_t *A,
                             const cublasLtMatrixLayoutOpaque_t *B,
                             const cublasLtMatrixLayoutOpaque_t *C,
                             const cublasLtMatrixLayoutOpaque_t *D) {
    if (!desc || !A || !B || !C || !D) return CUBLAS_STATUS_INVALID_VALUE;
    uint64_t m = D->rows, n = D->cols;
    uint64_t a_m = desc->transa == CUBLAS_OP_N ? A->rows : A->cols;
    uint64_t k = desc->transa == CUBLAS_OP_N ? A->cols : A->rows;
    uint64_t b_k = desc->transb == CUBLAS_OP_N ? B->rows : B->cols;
    uint64_t b_n = desc->transb == CUBLAS_OP_N ? B->cols : B->rows;
    if (a_m != m || b_k != k || b_n != n || C->rows != m || C->cols != n ||
        A->batch != D->batch || B->batch != D->batch || C->batch != D->batch)
        return CUBLAS_STATUS_INVALID_VALUE;
    if (desc->epilogue == CUBLASLT_EPILOGUE_BIAS && !desc->bias) return CUBLAS_STATUS_INVALID_VALUE;
    if (A->type != B->type || C->type != D->type || (D->type != A->type && D->type != CUDA_R_32F))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    return CUBLAS_STATUS_SUCCESS;
}

float load(const char *p, cudaDataType t, size_t i) {
    switch (t) {
    case CUDA_R_16BF: return bf16_to_f32(reinterpret_cast<const uint16_t *>(p)[i]);
    case CUDA_R_16F: return f16_to_f32(reinterpret_cast<const uint16_t *>(p)[i]);
    default: return reinterpret_cast<const float *>(p)[i];
    }
}

void store(char *p, cudaDataType t, size_t i, float v) {
    switch (t) {
    case CUDA_R_16BF: reinterpret_cast<uint16_t *>(p)[i] = f32_to_bf16(v); break;
    case CUDA_R_16F: reinterpret_cast<uint16_t *>(p)[i] = f32_to_f16(v); break;
    default: reinterpret_cast<float *>(p)[i] = v; break;
    }
}

// v rounded to type t and back.
float rounded(cudaDataType t, float v) {
    switch (t) {
    case CUDA_R_16BF: return bf16_to_f32(f32_to_bf16(v));
    case CUDA_R_16F: return f16_to_f32(f32_to_f16(v));
    default: return v;
    }
}

// One batch's stored matrix as a packed column-major float copy (ld = rows).
void to_float(std::vector<float> &out, const char *p, const cublasLtMatrixLayoutOpaque_t *l) {
    out.resize(l->rows * l->cols);
    for (uint64_t c = 0; c < l->cols; c++)
        for (uint64_t r = 0; r < l->rows; r++)
            out[c * l->rows + r] = load(p, l->type, c * l->ld + r);
}

}  // namespace

extern "C" void emu_cublaslt_set_faults(bool no_algorithm, int refused) {
    fault_no_algorithm = no_algorithm;
    fault_refused = refused;
}

const char *cublasLtGetStatusName(cublasStatus_t status) {
    switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}

cublasStatus_t cublasLtCreate(cublasLtHandle_t *handle) {
    if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
    *handle = new cublasLtContext;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *desc, cublasComputeType_t compute,
                                        cudaDataType scale) {
    if (!desc) return CUBLAS_STATUS_INVALID_VALUE;
    if (compute != CUBLAS_COMPUTE_32F || scale != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    *desc = new cublasLtMatmulDescOpaque_t;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc) {
    delete desc;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc,
                                              cublasLtMatmulDescAttributes_t attr,
                                              const void *buf, size_t size) {
    if (!desc) return CUBLAS_STATUS_INVALID_VALUE;
    bool ok = false;
    switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
        ok = read_attribute(&desc->transa, buf, size) &&
             (desc->transa == CUBLAS_OP_N || desc->transa == CUBLAS_OP_T);
        break;
    case CUBLASLT_MATMUL_DESC_TRANSB:
        ok = read_attribute(&desc->transb, buf, size) &&
             (desc->transb == CUBLAS_OP_N || desc->transb == CUBLAS_OP_T);
        break;
    case CUBLASLT_MATMUL_DESC_EPILOGUE:
        ok = read_attribute(&desc->epilogue, buf, size) &&
             (desc->epilogue == CUBLASLT_EPILOGUE_DEFAULT || desc->epilogue == CUBLASLT_EPILOGUE_BIAS);
        break;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: ok = read_attribute(&desc->bias, buf, size); break;
    case CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE:
        ok = read_attribute(&desc->bias_batch_stride, buf, size);
        break;
    }
    return ok ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *layout, cudaDataType type,
                                          uint64_t rows, uint64_t cols, int64_t ld) {
    if (!layout || ld < (int64_t)(rows > 1 ? rows : 1)) return CUBLAS_STATUS_INVALID_VALUE;
    if (!known_type(type)) return CUBLAS_STATUS_NOT_SUPPORTED;
    *layout = new cublasLtMatrixLayoutOpaque_t{type, rows, cols, ld};
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout) {
    delete layout;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t layout,
                                                cublasLtMatrixLayoutAttribute_t attr,
                                                const void *buf, size_t size) {
    if (!layout) return CUBLAS_STATUS_INVALID_VALUE;
    bool ok = false;
    switch (attr) {
    case CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT:
        ok = read_attribute(&layout->batch, buf, size) && layout->batch >= 1;
        break;
    case CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET:
        ok = read_attribute(&layout->batch_stride, buf, size) && layout->batch_stride >= 0;
        break;
    }
    return ok ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *pref) {
    if (!pref) return CUBLAS_STATUS_INVALID_VALUE;
    *pref = new cublasLtMatmulPreferenceOpaque_t;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
    delete pref;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr,
                                                    const void *buf, size_t size) {
    if (!pref) return CUBLAS_STATUS_INVALID_VALUE;
    switch (attr) {
    case CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK:
        return read_attribute(&pref->reduction_schemes, buf, size) ? CUBLAS_STATUS_SUCCESS
                                                                   : CUBLAS_STATUS_INVALID_VALUE;
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES:
        return read_attribute(&pref->max_workspace, buf, size) ? CUBLAS_STATUS_SUCCESS
                                                               : CUBLAS_STATUS_INVALID_VALUE;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES:
        return read_attribute(&pref->alignment[attr - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES],
                              buf, size)
                   ? CUBLAS_STATUS_SUCCESS
                   : CUBLAS_STATUS_INVALID_VALUE;
    }
    return CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                                              cublasLtMatrixLayout_t Adesc,
                                              cublasLtMatrixLayout_t Bdesc,
                                              cublasLtMatrixLayout_t Cdesc,
                                              cublasLtMatrixLayout_t Ddesc,
                                              cublasLtMatmulPreference_t pref, int requested,
                                              cublasLtMatmulHeuristicResult_t results[],
                                              int *returned) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!pref || requested <= 0 || !results || !returned) return CUBLAS_STATUS_INVALID_VALUE;
    cublasStatus_t st = check_problem(desc, Adesc, Bdesc, Cdesc, Ddesc);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    *returned = 0;
    if (fault_no_algorithm) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (desc->epilogue == CUBLASLT_EPILOGUE_BIAS && alignment_of(desc->bias, 0, 1) < bias_alignment)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    uint64_t k = desc->transa == CUBLAS_OP_N ? Adesc->cols : Adesc->rows;
    const uint32_t schemes[4] = {CUBLASLT_REDUCTION_SCHEME_INPLACE, CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE,
                                 CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE, CUBLASLT_REDUCTION_SCHEME_NONE};
    for (uint32_t scheme : schemes) {
        bool split = scheme != CUBLASLT_REDUCTION_SCHEME_NONE;
        if (*returned == requested || (split && (k < 2 || !(pref->reduction_schemes & scheme)))) continue;
        cublasLtMatmulHeuristicResult_t r = {};
        r.algo.data[ALGO_MAGIC] = algo_magic;
        for (int i = 0; i < 4; i++) r.algo.data[ALGO_ALIGN_A + i] = pref->alignment[i];
        r.algo.data[ALGO_ALIGN_BIAS] = desc->bias ? alignment_of(desc->bias, 0, 1) : 1;
        r.algo.data[ALGO_RANK] = (uint64_t)*returned;
        r.algo.data[ALGO_REDUCTION] = scheme;
        r.state = CUBLAS_STATUS_SUCCESS;
        r.wavesCount = 1.0f;
        results[(*returned)++] = r;
    }
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                              const void *alpha, const void *A, cublasLtMatrixLayout_t Adesc,
                              const void *B, cublasLtMatrixLayout_t Bdesc, const void *beta,
                              const void *C, cublasLtMatrixLayout_t Cdesc, void *D,
                              cublasLtMatrixLayout_t Ddesc, const cublasLtMatmulAlgo_t *algo,
                              void *workspace, size_t workspace_size, cudaStream_t stream) {
    (void)workspace, (void)workspace_size, (void)stream;  // the host needs neither; runs at once
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!alpha || !beta || !algo || algo->data[ALGO_MAGIC] != algo_magic)
        return CUBLAS_STATUS_INVALID_VALUE;
    cublasStatus_t st = check_problem(desc, Adesc, Bdesc, Cdesc, Ddesc);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    if (algo->data[ALGO_RANK] < (uint64_t)fault_refused.load()) return CUBLAS_STATUS_NOT_SUPPORTED;
    // In place only over the same layout (the library's rule for C == D).
    if (C == D && (Cdesc->ld != Ddesc->ld || Cdesc->batch_stride != Ddesc->batch_stride))
        return CUBLAS_STATUS_INVALID_VALUE;
    const cublasLtMatrixLayoutOpaque_t *layouts[4] = {Adesc, Bdesc, Cdesc, Ddesc};
    const void *buffers[4] = {A, B, C, D};
    for (int i = 0; i < 4; i++)
        if (alignment_of(buffers[i], layouts[i]->batch_stride * (int64_t)type_size(layouts[i]->type),
                         layouts[i]->batch) < algo->data[ALGO_ALIGN_A + i])
            return CUBLAS_STATUS_NOT_SUPPORTED;
    bool with_bias = desc->epilogue == CUBLASLT_EPILOGUE_BIAS;
    if (with_bias &&
        alignment_of(desc->bias, desc->bias_batch_stride * (int64_t)type_size(Ddesc->type),
                     Ddesc->batch) < std::max(algo->data[ALGO_ALIGN_BIAS], bias_alignment))
        return CUBLAS_STATUS_NOT_SUPPORTED;

    int m = (int)Ddesc->rows, n = (int)Ddesc->cols;
    int k = (int)(desc->transa == CUBLAS_OP_N ? Adesc->cols : Adesc->rows);
    if (!m || !n) return CUBLAS_STATUS_SUCCESS;
    float a = *static_cast<const float *>(alpha), b = *static_cast<const float *>(beta);
    // A split-K algorithm computes the products of K's two halves apart and adds them by
    // its reduction scheme: in place in D or through D's type rounds each partial sum
    // (and their sum) to D's type first.
    uint64_t scheme = algo->data[ALGO_REDUCTION];
    int splits = scheme == CUBLASLT_REDUCTION_SCHEME_NONE ? 1 : 2;
    bool round_partials = scheme == CUBLASLT_REDUCTION_SCHEME_INPLACE || scheme == CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE;
    std::vector<float> af, bf, partial((size_t)m * n), product((size_t)m * n);
    for (int batch = 0; batch < Ddesc->batch; batch++) {
        auto at = [batch](const void *p, const cublasLtMatrixLayoutOpaque_t *l) {
            return static_cast<const char *>(p) + batch * l->batch_stride * (int64_t)type_size(l->type);
        };
        to_float(af, at(A, Adesc), Adesc);
        to_float(bf, at(B, Bdesc), Bdesc);
        int lda = (int)std::max<uint64_t>(Adesc->rows, 1), ldb = (int)std::max<uint64_t>(Bdesc->rows, 1);
        for (int split = 0; split < splits; split++) {
            int k0 = split * (k / 2), k1 = splits == 1 || split == 1 ? k : k / 2;
            // op(A)'s columns k0..k1 and op(B)'s rows k0..k1 in the packed column-major copies.
            const float *as = af.data() + (desc->transa == CUBLAS_OP_N ? (size_t)k0 * lda : (size_t)k0);
            const float *bs = bf.data() + (desc->transb == CUBLAS_OP_N ? (size_t)k0 : (size_t)k0 * ldb);
            cblas_sgemm(CblasColMajor, desc->transa == CUBLAS_OP_N ? CblasNoTrans : CblasTrans,
                        desc->transb == CUBLAS_OP_N ? CblasNoTrans : CblasTrans, m, n, k1 - k0, a, as, lda, bs,
                        ldb, 0.0f, (split ? partial : product).data(), m);
            if (round_partials)
                for (size_t i = 0; i < product.size(); i++) {
                    if (split) product[i] += rounded(Ddesc->type, partial[i]);
                    product[i] = rounded(Ddesc->type, product[i]);
                }
            else if (split)
                for (size_t i = 0; i < product.size(); i++) product[i] += partial[i];
        }
        const char *Cb = at(C, Cdesc), *bias = nullptr;
        if (with_bias)
            bias = static_cast<const char *>(desc->bias) +
                   batch * desc->bias_batch_stride * (int64_t)type_size(Ddesc->type);
        char *Db = const_cast<char *>(at(D, Ddesc));
        for (int col = 0; col < n; col++)
            for (int row = 0; row < m; row++) {
                float v = product[(size_t)col * m + row];
                if (b != 0.0f) v += b * load(Cb, Cdesc->type, (size_t)col * Cdesc->ld + row);
                if (bias) v += load(bias, Ddesc->type, row);
                store(Db, Ddesc->type, (size_t)col * Ddesc->ld + row, v);
            }
    }
    return CUBLAS_STATUS_SUCCESS;
}
