#include <math.h>
#include <string.h>

#include "core/check.h"
#include "kernels/cpu/cpu.h"
#include "kernels/embedding_math.h"

void cpu_embedding_forward(tensor *out, const tensor *ids_t, const tensor *table_t, int64_t n,
                           int64_t D) {
    float *y = cpu_f32(out);                                   // [n, D]
    const int32_t *ids = (const int32_t *)tensor_data(ids_t);  // [n]
    const float *table = cpu_f32(table_t);                     // [V, D]
    int64_t V = table_t->shape[0];
    for (int64_t i = 0; i < n; i++) {
        CHECK(ids[i] >= 0 && ids[i] < V, "embedding: id %d at position %lld is outside [0, %lld)",
              (int)ids[i], (long long)i, (long long)V);
        memcpy(y + i * D, table + ids[i] * D, sizeof(float) * D);
    }
}

// Serial on purpose: repeated ids (padding tokens) add into the same row.
void cpu_embedding_backward(tensor *d_table, const tensor *d_out, const tensor *ids_t, int64_t n,
                            int64_t D) {
    float *dt = cpu_f32(d_table);                              // [V, D], accumulated into
    const float *dy = cpu_f32(d_out);                          // [n, D]
    const int32_t *ids = (const int32_t *)tensor_data(ids_t);  // [n], checked by the forward
    for (int64_t i = 0; i < n; i++) {
        float *row = dt + ids[i] * D;
        for (int64_t j = 0; j < D; j++) row[j] += dy[i * D + j];
    }
}

// Timestep embedding, computed in double. diffusers does it in float32, but t runs up
// to 1000, where floats are 6e-5 apart: float32 frequencies and products put up to
// 5e-5 of error into sin and cos. In double the result is exact to the final
// rounding to float, on every backend alike; float32 PyTorch sits within its own
// rounding error of it.
//   freq_i = exp(-ln(max_period) i / (half - downscale_freq_shift)),  arg = scale t freq_i
//   out = [sin(arg), cos(arg)] ([cos, sin] when flipped), then a zero column if dim is odd.
void cpu_timestep_embedding_forward(tensor *out, const tensor *t_t, int64_t B, int64_t dim,
                                    bool flip_sin_to_cos, float downscale_freq_shift, float scale,
                                    float max_period) {
    float *y = cpu_f32(out);        // [B, dim]
    const float *t = cpu_f32(t_t);  // [B]
    int64_t half = dim / 2;
    int64_t sin_at = flip_sin_to_cos ? half : 0, cos_at = flip_sin_to_cos ? 0 : half;
    for (int64_t b = 0; b < B; b++) {
        float *yb = y + b * dim;
        for (int64_t i = 0; i < half; i++) {
            double arg = (double)scale * t[b] *
                         timestep_frequency(i, half, downscale_freq_shift, max_period);
            yb[sin_at + i] = (float)sin(arg);
            yb[cos_at + i] = (float)cos(arg);
        }
        if (dim % 2) yb[dim - 1] = 0.0f;
    }
}

// d/dt sin(arg) = scale freq cos(arg), d/dt cos(arg) = -scale freq sin(arg).
void cpu_timestep_embedding_backward(tensor *d_t, const tensor *d_out, const tensor *t_t, int64_t B,
                                     int64_t dim, bool flip_sin_to_cos, float downscale_freq_shift,
                                     float scale, float max_period) {
    float *dt = cpu_f32(d_t);          // [B]
    const float *dy = cpu_f32(d_out);  // [B, dim]
    const float *t = cpu_f32(t_t);     // [B]
    int64_t half = dim / 2;
    int64_t sin_at = flip_sin_to_cos ? half : 0, cos_at = flip_sin_to_cos ? 0 : half;
    for (int64_t b = 0; b < B; b++) {
        const float *dyb = dy + b * dim;
        double sum = 0.0;
        for (int64_t i = 0; i < half; i++) {
            double darg =
                (double)scale * timestep_frequency(i, half, downscale_freq_shift, max_period);
            double arg = darg * t[b];
            sum += darg * (dyb[sin_at + i] * cos(arg) - dyb[cos_at + i] * sin(arg));
        }
        dt[b] = (float)sum;
    }
}
