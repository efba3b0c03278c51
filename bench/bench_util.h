// Helpers the C benchmarks share: a monotonic clock and the median of timed runs.
#pragma once
#include <stdlib.h>
#include <time.h>

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
