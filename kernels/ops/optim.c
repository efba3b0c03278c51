// Optimizer steps: AdamW on f32 master weights and the global gradient norm. Both
// run outside autograd and work in place on the caller's tensors.
#include <math.h>

#include "kernels/ops/common.h"

// Updated in place, so these must already be what the kernel writes: contiguous f32
// of param's shape on param's device.
static void check_state(const char *what, const tensor *t, const tensor *param) {
    CHECK_SHAPE(t->dev == param->dev, "adamw_step", t, "%s must be on %s like param", what,
                device_name(param->dev));
    CHECK_SHAPE(t->dtype == DT_F32 && tensor_is_contiguous(t), "adamw_step", t,
                "%s must be contiguous f32", what);
    CHECK_SHAPE(tensor_same_shape(t, param), "adamw_step", t, "%s must be shaped as param", what);
}

void op_adamw_step(tensor *param, tensor *m, tensor *v, const tensor *grad,
                   const adamw_config *cfg, int64_t step) {
    check_state("param", param, param);
    check_state("m", m, param);
    check_state("v", v, param);
    CHECK_SHAPE(grad->dev == param->dev && tensor_same_shape(grad, param), "adamw_step", grad,
                "grad must be shaped as param, on %s", device_name(param->dev));
    CHECK(step >= 1, "adamw_step: step counts from 1, got %lld", (long long)step);
    CHECK(cfg->lr >= 0 && cfg->eps > 0 && cfg->weight_decay >= 0 && cfg->beta1 >= 0 &&
              cfg->beta1 < 1 && cfg->beta2 >= 0 && cfg->beta2 < 1,
          "adamw_step: bad config lr %g eps %g weight_decay %g betas (%g, %g)", cfg->lr,
          cfg->eps, cfg->weight_decay, cfg->beta1, cfg->beta2);
    // A bf16 gradient stays bf16 where the backend reads it natively (the CUDA kernel
    // widens it on load); elsewhere, and for any other dtype, it becomes f32 here.
    autograd_no_grad_begin();
    tensor *g = op_input((tensor *)grad);
    autograd_no_grad_end();
    // Bias corrections in double: beta2^step loses digits in float over long runs.
    float bc1 = (float)(1.0 - pow(cfg->beta1, (double)step));
    float bc2 = (float)(1.0 - pow(cfg->beta2, (double)step));
    be_of(param)->adamw_update(param, m, v, g, cfg->lr, cfg->beta1, cfg->beta2, cfg->eps,
                               cfg->weight_decay, bc1, bc2);
    tensor_free(g);
}

// The partial sums stay on the device (one scalar that every tensor adds into), so a
// step with hundreds of gradients makes one transfer to the host, not hundreds.
double op_global_norm(int n, tensor *const *xs) {
    CHECK(n >= 0, "global_norm: negative tensor count %d", n);
    if (n == 0) return 0.0;
    device dev = xs[0]->dev;
    const backend *be = backend_for(dev);
    tensor *total = tensor_new(DT_F32, dev, SHAPE(1));
    float sum = 0.0f;
    be->upload(tensor_data(total), &sum, sizeof sum);
    autograd_no_grad_begin();
    for (int i = 0; i < n; i++) {
        CHECK(xs[i], "global_norm: tensor %d is NULL", i);
        CHECK_SHAPE(xs[i]->dev == dev && dtype_is_float(xs[i]->dtype), "global_norm", xs[i],
                    "tensor %d must be a float tensor on %s", i, device_name(dev));
        tensor *x = op_input(xs[i]);
        be->sum_squares(total, x);
        tensor_free(x);
    }
    autograd_no_grad_end();
    be->download(&sum, tensor_data(total), sizeof sum);
    tensor_free(total);
    return sqrt((double)sum);
}
