#include "core/rng.h"

#include <math.h>

static inline void mulhilo32(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo) {
    uint64_t p = (uint64_t)a * b;
    *hi = (uint32_t)(p >> 32);
    *lo = (uint32_t)p;
}

void philox4x32_10(uint32_t out[4], const uint32_t counter[4], const uint32_t key[2]) {
    uint32_t c0 = counter[0], c1 = counter[1], c2 = counter[2], c3 = counter[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint32_t hi0, lo0, hi1, lo1;
        mulhilo32(0xD2511F53u, c0, &hi0, &lo0);
        mulhilo32(0xCD9E8D57u, c2, &hi1, &lo1);
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += 0x9E3779B9u;  // the key schedule adds the Weyl constants every round
        k1 += 0xBB67AE85u;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

static void block_at(uint32_t x[4], uint64_t seed, uint64_t block) {
    const uint32_t counter[4] = {(uint32_t)block, (uint32_t)(block >> 32), 0, 0};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    philox4x32_10(x, counter, key);
}

static double unit_open(uint32_t x) { return ((double)x + 0.5) * (1.0 / 4294967296.0); }

float rng_uniform_at(uint64_t seed, uint64_t index) {
    uint32_t x[4];
    block_at(x, seed, index / 4);
    return (float)unit_open(x[index % 4]);
}

float rng_normal_at(uint64_t seed, uint64_t index) {
    uint32_t x[4];
    block_at(x, seed, index / 4);
    unsigned lane = (unsigned)(index % 4), pair = lane & ~1u;
    double r = sqrt(-2.0 * log(unit_open(x[pair])));
    double th = 6.283185307179586476925 * unit_open(x[pair + 1]);
    return (float)(lane & 1u ? r * sin(th) : r * cos(th));
}

void rng_fill_normal(rng_stream *s, float *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = rng_normal_at(s->seed, s->offset + i);
    s->offset += n;
}

void rng_fill_uniform(rng_stream *s, float *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = rng_uniform_at(s->seed, s->offset + i);
    s->offset += n;
}

uint32_t rng_below(rng_stream *s, uint32_t n) {
    uint32_t x[4];
    block_at(x, s->seed, s->offset / 4);
    uint32_t draw = x[s->offset % 4];
    s->offset++;
    // Multiply-shift maps a 32-bit draw to [0, n); its bias is below n / 2^32.
    return (uint32_t)(((uint64_t)draw * n) >> 32);
}
