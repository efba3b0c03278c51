// Broadcasting add/sub/mul, scale, and the sum/mean reductions.
#include "kernels/ops/common.h"

// Broadcast shape of a and b (numpy rules) into shape; returns its rank.
static int broadcast_shape(const char *op, const tensor *a, const tensor *b, int64_t *shape) {
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int i = 0; i < nd; i++) {
        int ia = i - (nd - a->ndim), ib = i - (nd - b->ndim);
        int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            char sa[128], sb[128];
            DIE("%s: shapes %s and %s do not broadcast", op, tensor_describe(a, sa, sizeof sa),
                tensor_describe(b, sb, sizeof sb));
        }
        shape[i] = da == 1 ? db : da;
    }
    return nd;
}

// Sums a gradient of the broadcast shape down to input i's shape and accumulates it.
static void accumulate_reduced(node *n, int i, const tensor *g) {
    const tensor_meta *m = &n->in_meta[i];
    int lead = g->ndim - m->ndim;
    bool same = lead == 0;
    for (int d = 0; same && d < m->ndim; d++) same = m->shape[d] == g->shape[d];
    if (same) {
        node_accumulate(n, i, g);
        return;
    }
    int64_t kept[TENSOR_MAX_DIMS];
    for (int d = 0; d < g->ndim; d++) kept[d] = d < lead ? 1 : m->shape[d - lead];
    tensor *r = tensor_new(g->dtype, g->dev, g->ndim, kept);
    be_of(g)->sum_reduce(r, g);
    tensor *v = tensor_view(r, m->ndim, m->shape, r->stride + lead, 0);
    node_accumulate(n, i, v);
    tensor_free(v);
    tensor_free(r);
}

static void add_sub_backward(node *n, const tensor *gy) {
    if (node_needs_grad(n, 0)) accumulate_reduced(n, 0, gy);
    if (!node_needs_grad(n, 1)) return;
    if (n->iparam[0] == BIN_ADD) {
        accumulate_reduced(n, 1, gy);
        return;
    }
    tensor *neg = tensor_new_like(gy);
    be_of(gy)->unary_forward(neg, gy, UN_SCALE, -1.0f);
    accumulate_reduced(n, 1, neg);
    tensor_free(neg);
}

static void mul_backward(node *n, const tensor *gy) {
    for (int i = 0; i < 2; i++) {
        if (!node_needs_grad(n, i)) continue;
        tensor *other = tensor_broadcast_view(n->saved[1 - i], gy->ndim, gy->shape);
        tensor *g = tensor_new_like(gy);
        be_of(gy)->binary(g, gy, other, BIN_MUL);
        accumulate_reduced(n, i, g);
        tensor_free(g);
        tensor_free(other);
    }
}

static tensor *binary(const char *name, tensor *a_in, tensor *b_in, binary_op op) {
    tensor *a = op_input(a_in), *b = op_input_like(b_in, a);
    int64_t shape[TENSOR_MAX_DIMS];
    int nd = broadcast_shape(name, a, b, shape);
    tensor *y = tensor_new(a->dtype, a->dev, nd, shape);
    tensor *av = tensor_broadcast_view(a, nd, shape), *bv = tensor_broadcast_view(b, nd, shape);
    be_of(y)->binary(y, av, bv, op);
    tensor_free(av);
    tensor_free(bv);
    node *n = autograd_record(name, op == BIN_MUL ? mul_backward : add_sub_backward, y, 2,
                              (tensor *[]){a, b});
    if (n) {
        n->iparam[0] = op;
        if (op == BIN_MUL) node_save(n, a), node_save(n, b);
    }
    tensor_free(a);
    tensor_free(b);
    return y;
}

tensor *op_add(tensor *a, tensor *b) { return binary("add", a, b, BIN_ADD); }
tensor *op_sub(tensor *a, tensor *b) { return binary("sub", a, b, BIN_SUB); }
tensor *op_mul(tensor *a, tensor *b) { return binary("mul", a, b, BIN_MUL); }

tensor *op_dropout(tensor *x, float p, uint64_t seed, uint64_t offset) {
    CHECK(p >= 0 && p < 1, "dropout: probability %g is outside [0, 1)", p);
    tensor *mask = tensor_new(x->dtype, x->dev, x->ndim, x->shape);
    be_of(x)->fill_dropout_mask(mask, seed, offset, p);
    tensor *y = op_mul(x, mask);  // the mask is a constant: its gradient is never asked for
    tensor_free(mask);
    return y;
}

static void scale_backward(node *n, const tensor *gy) {
    tensor *g = tensor_new_like(gy);
    be_of(gy)->unary_forward(g, gy, UN_SCALE, n->fparam[0]);
    node_accumulate(n, 0, g);
    tensor_free(g);
}

tensor *op_scale(tensor *x_in, float s) {
    tensor *x = op_input(x_in);
    tensor *y = tensor_new_like(x);
    be_of(x)->unary_forward(y, x, UN_SCALE, s);
    node *n = autograd_record("scale", scale_backward, y, 1, &x);
    if (n) n->fparam[0] = s;
    tensor_free(x);
    return y;
}

// The gradient of a sum is the upstream gradient broadcast back over the summed dims.
static void sum_backward(node *n, const tensor *gy) {
    const tensor_meta *m = &n->in_meta[0];
    int64_t kept[TENSOR_MAX_DIMS];
    for (int d = 0; d < m->ndim; d++) kept[d] = n->iparam[0] == ALL_AXES || d == n->iparam[0]
                                                    ? 1
                                                    : m->shape[d];
    int64_t stride[TENSOR_MAX_DIMS], s = 1;
    for (int d = m->ndim - 1; d >= 0; d--) stride[d] = s, s *= kept[d];
    tensor *kept_view = tensor_view(gy, m->ndim, kept, stride, gy->offset);
    tensor *spread = tensor_broadcast_view(kept_view, m->ndim, m->shape);
    tensor *g = node_zeros_for_input(n, 0);
    be_of(g)->copy(g, spread);
    node_accumulate(n, 0, g);
    tensor_free(g);
    tensor_free(spread);
    tensor_free(kept_view);
}

tensor *op_sum(tensor *x_in, int axis) {
    tensor *x = op_input(x_in);
    if (axis != ALL_AXES) {
        if (axis < 0) axis += x->ndim;
        CHECK_SHAPE(axis >= 0 && axis < x->ndim, "sum", x, "axis out of range");
    }
    int64_t kept[TENSOR_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) kept[d] = axis == ALL_AXES || d == axis ? 1 : x->shape[d];
    tensor *r = tensor_new(x->dtype, x->dev, x->ndim, kept);
    be_of(x)->sum_reduce(r, x);
    tensor *y = r;
    if (axis == ALL_AXES) {
        y = tensor_view(r, 1, (int64_t[]){1}, (int64_t[]){1}, 0);
        tensor_free(r);
    }
    node *n = autograd_record("sum", sum_backward, y, 1, &x);
    if (n) n->iparam[0] = axis;
    tensor_free(x);
    return y;
}

tensor *op_mean(tensor *x, int axis) {
    int64_t count = axis == ALL_AXES ? tensor_numel(x) : x->shape[axis < 0 ? axis + x->ndim : axis];
    tensor *s = op_sum(x, axis);
    tensor *y = op_scale(s, 1.0f / (float)count);
    tensor_free(s);
    return y;
}
