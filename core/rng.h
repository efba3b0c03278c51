// Counter-based random numbers: Philox4x32-10 (Salmon et al., SC'11).
//
// Every draw is a pure function of (seed, index), so a CUDA kernel can produce the
// same stream in any order: element j of a stream comes from block j/4 and lane j%4.
//   block b    = philox4x32_10(counter = {b_lo, b_hi, 0, 0}, key = {seed_lo, seed_hi})
//   uniform(j) = (x[j%4] + 0.5) * 2^-32                         in (0, 1)
//   normal(j)  = Box-Muller on the lane pair (0,1) or (2,3) of block j/4:
//                r = sqrt(-2 ln u_even), th = 2 pi u_odd,
//                normal = r cos th (even lane) or r sin th (odd lane)
// The Box-Muller step is computed in double and rounded to float, so that a
// device's libm, which may differ from glibc by an ulp in double, still lands on
// the same float in all but vanishingly rare cases.
#pragma once
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "core/host_device.h"

HOST_DEVICE void philox4x32_10(uint32_t out[4], const uint32_t counter[4], const uint32_t key[2]) {
    uint32_t c0 = counter[0], c1 = counter[1], c2 = counter[2], c3 = counter[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
        c0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        c1 = (uint32_t)p1;
        c2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c3 = (uint32_t)p0;
        k0 += 0x9E3779B9u;  // the key schedule adds the Weyl constants every round
        k1 += 0xBB67AE85u;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

HOST_DEVICE void rng_block_at(uint32_t x[4], uint64_t seed, uint64_t block) {
    const uint32_t counter[4] = {(uint32_t)block, (uint32_t)(block >> 32), 0, 0};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    philox4x32_10(x, counter, key);
}

HOST_DEVICE double rng_unit_open(uint32_t x) { return ((double)x + 0.5) * (1.0 / 4294967296.0); }

HOST_DEVICE float rng_uniform_at(uint64_t seed, uint64_t index) {
    uint32_t x[4];
    rng_block_at(x, seed, index / 4);
    return (float)rng_unit_open(x[index % 4]);
}

HOST_DEVICE float rng_normal_at(uint64_t seed, uint64_t index) {
    uint32_t x[4];
    rng_block_at(x, seed, index / 4);
    unsigned lane = (unsigned)(index % 4), pair = lane & ~1u;
    double r = sqrt(-2.0 * log(rng_unit_open(x[pair])));
    double th = 6.283185307179586476925 * rng_unit_open(x[pair + 1]);
    return (float)(lane & 1u ? r * sin(th) : r * cos(th));
}

#ifdef __cplusplus
extern "C" {
#endif

// A stream: a seed and the index of its next draw. Plain data, so saving it in a
// training checkpoint is enough to resume the exact sequence.
typedef struct {
    uint64_t seed;
    uint64_t offset;
} rng_stream;

void rng_fill_normal(rng_stream *s, float *out, size_t n);
void rng_fill_uniform(rng_stream *s, float *out, size_t n);
// A uniform integer in [0, n), one draw of the stream.
uint32_t rng_below(rng_stream *s, uint32_t n);

#ifdef __cplusplus
}
#endif
