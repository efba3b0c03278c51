// AdamW over the trainable tensors, in parameter groups with their own learning
// rates (the UNet's and the text encoder's adapters), with gradient clipping by the
// global norm as torch.nn.utils.clip_grad_norm_ does it. Moments are f32 tensors on
// the parameters' device.
#pragma once
#include "kernels/ops.h"

typedef struct {
    int count;
    tensor **params;  // borrowed
    int *group;       // group of each parameter
    tensor **m, **v;  // first and second moments, owned
    int64_t step;     // optimizer steps taken
} adamw_state;

void adamw_init(adamw_state *s, int count, tensor *const *params, const int *group);
void adamw_free(adamw_state *s);

// The global L2 norm of the parameters' gradients (0 for those without one).
double grad_global_norm(const adamw_state *s);

// Clips the gradients to max_norm (when > 0) as clip_grad_norm_ does (coefficient
// max_norm / (norm + 1e-6), applied only when below 1), then takes one AdamW step of
// every parameter that has a gradient, with cfg's settings and lr[group]. Returns the
// gradient norm before clipping.
double adamw_clip_and_step(adamw_state *s, const adamw_config *cfg, const double *lr, double max_norm);

// Drops every parameter's accumulated gradient.
void adamw_zero_grad(adamw_state *s);
