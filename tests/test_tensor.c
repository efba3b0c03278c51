#include <math.h>
#include <string.h>

#include "core/half.h"
#include "kernels/backend.h"
#include "kernels/ops.h"
#include "tests/test.h"

static void half_roundtrips(void) {
    test_begin("tensor/f16 and bf16 round-trip every bit pattern through f32");
    int bad16 = 0, badbf = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f16 = f16_to_f32((uint16_t)h), fbf = bf16_to_f32((uint16_t)h);
        if (!isnan(f16) && f32_to_f16(f16) != h) bad16++;
        if (!isnan(fbf) && f32_to_bf16(fbf) != h) badbf++;
        if (isnan(f16) && !isnan(f16_to_f32(f32_to_f16(f16)))) bad16++;
    }
    EXPECT(bad16 == 0, "%d f16 patterns do not round-trip", bad16);
    EXPECT(badbf == 0, "%d bf16 patterns do not round-trip", badbf);
    test_end();

    test_begin("tensor/f16 and bf16 round to nearest even");
    // Halfway between two representable values goes to the even one; past it, up.
    EXPECT(f32_to_f16(1.0f + 0x1p-11f) == 0x3c00, "1 + half ulp");
    EXPECT(f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3c02, "1 + 1.5 ulp");
    EXPECT(f32_to_f16(65519.0f) == 0x7bff && f32_to_f16(65520.0f) == 0x7c00, "overflow edge");
    EXPECT(f32_to_f16(0x1p-25f) == 0 && f32_to_f16(0x1.8p-25f) == 1, "subnormal edge");
    EXPECT(f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80 && f32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3f82,
           "bf16 ties");
    test_end();
}

static void views_share_storage(void) {
    test_begin("tensor/permute, slice and broadcast views address the right elements");
    float v[24];
    for (int i = 0; i < 24; i++) v[i] = (float)i;
    tensor *t = tensor_from_f32(DT_F32, DEV_CPU, SHAPE(2, 3, 4), v);
    tensor *p = op_permute(t, (int[]){2, 0, 1});  // [4, 2, 3]
    EXPECT(!tensor_is_contiguous(p) && p->st == t->st, "permute is a view");
    float pv[24];
    tensor_copy_to_f32(p, pv, 24);
    EXPECT(pv[1 * 6 + 1 * 3 + 2] == v[1 * 12 + 2 * 4 + 1], "permuted element");
    tensor *s = op_slice(t, 2, 1, 3);  // [2, 3, 2]
    float sv[12];
    tensor_copy_to_f32(s, sv, 12);
    EXPECT(sv[0] == 1 && sv[1] == 2 && sv[2] == 5 && sv[11] == 22, "sliced elements");
    tensor *row = tensor_from_f32(DT_F32, DEV_CPU, SHAPE(4), v);
    tensor *b = tensor_broadcast_view(row, 3, (int64_t[]){2, 3, 4});
    EXPECT(b->stride[0] == 0 && b->stride[1] == 0 && b->stride[2] == 1, "broadcast strides");
    tensor *r = op_reshape(p, SHAPE(8, 3));  // non-contiguous source: reshape copies
    EXPECT(tensor_is_contiguous(r) && r->st != t->st, "reshape of a permuted view copies");
    tensor *r2 = op_reshape(t, SHAPE(6, -1));
    EXPECT(r2->st == t->st && r2->shape[1] == 4, "reshape of a contiguous tensor is a view");
    tensor *objects[] = {t, p, s, row, b, r, r2};
    for (size_t i = 0; i < sizeof objects / sizeof *objects; i++) tensor_free(objects[i]);
    test_end();
}

static void casts_convert(void) {
    test_begin("tensor/f32 <-> f16 <-> bf16 copies convert element by element");
    float v[5] = {1.0f, -2.5f, 3.14159f, 65504.0f, 1e-6f}, back[5];
    dtype dts[] = {DT_F16, DT_BF16};
    for (int d = 0; d < 2; d++) {
        tensor *t = tensor_from_f32(dts[d], DEV_CPU, SHAPE(5), v);
        tensor_copy_to_f32(t, back, 5);
        const uint16_t *bits = tensor_data(t);
        for (int i = 0; i < 5; i++) {
            float want = dts[d] == DT_F16 ? f16_to_f32(f32_to_f16(v[i])) : bf16_to_f32(f32_to_bf16(v[i]));
            EXPECT(back[i] == want, "%s element %d: %g vs %g", dtype_name(dts[d]), i, back[i], want);
            EXPECT(bits[i] == (dts[d] == DT_F16 ? f32_to_f16(v[i]) : f32_to_bf16(v[i])), "bits");
        }
        tensor_free(t);
    }
    test_end();
}

// Every backend fills every dtype with the CPU's bits (a non-zero value: zero fills
// may take a memset path).
static void fills_match_cpu(void) {
    test_begin("tensor/fill writes the cpu's bits on every backend and dtype");
    const dtype dts[] = {DT_F32, DT_F16, DT_BF16, DT_I32, DT_I64};
    for (int d = DEV_CPU + 1; d < DEV_COUNT; d++) {
        if (!backend_available((device)d)) continue;
        for (size_t k = 0; k < sizeof dts / sizeof *dts; k++) {
            tensor *c = tensor_new(dts[k], DEV_CPU, SHAPE(37)), *g = tensor_new(dts[k], (device)d, SHAPE(37));
            backend_for(DEV_CPU)->fill(c, -2.75f);
            backend_for((device)d)->fill(g, -2.75f);
            unsigned char host[37 * 8];
            backend_for((device)d)->download(host, tensor_data(g), 37 * dtype_size(dts[k]));
            EXPECT(memcmp(host, tensor_data(c), 37 * dtype_size(dts[k])) == 0, "%s %s fill differs",
                   device_name((device)d), dtype_name(dts[k]));
            tensor_free(c), tensor_free(g);
        }
    }
    test_end();
}

void suite_tensor(void) {
    half_roundtrips();
    views_share_storage();
    casts_convert();
    fills_match_cpu();
}
