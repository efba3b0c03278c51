// Nearest-neighbour 2x upsampling of channels-last images (the UNet's Upsample2D).
#include "kernels/ops/common.h"

static void upsample_nearest2x_backward(node *n, const tensor *gy /*[N, 2H, 2W, C]*/) {
    const int64_t *s = n->in_meta[0].shape;
    tensor *gx = tensor_new(gy->dtype, gy->dev, 4, s);
    be_of(gy)->upsample2x_backward(gx, gy, s[0], s[1], s[2], s[3]);
    node_accumulate(n, 0, gx);
    tensor_free(gx);
}

tensor *op_upsample_nearest2x(tensor *x_in) {
    tensor *x = op_input(x_in);
    CHECK_SHAPE(x->ndim == 4, "upsample_nearest2x", x, "input must be [N, H, W, C]");
    int64_t N = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3];
    tensor *y = tensor_new(x->dtype, x->dev, SHAPE(N, 2 * H, 2 * W, C));
    be_of(x)->upsample2x_forward(y, x, N, H, W, C);
    autograd_record("upsample_nearest2x", upsample_nearest2x_backward, y, 1, &x);
    tensor_free(x);
    return y;
}
