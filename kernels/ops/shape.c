// Casts, contiguity and view ops: reshape, permute, slice, concat, split.
#include "kernels/ops/common.h"

static void pass_through_backward(node *n, const tensor *gy) { node_accumulate(n, 0, gy); }

tensor *op_cast(tensor *x, dtype dt) {
    CHECK(dtype_is_float(x->dtype) && dtype_is_float(dt), "cast from %s to %s",
          dtype_name(x->dtype), dtype_name(dt));
    tensor *y = tensor_new(dt, x->dev, x->ndim, x->shape);
    be_of(x)->copy(y, x);
    // node_accumulate casts the gradient back to the input's dtype.
    autograd_record("cast", pass_through_backward, y, 1, &x);
    return y;
}

tensor *op_contiguous(tensor *x) {
    if (tensor_is_contiguous(x)) return tensor_retain(x);
    tensor *y = tensor_new_like(x);
    be_of(x)->copy(y, x);
    autograd_record("contiguous", pass_through_backward, y, 1, &x);
    return y;
}

// A contiguous view of t with a new shape of the same element count.
static tensor *reshaped_view(const tensor *t, int ndim, const int64_t *shape) {
    int64_t stride[TENSOR_MAX_DIMS], s = 1;
    for (int i = ndim - 1; i >= 0; i--) stride[i] = s, s *= shape[i];
    return tensor_view(t, ndim, shape, stride, t->offset);
}

// Gradients handed to a backward are contiguous, so the inverse view is a reshape.
static void reshape_backward(node *n, const tensor *gy) {
    tensor *v = reshaped_view(gy, n->in_meta[0].ndim, n->in_meta[0].shape);
    node_accumulate(n, 0, v);
    tensor_free(v);
}

tensor *op_reshape(tensor *x, int ndim, const int64_t *shape) {
    int64_t resolved[TENSOR_MAX_DIMS], known = 1;
    int infer = -1;
    CHECK(ndim <= TENSOR_MAX_DIMS, "reshape to %d dims", ndim);
    for (int i = 0; i < ndim; i++) {
        resolved[i] = shape[i];
        if (shape[i] == -1) {
            CHECK(infer < 0, "reshape: more than one -1");
            infer = i;
        } else {
            known *= shape[i];
        }
    }
    if (infer >= 0) resolved[infer] = known ? tensor_numel(x) / known : 0;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= resolved[i];
    CHECK_SHAPE(n == tensor_numel(x), "reshape", x, "element count must be %lld", (long long)n);

    tensor *src = op_contiguous(x);
    tensor *y = reshaped_view(src, ndim, resolved);
    autograd_record("reshape", reshape_backward, y, 1, &src);
    tensor_free(src);
    return y;
}

static void permute_backward(node *n, const tensor *gy) {
    int inverse[TENSOR_MAX_DIMS];
    for (int d = 0; d < gy->ndim; d++) inverse[n->iparam[d]] = d;
    int64_t shape[TENSOR_MAX_DIMS], stride[TENSOR_MAX_DIMS];
    for (int d = 0; d < gy->ndim; d++) {
        shape[d] = gy->shape[inverse[d]];
        stride[d] = gy->stride[inverse[d]];
    }
    tensor *v = tensor_view(gy, gy->ndim, shape, stride, gy->offset);
    node_accumulate(n, 0, v);
    tensor_free(v);
}

tensor *op_permute(tensor *x, const int *perm) {
    int64_t shape[TENSOR_MAX_DIMS], stride[TENSOR_MAX_DIMS];
    bool seen[TENSOR_MAX_DIMS] = {0};
    for (int d = 0; d < x->ndim; d++) {
        CHECK(perm[d] >= 0 && perm[d] < x->ndim && !seen[perm[d]], "permute: bad axis list");
        seen[perm[d]] = true;
        shape[d] = x->shape[perm[d]];
        stride[d] = x->stride[perm[d]];
    }
    tensor *y = tensor_view(x, x->ndim, shape, stride, x->offset);
    node *n = autograd_record("permute", permute_backward, y, 1, &x);
    if (n)
        for (int d = 0; d < x->ndim; d++) n->iparam[d] = perm[d];
    return y;
}

static int normalise_axis(const tensor *x, int axis) {
    if (axis < 0) axis += x->ndim;
    CHECK(axis >= 0 && axis < x->ndim, "axis %d out of range for %d dims", axis, x->ndim);
    return axis;
}

// A view of t restricted to [start, end) along axis.
static tensor *narrow(const tensor *t, int axis, int64_t start, int64_t end) {
    int64_t shape[TENSOR_MAX_DIMS];
    for (int d = 0; d < t->ndim; d++) shape[d] = t->shape[d];
    shape[axis] = end - start;
    return tensor_view(t, t->ndim, shape, t->stride, t->offset + start * t->stride[axis]);
}

static void slice_backward(node *n, const tensor *gy) {
    tensor *g = node_zeros_for_input(n, 0);
    tensor *window = narrow(g, (int)n->iparam[0], n->iparam[1], n->iparam[2]);
    be_of(g)->copy(window, gy);
    node_accumulate(n, 0, g);
    tensor_free(window);
    tensor_free(g);
}

tensor *op_slice(tensor *x, int axis, int64_t start, int64_t end) {
    axis = normalise_axis(x, axis);
    CHECK_SHAPE(0 <= start && start <= end && end <= x->shape[axis], "slice", x,
                "range [%lld, %lld) along axis %d must fit", (long long)start, (long long)end,
                axis);
    tensor *y = narrow(x, axis, start, end);
    node *n = autograd_record("slice", slice_backward, y, 1, &x);
    if (n) n->iparam[0] = axis, n->iparam[1] = start, n->iparam[2] = end;
    return y;
}

static void concat_backward(node *n, const tensor *gy) {
    int axis = (int)n->iparam[0];
    int64_t start = 0;
    for (int i = 0; i < n->n_inputs; i++) {
        int64_t len = n->in_meta[i].shape[axis];
        if (node_needs_grad(n, i)) {
            tensor *part = narrow(gy, axis, start, start + len);
            node_accumulate(n, i, part);
            tensor_free(part);
        }
        start += len;
    }
}

tensor *op_concat(int n, tensor *const *xs, int axis) {
    CHECK(n >= 1 && n <= NODE_MAX_INPUTS, "concat of %d tensors", n);
    axis = normalise_axis(xs[0], axis);
    int64_t shape[TENSOR_MAX_DIMS];
    for (int d = 0; d < xs[0]->ndim; d++) shape[d] = xs[0]->shape[d];
    shape[axis] = 0;
    for (int i = 0; i < n; i++) {
        CHECK_SHAPE(xs[i]->ndim == xs[0]->ndim && xs[i]->dtype == xs[0]->dtype, "concat", xs[i],
                    "every part must match part 0 in rank and dtype");
        for (int d = 0; d < xs[0]->ndim; d++)
            CHECK_SHAPE(d == axis || xs[i]->shape[d] == xs[0]->shape[d], "concat", xs[i],
                        "dims other than %d must match part 0", axis);
        shape[axis] += xs[i]->shape[axis];
    }
    tensor *y = tensor_new(xs[0]->dtype, xs[0]->dev, xs[0]->ndim, shape);
    int64_t start = 0;
    for (int i = 0; i < n; i++) {
        tensor *window = narrow(y, axis, start, start + xs[i]->shape[axis]);
        be_of(y)->copy(window, xs[i]);
        tensor_free(window);
        start += xs[i]->shape[axis];
    }
    node *nd = autograd_record("concat", concat_backward, y, n, xs);
    if (nd) nd->iparam[0] = axis;
    return y;
}

void op_split(tensor **outs, tensor *x, int axis, int n, const int64_t *sizes) {
    axis = normalise_axis(x, axis);
    int64_t start = 0;
    for (int i = 0; i < n; i++) {
        outs[i] = op_slice(x, axis, start, start + sizes[i]);
        start += sizes[i];
    }
    CHECK_SHAPE(start == x->shape[axis], "split", x, "sizes must add up to dim %d", axis);
}
