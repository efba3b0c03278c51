// Group norm (alone or fused with the SiLU after it) and layer norm with per-channel
// gamma and beta (both required: every norm in SD has them). The forward saves the
// f32 mean and rstd for the backward.
#include "kernels/ops/common.h"

// Both norms take inputs 0 x, 1 gamma, 2 beta and save x, mean, rstd, gamma (and
// group norm beta).
// grads[i] is a new gradient buffer for input i, or NULL where none is wanted.
static void norm_grads_new(tensor *grads[3], const node *n, const tensor *gy) {
    for (int i = 0; i < 3; i++)
        grads[i] = node_needs_grad(n, i) ? tensor_new(gy->dtype, gy->dev, n->in_meta[i].ndim,
                                                      n->in_meta[i].shape)
                                         : NULL;
}

static void norm_grads_accumulate(node *n, tensor *grads[3]) {
    for (int i = 0; i < 3; i++) {
        if (!grads[i]) continue;
        node_accumulate(n, i, grads[i]);
        tensor_free(grads[i]);
    }
}

static void check_affine(const char *op, const tensor *x, const tensor *gamma,
                         const tensor *beta, int64_t C) {
    CHECK(gamma && beta, "%s: gamma and beta are required", op);
    CHECK_SHAPE(gamma->ndim == 1 && gamma->shape[0] == C, op, gamma, "gamma must be [%lld]",
                (long long)C);
    CHECK_SHAPE(beta->ndim == 1 && beta->shape[0] == C, op, beta, "beta must be [%lld]",
                (long long)C);
    CHECK(gamma->dev == x->dev && beta->dev == x->dev, "%s: operands on different devices", op);
}

// iparam holds N, S, C, G and whether the SiLU is fused; saved are x, mean, rstd,
// gamma and beta (the fused backward recomputes the normalised value from them).
static void group_norm_backward(node *n, const tensor *gy /*[N, ..., C]*/) {
    tensor *grads[3];
    norm_grads_new(grads, n, gy);
    be_of(gy)->group_norm_backward(grads[0], grads[1], grads[2], gy, n->saved[0], n->saved[1],
                                   n->saved[2], n->saved[3], n->saved[4], n->iparam[0],
                                   n->iparam[1], n->iparam[2], n->iparam[3], n->iparam[4]);
    norm_grads_accumulate(n, grads);
}

static tensor *group_norm(const char *op, tensor *x_in, tensor *gamma_in, tensor *beta_in,
                          int groups, float eps, bool silu) {
    tensor *x = op_input(x_in);
    CHECK_SHAPE(x->ndim >= 2, op, x, "input must be [N, ..., C]");
    int64_t N = x->shape[0], C = x->shape[x->ndim - 1], S = dims_product(x, 1, x->ndim - 1);
    CHECK_SHAPE(groups >= 1 && C % groups == 0, op, x, "channels must split into %d groups",
                groups);
    check_affine(op, x, gamma_in, beta_in, C);
    tensor *gamma = op_input_like(gamma_in, x), *beta = op_input_like(beta_in, x);
    tensor *y = tensor_new_like(x);
    tensor *mean = tensor_new(DT_F32, x->dev, SHAPE(N, groups));
    tensor *rstd = tensor_new(DT_F32, x->dev, SHAPE(N, groups));
    be_of(x)->group_norm_forward(y, mean, rstd, x, gamma, beta, N, S, C, groups, eps, silu);
    node *n = autograd_record(op, group_norm_backward, y, 3, (tensor *[]){x, gamma, beta});
    if (n) {
        n->iparam[0] = N, n->iparam[1] = S, n->iparam[2] = C, n->iparam[3] = groups;
        n->iparam[4] = silu;
        node_save(n, x), node_save(n, mean), node_save(n, rstd), node_save(n, gamma);
        node_save(n, beta);
    }
    tensor_free(mean);
    tensor_free(rstd);
    tensor_free(x);
    tensor_free(gamma);
    tensor_free(beta);
    return y;
}

tensor *op_group_norm(tensor *x, tensor *gamma, tensor *beta, int groups, float eps) {
    return group_norm("group_norm", x, gamma, beta, groups, eps, false);
}

tensor *op_group_norm_silu(tensor *x, tensor *gamma, tensor *beta, int groups, float eps) {
    return group_norm("group_norm_silu", x, gamma, beta, groups, eps, true);
}

static void layer_norm_backward(node *n, const tensor *gy /*[..., C]*/) {
    tensor *grads[3];
    norm_grads_new(grads, n, gy);
    be_of(gy)->layer_norm_backward(grads[0], grads[1], grads[2], gy, n->saved[0], n->saved[1],
                                   n->saved[2], n->saved[3], n->iparam[0], n->iparam[1]);
    norm_grads_accumulate(n, grads);
}

tensor *op_layer_norm(tensor *x_in, tensor *gamma_in, tensor *beta_in, float eps) {
    tensor *x = op_input(x_in);
    CHECK_SHAPE(x->ndim >= 1, "layer_norm", x, "input must be [..., C]");
    int64_t cols = x->shape[x->ndim - 1], rows = dims_product(x, 0, x->ndim - 1);
    check_affine("layer_norm", x, gamma_in, beta_in, cols);
    tensor *gamma = op_input_like(gamma_in, x), *beta = op_input_like(beta_in, x);
    tensor *y = tensor_new_like(x);
    tensor *mean = tensor_new(DT_F32, x->dev, SHAPE(rows));
    tensor *rstd = tensor_new(DT_F32, x->dev, SHAPE(rows));
    be_of(x)->layer_norm_forward(y, mean, rstd, x, gamma, beta, rows, cols, eps);
    node *n = autograd_record("layer_norm", layer_norm_backward, y, 3,
                              (tensor *[]){x, gamma, beta});
    if (n) {
        n->iparam[0] = rows, n->iparam[1] = cols;
        node_save(n, x), node_save(n, mean), node_save(n, rstd), node_save(n, gamma);
    }
    tensor_free(mean);
    tensor_free(rstd);
    tensor_free(x);
    tensor_free(gamma);
    tensor_free(beta);
    return y;
}
