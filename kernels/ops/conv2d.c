// 2-D convolution over channels-last images with symmetric zero padding.
#include "kernels/ops/common.h"

// geom[9] (the CG_* order) from the shapes of x and w and the options.
static void conv_geom_of(int64_t geom[9], const int64_t *x_shape /*[N, H, W, Cin]*/,
                         const int64_t *w_shape /*[Cout, KH, KW, Cin]*/, int64_t stride,
                         int64_t pad) {
    geom[CG_N] = x_shape[0], geom[CG_H] = x_shape[1], geom[CG_W] = x_shape[2];
    geom[CG_CIN] = x_shape[3], geom[CG_COUT] = w_shape[0];
    geom[CG_KH] = w_shape[1], geom[CG_KW] = w_shape[2];
    geom[CG_STRIDE] = stride, geom[CG_PAD] = pad;
}

// Inputs: 0 x, 1 w, 2 b. Saved: w when x needs its gradient, then x when w does.
static void conv2d_backward(node *n, const tensor *gy /*[N, Ho, Wo, Cout]*/) {
    int64_t geom[9];
    conv_geom_of(geom, n->in_meta[0].shape, n->in_meta[1].shape, n->iparam[0], n->iparam[1]);
    int k = 0;
    const tensor *w = node_needs_grad(n, 0) ? n->saved[k++] : NULL;
    const tensor *x = node_needs_grad(n, 1) ? n->saved[k++] : NULL;
    tensor *grads[3] = {0};  // d_x, d_w, d_bias where wanted
    for (int i = 0; i < 3; i++)
        if (node_needs_grad(n, i))
            grads[i] = tensor_new(gy->dtype, gy->dev, n->in_meta[i].ndim, n->in_meta[i].shape);
    be_of(gy)->conv2d_backward(grads[0], grads[1], grads[2], gy, x, w, geom);
    for (int i = 0; i < 3; i++) {
        if (!grads[i]) continue;
        node_accumulate(n, i, grads[i]);
        tensor_free(grads[i]);
    }
}

tensor *op_conv2d(tensor *x_in, tensor *w_in, tensor *b_in, int stride, int pad) {
    tensor *x = op_input(x_in), *w = op_input_like(w_in, x), *b = op_input_like(b_in, x);
    CHECK_SHAPE(x->ndim == 4, "conv2d", x, "input must be [N, H, W, Cin]");
    CHECK_SHAPE(w->ndim == 4 && w->shape[3] == x->shape[3], "conv2d", w,
                "weight must be [Cout, KH, KW, %lld]", (long long)x->shape[3]);
    if (b) CHECK_SHAPE(b->ndim == 1 && b->shape[0] == w->shape[0], "conv2d", b,
                       "bias must be [%lld]", (long long)w->shape[0]);
    CHECK(stride >= 1 && pad >= 0, "conv2d: stride %d, pad %d", stride, pad);
    CHECK(x->dev == w->dev && (!b || b->dev == x->dev), "conv2d: operands on different devices");
    int64_t geom[9];
    conv_geom_of(geom, x->shape, w->shape, stride, pad);
    int64_t Ho = (geom[CG_H] + 2 * pad - geom[CG_KH]) / stride + 1;
    int64_t Wo = (geom[CG_W] + 2 * pad - geom[CG_KW]) / stride + 1;
    CHECK_SHAPE(geom[CG_H] + 2 * pad >= geom[CG_KH] && geom[CG_W] + 2 * pad >= geom[CG_KW],
                "conv2d", x, "padded input must cover the %lldx%lld kernel",
                (long long)geom[CG_KH], (long long)geom[CG_KW]);
    tensor *y = tensor_new(x->dtype, x->dev, SHAPE(geom[CG_N], Ho, Wo, geom[CG_COUT]));
    be_of(x)->conv2d_forward(y, x, w, b, geom);
    node *n = autograd_record("conv2d", conv2d_backward, y, 3, (tensor *[]){x, w, b});
    if (n) {
        n->iparam[0] = stride, n->iparam[1] = pad;
        // dx reads W and dW reads x; a frozen conv does not keep its input alive.
        if (node_needs_grad(n, 0)) node_save(n, w);
        if (node_needs_grad(n, 1)) node_save(n, x);
    }
    tensor_free(x);
    tensor_free(w);
    tensor_free(b);
    return y;
}
