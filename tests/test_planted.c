// suite_planted: copies of real CUDA kernels with one planted bug each
// (tests/planted/*.sed, compiled for the emulator under their own names) must fail
// the same comparison with the CPU reference that the op harness makes, while the
// real kernel passes it. This shows the emulator executes the CUDA model faithfully
// enough for the harness to catch a missing barrier or an off-by-one bound.
#include <stdlib.h>

#include "core/rng.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu.h"
#include "tests/harness.h"
#include "tests/test.h"

typedef void (*layer_norm_fn)(tensor *, tensor *, tensor *, const tensor *, const tensor *,
                              const tensor *, int64_t, int64_t, float);
typedef void (*group_norm_fn)(tensor *, tensor *, tensor *, const tensor *, const tensor *,
                              const tensor *, int64_t, int64_t, int64_t, int64_t, float, bool);

void emu_layer_norm_forward(tensor *, tensor *, tensor *, const tensor *, const tensor *,
                            const tensor *, int64_t, int64_t, float);
void planted_norm_off_by_one_layer_norm_forward(tensor *, tensor *, tensor *, const tensor *,
                                                const tensor *, const tensor *, int64_t, int64_t,
                                                float);
void emu_group_norm_forward(tensor *, tensor *, tensor *, const tensor *, const tensor *,
                            const tensor *, int64_t, int64_t, int64_t, int64_t, float, bool);
void planted_norm_no_tree_barrier_group_norm_forward(tensor *, tensor *, tensor *,
                                                     const tensor *, const tensor *,
                                                     const tensor *, int64_t, int64_t, int64_t,
                                                     int64_t, float, bool);

static tensor *random_on(device dev, uint64_t seed, int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    float *v = xmalloc((size_t)n * sizeof *v);
    rng_stream s = {seed, 0};
    rng_fill_normal(&s, v, (size_t)n);
    tensor *t = tensor_from_f32(DT_F32, dev, ndim, shape, v);
    free(v);
    return t;
}

static double error_against(const tensor *ours, const tensor *ref) {
    int64_t n = tensor_numel(ref);
    float *a = xmalloc((size_t)n * sizeof *a), *b = xmalloc((size_t)n * sizeof *b);
    tensor_copy_to_f32(ours, a, (size_t)n);
    tensor_copy_to_f32(ref, b, (size_t)n);
    double err = rel_error(a, b, n);
    free(a), free(b);
    return err;
}

// Output relative error of a layer-norm launcher on cuda-emu against the CPU.
static double layer_norm_error(layer_norm_fn fn) {
    const int64_t rows = 37, cols = 100;
    const int64_t shape[2] = {rows, cols}, row_shape[1] = {rows}, col_shape[1] = {cols};
    double err = 0;
    tensor *x[2], *gamma[2], *beta[2], *out[2], *mean[2], *rstd[2];
    for (int side = 0; side < 2; side++) {
        device dev = side ? DEV_CUDA_EMU : DEV_CPU;
        x[side] = random_on(dev, 1, 2, shape);
        gamma[side] = random_on(dev, 2, 1, col_shape);
        beta[side] = random_on(dev, 3, 1, col_shape);
        out[side] = tensor_new(DT_F32, dev, 2, shape);
        mean[side] = tensor_new(DT_F32, dev, 1, row_shape);
        rstd[side] = tensor_new(DT_F32, dev, 1, row_shape);
    }
    cpu_layer_norm_forward(out[0], mean[0], rstd[0], x[0], gamma[0], beta[0], rows, cols, 1e-5f);
    fn(out[1], mean[1], rstd[1], x[1], gamma[1], beta[1], rows, cols, 1e-5f);
    err = error_against(out[1], out[0]);
    for (int side = 0; side < 2; side++) {
        tensor *all[] = {x[side], gamma[side], beta[side], out[side], mean[side], rstd[side]};
        for (int i = 0; i < 6; i++) tensor_free(all[i]);
    }
    return err;
}

// Output relative error of a group-norm launcher on cuda-emu against the CPU. S is
// large enough to give the statistics many chunks: with one, every thread of the
// finalize tree but the first adds zeros and any order gives the right sum.
static double group_norm_error(group_norm_fn fn) {
    const int64_t N = 2, S = 64 * 64, C = 64, G = 32;
    const int64_t shape[3] = {N, S, C}, stat_shape[2] = {N, G}, ch_shape[1] = {C};
    tensor *x[2], *gamma[2], *beta[2], *out[2], *mean[2], *rstd[2];
    for (int side = 0; side < 2; side++) {
        device dev = side ? DEV_CUDA_EMU : DEV_CPU;
        x[side] = random_on(dev, 4, 3, shape);
        gamma[side] = random_on(dev, 5, 1, ch_shape);
        beta[side] = random_on(dev, 6, 1, ch_shape);
        out[side] = tensor_new(DT_F32, dev, 3, shape);
        mean[side] = tensor_new(DT_F32, dev, 2, stat_shape);
        rstd[side] = tensor_new(DT_F32, dev, 2, stat_shape);
    }
    cpu_group_norm_forward(out[0], mean[0], rstd[0], x[0], gamma[0], beta[0], N, S, C, G, 1e-5f,
                           false);
    fn(out[1], mean[1], rstd[1], x[1], gamma[1], beta[1], N, S, C, G, 1e-5f, false);
    double err = error_against(out[1], out[0]);
    for (int side = 0; side < 2; side++) {
        tensor *all[] = {x[side], gamma[side], beta[side], out[side], mean[side], rstd[side]};
        for (int i = 0; i < 6; i++) tensor_free(all[i]);
    }
    return err;
}

void suite_planted(void) {
    const double tol = 1e-5;  // the harness's f32 bar
    test_begin("planted/layer_norm with its mean loop one column short is caught");
    double real = layer_norm_error(emu_layer_norm_forward);
    double bug = layer_norm_error(planted_norm_off_by_one_layer_norm_forward);
    EXPECT(real <= tol, "the real kernel fails: %.3g", real);
    EXPECT(bug > tol, "the off-by-one passed: error %.3g", bug);
    printf("  real kernel %.2g, planted off-by-one %.2g\n", real, bug);
    test_end();

    test_begin("planted/group_norm without the barrier between tree levels is caught");
    real = group_norm_error(emu_group_norm_forward);
    bug = group_norm_error(planted_norm_no_tree_barrier_group_norm_forward);
    EXPECT(real <= tol, "the real kernel fails: %.3g", real);
    EXPECT(bug > tol, "the missing barrier passed: error %.3g", bug);
    printf("  real kernel %.2g, planted missing barrier %.2g\n", real, bug);
    test_end();
}
