// Matrix products: linear (x W^T + b) and batched matmul, both on the backend's gemm.
#include "kernels/ops/common.h"

// Inputs: 0 x [rows, in], 1 w [out, in], 2 b [out]. Saved: w when x needs its
// gradient, then x when w does (see op_linear).
static void linear_backward(node *n, const tensor *gy /*[rows, out]*/) {
    int64_t rows = n->iparam[0], in = n->iparam[1], out = n->iparam[2];
    int k = 0;
    const tensor *w = node_needs_grad(n, 0) ? n->saved[k++] : NULL;
    const tensor *x = node_needs_grad(n, 1) ? n->saved[k++] : NULL;
    const backend *be = be_of(gy);
    if (w) {  // dx = gy W
        tensor *dx = tensor_new(gy->dtype, gy->dev, n->in_meta[0].ndim, n->in_meta[0].shape);
        be->gemm(dx, gy, w, NULL, 1, rows, in, out, false, false, 1.0f, 0.0f, 0, 0, 0);
        node_accumulate(n, 0, dx);
        tensor_free(dx);
    }
    if (x) {  // dW = gy^T x
        tensor *dw = tensor_new(gy->dtype, gy->dev, SHAPE(out, in));
        be->gemm(dw, gy, x, NULL, 1, out, in, rows, true, false, 1.0f, 0.0f, 0, 0, 0);
        node_accumulate(n, 1, dw);
        tensor_free(dw);
    }
    if (node_needs_grad(n, 2)) {  // db = column sums of gy
        tensor *rows_view = tensor_view(gy, SHAPE(rows, out), (int64_t[]){out, 1}, gy->offset);
        tensor *db = tensor_new(gy->dtype, gy->dev, SHAPE(1, out));
        be->sum_reduce(db, rows_view);
        tensor *db_flat = tensor_view(db, SHAPE(out), (int64_t[]){1}, 0);
        node_accumulate(n, 2, db_flat);
        tensor_free(db_flat);
        tensor_free(db);
        tensor_free(rows_view);
    }
}

tensor *op_linear(tensor *x_in, tensor *w_in, tensor *b_in) {
    tensor *x = op_input(x_in), *w = op_input_like(w_in, x), *b = op_input_like(b_in, x);
    CHECK_SHAPE(w->ndim == 2, "linear", w, "weight must be [out, in]");
    int64_t out = w->shape[0], in = w->shape[1];
    CHECK_SHAPE(x->ndim >= 1 && x->shape[x->ndim - 1] == in, "linear", x,
                "input must be [..., %lld]", (long long)in);
    if (b) CHECK_SHAPE(b->ndim == 1 && b->shape[0] == out, "linear", b, "bias must be [%lld]",
                       (long long)out);
    CHECK(x->dev == w->dev && (!b || b->dev == x->dev), "linear: operands on different devices");
    int64_t rows = tensor_numel(x) / in;
    int64_t shape[TENSOR_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) shape[d] = x->shape[d];
    shape[x->ndim - 1] = out;
    tensor *y = tensor_new(x->dtype, x->dev, x->ndim, shape);  // [..., out]
    be_of(x)->gemm(y, x, w, b, 1, rows, out, in, false, true, 1.0f, 0.0f, 0, 0, 0);
    node *n = autograd_record("linear", linear_backward, y, 3, (tensor *[]){x, w, b});
    if (n) {
        n->iparam[0] = rows, n->iparam[1] = in, n->iparam[2] = out;
        // Keep only what the wanted gradients read, so a frozen layer does not hold
        // its input alive: dx reads W, dW reads x.
        if (node_needs_grad(n, 0)) node_save(n, w);
        if (node_needs_grad(n, 1)) node_save(n, x);
    }
    tensor_free(x);
    tensor_free(w);
    tensor_free(b);
    return y;
}

// Inputs: 0 a [B, M, K], 1 b [B, K, N] or [K, N]. Saved: b when a needs its
// gradient, then a when b does.
static void matmul_backward(node *n, const tensor *gy /*[B, M, N]*/) {
    int64_t B = n->iparam[0], M = n->iparam[1], K = n->iparam[2], N = n->iparam[3];
    bool shared_b = n->iparam[4];
    int64_t stride_b = shared_b ? 0 : K * N;
    int k = 0;
    const tensor *b = node_needs_grad(n, 0) ? n->saved[k++] : NULL;
    const tensor *a = node_needs_grad(n, 1) ? n->saved[k++] : NULL;
    const backend *be = be_of(gy);
    if (b) {  // da[i] = gy[i] b[i]^T
        tensor *da = tensor_new(gy->dtype, gy->dev, SHAPE(B, M, K));
        be->gemm(da, gy, b, NULL, B, M, K, N, false, true, 1.0f, 0.0f, M * N, stride_b, M * K);
        node_accumulate(n, 0, da);
        tensor_free(da);
    }
    if (a) {
        tensor *db = tensor_new(gy->dtype, gy->dev, n->in_meta[1].ndim, n->in_meta[1].shape);
        if (shared_b)  // db = sum_i a[i]^T gy[i]: one product over the stacked rows
            be->gemm(db, a, gy, NULL, 1, K, N, B * M, true, false, 1.0f, 0.0f, 0, 0, 0);
        else  // db[i] = a[i]^T gy[i]
            be->gemm(db, a, gy, NULL, B, K, N, M, true, false, 1.0f, 0.0f, M * K, M * N, K * N);
        node_accumulate(n, 1, db);
        tensor_free(db);
    }
}

tensor *op_matmul(tensor *a_in, tensor *b_in) {
    tensor *a = op_input(a_in), *b = op_input_like(b_in, a);
    CHECK_SHAPE(a->ndim == 3, "matmul", a, "a must be [B, M, K]");
    int64_t B = a->shape[0], M = a->shape[1], K = a->shape[2];
    bool shared_b = b->ndim == 2;
    CHECK_SHAPE((shared_b || (b->ndim == 3 && b->shape[0] == B)) &&
                    b->shape[b->ndim - 2] == K,
                "matmul", b, "b must be [%lld, %lld, N] or [%lld, N]", (long long)B,
                (long long)K, (long long)K);
    CHECK(a->dev == b->dev, "matmul: operands on different devices");
    int64_t N = b->shape[b->ndim - 1];
    tensor *y = tensor_new(a->dtype, a->dev, SHAPE(B, M, N));
    be_of(a)->gemm(y, a, b, NULL, B, M, N, K, false, false, 1.0f, 0.0f, M * K,
                   shared_b ? 0 : K * N, M * N);
    node *n = autograd_record("matmul", matmul_backward, y, 2, (tensor *[]){a, b});
    if (n) {
        n->iparam[0] = B, n->iparam[1] = M, n->iparam[2] = K, n->iparam[3] = N;
        n->iparam[4] = shared_b;
        if (node_needs_grad(n, 0)) node_save(n, b);
        if (node_needs_grad(n, 1)) node_save(n, a);
    }
    tensor_free(a);
    tensor_free(b);
    return y;
}
