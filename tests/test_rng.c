#include <math.h>
#include <string.h>

#include "core/rng.h"
#include "kernels/backend.h"
#include "tests/test.h"

// Random123's published known-answer vectors for Philox4x32-10 (kat_vectors).
static void known_answers(void) {
    static const uint32_t kat[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d,
         0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09,
         0x94fdcceb, 0x5001e420, 0x24126ea1},
    };
    for (int v = 0; v < 3; v++) {
        test_begin("rng/philox4x32-10 known answer %d", v);
        uint32_t out[4];
        philox4x32_10(out, kat[v], kat[v] + 4);
        EXPECT(memcmp(out, kat[v] + 6, sizeof out) == 0, "got %08x %08x %08x %08x", out[0], out[1],
               out[2], out[3]);
        test_end();
    }
}

static void normal_statistics(void) {
    test_begin("rng/normal draws have mean 0, variance 1, no tail gaps");
    enum { N = 1 << 20 };
    static float v[N];
    rng_stream s = {1234, 0};
    rng_fill_normal(&s, v, N);
    double sum = 0, sum2 = 0;
    int beyond3 = 0;
    for (int i = 0; i < N; i++) sum += v[i], sum2 += (double)v[i] * v[i], beyond3 += fabsf(v[i]) > 3;
    double mean = sum / N, var = sum2 / N - mean * mean;
    // 5 standard errors: 5/sqrt(N) for the mean, 5*sqrt(2/N) for the variance.
    EXPECT(fabs(mean) < 5.0 / 1024, "mean %g", mean);
    EXPECT(fabs(var - 1) < 5 * sqrt(2.0 / N), "variance %g", var);
    // P(|z| > 3) = 0.0026998 for a normal distribution.
    double tail = (double)beyond3 / N;
    EXPECT(fabs(tail - 0.0026998) < 5 * sqrt(0.0027 / N), "tail mass %g", tail);
    EXPECT(s.offset == N, "stream offset %llu", (unsigned long long)s.offset);
    test_end();
}

static void streams_are_addressable(void) {
    test_begin("rng/draw j depends only on (seed, j), on every backend");
    float a[37], b[37];
    rng_stream s = {99, 5};
    rng_fill_normal(&s, a, 37);
    for (int j = 0; j < 37; j++) b[j] = rng_normal_at(99, 5 + (uint64_t)j);
    EXPECT(memcmp(a, b, sizeof a) == 0, "stream and indexed draws differ");
    tensor *t = tensor_new(DT_F32, DEV_CPU, SHAPE(37));
    backend_for(DEV_CPU)->fill_normal(t, 99, 5);
    EXPECT(memcmp(tensor_data(t), a, sizeof a) == 0, "backend fill_normal differs");
    tensor_free(t);
    // Every other backend draws the same stream, bit for bit: noise and dropout must
    // not depend on the device a run (or its resume) uses.
    for (int d = DEV_CPU + 1; d < DEV_COUNT; d++) {
        if (!backend_available((device)d)) continue;
        enum { N = 10007 };
        static float host[N], dev[N];
        tensor *c = tensor_new(DT_F32, DEV_CPU, SHAPE(N)), *g = tensor_new(DT_F32, (device)d, SHAPE(N));
        backend_for(DEV_CPU)->fill_normal(c, 42, 123);
        backend_for((device)d)->fill_normal(g, 42, 123);
        tensor_copy_to_f32(c, host, N);
        tensor_copy_to_f32(g, dev, N);
        EXPECT(memcmp(host, dev, sizeof host) == 0, "%s fill_normal differs from the cpu",
               device_name((device)d));
        tensor_free(c), tensor_free(g);
    }
    rng_stream u = {7, 0};
    uint32_t hits[10] = {0};
    for (int i = 0; i < 10000; i++) hits[rng_below(&u, 10)]++;
    for (int k = 0; k < 10; k++) EXPECT(hits[k] > 850 && hits[k] < 1150, "bucket %d: %u", k, hits[k]);
    test_end();
}

// The dropout mask: 0 where uniform(seed, offset + j) < p, else 1 / (1 - p); the
// drop rate is p; every backend draws the CPU's mask bit for bit.
static void dropout_masks(void) {
    test_begin("rng/dropout mask drops a share p, scales the rest by 1/(1-p), same on every backend");
    enum { N = 20011 };
    const float p = 0.3f;
    static float host[N], dev[N];
    tensor *c = tensor_new(DT_F32, DEV_CPU, SHAPE(N));
    backend_for(DEV_CPU)->fill_dropout_mask(c, 77, (uint64_t)5 << 32, p);
    tensor_copy_to_f32(c, host, N);
    int dropped = 0, wrong = 0;
    for (int j = 0; j < N; j++) {
        bool drop = rng_uniform_at(77, ((uint64_t)5 << 32) + (uint64_t)j) < p;
        dropped += drop;
        wrong += host[j] != (drop ? 0.0f : 1.0f / (1.0f - p));
    }
    EXPECT(wrong == 0, "%d mask values differ from the formula", wrong);
    EXPECT(fabs((double)dropped / N - p) < 5 * sqrt(p * (1 - p) / N), "drop rate %g for p %g", (double)dropped / N, p);
    for (int d = DEV_CPU + 1; d < DEV_COUNT; d++) {
        if (!backend_available((device)d)) continue;
        for (int k = 0; k < 2; k++) {  // f32, and bf16 as `device: cuda` activations
            dtype dt = k ? DT_BF16 : DT_F32;
            tensor *cc = tensor_new(dt, DEV_CPU, SHAPE(N)), *g = tensor_new(dt, (device)d, SHAPE(N));
            backend_for(DEV_CPU)->fill_dropout_mask(cc, 77, 3, p);
            backend_for((device)d)->fill_dropout_mask(g, 77, 3, p);
            tensor_copy_to_f32(cc, host, N);
            tensor_copy_to_f32(g, dev, N);
            EXPECT(memcmp(host, dev, sizeof host) == 0, "%s %s fill_dropout_mask differs from the cpu",
                   device_name((device)d), dtype_name(dt));
            tensor_free(cc), tensor_free(g);
        }
    }
    tensor_free(c);
    test_end();
}

void suite_rng(void) {
    known_answers();
    normal_statistics();
    streams_are_addressable();
    dropout_masks();
}
