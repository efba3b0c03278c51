// The timestep embedding's frequencies, shared by the CPU and CUDA backends
// (kernels/cpu/embedding.c, kernels/cuda/embedding.cu) so both compute the same
// thing; in double, as kernels/cpu/embedding.c explains.
#pragma once
#include <math.h>
#include <stdint.h>

#include "core/host_device.h"

HOST_DEVICE double timestep_frequency(int64_t i, int64_t half, float downscale_freq_shift,
                                      float max_period) {
    return exp(-log((double)max_period) * (double)i / ((double)half - downscale_freq_shift));
}
