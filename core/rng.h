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
#include <stddef.h>
#include <stdint.h>

void philox4x32_10(uint32_t out[4], const uint32_t counter[4], const uint32_t key[2]);

float rng_uniform_at(uint64_t seed, uint64_t index);
float rng_normal_at(uint64_t seed, uint64_t index);

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
