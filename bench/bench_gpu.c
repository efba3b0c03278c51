// bench_gpu: the CUDA backend's kernels timed at Stable Diffusion 1.5 shapes on the
// GPU, through the op API (tensors on DEV_CUDA), in bf16 and f32, beside cuBLAS for
// the GEMM-shaped ops and, when libcudnn is installed, cuDNN: its convolution, and its
// fused flash attention (SDPA) for the bf16 attention forward cases, built through the
// backend graph API (libcudnn is loaded at run time: USE_CUDNN=1 is not needed).
//
//   bench_gpu [--list] [--only SUBSTRING]... [--batch N] [--dtype bf16|f32]
//
// One line per case and dtype: our time per call and rate, then each reference's
// time, rate and ours as a percentage of it (above 100% is faster than the
// reference). Rates are nominal: 2 flops per multiply-add for convolutions, linears
// and attention (QK^T and PV; half of that when causal), a backward counted as twice
// its forward (attention's as 2.5 times); GB/s counts one read of every input and one
// write of every output in its storage type.
//
// Timings are of whole op calls, as a training step makes them: the output's
// allocation (from the backend's block cache, kernels/cuda/memory.cu, after the warm-up
// call) and the op's host-side work are included, so small ops read slower than their
// kernels alone. The references are timed on preallocated buffers.
//
// Built without nvcc it prints "no CUDA backend in this build"; with no GPU it prints
// a SKIP line; both exit 0.
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef SDFT_HAVE_CUDA
int main(void) {
    puts("bench_gpu: no CUDA backend in this build");
    return 0;
}
#else

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "kernels/backend.h"
#include "kernels/ops.h"
#include "kernels/tensor.h"

// cuDNN is optional and loaded at run time (dlopen), so this one binary runs with or
// without it and needs no link flag; function pointers take the types of cudnn.h's
// declarations.
#if __has_include(<cudnn.h>)
#include <cudnn.h>
#include <dlfcn.h>
#define BENCH_CUDNN 1
#define CUDNN_FUNCTIONS(X)                                                                       \
    X(cudnnCreate) X(cudnnDestroy) X(cudnnGetErrorString) X(cudnnGetVersion)                     \
    X(cudnnCreateTensorDescriptor) X(cudnnSetTensor4dDescriptor) X(cudnnDestroyTensorDescriptor) \
    X(cudnnCreateFilterDescriptor) X(cudnnSetFilter4dDescriptor)                                 \
    X(cudnnDestroyFilterDescriptor) X(cudnnCreateConvolutionDescriptor)                          \
    X(cudnnSetConvolution2dDescriptor) X(cudnnSetConvolutionMathType)                            \
    X(cudnnDestroyConvolutionDescriptor) X(cudnnFindConvolutionForwardAlgorithm)                 \
    X(cudnnGetConvolutionForwardWorkspaceSize) X(cudnnConvolutionForward)                        \
    X(cudnnBackendCreateDescriptor) X(cudnnBackendDestroyDescriptor)                             \
    X(cudnnBackendSetAttribute) X(cudnnBackendGetAttribute) X(cudnnBackendFinalize)              \
    X(cudnnBackendExecute)
static struct {
#define CUDNN_POINTER(name) __typeof__(&name) name;
    CUDNN_FUNCTIONS(CUDNN_POINTER)
    // Optional: why the last call failed, for the SDPA graph's report (NULL before cuDNN 9).
    __typeof__(&cudnnGetLastErrorString) cudnnGetLastErrorString;
} dnn;

// Whether libcudnn was found and has every function used here: where the loader looks,
// else in CUDNN_LIB_DIRS (the Makefile's CUDNN_DIR: the toolkit's or pip's cuDNN, whose
// folder is on no search path).
#ifndef CUDNN_LIB_DIRS
#define CUDNN_LIB_DIRS ""
#endif
static bool load_cudnn(void) {
    void *lib = dlopen("libcudnn.so.9", RTLD_NOW | RTLD_LOCAL);
    char dirs[] = CUDNN_LIB_DIRS;
    for (char *d = strtok(dirs, ":"); !lib && d; d = strtok(NULL, ":")) {
        char path[4096];
        snprintf(path, sizeof path, "%s/libcudnn.so.9", d);
        lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    }
    if (!lib) lib = dlopen("libcudnn.so", RTLD_NOW | RTLD_LOCAL);
    if (!lib) return false;
    bool ok = true;
#define CUDNN_LOOKUP(name) ok &= (*(void **)&dnn.name = dlsym(lib, #name)) != NULL;
    CUDNN_FUNCTIONS(CUDNN_LOOKUP)
    *(void **)&dnn.cudnnGetLastErrorString = dlsym(lib, "cudnnGetLastErrorString");
    return ok;
}
#endif

#define CUDA_OK(call)                                                                   \
    do {                                                                                \
        cudaError_t err_ = (call);                                                      \
        if (err_ != cudaSuccess) {                                                      \
            fprintf(stderr, "bench_gpu: %s: %s\n", #call, cudaGetErrorString(err_));    \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)
#define CUBLAS_OK(call)                                                                 \
    do {                                                                                \
        cublasStatus_t st_ = (call);                                                    \
        if (st_ != CUBLAS_STATUS_SUCCESS) {                                             \
            fprintf(stderr, "bench_gpu: %s: cuBLAS status %d\n", #call, (int)st_);      \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

typedef enum {
    K_CONV, K_ATTN, K_GROUP_NORM, K_LAYER_NORM, K_LINEAR, K_GEGLU, K_SOFTMAX, K_ADD, K_SILU,
    K_GELU, K_UPSAMPLE, K_CAST, K_MSE, K_EMBED, K_TIMESTEP, K_ADAMW, K_GLOBAL_NORM
} op_kind;

// One case; B is the batch (--batch). The meaning of d[] depends on the kind:
//   K_CONV        H, W, Cin, Cout, kernel, stride   (pad kernel/2, with bias)
//   K_ATTN        Nq, Nk, heads, head_dim, causal
//   K_GROUP_NORM  H, W, C, groups, silu
//   K_LAYER_NORM  rows, C
//   K_LINEAR      rows, in, out                     (with bias)
//   K_GEGLU       rows, F                           ([B, rows, 2F] -> [B, rows, F])
//   K_SOFTMAX     rows, cols
//   K_ADD ... K_MSE   H, W, C                        (images [B, H, W, C])
//   K_EMBED       tokens, vocab, dim
//   K_TIMESTEP    dim
//   K_ADAMW, K_GLOBAL_NORM   elements               (not batched)
typedef struct {
    const char *name;
    op_kind kind;
    bool backward;
    int64_t d[6];
} bench_case;

static const bench_case CASES[] = {
    {"conv3x3_320_64x64", K_CONV, false, {64, 64, 320, 320, 3, 1}},
    {"conv3x3_640_32x32", K_CONV, false, {32, 32, 640, 640, 3, 1}},
    {"conv3x3_1280_16x16", K_CONV, false, {16, 16, 1280, 1280, 3, 1}},
    {"conv3x3_1280_8x8", K_CONV, false, {8, 8, 1280, 1280, 3, 1}},
    {"conv3x3_s2_320_64x64", K_CONV, false, {64, 64, 320, 320, 3, 2}},
    {"conv1x1_640to320_64x64", K_CONV, false, {64, 64, 640, 320, 1, 1}},
    {"conv3x3_4to320_64x64", K_CONV, false, {64, 64, 4, 320, 3, 1}},
    {"conv3x3_320_64x64_fwdbwd", K_CONV, true, {64, 64, 320, 320, 3, 1}},
    {"conv3x3_1280_16x16_fwdbwd", K_CONV, true, {16, 16, 1280, 1280, 3, 1}},
    {"attn_self_4096_8x40", K_ATTN, false, {4096, 4096, 8, 40, 0}},
    {"attn_self_1024_8x80", K_ATTN, false, {1024, 1024, 8, 80, 0}},
    {"attn_self_256_8x160", K_ATTN, false, {256, 256, 8, 160, 0}},
    {"attn_cross_4096x77_8x40", K_ATTN, false, {4096, 77, 8, 40, 0}},
    {"attn_clip_causal_77_12x64", K_ATTN, false, {77, 77, 12, 64, 1}},
    {"attn_self_4096_8x40_fwdbwd", K_ATTN, true, {4096, 4096, 8, 40, 0}},
    {"group_norm_64x64x320", K_GROUP_NORM, false, {64, 64, 320, 32, 0}},
    {"group_norm_silu_64x64x320", K_GROUP_NORM, false, {64, 64, 320, 32, 1}},
    {"group_norm_silu_64x64x320_fwdbwd", K_GROUP_NORM, true, {64, 64, 320, 32, 1}},
    {"layer_norm_4096x320", K_LAYER_NORM, false, {4096, 320}},
    {"layer_norm_4096x320_fwdbwd", K_LAYER_NORM, true, {4096, 320}},
    {"linear_4096x320x320", K_LINEAR, false, {4096, 320, 320}},
    {"linear_geglu_in_4096x320x2560", K_LINEAR, false, {4096, 320, 2560}},
    {"linear_geglu_out_4096x1280x320", K_LINEAR, false, {4096, 1280, 320}},
    {"linear_geglu_in_4096x320x2560_fwdbwd", K_LINEAR, true, {4096, 320, 2560}},
    {"geglu_4096x1280", K_GEGLU, false, {4096, 1280}},
    {"geglu_4096x1280_fwdbwd", K_GEGLU, true, {4096, 1280}},
    {"softmax_32768x77", K_SOFTMAX, false, {8 * 4096, 77}},
    {"softmax_4096x4096", K_SOFTMAX, false, {4096, 4096}},
    {"add_64x64x320", K_ADD, false, {64, 64, 320}},
    {"silu_64x64x320", K_SILU, false, {64, 64, 320}},
    {"gelu_64x64x320", K_GELU, false, {64, 64, 320}},
    {"upsample2x_32x32x640", K_UPSAMPLE, false, {32, 32, 640}},
    {"cast_64x64x320", K_CAST, false, {64, 64, 320}},
    {"mse_loss_64x64x4", K_MSE, false, {64, 64, 4}},
    {"embedding_77_49408x768", K_EMBED, false, {77, 49408, 768}},
    {"timestep_embedding_320", K_TIMESTEP, false, {320}},
    {"adamw_100M", K_ADAMW, false, {100000000}},
    {"global_norm_100M", K_GLOBAL_NORM, false, {100000000}},
};
enum { N_CASES = sizeof CASES / sizeof CASES[0], MAX_TENSORS = 6, MAX_REFS = 2 };

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t g_seed = 1234;

// Normal draws on the GPU; the values only need to be ordinary floats.
static tensor *randn(dtype dt, int ndim, const int64_t *shape) {
    tensor *t = tensor_new(dt, DEV_CUDA, ndim, shape);
    backend_for(DEV_CUDA)->fill_normal(t, g_seed++, 0);
    return t;
}

// --- our side: the op calls -----------------------------------------------------------

typedef struct {
    const bench_case *c;
    dtype dt;
    int64_t B;
    tensor *t[MAX_TENSORS];  // op inputs, then state (adamw's m and v)
    int n_inputs;
    tensor *grad_out;  // backward cases, made after the first forward
} case_data;

static void setup(case_data *cd) {
    const int64_t *d = cd->c->d, B = cd->B;
    dtype dt = cd->dt;
    tensor **t = cd->t;
    switch (cd->c->kind) {
    case K_CONV:
        t[0] = randn(dt, SHAPE(B, d[0], d[1], d[2]));
        t[1] = randn(dt, SHAPE(d[3], d[4], d[4], d[2]));
        t[2] = randn(dt, SHAPE(d[3]));
        cd->n_inputs = 3;
        break;
    case K_ATTN:
        t[0] = randn(dt, SHAPE(B, d[0], d[2] * d[3]));
        t[1] = randn(dt, SHAPE(B, d[1], d[2] * d[3]));
        t[2] = randn(dt, SHAPE(B, d[1], d[2] * d[3]));
        cd->n_inputs = 3;
        break;
    case K_GROUP_NORM:
        t[0] = randn(dt, SHAPE(B, d[0], d[1], d[2]));
        t[1] = randn(dt, SHAPE(d[2]));
        t[2] = randn(dt, SHAPE(d[2]));
        cd->n_inputs = 3;
        break;
    case K_LAYER_NORM:
        t[0] = randn(dt, SHAPE(B, d[0], d[1]));
        t[1] = randn(dt, SHAPE(d[1]));
        t[2] = randn(dt, SHAPE(d[1]));
        cd->n_inputs = 3;
        break;
    case K_LINEAR:
        t[0] = randn(dt, SHAPE(B, d[0], d[1]));
        t[1] = randn(dt, SHAPE(d[2], d[1]));
        t[2] = randn(dt, SHAPE(d[2]));
        cd->n_inputs = 3;
        break;
    case K_GEGLU:
        t[0] = randn(dt, SHAPE(B, d[0], 2 * d[1]));
        cd->n_inputs = 1;
        break;
    case K_SOFTMAX:
        t[0] = randn(dt, SHAPE(B, d[0], d[1]));
        cd->n_inputs = 1;
        break;
    case K_ADD:
    case K_MSE:
        t[0] = randn(dt, SHAPE(B, d[0], d[1], d[2]));
        t[1] = randn(dt, SHAPE(B, d[0], d[1], d[2]));
        cd->n_inputs = 2;
        break;
    case K_SILU:
    case K_GELU:
    case K_UPSAMPLE:
    case K_CAST:
        t[0] = randn(dt, SHAPE(B, d[0], d[1], d[2]));
        cd->n_inputs = 1;
        break;
    case K_EMBED: {
        int64_t n = B * d[0];
        int32_t *ids = malloc((size_t)n * sizeof(int32_t));
        for (int64_t i = 0; i < n; i++) ids[i] = (int32_t)((i * 7919) % d[1]);
        t[0] = tensor_new(DT_I32, DEV_CUDA, SHAPE(B, d[0]));
        backend_for(DEV_CUDA)->upload(tensor_data(t[0]), ids, (size_t)n * sizeof(int32_t));
        free(ids);
        t[1] = randn(dt, SHAPE(d[1], d[2]));
        cd->n_inputs = 2;
        break;
    }
    case K_TIMESTEP:
        t[0] = randn(dt, SHAPE(B));
        cd->n_inputs = 1;
        break;
    case K_ADAMW:  // f32 master weights and moments, the gradient in the row's dtype
        t[0] = randn(DT_F32, SHAPE(d[0]));
        t[1] = randn(dt, SHAPE(d[0]));
        t[2] = tensor_zeros(DT_F32, DEV_CUDA, SHAPE(d[0]));
        t[3] = tensor_zeros(DT_F32, DEV_CUDA, SHAPE(d[0]));
        cd->n_inputs = 2;
        break;
    case K_GLOBAL_NORM:
        t[0] = randn(dt, SHAPE(d[0]));
        cd->n_inputs = 1;
        break;
    }
    if (cd->c->backward)
        for (int i = 0; i < cd->n_inputs; i++) tensor_set_requires_grad(t[i], true);
}

static void teardown(case_data *cd) {
    for (int i = 0; i < MAX_TENSORS; i++) tensor_free(cd->t[i]);
    tensor_free(cd->grad_out);
}

// One op call (and its backward); the result is freed, as a training step frees it.
static void run_once(case_data *cd) {
    tensor **t = cd->t;
    const int64_t *d = cd->c->d;
    tensor *y = NULL;
    switch (cd->c->kind) {
    case K_CONV: y = op_conv2d(t[0], t[1], t[2], (int)d[5], (int)d[4] / 2); break;
    case K_ATTN: y = op_attention(t[0], t[1], t[2], (int)d[2], d[4] != 0); break;
    case K_GROUP_NORM:
        y = d[4] ? op_group_norm_silu(t[0], t[1], t[2], (int)d[3], 1e-5f)
                 : op_group_norm(t[0], t[1], t[2], (int)d[3], 1e-5f);
        break;
    case K_LAYER_NORM: y = op_layer_norm(t[0], t[1], t[2], 1e-5f); break;
    case K_LINEAR: y = op_linear(t[0], t[1], t[2]); break;
    case K_GEGLU: y = op_geglu(t[0]); break;
    case K_SOFTMAX: y = op_softmax(t[0]); break;
    case K_ADD: y = op_add(t[0], t[1]); break;
    case K_SILU: y = op_silu(t[0]); break;
    case K_GELU: y = op_gelu(t[0], false); break;
    case K_UPSAMPLE: y = op_upsample_nearest2x(t[0]); break;
    case K_CAST: y = op_cast(t[0], cd->dt == DT_BF16 ? DT_F32 : DT_BF16); break;
    case K_MSE: y = op_mse_loss(t[0], t[1], NULL); break;
    case K_EMBED: y = op_embedding(t[0], t[1]); break;
    case K_TIMESTEP: y = op_timestep_embedding(t[0], (int)d[0], true, 0.0f, 1.0f, 10000.0f); break;
    case K_ADAMW: {
        adamw_config cfg = {.lr = 1e-4f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                            .weight_decay = 1e-2f};
        op_adamw_step(t[0], t[2], t[3], t[1], &cfg, 1);
        return;
    }
    case K_GLOBAL_NORM: op_global_norm(1, &t[0]); return;
    }
    if (cd->c->backward) {
        if (!cd->grad_out) cd->grad_out = randn(y->dtype, y->ndim, y->shape);
        autograd_backward(y, cd->grad_out);
        for (int i = 0; i < cd->n_inputs; i++) tensor_zero_grad(t[i]);
    }
    tensor_free(y);
}

// Nominal work of one call (see the header for the conventions).
static void nominal_work(const case_data *cd, double *flops, double *bytes) {
    const int64_t *d = cd->c->d;
    double B = (double)cd->B, es = (double)dtype_size(cd->dt), f = 0, b = 0;
    double bwd = 3.0;  // forward + backward, in forwards
    switch (cd->c->kind) {
    case K_CONV: {
        double pad = (double)(d[4] / 2);
        double Ho = (double)((d[0] + 2 * (int64_t)pad - d[4]) / d[5] + 1);
        double Wo = (double)((d[1] + 2 * (int64_t)pad - d[4]) / d[5] + 1);
        f = 2.0 * B * Ho * Wo * (double)(d[3] * d[4] * d[4] * d[2]);
        break;
    }
    case K_ATTN:
        f = 4.0 * B * (double)(d[2] * d[0] * d[1] * d[3]) * (d[4] ? 0.5 : 1.0);
        bwd = 3.5;
        break;
    case K_LINEAR: f = 2.0 * B * (double)(d[0] * d[1] * d[2]); break;
    case K_GROUP_NORM:
    case K_SILU:
    case K_GELU: b = 2.0 * es * B * (double)(d[0] * d[1] * d[2]); break;
    case K_LAYER_NORM: b = 2.0 * es * B * (double)(d[0] * d[1]); break;
    case K_GEGLU: b = 3.0 * es * B * (double)(d[0] * d[1]); break;
    case K_SOFTMAX: b = 2.0 * es * B * (double)(d[0] * d[1]); break;
    case K_ADD: b = 3.0 * es * B * (double)(d[0] * d[1] * d[2]); break;
    case K_UPSAMPLE: b = 5.0 * es * B * (double)(d[0] * d[1] * d[2]); break;
    case K_CAST:  // read in the row's dtype, written in the other one
        b = (es + (cd->dt == DT_BF16 ? 4.0 : 2.0)) * B * (double)(d[0] * d[1] * d[2]);
        break;
    case K_MSE: b = 2.0 * es * B * (double)(d[0] * d[1] * d[2]); break;
    case K_EMBED: b = 2.0 * es * B * (double)(d[0] * d[2]); break;
    case K_TIMESTEP: b = es * B * (double)d[0]; break;
    case K_ADAMW: b = (6.0 * 4.0 + es) * (double)d[0]; break;
    case K_GLOBAL_NORM: b = es * (double)d[0]; break;
    }
    if (cd->c->backward) f *= bwd, b *= 3.0;
    *flops = f, *bytes = b;
}

// --- timing ------------------------------------------------------------------------------------

typedef void (*timed_fn)(void *ctx);

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Seconds per call: one warm-up call, then 5 batches of calls (each about 50 ms,
// synchronised at both ends), the median batch.
static double time_calls(timed_fn fn, void *ctx) {
    CUDA_OK(cudaDeviceSynchronize());
    double t0 = now_seconds();
    fn(ctx);
    CUDA_OK(cudaDeviceSynchronize());
    double once = now_seconds() - t0;
    int calls = once > 0 ? (int)(0.05 / once) : 100;
    if (calls < 1) calls = 1;
    if (calls > 500) calls = 500;
    double per_call[5];
    for (int r = 0; r < 5; r++) {
        CUDA_OK(cudaDeviceSynchronize());
        t0 = now_seconds();
        for (int i = 0; i < calls; i++) fn(ctx);
        CUDA_OK(cudaDeviceSynchronize());
        per_call[r] = (now_seconds() - t0) / calls;
    }
    qsort(per_call, 5, sizeof(double), cmp_double);
    return per_call[2];
}

static void run_ours(void *ctx) { run_once(ctx); }

// --- references: cuBLAS GEMMs, cuDNN's convolution -----------------------------------------

// A row-major batched product C[b] = op(A[b]) op(B[b]), as kernels/backend.h's gemm.
typedef struct {
    int64_t batch, M, N, K;
    bool ta, tb;
} gemm_shape;

typedef struct {
    cublasHandle_t handle;
    dtype dt;
    int n;
    gemm_shape g[8];
    tensor *a, *b, *c;  // sized for the largest of the products
} gemm_ref;

static void run_gemms(void *ctx) {
    gemm_ref *r = ctx;
    cudaDataType type = r->dt == DT_BF16 ? CUDA_R_16BF : CUDA_R_32F;
    float alpha = 1.0f, beta = 0.0f;
    for (int i = 0; i < r->n; i++) {
        const gemm_shape *g = &r->g[i];
        // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T.
        CUBLAS_OK(cublasGemmStridedBatchedEx(
            r->handle, g->tb ? CUBLAS_OP_T : CUBLAS_OP_N, g->ta ? CUBLAS_OP_T : CUBLAS_OP_N,
            (int)g->N, (int)g->M, (int)g->K, &alpha, tensor_data(r->b), type,
            (int)(g->tb ? g->K : g->N), g->K * g->N, tensor_data(r->a), type,
            (int)(g->ta ? g->M : g->K), g->M * g->K, &beta, tensor_data(r->c), type, (int)g->N,
            g->M * g->N, (int)g->batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
}

// The GEMMs an unfused implementation of the case would run; 0 when none applies.
static int reference_gemms(const case_data *cd, gemm_shape *g) {
    const int64_t *d = cd->c->d, B = cd->B;
    int n = 0;
    switch (cd->c->kind) {
    case K_CONV: {  // im2col products: forward, then input and weight gradients
        int64_t pad = d[4] / 2, Ho = (d[0] + 2 * pad - d[4]) / d[5] + 1,
                Wo = (d[1] + 2 * pad - d[4]) / d[5] + 1;
        int64_t P = B * Ho * Wo, patch = d[4] * d[4] * d[2];
        g[n++] = (gemm_shape){1, P, d[3], patch, false, true};
        if (cd->c->backward) {
            g[n++] = (gemm_shape){1, P, patch, d[3], false, false};
            g[n++] = (gemm_shape){1, d[3], patch, P, true, false};
        }
        break;
    }
    case K_ATTN: {  // per head: S = Q K^T, O = P V; backward: S again, dV, dP, dQ, dK
        int64_t BH = B * d[2], Nq = d[0], Nk = d[1], D = d[3];
        g[n++] = (gemm_shape){BH, Nq, Nk, D, false, true};
        g[n++] = (gemm_shape){BH, Nq, D, Nk, false, false};
        if (cd->c->backward) {
            g[n++] = (gemm_shape){BH, Nq, Nk, D, false, true};
            g[n++] = (gemm_shape){BH, Nk, D, Nq, true, false};
            g[n++] = (gemm_shape){BH, Nq, Nk, D, false, true};
            g[n++] = (gemm_shape){BH, Nq, D, Nk, false, false};
            g[n++] = (gemm_shape){BH, Nk, D, Nq, true, false};
        }
        break;
    }
    case K_LINEAR: {  // y = x W^T; backward dx = dy W, dW = dy^T x
        int64_t rows = B * d[0];
        g[n++] = (gemm_shape){1, rows, d[2], d[1], false, true};
        if (cd->c->backward) {
            g[n++] = (gemm_shape){1, rows, d[1], d[2], false, false};
            g[n++] = (gemm_shape){1, d[2], d[1], rows, true, false};
        }
        break;
    }
    default: break;
    }
    return n;
}

static double time_cublas(const case_data *cd, cublasHandle_t handle) {
    gemm_ref r = {.handle = handle, .dt = cd->dt};
    r.n = reference_gemms(cd, r.g);
    if (!r.n) return 0;
    int64_t na = 0, nb = 0, nc = 0;
    for (int i = 0; i < r.n; i++) {
        const gemm_shape *g = &r.g[i];
        if (g->batch * g->M * g->K > na) na = g->batch * g->M * g->K;
        if (g->batch * g->K * g->N > nb) nb = g->batch * g->K * g->N;
        if (g->batch * g->M * g->N > nc) nc = g->batch * g->M * g->N;
    }
    r.a = randn(cd->dt, SHAPE(na));
    r.b = randn(cd->dt, SHAPE(nb));
    r.c = tensor_new(cd->dt, DEV_CUDA, SHAPE(nc));
    double s = time_calls(run_gemms, &r);
    tensor_free(r.a);
    tensor_free(r.b);
    tensor_free(r.c);
    return s;
}

#ifdef BENCH_CUDNN
#define CUDNN_OK(call)                                                                  \
    do {                                                                                \
        cudnnStatus_t st_ = (call);                                                     \
        if (st_ != CUDNN_STATUS_SUCCESS) {                                              \
            fprintf(stderr, "bench_gpu: %s: %s\n", #call, dnn.cudnnGetErrorString(st_));    \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

typedef struct {
    cudnnHandle_t handle;
    cudnnTensorDescriptor_t x_desc, y_desc;
    cudnnFilterDescriptor_t w_desc;
    cudnnConvolutionDescriptor_t conv;
    cudnnConvolutionFwdAlgo_t algo;
    tensor *x, *w, *y, *workspace;  // workspace: NULL when the algorithm needs none
    size_t workspace_bytes;
} cudnn_conv;

static void run_cudnn_conv(void *ctx) {
    cudnn_conv *r = ctx;
    float alpha = 1.0f, beta = 0.0f;
    CUDNN_OK(dnn.cudnnConvolutionForward(r->handle, &alpha, r->x_desc, tensor_data(r->x), r->w_desc,
                                     tensor_data(r->w), r->conv, r->algo,
                                     r->workspace ? tensor_data(r->workspace) : NULL,
                                     r->workspace_bytes, &beta, r->y_desc, tensor_data(r->y)));
}

// cuDNN's fastest forward algorithm (by its own measurement) on NHWC tensors, in the
// case's dtype with f32 accumulation: tensor cores for bf16, plain FMA for f32 (as
// our f32 path; TF32 would not match the CPU).
static double time_cudnn_conv(const case_data *cd, cudnnHandle_t handle) {
    const int64_t *d = cd->c->d, B = cd->B;
    int64_t pad = d[4] / 2, Ho = (d[0] + 2 * pad - d[4]) / d[5] + 1,
            Wo = (d[1] + 2 * pad - d[4]) / d[5] + 1;
    cudnnDataType_t type = cd->dt == DT_BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
    cudnn_conv r = {.handle = handle};
    CUDNN_OK(dnn.cudnnCreateTensorDescriptor(&r.x_desc));
    CUDNN_OK(dnn.cudnnCreateTensorDescriptor(&r.y_desc));
    CUDNN_OK(dnn.cudnnCreateFilterDescriptor(&r.w_desc));
    CUDNN_OK(dnn.cudnnCreateConvolutionDescriptor(&r.conv));
    CUDNN_OK(dnn.cudnnSetTensor4dDescriptor(r.x_desc, CUDNN_TENSOR_NHWC, type, (int)B, (int)d[2],
                                        (int)d[0], (int)d[1]));
    CUDNN_OK(dnn.cudnnSetTensor4dDescriptor(r.y_desc, CUDNN_TENSOR_NHWC, type, (int)B, (int)d[3],
                                        (int)Ho, (int)Wo));
    // An NHWC filter is [K, R, S, C]: our [Cout, KH, KW, Cin].
    CUDNN_OK(dnn.cudnnSetFilter4dDescriptor(r.w_desc, type, CUDNN_TENSOR_NHWC, (int)d[3], (int)d[2],
                                        (int)d[4], (int)d[4]));
    CUDNN_OK(dnn.cudnnSetConvolution2dDescriptor(r.conv, (int)pad, (int)pad, (int)d[5], (int)d[5],
                                             1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    CUDNN_OK(dnn.cudnnSetConvolutionMathType(
        r.conv, cd->dt == DT_BF16 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH));
    cudnnConvolutionFwdAlgoPerf_t perf[8];
    int found = 0;
    CUDNN_OK(dnn.cudnnFindConvolutionForwardAlgorithm(handle, r.x_desc, r.w_desc, r.conv, r.y_desc,
                                                  8, &found, perf));
    int best = -1;
    for (int i = 0; i < found && best < 0; i++)
        if (perf[i].status == CUDNN_STATUS_SUCCESS) best = i;
    double s = 0;
    if (best >= 0) {
        r.algo = perf[best].algo;
        CUDNN_OK(dnn.cudnnSetConvolutionMathType(r.conv, perf[best].mathType));
        CUDNN_OK(dnn.cudnnGetConvolutionForwardWorkspaceSize(handle, r.x_desc, r.w_desc, r.conv,
                                                         r.y_desc, r.algo, &r.workspace_bytes));
        r.x = randn(cd->dt, SHAPE(B, d[0], d[1], d[2]));
        r.w = randn(cd->dt, SHAPE(d[3], d[4], d[4], d[2]));
        r.y = tensor_new(cd->dt, DEV_CUDA, SHAPE(B, Ho, Wo, d[3]));
        if (r.workspace_bytes)
            r.workspace = tensor_new(DT_I32, DEV_CUDA, SHAPE((int64_t)(r.workspace_bytes + 3) / 4));
        s = time_calls(run_cudnn_conv, &r);
        tensor_free(r.x);
        tensor_free(r.w);
        tensor_free(r.y);
        tensor_free(r.workspace);
    }
    dnn.cudnnDestroyConvolutionDescriptor(r.conv);
    dnn.cudnnDestroyFilterDescriptor(r.w_desc);
    dnn.cudnnDestroyTensorDescriptor(r.x_desc);
    dnn.cudnnDestroyTensorDescriptor(r.y_desc);
    return s;
}

// --- reference: cuDNN's fused flash attention (SDPA), through the backend graph API -------
//
// cuDNN has no one-call C function for flash attention: its runtime fusion engines
// recognise an operation graph of matmuls, pointwise ops and reductions and compile it
// into one kernel, and cudnn-frontend's SDPA node (C++) only writes that graph. This
// writes it in C through the backend API (cudnn_graph.h), node for node as the
// frontend's composite SDPA node does for inference (cudnn-frontend v1.22,
// include/cudnn_frontend/node/scaled_dot_product_flash_attention.h, softmax.h and
// diagonal_band_mask.h), with bf16 input and output, f32 compute and intermediates:
//
//   S = (Q Kᵀ) · scale                    [B, H, Nq, Nk] f32, virtual (never in memory)
//   causal: S = row >= col ? S : -inf     GEN_INDEX on axes 2 and 3, CMP_GE, BINARY_SELECT
//   M = max S, E = exp(S - M), L = sum E over the keys; P = E / L in bf16
//   stats = M + log L                     virtual: the frontend builds it for inference too
//   O = P V
//
// Q, K, V and O keep op_attention's layout, [B, N, H*D] row-major: as (b, h, s, d) their
// strides are (N*H*D, D, H*D, 1), and Kᵀ is K with its last two dims swapped, so nothing
// is transposed. The plan is the first engine config of the mode-A heuristics that
// finalizes, built once per case; only its execution is timed.

enum { SDPA_MAX_DESCRIPTORS = 96, SDPA_MAX_OPS = 16, SDPA_MAX_CONFIGS = 8 };
enum {  // tensor uids: the variant pack's keys
    SDPA_UID_Q = 1, SDPA_UID_K, SDPA_UID_V, SDPA_UID_O, SDPA_UID_SCALE, SDPA_UID_NEG_INF,
    SDPA_UID_FIRST_VIRTUAL = 100
};
typedef enum { SDPA_IN_MEMORY, SDPA_VIRTUAL, SDPA_BY_VALUE } sdpa_storage;

// A graph being built. Every descriptor is recorded when it is created, and all are
// destroyed together. The first call that fails is recorded and every later call is
// skipped, so a graph cuDNN refuses costs one line of report, not the bench.
typedef struct {
    cudnnBackendDescriptor_t owned[SDPA_MAX_DESCRIPTORS];
    int n_owned;
    cudnnBackendDescriptor_t ops[SDPA_MAX_OPS];  // in the order built: producers first
    int n_ops;
    int64_t next_uid;      // the next virtual tensor's
    const char *step;      // the part being built, for the report
    const char *failed;    // what failed; NULL while everything succeeds
    const char *failed_in; // the step it failed in
    cudnnStatus_t status;  // its status; success when it was no cuDNN call
    char message[512];     // cudnnGetLastErrorString, read right after the failure
} sdpa_graph;

static bool sdpa_succeeded(sdpa_graph *g, cudnnStatus_t status, const char *call) {
    if (status == CUDNN_STATUS_SUCCESS) return true;
    g->failed = call;
    g->failed_in = g->step;
    g->status = status;
    g->message[0] = '\0';
    if (dnn.cudnnGetLastErrorString) dnn.cudnnGetLastErrorString(g->message, sizeof g->message);
    return false;
}

// True when the call ran and succeeded; skipped (false) once an earlier call has failed.
#define SDPA_CALL(g, call, name) ((g)->failed == NULL && sdpa_succeeded((g), (call), (name)))
#define SDPA_SET(g, desc, attribute, type, count, values)                                   \
    (void)SDPA_CALL(g, dnn.cudnnBackendSetAttribute(desc, attribute, type, count, values), \
                    "cudnnBackendSetAttribute(" #attribute ")")

// A new descriptor, destroyed with the graph; NULL once a call has failed.
static cudnnBackendDescriptor_t sdpa_new(sdpa_graph *g, cudnnBackendDescriptorType_t type) {
    cudnnBackendDescriptor_t desc = NULL;
    if (g->n_owned == SDPA_MAX_DESCRIPTORS) {
        fprintf(stderr, "bench_gpu: the SDPA graph needs more than %d descriptors\n",
                SDPA_MAX_DESCRIPTORS);
        exit(1);
    }
    if (!SDPA_CALL(g, dnn.cudnnBackendCreateDescriptor(type, &desc),
                   "cudnnBackendCreateDescriptor"))
        return NULL;
    g->owned[g->n_owned++] = desc;
    return desc;
}

static void sdpa_finalize(sdpa_graph *g, cudnnBackendDescriptor_t desc) {
    (void)SDPA_CALL(g, dnn.cudnnBackendFinalize(desc), "cudnnBackendFinalize");
}

// In reverse order of creation: plans before engine configs, operations before tensors.
static void sdpa_destroy(sdpa_graph *g) {
    while (g->n_owned > 0) dnn.cudnnBackendDestroyDescriptor(g->owned[--g->n_owned]);
}

// A 4-d tensor, declared 16-byte aligned as the frontend does (ours come from cudaMalloc).
static cudnnBackendDescriptor_t sdpa_tensor(sdpa_graph *g, int64_t uid, cudnnDataType_t type,
                                            const int64_t dims[4], const int64_t strides[4],
                                            sdpa_storage kind) {
    cudnnBackendDescriptor_t t = sdpa_new(g, CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    int64_t alignment = 16;
    bool yes = true;
    SDPA_SET(g, t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type);
    SDPA_SET(g, t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims);
    SDPA_SET(g, t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides);
    SDPA_SET(g, t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
    SDPA_SET(g, t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &alignment);
    if (kind == SDPA_VIRTUAL)
        SDPA_SET(g, t, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &yes);
    if (kind == SDPA_BY_VALUE)
        SDPA_SET(g, t, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &yes);
    sdpa_finalize(g, t);
    return t;
}

// An intermediate: it has a uid like every tensor of the graph, but never a buffer.
static cudnnBackendDescriptor_t sdpa_virtual(sdpa_graph *g, cudnnDataType_t type,
                                             const int64_t dims[4], const int64_t strides[4]) {
    return sdpa_tensor(g, g->next_uid++, type, dims, strides, SDPA_VIRTUAL);
}

// An f32 scalar passed by value: the variant pack points at a host float.
static cudnnBackendDescriptor_t sdpa_scalar(sdpa_graph *g, int64_t uid) {
    const int64_t ones[4] = {1, 1, 1, 1};
    return sdpa_tensor(g, uid, CUDNN_DATA_FLOAT, ones, ones, SDPA_BY_VALUE);
}

// Finalizes an operation and appends it to the graph.
static void sdpa_add(sdpa_graph *g, cudnnBackendDescriptor_t op) {
    sdpa_finalize(g, op);
    if (g->failed) return;
    if (g->n_ops == SDPA_MAX_OPS) {
        fprintf(stderr, "bench_gpu: the SDPA graph has more than %d operations\n", SDPA_MAX_OPS);
        exit(1);
    }
    g->ops[g->n_ops++] = op;
}

// c = a b over the last two dims, batched over the first two, with f32 accumulation.
static void sdpa_matmul(sdpa_graph *g, cudnnBackendDescriptor_t c, cudnnBackendDescriptor_t a,
                        cudnnBackendDescriptor_t b) {
    cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
    cudnnBackendDescriptor_t matmul = sdpa_new(g, CUDNN_BACKEND_MATMUL_DESCRIPTOR);
    SDPA_SET(g, matmul, CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &f32);
    sdpa_finalize(g, matmul);
    cudnnBackendDescriptor_t op = sdpa_new(g, CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
    SDPA_SET(g, op, CUDNN_ATTR_OPERATION_MATMUL_ADESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &a);
    SDPA_SET(g, op, CUDNN_ATTR_OPERATION_MATMUL_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b);
    SDPA_SET(g, op, CUDNN_ATTR_OPERATION_MATMUL_CDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &c);
    SDPA_SET(g, op, CUDNN_ATTR_OPERATION_MATMUL_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &matmul);
    sdpa_add(g, op);
}

// A pointwise function computed in `math`; sdpa_pointwise_op finalizes it, after any
// attribute of its own mode (GEN_INDEX's axis).
static cudnnBackendDescriptor_t sdpa_pointwise_fn(sdpa_graph *g, cudnnPointwiseMode_t mode,
                                                  cudnnDataType_t math) {
    cudnnBackendDescriptor_t fn = sdpa_new(g, CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
    SDPA_SET(g, fn, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode);
    SDPA_SET(g, fn, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &math);
    return fn;
}

// y = fn(x, b, t): b is a binary mode's second input, t BINARY_SELECT's mask
// (y = t ? x : b); NULL where the mode has no such input.
static void sdpa_pointwise_op(sdpa_graph *g, cudnnBackendDescriptor_t y,
                              cudnnBackendDescriptor_t fn, cudnnBackendDescriptor_t x,
                              cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t t) {
    float one = 1.0f;  // input scales, 1 as the frontend sets them
    sdpa_finalize(g, fn);
    cudnnBackendDescriptor_t op = sdpa_new(g, CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
    SDPA_SET(g, op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
             &fn);
    SDPA_SET(g, op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x);
    if (b)
        SDPA_SET(g, op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b);
    if (t)
        SDPA_SET(g, op, CUDNN_ATTR_OPERATION_POINTWISE_TDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &t);
    SDPA_SET(g, op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y);
    SDPA_SET(g, op, CUDNN_ATTR_OPERATION_POINTWISE_ALPHA1, CUDNN_TYPE_FLOAT, 1, &one);
    SDPA_SET(g, op, CUDNN_ATTR_OPERATION_POINTWISE_ALPHA2, CUDNN_TYPE_FLOAT, 1, &one);
    sdpa_add(g, op);
}

// y = mode(x) or mode(x, b), in f32.
static void sdpa_pointwise(sdpa_graph *g, cudnnBackendDescriptor_t y, cudnnPointwiseMode_t mode,
                           cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t b) {
    sdpa_pointwise_op(g, y, sdpa_pointwise_fn(g, mode, CUDNN_DATA_FLOAT), x, b, NULL);
}

// y = the max or the sum of x over its last axis (y's last dim is 1), in f32.
static void sdpa_reduce(sdpa_graph *g, cudnnBackendDescriptor_t y, cudnnReduceTensorOp_t reduce,
                        cudnnBackendDescriptor_t x) {
    cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
    cudnnBackendDescriptor_t fn = sdpa_new(g, CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
    SDPA_SET(g, fn, CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &reduce);
    SDPA_SET(g, fn, CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &f32);
    sdpa_finalize(g, fn);
    cudnnBackendDescriptor_t op = sdpa_new(g, CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
    SDPA_SET(g, op, CUDNN_ATTR_OPERATION_REDUCTION_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &fn);
    SDPA_SET(g, op, CUDNN_ATTR_OPERATION_REDUCTION_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x);
    SDPA_SET(g, op, CUDNN_ATTR_OPERATION_REDUCTION_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y);
    sdpa_add(g, op);
}

// The scores where key index <= query index, -inf elsewhere: the frontend's top-left
// causal mask (a diagonal band with right bound 0). The indices are int32, the mask
// boolean.
static cudnnBackendDescriptor_t sdpa_causal_mask(sdpa_graph *g, cudnnBackendDescriptor_t s,
                                                 const int64_t dims[4], const int64_t strides[4]) {
    cudnnBackendDescriptor_t index[2];  // of the query (row, axis 2) and of the key (axis 3)
    for (int64_t axis = 2; axis <= 3; axis++) {
        index[axis - 2] = sdpa_virtual(g, CUDNN_DATA_INT32, dims, strides);
        cudnnBackendDescriptor_t fn =
            sdpa_pointwise_fn(g, CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_INT32);
        SDPA_SET(g, fn, CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, 1, &axis);
        sdpa_pointwise_op(g, index[axis - 2], fn, s, NULL, NULL);
    }
    cudnnBackendDescriptor_t keep = sdpa_virtual(g, CUDNN_DATA_BOOLEAN, dims, strides);
    sdpa_pointwise_op(g, keep, sdpa_pointwise_fn(g, CUDNN_POINTWISE_CMP_GE, CUDNN_DATA_BOOLEAN),
                      index[0], index[1], NULL);
    cudnnBackendDescriptor_t masked = sdpa_virtual(g, CUDNN_DATA_FLOAT, dims, strides);
    sdpa_pointwise_op(g, masked,
                      sdpa_pointwise_fn(g, CUDNN_POINTWISE_BINARY_SELECT, CUDNN_DATA_FLOAT), s,
                      sdpa_scalar(g, SDPA_UID_NEG_INF), keep);
    return masked;
}

// The finalized operation graph of the case's forward attention; NULL when refused.
static cudnnBackendDescriptor_t sdpa_build_graph(sdpa_graph *g, const case_data *cd,
                                                 cudnnHandle_t handle) {
    const int64_t *d = cd->c->d;
    const int64_t B = cd->B, Nq = d[0], Nk = d[1], H = d[2], D = d[3];
    const int64_t q_dims[4] = {B, H, Nq, D}, q_strides[4] = {Nq * H * D, D, H * D, 1};
    const int64_t kt_dims[4] = {B, H, D, Nk}, kt_strides[4] = {Nk * H * D, D, 1, H * D};
    const int64_t v_dims[4] = {B, H, Nk, D}, v_strides[4] = {Nk * H * D, D, H * D, 1};
    // Intermediates, packed: the scores and one value per query row.
    const int64_t s_dims[4] = {B, H, Nq, Nk}, s_strides[4] = {H * Nq * Nk, Nq * Nk, Nk, 1};
    const int64_t row_dims[4] = {B, H, Nq, 1}, row_strides[4] = {H * Nq, Nq, 1, 1};
    const cudnnDataType_t bf16 = CUDNN_DATA_BFLOAT16, f32 = CUDNN_DATA_FLOAT;

    g->step = "S = Q K^T * scale";
    cudnnBackendDescriptor_t q =
        sdpa_tensor(g, SDPA_UID_Q, bf16, q_dims, q_strides, SDPA_IN_MEMORY);
    cudnnBackendDescriptor_t kt =
        sdpa_tensor(g, SDPA_UID_K, bf16, kt_dims, kt_strides, SDPA_IN_MEMORY);
    cudnnBackendDescriptor_t qk = sdpa_virtual(g, f32, s_dims, s_strides);
    sdpa_matmul(g, qk, q, kt);
    cudnnBackendDescriptor_t s = sdpa_virtual(g, f32, s_dims, s_strides);
    sdpa_pointwise(g, s, CUDNN_POINTWISE_MUL, qk, sdpa_scalar(g, SDPA_UID_SCALE));
    if (d[4]) {
        g->step = "causal mask";
        s = sdpa_causal_mask(g, s, s_dims, s_strides);
    }

    g->step = "softmax";
    cudnnBackendDescriptor_t max = sdpa_virtual(g, f32, row_dims, row_strides);
    sdpa_reduce(g, max, CUDNN_REDUCE_TENSOR_MAX, s);
    cudnnBackendDescriptor_t shifted = sdpa_virtual(g, f32, s_dims, s_strides);
    sdpa_pointwise(g, shifted, CUDNN_POINTWISE_SUB, s, max);
    cudnnBackendDescriptor_t e = sdpa_virtual(g, f32, s_dims, s_strides);
    sdpa_pointwise(g, e, CUDNN_POINTWISE_EXP, shifted, NULL);
    cudnnBackendDescriptor_t sum = sdpa_virtual(g, f32, row_dims, row_strides);
    sdpa_reduce(g, sum, CUDNN_REDUCE_TENSOR_ADD, e);
    cudnnBackendDescriptor_t log_sum = sdpa_virtual(g, f32, row_dims, row_strides);
    sdpa_pointwise(g, log_sum, CUDNN_POINTWISE_LOG, sum, NULL);
    // The softmax statistics, which nothing reads here; the frontend builds them for
    // inference too, so the graph is the one the flash engine is known to take.
    cudnnBackendDescriptor_t stats = sdpa_virtual(g, f32, row_dims, row_strides);
    sdpa_pointwise(g, stats, CUDNN_POINTWISE_ADD, max, log_sum);
    // P in the I/O type: the frontend gives the second matmul's A operand Q's type.
    cudnnBackendDescriptor_t p = sdpa_virtual(g, bf16, s_dims, s_strides);
    sdpa_pointwise(g, p, CUDNN_POINTWISE_DIV, e, sum);

    g->step = "O = P V";
    cudnnBackendDescriptor_t v =
        sdpa_tensor(g, SDPA_UID_V, bf16, v_dims, v_strides, SDPA_IN_MEMORY);
    cudnnBackendDescriptor_t o =
        sdpa_tensor(g, SDPA_UID_O, bf16, q_dims, q_strides, SDPA_IN_MEMORY);
    sdpa_matmul(g, o, p, v);

    g->step = "operation graph";
    cudnnBackendDescriptor_t graph = sdpa_new(g, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
    SDPA_SET(g, graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
    SDPA_SET(g, graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, g->n_ops,
             g->ops);
    sdpa_finalize(g, graph);
    return g->failed ? NULL : graph;
}

// The execution plan of the first engine config, in the mode-A heuristics' order, that
// finalizes for the graph; NULL when none does.
static cudnnBackendDescriptor_t sdpa_plan(sdpa_graph *g, cudnnBackendDescriptor_t graph,
                                          cudnnHandle_t handle) {
    g->step = "engine heuristics (mode A)";
    cudnnBackendHeurMode_t mode = CUDNN_HEUR_MODE_A;
    cudnnBackendDescriptor_t heuristics = sdpa_new(g, CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
    SDPA_SET(g, heuristics, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
             &graph);
    SDPA_SET(g, heuristics, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
    sdpa_finalize(g, heuristics);
    // The results are written into engine config descriptors created beforehand.
    cudnnBackendDescriptor_t configs[SDPA_MAX_CONFIGS];
    for (int i = 0; i < SDPA_MAX_CONFIGS; i++)
        configs[i] = sdpa_new(g, CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
    int64_t n_configs = 0;
    (void)SDPA_CALL(g,
                    dnn.cudnnBackendGetAttribute(heuristics, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                                 CUDNN_TYPE_BACKEND_DESCRIPTOR, SDPA_MAX_CONFIGS,
                                                 &n_configs, configs),
                    "cudnnBackendGetAttribute(CUDNN_ATTR_ENGINEHEUR_RESULTS)");
    if (n_configs > SDPA_MAX_CONFIGS) n_configs = SDPA_MAX_CONFIGS;
    if (!g->failed && n_configs == 0) {
        g->failed = "no engine config for this graph";
        g->failed_in = g->step;
        g->status = CUDNN_STATUS_SUCCESS;  // no call failed: nothing more to say
        g->message[0] = '\0';
    }

    g->step = "execution plan";
    for (int64_t i = 0; i < n_configs && !g->failed; i++) {
        cudnnBackendDescriptor_t plan = sdpa_new(g, CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
        SDPA_SET(g, plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
        SDPA_SET(g, plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                 &configs[i]);
        sdpa_finalize(g, plan);
        if (!g->failed) return plan;
        // A config may not compile for this graph while a later one does; the last
        // failure is the one reported.
        if (i + 1 < n_configs) g->failed = NULL;
    }
    return NULL;
}

// One line, before the case's row: the step and the call that failed, and cuDNN's reason.
static void sdpa_report(const sdpa_graph *g, const case_data *cd) {
    printf("cuDNN SDPA skipped for %s: %s: %s", cd->c->name, g->failed_in, g->failed);
    if (g->status != CUDNN_STATUS_SUCCESS) printf(": %s", dnn.cudnnGetErrorString(g->status));
    if (g->message[0]) {
        char message[sizeof g->message];  // cuDNN's message may span lines
        for (size_t i = 0; i < sizeof message; i++)
            message[i] = g->message[i] == '\n' || g->message[i] == '\r' ? ' ' : g->message[i];
        message[sizeof message - 1] = '\0';
        printf(" (%s)", message);
    }
    printf("\n");
}

typedef struct {
    cudnnHandle_t handle;
    cudnnBackendDescriptor_t plan, variant_pack;
} cudnn_sdpa;

static void run_cudnn_sdpa(void *ctx) {
    cudnn_sdpa *r = ctx;
    CUDNN_OK(dnn.cudnnBackendExecute(r->handle, r->plan, r->variant_pack));
}

// ||o - op_attention(q, k, v)|| / ||op_attention(q, k, v)||, on the host in f32.
static double sdpa_difference_from_ours(const tensor *o, tensor *q, tensor *k, tensor *v,
                                        int heads, bool causal) {
    autograd_no_grad_begin();
    tensor *ours = op_attention(q, k, v, heads, causal);
    autograd_no_grad_end();
    int64_t n = tensor_numel(o);
    float *a = malloc((size_t)n * sizeof *a), *b = malloc((size_t)n * sizeof *b);
    if (!a || !b) {
        fprintf(stderr, "bench_gpu: out of host memory\n");
        exit(1);
    }
    tensor_copy_to_f32(o, a, n);
    tensor_copy_to_f32(ours, b, n);
    double diff = 0, norm = 0;
    for (int64_t i = 0; i < n; i++) {
        diff += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        norm += (double)b[i] * b[i];
    }
    free(a);
    free(b);
    tensor_free(ours);
    return norm > 0 ? sqrt(diff / norm) : sqrt(diff);
}

// Seconds per forward attention call of cuDNN's flash attention for a bf16 K_ATTN case;
// 0 (after one line saying why) when cuDNN does not build or run the graph.
static double time_cudnn_sdpa(const case_data *cd, cudnnHandle_t handle) {
    const int64_t *d = cd->c->d, B = cd->B;
    const bool causal = d[4] != 0;
    sdpa_graph g = {.next_uid = SDPA_UID_FIRST_VIRTUAL};
    cudnn_sdpa r = {.handle = handle};
    cudnnBackendDescriptor_t graph = sdpa_build_graph(&g, cd, handle);
    if (graph) r.plan = sdpa_plan(&g, graph, handle);
    tensor *q = NULL, *k = NULL, *v = NULL, *o = NULL, *workspace = NULL;
    // By value: the variant pack points at these, and each execution reads them. The
    // frontend masks with -inf from cuDNN 9.10 on, with the lowest float before.
    float scale = (float)(1.0 / sqrt((double)d[3]));
    float neg_inf = dnn.cudnnGetVersion() < 91000 ? -FLT_MAX : -INFINITY;
    double s = 0;
    if (r.plan) {
        g.step = "variant pack";
        int64_t workspace_bytes = 0, count = 0;
        (void)SDPA_CALL(
            &g,
            dnn.cudnnBackendGetAttribute(r.plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                         CUDNN_TYPE_INT64, 1, &count, &workspace_bytes),
            "cudnnBackendGetAttribute(CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE)");
        q = randn(cd->dt, SHAPE(B, d[0], d[2] * d[3]));
        k = randn(cd->dt, SHAPE(B, d[1], d[2] * d[3]));
        v = randn(cd->dt, SHAPE(B, d[1], d[2] * d[3]));
        o = tensor_new(cd->dt, DEV_CUDA, SHAPE(B, d[0], d[2] * d[3]));
        if (workspace_bytes > 0)
            workspace = tensor_new(DT_I32, DEV_CUDA, SHAPE((workspace_bytes + 3) / 4));
        void *workspace_data = workspace ? tensor_data(workspace) : NULL;
        int64_t uids[] = {SDPA_UID_Q, SDPA_UID_K, SDPA_UID_V,
                          SDPA_UID_O, SDPA_UID_SCALE, SDPA_UID_NEG_INF};
        void *data[] = {tensor_data(q), tensor_data(k), tensor_data(v),
                        tensor_data(o), &scale, &neg_inf};
        int64_t n_uids = causal ? 6 : 5;  // -inf is in the causal graph only
        r.variant_pack = sdpa_new(&g, CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
        SDPA_SET(&g, r.variant_pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, n_uids,
                 uids);
        SDPA_SET(&g, r.variant_pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR,
                 n_uids, data);
        SDPA_SET(&g, r.variant_pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1,
                 &workspace_data);
        sdpa_finalize(&g, r.variant_pack);
        g.step = "first execution";
        if (SDPA_CALL(&g, dnn.cudnnBackendExecute(handle, r.plan, r.variant_pack),
                      "cudnnBackendExecute")) {
            // A graph with a wrong stride would run as fast and compute something else:
            // time it only when it computes what op_attention does (bf16 rounding apart).
            double difference = sdpa_difference_from_ours(o, q, k, v, (int)d[2], causal);
            if (difference <= 2e-2) s = time_calls(run_cudnn_sdpa, &r);
            else
                printf("cuDNN SDPA skipped for %s: its output differs from op_attention's by "
                       "%.3g (relative L2)\n", cd->c->name, difference);
        }
    }
    if (g.failed) sdpa_report(&g, cd);
    tensor_free(q);
    tensor_free(k);
    tensor_free(v);
    tensor_free(o);
    tensor_free(workspace);
    sdpa_destroy(&g);
    return s;
}
#endif

// --- the table -----------------------------------------------------------------------------------

typedef struct {
    cublasHandle_t cublas;
#ifdef BENCH_CUDNN
    cudnnHandle_t cudnn;  // NULL when libcudnn is not there
#endif
} references;

static void print_rate(double seconds, double flops, double bytes) {
    if (flops > 0) printf("%8.1f TFLOP/s", flops / seconds * 1e-12);
    else printf("%8.1f GB/s   ", bytes / seconds * 1e-9);
}

static void print_reference(const char *name, double ours, double ref, double flops,
                            double bytes) {
    if (ref <= 0) return;
    printf("  | %s %8.3f ms ", name, ref * 1e3);
    print_rate(ref, flops, bytes);
    printf(" (ours %3.0f%%)", 100.0 * ref / ours);
}

static void bench(const bench_case *c, dtype dt, int64_t batch, const references *refs) {
    case_data cd = {.c = c, .dt = dt, .B = batch};
    setup(&cd);
    if (!c->backward) autograd_no_grad_begin();
    double ours = time_calls(run_ours, &cd);
    if (!c->backward) autograd_no_grad_end();
    double flops, bytes;
    nominal_work(&cd, &flops, &bytes);
    // The references run before the row is printed, so that a line saying why one was
    // skipped stands on its own above it.
    double cublas = time_cublas(&cd, refs->cublas), cudnn = 0;
    const char *cudnn_name = "cuDNN";
#ifdef BENCH_CUDNN
    if (refs->cudnn && c->kind == K_CONV && !c->backward) cudnn = time_cudnn_conv(&cd, refs->cudnn);
    // Attention forward only: the _fwdbwd case would need cuDNN's SDPA backward graph,
    // which is not built here. bf16 only: cuDNN's flash attention has no f32 path.
    if (refs->cudnn && c->kind == K_ATTN && !c->backward && dt == DT_BF16) {
        cudnn = time_cudnn_sdpa(&cd, refs->cudnn);
        cudnn_name = "cuDNN SDPA";
    }
#endif
    printf("%-38s %-4s %9.3f ms ", c->name, dtype_name(dt), ours * 1e3);
    print_rate(ours, flops, bytes);
    print_reference("cuBLAS", ours, cublas, flops, bytes);
    print_reference(cudnn_name, ours, cudnn, flops, bytes);
    printf("\n");
    fflush(stdout);
    teardown(&cd);
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: bench_gpu [--list] [--only SUBSTRING]... [--batch N] [--dtype bf16|f32]\n"
            "  --list          print the case names and exit\n"
            "  --only SUBSTR   run the cases whose name contains SUBSTR (repeatable)\n"
            "  --batch N       images / sequences per call (default 1: SD1.5 at 512x512)\n"
            "  --dtype T       only this storage type (default: bf16, then f32)\n");
}

int main(int argc, char **argv) {
    const char *only[N_CASES];
    int n_only = 0;
    int64_t batch = 1;
    int n_dtypes = 2;
    dtype dtypes[2] = {DT_BF16, DT_F32};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--list") == 0) {
            for (int j = 0; j < N_CASES; j++) printf("%s\n", CASES[j].name);
            return 0;
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc && n_only < N_CASES) {
            only[n_only++] = argv[++i];
        } else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) {
            batch = strtoll(argv[++i], NULL, 10);
            if (batch < 1) {
                fprintf(stderr, "bench_gpu: --batch wants a positive count\n");
                return 2;
            }
        } else if (strcmp(argv[i], "--dtype") == 0 && i + 1 < argc) {
            const char *t = argv[++i];
            n_dtypes = 1;
            if (strcmp(t, "bf16") == 0) dtypes[0] = DT_BF16;
            else if (strcmp(t, "f32") == 0) dtypes[0] = DT_F32;
            else {
                fprintf(stderr, "bench_gpu: --dtype wants bf16 or f32\n");
                return 2;
            }
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!backend_available(DEV_CUDA)) {
        puts("SKIP bench_gpu: this build has the cuda backend but no GPU answers here");
        return 0;
    }

    references refs = {0};
    CUBLAS_OK(cublasCreate(&refs.cublas));
    printf("bench_gpu: batch %lld; ours as op calls, references on preallocated buffers\n",
           (long long)batch);
#ifdef BENCH_CUDNN
    if (!load_cudnn())
        puts("cuDNN: libcudnn.so.9 not found (loader path, then \"" CUDNN_LIB_DIRS "\"), no cuDNN column");
    else if (dnn.cudnnCreate(&refs.cudnn) != CUDNN_STATUS_SUCCESS) {
        refs.cudnn = NULL;
        puts("cuDNN: cudnnCreate failed, no cuDNN column");
    } else {
        printf("cuDNN %zu: convolution forward; bf16 attention forward beside its fused flash "
               "attention (SDPA)\n",
               dnn.cudnnGetVersion());
    }
#else
    puts("cuDNN: no cudnn.h at build time (make CUDNN_DIR=<folder with include/, lib/>), no cuDNN column");
#endif
    for (int i = 0; i < N_CASES; i++) {
        bool run = n_only == 0;
        for (int k = 0; k < n_only; k++) run |= strstr(CASES[i].name, only[k]) != NULL;
        if (!run) continue;
        for (int t = 0; t < n_dtypes; t++) bench(&CASES[i], dtypes[t], batch, &refs);
    }
    cublasDestroy(refs.cublas);
#ifdef BENCH_CUDNN
    if (refs.cudnn) dnn.cudnnDestroy(refs.cudnn);
#endif
    return 0;
}
#endif
