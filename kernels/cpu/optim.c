#include <math.h>

#include "core/check.h"
#include "kernels/cpu/cpu.h"

// One AdamW step per element, in the operation order of torch.optim.AdamW
// (_single_tensor_adamw): decay the weight, update both moments, then step by
// lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps). The CUDA kernel runs the same float
// expressions, so the two agree to rounding.
void cpu_adamw_update(tensor *param_t, tensor *m_t, tensor *v_t, const tensor *grad_t, float lr,
                      float beta1, float beta2, float eps, float weight_decay, float bc1,
                      float bc2) {
    float *param = cpu_f32(param_t), *m = cpu_f32(m_t), *v = cpu_f32(v_t);  // [n] each
    const float *grad = cpu_f32(grad_t);                                     // [n]
    int64_t n = tensor_numel(param_t);
    CHECK(tensor_numel(m_t) == n && tensor_numel(v_t) == n && tensor_numel(grad_t) == n,
          "adamw_update: param, m, v and grad must have one element count");
    float decay = 1.0f - lr * weight_decay, step_size = lr / bc1, bc2_sqrt = sqrtf(bc2);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float g = grad[i];
        float mi = beta1 * m[i] + (1.0f - beta1) * g;
        float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        param[i] = param[i] * decay - step_size * (mi / (sqrtf(vi) / bc2_sqrt + eps));
    }
}

// In double: a UNet weight gradient has up to ~15M elements.
void cpu_sum_squares(tensor *total, const tensor *x_t) {
    const float *x = cpu_f32(x_t);  // [n]
    int64_t n = tensor_numel(x_t);
    double sum = 0.0;
#pragma omp parallel for reduction(+ : sum) schedule(static)
    for (int64_t i = 0; i < n; i++) sum += (double)x[i] * x[i];
    cpu_f32(total)[0] += (float)sum;
}
