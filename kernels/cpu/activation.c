#include <math.h>

#include "core/check.h"
#include "kernels/cpu/cpu.h"

#define SQRT_HALF 0.70710678118654752440f
#define INV_SQRT_2PI 0.39894228040143267794f
#define SQRT_2_OVER_PI 0.79788456080286535588f
#define GELU_TANH_COEF 0.044715f
#define QUICK_GELU_ALPHA 1.702f

static inline float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

static inline float gelu(float x) { return 0.5f * x * (1.0f + erff(x * SQRT_HALF)); }
static inline float gelu_grad(float x) {
    return 0.5f * (1.0f + erff(x * SQRT_HALF)) + x * INV_SQRT_2PI * expf(-0.5f * x * x);
}

static inline float activate(float x, unary_op op, float param) {
    switch (op) {
    case UN_SILU: return x * sigmoid(x);
    case UN_GELU: return gelu(x);
    case UN_GELU_TANH:
        return 0.5f * x * (1.0f + tanhf(SQRT_2_OVER_PI * (x + GELU_TANH_COEF * x * x * x)));
    case UN_QUICK_GELU: return x * sigmoid(QUICK_GELU_ALPHA * x);
    case UN_SCALE: return param * x;
    }
    return 0.0f;
}

// d activate(x) / dx
static inline float activate_grad(float x, unary_op op, float param) {
    switch (op) {
    case UN_SILU: {
        float s = sigmoid(x);
        return s * (1.0f + x * (1.0f - s));
    }
    case UN_GELU: return gelu_grad(x);
    case UN_GELU_TANH: {
        float t = tanhf(SQRT_2_OVER_PI * (x + GELU_TANH_COEF * x * x * x));
        return 0.5f * (1.0f + t) +
               0.5f * x * (1.0f - t * t) * SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_TANH_COEF * x * x);
    }
    case UN_QUICK_GELU: {
        float s = sigmoid(QUICK_GELU_ALPHA * x);
        return s + QUICK_GELU_ALPHA * x * s * (1.0f - s);
    }
    case UN_SCALE: return param;
    }
    return 0.0f;
}

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
