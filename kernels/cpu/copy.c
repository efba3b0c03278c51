#include <string.h>

#include "core/check.h"
#include "core/half.h"
#include "core/rng.h"
#include "kernels/cpu/cpu.h"

static float load_float(const void *base, dtype dt, int64_t i) {
    switch (dt) {
    case DT_F32: return ((const float *)base)[i];
    case DT_F16: return f16_to_f32(((const uint16_t *)base)[i]);
    case DT_BF16: return bf16_to_f32(((const uint16_t *)base)[i]);
    default: DIE("not a float dtype: %s", dtype_name(dt));
    }
}

static void store_float(void *base, dtype dt, int64_t i, float v) {
    switch (dt) {
    case DT_F32: ((float *)base)[i] = v; break;
    case DT_F16: ((uint16_t *)base)[i] = f32_to_f16(v); break;
    case DT_BF16: ((uint16_t *)base)[i] = f32_to_bf16(v); break;
    default: DIE("not a float dtype: %s", dtype_name(dt));
    }
}

void cpu_copy(tensor *out, const tensor *in) {
    CHECK(tensor_numel(out) == tensor_numel(in), "copy of %lld into %lld elements",
          (long long)tensor_numel(in), (long long)tensor_numel(out));
    CHECK(out->dtype == in->dtype || (dtype_is_float(out->dtype) && dtype_is_float(in->dtype)),
          "copy from %s to %s", dtype_name(in->dtype), dtype_name(out->dtype));
    int64_t n = tensor_numel(out);
    void *dst = tensor_data(out);
    const void *src = tensor_data(in);
    bool both_contiguous = tensor_is_contiguous(out) && tensor_is_contiguous(in);
    if (out->dtype == in->dtype && both_contiguous) {
        memmove(dst, src, (size_t)n * dtype_size(in->dtype));
        return;
    }
    if (out->dtype == in->dtype) {
        size_t es = dtype_size(in->dtype);
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; i++) {
            int64_t so = cpu_strided_offset(i, in->ndim, in->shape, in->stride);
            int64_t doff = cpu_strided_offset(i, out->ndim, out->shape, out->stride);
            memcpy((char *)dst + doff * (int64_t)es, (const char *)src + so * (int64_t)es, es);
        }
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        int64_t so = both_contiguous ? i : cpu_strided_offset(i, in->ndim, in->shape, in->stride);
        int64_t doff = both_contiguous ? i : cpu_strided_offset(i, out->ndim, out->shape, out->stride);
        store_float(dst, out->dtype, doff, load_float(src, in->dtype, so));
    }
}

void cpu_fill(tensor *out, float value) {
    CHECK(tensor_is_contiguous(out), "fill needs a contiguous tensor");
    int64_t n = tensor_numel(out);
    void *dst = tensor_data(out);
    if (out->dtype == DT_I32 || out->dtype == DT_I64) {
        for (int64_t i = 0; i < n; i++) {
            if (out->dtype == DT_I32)
                ((int32_t *)dst)[i] = (int32_t)value;
            else
                ((int64_t *)dst)[i] = (int64_t)value;
        }
        return;
    }
    for (int64_t i = 0; i < n; i++) store_float(dst, out->dtype, i, value);
}

void cpu_fill_normal(tensor *out, uint64_t seed, uint64_t offset) {
    CHECK(tensor_is_contiguous(out), "fill_normal needs a contiguous tensor");
    int64_t n = tensor_numel(out);
    void *dst = tensor_data(out);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        store_float(dst, out->dtype, i, rng_normal_at(seed, offset + (uint64_t)i));
}

void cpu_fill_dropout_mask(tensor *out, uint64_t seed, uint64_t offset, float p) {
    CHECK(tensor_is_contiguous(out), "fill_dropout_mask needs a contiguous tensor");
    int64_t n = tensor_numel(out);
    void *dst = tensor_data(out);
    const float keep = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        store_float(dst, out->dtype, i, rng_uniform_at(seed, offset + (uint64_t)i) < p ? 0.0f : keep);
}
