// The trainer's loss chart (loss.png), drawn with cairo: the loss of every step (light)
// and its exponential moving average (dark) against the left axis, the learning rate
// (dashed) against the right one, steps along the bottom, ticks with their values, a
// title and a legend.
#pragma once
#include "core/image.h"

// loss[n] and lr[n] (lr may be NULL: no rate axis) of steps 1..n, n >= 1, on a
// width x height RGB image; ema in (0, 1) is the smoothing weight of the average (0.9
// keeps 90% of the past). Non-finite losses are left out (a gap in the line). The loss
// axis is logarithmic when every loss is positive and they span more than two decades,
// so that a spike at the start leaves the rest readable.
image_u8 plot_loss(const float *loss, const double *lr, int n, int width, int height, float ema, const char *title);
