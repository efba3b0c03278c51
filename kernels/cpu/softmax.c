#include <math.h>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/exp.h"

float cpu_softmax_row(float *y, const float *x, int64_t n) {
    // Subtracting the row max keeps exp from overflowing; the result is unchanged.
    float max = x[0];
#pragma omp simd reduction(max : max)
    for (int64_t j = 1; j < n; j++) max = x[j] > max ? x[j] : max;
    float sum = cpu_exp_shifted(y, x, n, max);
    float inv = 1.0f / sum;
#pragma omp simd
    for (int64_t j = 0; j < n; j++) y[j] *= inv;
    return max + logf(sum);
}

void cpu_softmax_forward(tensor *out, const tensor *x_t, int64_t rows, int64_t cols) {
    float *y = cpu_f32(out);        // [rows, cols]
    const float *x = cpu_f32(x_t);  // [rows, cols]
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) cpu_softmax_row(y + r * cols, x + r * cols, cols);
}

void cpu_softmax_backward(tensor *d_x, const tensor *d_out, const tensor *out, int64_t rows,
                          int64_t cols) {
    float *dx = cpu_f32(d_x);                             // [rows, cols]
    const float *dy = cpu_f32(d_out), *y = cpu_f32(out);  // [rows, cols]
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *dyr = dy + r * cols, *yr = y + r * cols;
        float dot = 0.0f;
        for (int64_t j = 0; j < cols; j++) dot += dyr[j] * yr[j];
        for (int64_t j = 0; j < cols; j++) dx[r * cols + j] = yr[j] * (dyr[j] - dot);
    }
}
