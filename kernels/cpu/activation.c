#include <math.h>

#include "core/check.h"
#include "kernels/activation_math.h"
#include "kernels/cpu/cpu.h"

void cpu_unary_forward(tensor *out, const tensor *in, unary_op op, float param) {
    float *y = cpu_f32(out);
    const float *x = cpu_f32(in);
    int64_t n = tensor_numel(out);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = activate(x[i], op, param);
}

void cpu_unary_backward(tensor *d_in, const tensor *d_out, const tensor *in, unary_op op,
                        float param) {
    float *dx = cpu_f32(d_in);
    const float *dy = cpu_f32(d_out), *x = cpu_f32(in);
    int64_t n = tensor_numel(d_in);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * activate_grad(x[i], op, param);
}

void cpu_geglu_forward(tensor *out, const tensor *x_t, int64_t rows, int64_t F) {
    float *y = cpu_f32(out);
    const float *x = cpu_f32(x_t);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *value = x + r * 2 * F, *gate = value + F;
        for (int64_t j = 0; j < F; j++) y[r * F + j] = value[j] * gelu(gate[j]);
    }
}

void cpu_geglu_backward(tensor *d_x, const tensor *d_out, const tensor *x_t, int64_t rows,
                        int64_t F) {
    float *dx = cpu_f32(d_x);
    const float *dy = cpu_f32(d_out), *x = cpu_f32(x_t);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *value = x + r * 2 * F, *gate = value + F;
        float *d_value = dx + r * 2 * F, *d_gate = d_value + F;
        for (int64_t j = 0; j < F; j++) {
            float g = dy[r * F + j];
            d_value[j] = g * gelu(gate[j]);
            d_gate[j] = g * value[j] * gelu_grad(gate[j]);
        }
    }
}
