#include "kernels/cpu/cpu.h"

// Sums run in double: a 4x64x64 latent per sample is 16384 terms.
void cpu_mse_loss_forward(tensor *loss, const tensor *pred_t, const tensor *target_t,
                          const tensor *weights_t, int64_t N, int64_t per_sample) {
    const float *pred = cpu_f32(pred_t), *target = cpu_f32(target_t);  // [N, per_sample]
    const float *w = cpu_f32(weights_t);                               // [N] or NULL
    double total = 0.0;
    for (int64_t n = 0; n < N; n++) {
        const float *p = pred + n * per_sample, *t = target + n * per_sample;
        double sum = 0.0;
#pragma omp parallel for reduction(+ : sum) schedule(static)
        for (int64_t j = 0; j < per_sample; j++) {
            double diff = (double)p[j] - t[j];
            sum += diff * diff;
        }
        total += (w ? w[n] : 1.0) * sum / (double)per_sample;
    }
    cpu_f32(loss)[0] = (float)(total / (double)N);
}

// d loss / d pred[n, j] = d_loss * w[n] * 2 (pred - target) / (N per_sample) = -d / d target.
void cpu_mse_loss_backward(tensor *d_pred, tensor *d_target, const tensor *d_loss,
                           const tensor *pred_t, const tensor *target_t, const tensor *weights_t,
                           int64_t N, int64_t per_sample) {
    float *dp = cpu_f32(d_pred), *dt = cpu_f32(d_target);              // [N, per_sample] or NULL
    const float *pred = cpu_f32(pred_t), *target = cpu_f32(target_t);  // [N, per_sample]
    const float *w = cpu_f32(weights_t);                               // [N] or NULL
    double g = 2.0 * cpu_f32(d_loss)[0] / ((double)N * (double)per_sample);
    for (int64_t n = 0; n < N; n++) {
        float coef = (float)(g * (w ? w[n] : 1.0));
#pragma omp parallel for schedule(static)
        for (int64_t j = n * per_sample; j < (n + 1) * per_sample; j++) {
            float d = coef * (pred[j] - target[j]);
            if (dp) dp[j] = d;
            if (dt) dt[j] = -d;
        }
    }
}
