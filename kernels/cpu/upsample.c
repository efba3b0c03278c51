// Nearest-neighbour 2x upsampling: every input pixel becomes a 2x2 block.
#include <string.h>

#include "kernels/cpu/cpu.h"

void cpu_upsample2x_forward(tensor *out, const tensor *x_t, int64_t N, int64_t H, int64_t W,
                            int64_t C) {
    float *y = cpu_f32(out);        // [N, 2H, 2W, C]
    const float *x = cpu_f32(x_t);  // [N, H, W, C]
#pragma omp parallel for schedule(static)
    for (int64_t row = 0; row < N * 2 * H; row++) {  // output rows, over n and 2H
        const float *src = x + (row / (2 * H) * H + row % (2 * H) / 2) * W * C;
        float *dst = y + row * 2 * W * C;
        for (int64_t w = 0; w < W; w++) {
            memcpy(dst + 2 * w * C, src + w * C, (size_t)C * sizeof(float));
            memcpy(dst + (2 * w + 1) * C, src + w * C, (size_t)C * sizeof(float));
        }
    }
}

void cpu_upsample2x_backward(tensor *d_x, const tensor *d_out, int64_t N, int64_t H, int64_t W,
                             int64_t C) {
    float *dx = cpu_f32(d_x);          // [N, H, W, C]
    const float *dy = cpu_f32(d_out);  // [N, 2H, 2W, C]
    int64_t out_row = 2 * W * C;
#pragma omp parallel for schedule(static)
    for (int64_t row = 0; row < N * H; row++) {  // input rows, over n and H
        const float *top = dy + 2 * row * out_row, *bottom = top + out_row;
        float *dst = dx + row * W * C;
        for (int64_t w = 0; w < W; w++)
            for (int64_t c = 0; c < C; c++) {
                int64_t left = 2 * w * C + c, right = left + C;
                dst[w * C + c] = top[left] + top[right] + bottom[left] + bottom[right];
            }
    }
}
