// Batched matrix product through OpenBLAS. cblas_sgemm is called from plain code,
// never inside an OpenMP region: Debian's OpenBLAS runs its own threads.
#include <cblas.h>

#include "core/check.h"
#include "kernels/cpu/cpu.h"

void cpu_gemm(tensor *c, const tensor *a, const tensor *b, const tensor *bias, int64_t batch,
              int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b, float alpha,
              float beta, int64_t batch_stride_a, int64_t batch_stride_b,
              int64_t batch_stride_c) {
    float *C = cpu_f32(c);                  // [batch, M, N]
    const float *A = cpu_f32(a);            // [batch, M, K] or [batch, K, M]
    const float *B = cpu_f32(b);            // [batch, K, N] or [batch, N, K]
    const float *bias_row = cpu_f32(bias);  // [N] or NULL
    CHECK(M <= INT32_MAX && N <= INT32_MAX && K <= INT32_MAX, "gemm: dims overflow int");
    int lda = (int)(trans_a ? M : K), ldb = (int)(trans_b ? K : N);
    for (int64_t i = 0; i < batch; i++) {
        float *Ci = C + i * batch_stride_c;
        float beta_i = beta;
        if (bias_row) {
            // C = beta C + bias first, then the product accumulates onto it. beta 0
            // must not read C, which may be uninitialised (NaN * 0 is NaN).
#pragma omp parallel for schedule(static)
            for (int64_t m = 0; m < M; m++)
                for (int64_t n = 0; n < N; n++)
                    Ci[m * N + n] = bias_row[n] + (beta == 0.0f ? 0.0f : beta * Ci[m * N + n]);
            beta_i = 1.0f;
        }
        cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                    trans_b ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K, alpha,
                    A + i * batch_stride_a, lda, B + i * batch_stride_b, ldb, beta_i, Ci, (int)N);
    }
}
