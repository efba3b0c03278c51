// The activation formulas and their derivatives, shared by the CPU and CUDA backends
// (kernels/cpu/activation.c, kernels/cuda/activation.cu, and the SiLU fused into both
// group norms) so all compute the same thing.
#pragma once
#include <math.h>

#include "core/host_device.h"
#include "kernels/backend.h"

#define SQRT_HALF 0.70710678118654752440f
#define INV_SQRT_2PI 0.39894228040143267794f
#define SQRT_2_OVER_PI 0.79788456080286535588f
#define GELU_TANH_COEF 0.044715f
#define QUICK_GELU_ALPHA 1.702f

HOST_DEVICE float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

HOST_DEVICE float silu(float x) { return x * sigmoid(x); }
// d silu(x) / dx = s * (1 + x * (1 - s)) with s = sigmoid(x).
HOST_DEVICE float silu_grad(float x) {
    float s = sigmoid(x);
    return s * (1.0f + x * (1.0f - s));
}

HOST_DEVICE float gelu(float x) { return 0.5f * x * (1.0f + erff(x * SQRT_HALF)); }
HOST_DEVICE float gelu_grad(float x) {
    return 0.5f * (1.0f + erff(x * SQRT_HALF)) + x * INV_SQRT_2PI * expf(-0.5f * x * x);
}

HOST_DEVICE float activate(float x, unary_op op, float param) {
    switch (op) {
    case UN_SILU: return silu(x);
    case UN_GELU: return gelu(x);
    case UN_GELU_TANH:
        return 0.5f * x * (1.0f + tanhf(SQRT_2_OVER_PI * (x + GELU_TANH_COEF * x * x * x)));
    case UN_QUICK_GELU: return x * sigmoid(QUICK_GELU_ALPHA * x);
    case UN_SCALE: return param * x;
    }
    return 0.0f;
}

// d activate(x) / dx; a launch uses one op, so on the GPU the switch is uniform.
HOST_DEVICE float activate_grad(float x, unary_op op, float param) {
    switch (op) {
    case UN_SILU: return silu_grad(x);
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
