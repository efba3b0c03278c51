// Softmax over the last dim.
#include "kernels/ops/common.h"

static void softmax_backward(node *n, const tensor *d_y) {
    const tensor *y = n->saved[0];
    int64_t cols = y->shape[y->ndim - 1];
    tensor *d_x = tensor_new_like(y);
    be_of(y)->softmax_backward(d_x, d_y, y, tensor_numel(y) / cols, cols);
    node_accumulate(n, 0, d_x);
    tensor_free(d_x);
}

tensor *op_softmax(tensor *x_in) {
    tensor *x = op_input(x_in);
    CHECK_SHAPE(x->ndim >= 1 && x->shape[x->ndim - 1] > 0, "softmax", x,
                "x must have a non-empty last dim");
    int64_t cols = x->shape[x->ndim - 1];
    tensor *y = tensor_new_like(x);
    be_of(x)->softmax_forward(y, x, tensor_numel(x) / cols, cols);
    // The backward needs only the output: dx = y * (dy - sum(dy * y)).
    node *n = autograd_record("softmax", softmax_backward, y, 1, &x);
    if (n) node_save(n, y);
    tensor_free(x);
    return y;
}
