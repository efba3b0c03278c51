// Pointwise activations: silu, gelu (erf and tanh), quick_gelu, geglu.
#include "kernels/ops/common.h"

static void unary_backward(node *n, const tensor *gy) {
    const tensor *x = n->saved[0];
    tensor *gx = tensor_new_like(x);
    be_of(x)->unary_backward(gx, gy, x, (unary_op)n->iparam[0], n->fparam[0]);
    node_accumulate(n, 0, gx);
    tensor_free(gx);
}

static tensor *unary(const char *name, tensor *x_in, unary_op op) {
    tensor *x = op_input(x_in);
    tensor *y = tensor_new_like(x);
    be_of(x)->unary_forward(y, x, op, 0.0f);
    node *n = autograd_record(name, unary_backward, y, 1, &x);
    if (n) {
        n->iparam[0] = op;
        node_save(n, x);
    }
    tensor_free(x);
    return y;
}

tensor *op_silu(tensor *x) { return unary("silu", x, UN_SILU); }
tensor *op_gelu(tensor *x, bool tanh_approx) {
    return unary(tanh_approx ? "gelu_tanh" : "gelu", x, tanh_approx ? UN_GELU_TANH : UN_GELU);
}
tensor *op_quick_gelu(tensor *x) { return unary("quick_gelu", x, UN_QUICK_GELU); }

static void geglu_backward(node *n, const tensor *gy) {
    const tensor *x = n->saved[0];
    tensor *gx = tensor_new_like(x);
    int64_t F = x->shape[x->ndim - 1] / 2;
    be_of(x)->geglu_backward(gx, gy, x, tensor_numel(x) / (2 * F), F);
    node_accumulate(n, 0, gx);
    tensor_free(gx);
}

tensor *op_geglu(tensor *x_in) {
    tensor *x = op_input(x_in);
    int64_t last = x->shape[x->ndim - 1];
    CHECK_SHAPE(x->ndim >= 1 && last % 2 == 0, "geglu", x, "last dim must be even");
    int64_t shape[TENSOR_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) shape[d] = x->shape[d];
    shape[x->ndim - 1] = last / 2;
    tensor *y = tensor_new(x->dtype, x->dev, x->ndim, shape);
    be_of(x)->geglu_forward(y, x, tensor_numel(x) / last, last / 2);
    node *n = autograd_record("geglu", geglu_backward, y, 1, &x);
    if (n) node_save(n, x);
    tensor_free(x);
    return y;
}
