// Helpers the C benchmarks share: a monotonic clock, the median of timed runs and
// random inputs.
#pragma once
#include <stdlib.h>
#include <time.h>

#include "core/check.h"
#include "core/rng.h"
#include "kernels/tensor.h"

static inline double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Sorts times[n] and returns their median: a stray scheduler hiccup on a shared
// machine should not move the number as it moves a mean.
static inline double sorted_median(double *times, int n) {
    qsort(times, (size_t)n, sizeof *times, bench_cmp_double);
    return n % 2 ? times[n / 2] : 0.5 * (times[n / 2 - 1] + times[n / 2]);
}

// Random normal inputs. The values do not matter for the timing, only that they are
// ordinary floats (no denormals, no NaN) as in a real run.
static rng_stream bench_rng = {.seed = 1234, .offset = 0};

// A CPU f32 tensor of normal draws from bench_rng.
static inline tensor *bench_randn(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    float *buf = xmalloc((size_t)n * sizeof(float));
    rng_fill_normal(&bench_rng, buf, (size_t)n);
    tensor *t = tensor_from_f32(DT_F32, DEV_CPU, ndim, shape, buf);
    free(buf);
    return t;
}
