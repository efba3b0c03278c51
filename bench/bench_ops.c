// bench_ops: CPU timings of the UNet's hot ops at Stable Diffusion 1.5 shapes.
//
// Prints one JSON line per case:
//   {"name": ..., "shape": ..., "threads": T, "repeats": R, "seconds": median,
//    "min_seconds": fastest, "gflops": G or null, "gbps": B or null}
// bench/bench_ops.py runs this binary, runs the same ops in PyTorch and prints the
// comparison; see bench/README.md.
//
//   bench_ops [--list] [--only NAME]... [--repeats N]
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench_util.h"
#include "core/rng.h"
#include "kernels/autograd.h"
#include "kernels/ops.h"
#include "kernels/tensor.h"

typedef enum { K_CONV, K_ATTN, K_GROUP_NORM, K_LINEAR, K_LAYER_NORM, K_SILU, K_GELU } op_kind;

// One case: an op, its sizes, and whether the timed region includes the backward.
// The meaning of d[] depends on the kind:
//   K_CONV        N, H, W, Cin, Cout        (3x3, stride 1, pad 1, with bias)
//   K_ATTN        B, Nq, Nk, heads, head_dim
//   K_GROUP_NORM  N, H, W, C, groups
//   K_LINEAR      M, in, out                (with bias; x is [1, M, in])
//   K_LAYER_NORM  M, C                      (x is [1, M, C])
//   K_SILU/GELU   N, H, W, C
typedef struct {
    const char *name;
    const char *shape;  // our (channels-last) layout, for the table
    op_kind kind;
    bool backward;
    int64_t d[5];
} bench_case;

static const bench_case CASES[] = {
    {"conv2d_320_64x64", "x[1,64,64,320] w[320,3,3,320]", K_CONV, false, {1, 64, 64, 320, 320}},
    {"conv2d_320_64x64_fwdbwd", "x[1,64,64,320] w[320,3,3,320]", K_CONV, true,
     {1, 64, 64, 320, 320}},
    {"conv2d_640_32x32", "x[1,32,32,640] w[640,3,3,640]", K_CONV, false, {1, 32, 32, 640, 640}},
    {"conv2d_1280_16x16", "x[1,16,16,1280] w[1280,3,3,1280]", K_CONV, false,
     {1, 16, 16, 1280, 1280}},
    {"conv2d_1280_8x8", "x[1,8,8,1280] w[1280,3,3,1280]", K_CONV, false, {1, 8, 8, 1280, 1280}},
    {"attn_self_4096", "q,k,v[1,4096,8*40]", K_ATTN, false, {1, 4096, 4096, 8, 40}},
    {"attn_self_4096_fwdbwd", "q,k,v[1,4096,8*40]", K_ATTN, true, {1, 4096, 4096, 8, 40}},
    {"attn_cross_4096x77", "q[1,4096,8*40] k,v[1,77,8*40]", K_ATTN, false, {1, 4096, 77, 8, 40}},
    {"group_norm_64x64x320", "x[1,64,64,320] 32 groups", K_GROUP_NORM, false, {1, 64, 64, 320, 32}},
    {"linear_4096x320x320", "x[1,4096,320] w[320,320]", K_LINEAR, false, {4096, 320, 320}},
    {"linear_geglu_4096x320x2560", "x[1,4096,320] w[2560,320]", K_LINEAR, false,
     {4096, 320, 2560}},
    {"layer_norm_4096x320", "x[1,4096,320]", K_LAYER_NORM, false, {4096, 320}},
    {"silu_64x64x320", "x[1,64,64,320]", K_SILU, false, {1, 64, 64, 320}},
    {"gelu_64x64x320", "x[1,64,64,320]", K_GELU, false, {1, 64, 64, 320}},
};
enum { N_CASES = sizeof CASES / sizeof CASES[0], MAX_TENSORS = 6 };


// The case's inputs, then (for a backward case) the upstream gradient last.
typedef struct {
    tensor *t[MAX_TENSORS];
    int n_inputs;  // t[0..n_inputs) are op inputs
    tensor *grad_out;
} case_data;

static void setup(const bench_case *c, case_data *cd) {
    const int64_t *d = c->d;
    memset(cd, 0, sizeof *cd);
    switch (c->kind) {
    case K_CONV:
        cd->t[0] = bench_randn(SHAPE(d[0], d[1], d[2], d[3]));
        cd->t[1] = bench_randn(SHAPE(d[4], 3, 3, d[3]));
        cd->t[2] = bench_randn(SHAPE(d[4]));
        cd->n_inputs = 3;
        if (c->backward) cd->grad_out = bench_randn(SHAPE(d[0], d[1], d[2], d[4]));
        break;
    case K_ATTN:
        cd->t[0] = bench_randn(SHAPE(d[0], d[1], d[3] * d[4]));
        cd->t[1] = bench_randn(SHAPE(d[0], d[2], d[3] * d[4]));
        cd->t[2] = bench_randn(SHAPE(d[0], d[2], d[3] * d[4]));
        cd->n_inputs = 3;
        if (c->backward) cd->grad_out = bench_randn(SHAPE(d[0], d[1], d[3] * d[4]));
        break;
    case K_GROUP_NORM:
        cd->t[0] = bench_randn(SHAPE(d[0], d[1], d[2], d[3]));
        cd->t[1] = bench_randn(SHAPE(d[3]));
        cd->t[2] = bench_randn(SHAPE(d[3]));
        cd->n_inputs = 3;
        break;
    case K_LINEAR:
        cd->t[0] = bench_randn(SHAPE(1, d[0], d[1]));
        cd->t[1] = bench_randn(SHAPE(d[2], d[1]));
        cd->t[2] = bench_randn(SHAPE(d[2]));
        cd->n_inputs = 3;
        break;
    case K_LAYER_NORM:
        cd->t[0] = bench_randn(SHAPE(1, d[0], d[1]));
        cd->t[1] = bench_randn(SHAPE(d[1]));
        cd->t[2] = bench_randn(SHAPE(d[1]));
        cd->n_inputs = 3;
        break;
    case K_SILU:
    case K_GELU:
        cd->t[0] = bench_randn(SHAPE(d[0], d[1], d[2], d[3]));
        cd->n_inputs = 1;
        break;
    }
    // Training differentiates with respect to the activations and the weights alike
    // (full fine-tuning), so every input gets a gradient slot.
    if (c->backward)
        for (int i = 0; i < cd->n_inputs; i++) tensor_set_requires_grad(cd->t[i], true);
}

static void teardown(case_data *cd) {
    for (int i = 0; i < MAX_TENSORS; i++) tensor_free(cd->t[i]);
    tensor_free(cd->grad_out);
}

// The timed region: the op (and its backward, for a backward case), freeing the
// result included, since a real step frees it too.
static void run_once(const bench_case *c, case_data *cd) {
    tensor **t = cd->t;
    tensor *y = NULL;
    switch (c->kind) {
    case K_CONV: y = op_conv2d(t[0], t[1], t[2], 1, 1); break;
    case K_ATTN: y = op_attention(t[0], t[1], t[2], (int)c->d[3], false); break;
    case K_GROUP_NORM: y = op_group_norm(t[0], t[1], t[2], (int)c->d[4], 1e-5f); break;
    case K_LINEAR: y = op_linear(t[0], t[1], t[2]); break;
    case K_LAYER_NORM: y = op_layer_norm(t[0], t[1], t[2], 1e-5f); break;
    case K_SILU: y = op_silu(t[0]); break;
    case K_GELU: y = op_gelu(t[0], false); break;
    }
    if (c->backward) autograd_backward(y, cd->grad_out);
    tensor_free(y);
}

// Untimed, between repeats: drop the accumulated gradients so every repeat does
// the same work (the first accumulation allocates, later ones would add).
static void reset(const bench_case *c, case_data *cd) {
    if (!c->backward) return;
    for (int i = 0; i < cd->n_inputs; i++) tensor_zero_grad(cd->t[i]);
}

// Nominal work, for the rate columns. Matrix products count 2 flops per
// multiply-add; a backward counts as twice its forward (one product for the input
// gradient, one for the weight or key/value gradient), recomputation not counted.
// Memory-bound ops report bytes instead: one read of x and one write of y.
static void nominal_work(const bench_case *c, double *flops, double *bytes) {
    const int64_t *d = c->d;
    double f = 0, b = 0;
    switch (c->kind) {
    case K_CONV: f = 2.0 * d[0] * d[1] * d[2] * d[4] * d[3] * 9; break;
    case K_ATTN: f = 4.0 * d[0] * d[3] * d[1] * d[2] * d[4]; break;  // QK^T and PV
    case K_LINEAR: f = 2.0 * d[0] * d[1] * d[2]; break;
    case K_GROUP_NORM:
    case K_SILU:
    case K_GELU: b = 2.0 * 4 * d[0] * d[1] * d[2] * d[3]; break;
    case K_LAYER_NORM: b = 2.0 * 4 * d[0] * d[1]; break;
    }
    if (c->backward) f *= 3, b *= 3;
    *flops = f, *bytes = b;
}


// Default repeats, cut down for slow cases so that a case's timed runs take about
// CASE_BUDGET_SECONDS at most and the whole run stays short on 2 cores. A case that
// runs for seconds gets a single timed run: at that length one run is steady.
enum { DEFAULT_REPEATS = 5, MAX_REPEATS = 1000 };
static const double CASE_BUDGET_SECONDS = 5.0;

static int default_repeats(double warm_seconds) {
    int r = DEFAULT_REPEATS;
    if (warm_seconds * r > CASE_BUDGET_SECONDS) r = (int)(CASE_BUDGET_SECONDS / warm_seconds);
    return r < 1 ? 1 : r;
}

static void bench(const bench_case *c, int repeats /*0: default*/) {
    case_data cd;
    setup(c, &cd);
    if (!c->backward) autograd_no_grad_begin();

    // Warm-up: first-touch page faults, OpenMP/OpenBLAS thread start-up and any
    // lazily packed weights would otherwise land in the first repeat.
    double t0 = now_seconds();
    run_once(c, &cd);
    double warm = now_seconds() - t0;
    reset(c, &cd);
    if (repeats <= 0) repeats = default_repeats(warm);

    double times[MAX_REPEATS];
    for (int r = 0; r < repeats; r++) {
        t0 = now_seconds();
        run_once(c, &cd);
        times[r] = now_seconds() - t0;
        reset(c, &cd);
    }
    if (!c->backward) autograd_no_grad_end();
    teardown(&cd);

    double med = sorted_median(times, repeats);
    double flops, bytes;
    nominal_work(c, &flops, &bytes);
    printf("{\"name\": \"%s\", \"shape\": \"%s\", \"pass\": \"%s\", \"threads\": %d, "
           "\"repeats\": %d, \"seconds\": %.6g, \"min_seconds\": %.6g, ",
           c->name, c->shape, c->backward ? "fwd+bwd" : "fwd", omp_get_max_threads(), repeats,
           med, times[0]);
    if (flops > 0)
        printf("\"gflops\": %.4g, \"gbps\": null}\n", flops / med * 1e-9);
    else
        printf("\"gflops\": null, \"gbps\": %.4g}\n", bytes / med * 1e-9);
    fflush(stdout);  // the driver reads lines as they come
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: bench_ops [--list] [--only NAME]... [--repeats N]\n"
            "  --list       print the case names and exit\n"
            "  --only NAME  run only this case (repeatable)\n"
            "  --repeats N  timed runs per case after one warm-up (default %d, fewer\n"
            "               for slow cases: about %.0f s of timed runs, at least 1)\n"
            "Threads: OMP_NUM_THREADS (and OPENBLAS_NUM_THREADS for the GEMMs).\n",
            DEFAULT_REPEATS, CASE_BUDGET_SECONDS);
}

static const bench_case *find_case(const char *name) {
    for (int i = 0; i < N_CASES; i++)
        if (strcmp(CASES[i].name, name) == 0) return &CASES[i];
    return NULL;
}

int main(int argc, char **argv) {
    int repeats = 0;
    const bench_case *only[N_CASES];
    int n_only = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--list") == 0) {
            for (int j = 0; j < N_CASES; j++) printf("%s\n", CASES[j].name);
            return 0;
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            const bench_case *c = find_case(argv[++i]);
            if (!c) {
                fprintf(stderr, "bench_ops: no case named '%s' (see --list)\n", argv[i]);
                return 2;
            }
            if (n_only < N_CASES) only[n_only++] = c;
        } else if (strcmp(argv[i], "--repeats") == 0 && i + 1 < argc) {
            char *end;
            long r = strtol(argv[++i], &end, 10);
            if (*end || r < 1 || r > MAX_REPEATS) {
                fprintf(stderr, "bench_ops: --repeats wants 1..%d\n", MAX_REPEATS);
                return 2;
            }
            repeats = (int)r;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (n_only)
        for (int i = 0; i < n_only; i++) bench(only[i], repeats);
    else
        for (int i = 0; i < N_CASES; i++) bench(&CASES[i], repeats);
    return 0;
}
