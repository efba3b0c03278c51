#include "core/rng.h"

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
    rng_block_at(x, s->seed, s->offset / 4);
    uint32_t draw = x[s->offset % 4];
    s->offset++;
    // Multiply-shift maps a 32-bit draw to [0, n); its bias is below n / 2^32.
    return (uint32_t)(((uint64_t)draw * n) >> 32);
}
