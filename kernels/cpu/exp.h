// exp over arrays, four floats at a time. glibc's expf is one call per element (its
// vector variants are only declared under -ffast-math), and attention's softmax calls
// it Nq x Nk times per head, so this is written with GCC/clang vector extensions:
// range reduction x = n ln2 + r, |r| <= ln2 / 2, with ln2 split in two so that n ln2
// is exact; e^r by its Taylor series to r^7 (truncation under 6e-9 relative, below
// float's 6e-8 rounding); 2^n as two factors built from exponent bits (n reaches 128
// at the top of the range, past the largest single power of two). Within 1 ulp of
// expf over its normal range; 0 below -87.33 (where expf gives subnormals), inf above
// 88.72, NaN for NaN.
#pragma once
#include <stdint.h>
#include <string.h>

typedef float cpu_f32x4 __attribute__((vector_size(16)));
typedef int32_t cpu_i32x4 __attribute__((vector_size(16)));

static inline cpu_f32x4 cpu_exp4(cpu_f32x4 x) {
    const cpu_f32x4 lowest = {-87.33f, -87.33f, -87.33f, -87.33f}, highest = {88.72f, 88.72f, 88.72f, 88.72f};
    // Comparisons give lane masks (all ones or zero); selects are and/or on the bits.
    cpu_i32x4 above = (cpu_i32x4)(x > lowest), below = (cpu_i32x4)(x < lowest);
    cpu_f32x4 c = (cpu_f32x4)((above & (cpu_i32x4)x) | (~above & (cpu_i32x4)lowest));
    cpu_i32x4 over = (cpu_i32x4)(c > highest);
    c = (cpu_f32x4)((~over & (cpu_i32x4)c) | (over & (cpu_i32x4)highest));
    const float round_magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
    cpu_f32x4 n = (c * 1.4426950408889634f + round_magic) - round_magic;
    cpu_f32x4 r = (x - n * 0.693145751953125f) - n * 1.428606765330187e-6f;
    cpu_f32x4 p = r * (1.0f / 5040.0f) + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    cpu_i32x4 ni = __builtin_convertvector(n, cpu_i32x4), half = ni / 2;  // n in [-126, 128]
    cpu_f32x4 y = p * (cpu_f32x4)((half + 127) << 23) * (cpu_f32x4)((ni - half + 127) << 23);
    return (cpu_f32x4)(~below & (cpu_i32x4)y);
}

static inline float cpu_expf(float x) {
    cpu_f32x4 v = {x, x, x, x};
    return cpu_exp4(v)[0];
}

// y[j] = exp(x[j] - shift) for j < n (y may be x); returns the sum of the y.
static inline float cpu_exp_shifted(float *y, const float *x, int64_t n, float shift) {
    cpu_f32x4 sums = {0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
        cpu_f32x4 v;
        memcpy(&v, x + j, sizeof v);  // unaligned rows
        v = cpu_exp4(v - shift);
        memcpy(y + j, &v, sizeof v);
        sums += v;
    }
    float sum = (sums[0] + sums[1]) + (sums[2] + sums[3]);
    for (; j < n; j++) sum += y[j] = cpu_expf(x[j] - shift);
    return sum;
}
