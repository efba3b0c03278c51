#include <math.h>
#include <string.h>

#include "core/rng.h"
#include "kernels/ops.h"
#include "tests/harness.h"
#include "tests/test.h"

static tensor *random_tensor(uint64_t seed, int ndim, const int64_t *shape) {
    tensor *t = tensor_new(DT_F32, DEV_CPU, ndim, shape);
    float *v = tensor_data(t);
    rng_stream s = {seed, 0};
    rng_fill_normal(&s, v, (size_t)tensor_numel(t));
    return t;
}

static float *grad_values(const tensor *t) {
    const tensor *g = tensor_grad(t);
    return g ? (float *)tensor_data(g) : NULL;
}

static void frozen_weights_get_no_gradient(void) {
    test_begin("autograd/a frozen weight gets no gradient, its input does");
    tensor *x = random_tensor(1, SHAPE(3, 8));
    tensor *w = random_tensor(2, SHAPE(5, 8));
    tensor *b = random_tensor(3, SHAPE(5));
    tensor_set_requires_grad(x, true);
    tensor *y = op_linear(x, w, b);
    EXPECT(autograd_tape_size() == 1, "tape has %d nodes", autograd_tape_size());
    tensor *loss = op_sum(y, ALL_AXES);
    autograd_backward(loss, NULL);
    EXPECT(tensor_grad(x) != NULL, "input has no gradient");
    EXPECT(tensor_grad(w) == NULL && tensor_grad(b) == NULL, "frozen weight got a gradient");
    // d sum(x W^T + b) / dx[i, k] = sum_o W[o, k]
    float *gx = grad_values(x), *wv = tensor_data(w);
    for (int k = 0; k < 8; k++) {
        float want = 0;
        for (int o = 0; o < 5; o++) want += wv[o * 8 + k];
        EXPECT(fabsf(gx[k] - want) < 1e-5f && fabsf(gx[16 + k] - want) < 1e-5f, "dx[%d]", k);
    }
    EXPECT(autograd_tape_size() == 0, "tape not cleared");
    tensor *all[] = {x, w, b, y, loss};
    for (int i = 0; i < 5; i++) tensor_free(all[i]);
    test_end();
}

static void no_grad_records_nothing(void) {
    test_begin("autograd/no-grad mode records no node");
    tensor *x = random_tensor(4, SHAPE(4, 4));
    tensor_set_requires_grad(x, true);
    autograd_no_grad_begin();
    tensor *y = op_silu(x);
    autograd_no_grad_end();
    EXPECT(autograd_tape_size() == 0 && !tensor_requires_grad(y), "a node was recorded");
    tensor *z = op_silu(x);
    EXPECT(autograd_tape_size() == 1 && tensor_requires_grad(z), "grad mode did not record");
    autograd_clear_tape();
    tensor_free(x), tensor_free(y), tensor_free(z);
    test_end();
}

static void gradients_accumulate(void) {
    test_begin("autograd/a tensor used twice accumulates both gradients");
    tensor *x = random_tensor(5, SHAPE(6));
    tensor_set_requires_grad(x, true);
    tensor *sq = op_mul(x, x);
    tensor *y = op_add(sq, x);  // d/dx = 2x + 1
    autograd_backward(y, NULL);
    float *g = grad_values(x), *xv = tensor_data(x);
    for (int i = 0; i < 6; i++) EXPECT(fabsf(g[i] - (2 * xv[i] + 1)) < 1e-6f, "element %d", i);
    // A second backward adds onto the leaf's gradient until it is zeroed.
    tensor *y2 = op_scale(x, 3.0f);
    autograd_backward(y2, NULL);
    for (int i = 0; i < 6; i++) EXPECT(fabsf(g[i] - (2 * xv[i] + 4)) < 1e-6f, "accumulated %d", i);
    tensor_zero_grad(x);
    EXPECT(tensor_grad(x) == NULL, "zero_grad");
    tensor_free(x), tensor_free(sq), tensor_free(y), tensor_free(y2);
    test_end();
}

static void half_parameters_get_half_gradients(void) {
    test_begin("autograd/a bf16 leaf computes in f32 and receives a bf16 gradient");
    float v[4] = {0.5f, -1.0f, 2.0f, 0.25f};
    tensor *x = tensor_from_f32(DT_BF16, DEV_CPU, SHAPE(4), v);
    tensor_set_requires_grad(x, true);
    tensor *y = op_scale(x, 2.0f);
    EXPECT(y->dtype == DT_F32, "CPU result dtype %s", dtype_name(y->dtype));
    autograd_backward(y, NULL);
    const tensor *g = tensor_grad(x);
    EXPECT(g && g->dtype == DT_BF16, "gradient dtype");
    float gv[4];
    if (g) tensor_copy_to_f32(g, gv, 4);
    for (int i = 0; g && i < 4; i++) EXPECT(gv[i] == 2.0f, "gradient %d = %g", i, gv[i]);
    tensor_free(x), tensor_free(y);
    test_end();
}

// The checkpointed block: silu(x W^T) * 0.5, with W a trainable parameter.
static tensor *block(void *ctx, tensor *const *in) {
    tensor *h = op_linear(in[0], (tensor *)ctx, NULL);
    tensor *a = op_silu(h);
    tensor *y = op_scale(a, 0.5f);
    tensor_free(h), tensor_free(a);
    return y;
}

static void checkpoint_matches_plain_backward(void) {
    test_begin("autograd/a checkpointed block gives the same gradients as a plain one");
    tensor *x = random_tensor(6, SHAPE(3, 16));
    tensor *w = random_tensor(7, SHAPE(16, 16));
    tensor *x2 = random_tensor(6, SHAPE(3, 16));
    tensor_set_requires_grad(x, true), tensor_set_requires_grad(w, true);
    tensor_set_requires_grad(x2, true);

    tensor *y = block(w, &x);
    tensor *loss = op_sum(y, ALL_AXES);
    autograd_backward(loss, NULL);
    float gx[48], gw[256];
    memcpy(gx, grad_values(x), sizeof gx);
    memcpy(gw, grad_values(w), sizeof gw);
    tensor_zero_grad(w);

    tensor *yc = op_checkpoint(block, w, 1, &x2);
    EXPECT(autograd_tape_size() == 1, "checkpoint recorded %d nodes", autograd_tape_size());
    tensor *loss_c = op_sum(yc, ALL_AXES);
    autograd_backward(loss_c, NULL);
    EXPECT(grad_values(x2) && memcmp(gx, grad_values(x2), sizeof gx) == 0, "input gradient differs");
    EXPECT(grad_values(w) && memcmp(gw, grad_values(w), sizeof gw) == 0, "weight gradient differs");
    tensor *all[] = {x, w, x2, y, loss, yc, loss_c};
    for (int i = 0; i < 7; i++) tensor_free(all[i]);
    test_end();
}

void suite_autograd(void) {
    frozen_weights_get_no_gradient();
    no_grad_records_nothing();
    gradients_accumulate();
    half_parameters_get_half_gradients();
    checkpoint_matches_plain_backward();
}
