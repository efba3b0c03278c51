// A line chart as an 8-bit image, for the trainer's loss curve: the raw values in a
// light color, an exponential moving average over them in a dark one, on a light
// grid (five rows, one column per tenth of the run). No text: the numbers go in the
// PNG's text chunks.
#pragma once
#include "core/image.h"

// y[n] (n >= 1) drawn over width x height pixels (RGB); ema in (0, 1) is the
// smoothing weight of the running average (0.9 keeps 90% of the past).
image_u8 plot_curve(const float *y, int n, int width, int height, float ema);
