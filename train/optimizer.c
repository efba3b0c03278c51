#include "train/optimizer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"

void adamw_init(adamw_state *s, int count, tensor *const *params, const int *group) {
    *s = (adamw_state){.count = count};
    s->params = xmalloc((size_t)count * sizeof *s->params);
    s->group = xmalloc((size_t)count * sizeof *s->group);
    s->m = xmalloc((size_t)count * sizeof *s->m);
    s->v = xmalloc((size_t)count * sizeof *s->v);
    for (int i = 0; i < count; i++) {
        CHECK(params[i]->dtype == DT_F32, "adamw: parameter %d is %s; trainable tensors are f32", i,
              dtype_name(params[i]->dtype));
        s->params[i] = params[i];
        s->group[i] = group ? group[i] : 0;
        s->m[i] = tensor_zeros_like(params[i]);
        s->v[i] = tensor_zeros_like(params[i]);
    }
}

void adamw_free(adamw_state *s) {
    for (int i = 0; i < s->count; i++) {
        tensor_free(s->m[i]);
        tensor_free(s->v[i]);
    }
    free(s->params), free(s->group), free(s->m), free(s->v);
    *s = (adamw_state){0};
}

double grad_global_norm(const adamw_state *s) {
    tensor **grads = xmalloc((size_t)s->count * sizeof *grads);
    int n = 0;
    for (int i = 0; i < s->count; i++) {
        tensor *g = tensor_grad(s->params[i]);
        if (g) grads[n++] = g;
    }
    double norm = n ? op_global_norm(n, grads) : 0.0;
    free(grads);
    return norm;
}

double adamw_clip_and_step(adamw_state *s, const adamw_config *cfg, const double *lr, double max_norm) {
    double norm = grad_global_norm(s);
    // torch computes the coefficient in the gradients' dtype (f32).
    float coef = max_norm > 0 ? (float)max_norm / ((float)norm + 1e-6f) : 1.0f;
    bool clip = coef < 1.0f;
    s->step++;
    autograd_no_grad_begin();
    for (int i = 0; i < s->count; i++) {
        tensor *g = tensor_grad(s->params[i]);
        if (!g) continue;
        tensor *used = clip ? op_scale(g, coef) : tensor_retain(g);
        adamw_config c = *cfg;
        c.lr = (float)lr[s->group[i]];
        op_adamw_step(s->params[i], s->m[i], s->v[i], used, &c, s->step);
        tensor_free(used);
    }
    autograd_no_grad_end();
    return norm;
}

void adamw_zero_grad(adamw_state *s) {
    for (int i = 0; i < s->count; i++) tensor_zero_grad(s->params[i]);
}
