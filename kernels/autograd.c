#include "kernels/autograd.h"

#include <stdlib.h>

#include "core/check.h"
#include "kernels/backend.h"
#include "kernels/ops.h"

// The tape is a stack so that a checkpointed block can record and replay its own
// nodes inside the backward of the enclosing tape.
typedef struct {
    node **nodes;
    int len, cap;
} tape;

#define MAX_TAPE_DEPTH 8
static tape tapes[MAX_TAPE_DEPTH];
static int tape_depth = 0;  // index of the current tape
static int no_grad_depth = 0;

bool autograd_enabled(void) { return no_grad_depth == 0; }
void autograd_no_grad_begin(void) { no_grad_depth++; }
void autograd_no_grad_end(void) {
    CHECK(no_grad_depth > 0, "unbalanced autograd_no_grad_end");
    no_grad_depth--;
}

static grad_slot *slot_retain(grad_slot *s) {
    s->refs++;
    return s;
}

void slot_release(grad_slot *s) {
    if (!s || --s->refs > 0) return;
    tensor_free(s->grad);
    free(s);
}

static void node_free(node *n) {
    for (int i = 0; i < n->n_inputs; i++) slot_release(n->in[i]);
    for (int i = 0; i < n->n_saved; i++) tensor_free(n->saved[i]);
    if (n->free_ctx) n->free_ctx(n->ctx);
    n->out->producer = NULL;
    slot_release(n->out);
    free(n);
}

static node *record(const char *name, backward_fn fn, tensor *out, int n_inputs,
                    tensor *const *inputs) {
    CHECK(n_inputs <= NODE_MAX_INPUTS, "%s: %d inputs", name, n_inputs);
    CHECK(!out->slot, "%s: output already has a producer", name);
    node *n = xcalloc(1, sizeof *n);
    n->name = name;
    n->backward = fn;
    n->n_inputs = n_inputs;
    for (int i = 0; i < n_inputs; i++) {
        const tensor *x = inputs[i];
        if (!x) continue;
        if (x->slot) n->in[i] = slot_retain(x->slot);
        tensor_meta *m = &n->in_meta[i];
        m->dtype = x->dtype;
        m->dev = x->dev;
        m->ndim = x->ndim;
        for (int d = 0; d < x->ndim; d++) m->shape[d] = x->shape[d];
    }
    grad_slot *s = xcalloc(1, sizeof *s);
    s->refs = 2;  // the output tensor and this node
    s->producer = n;
    out->slot = s;
    n->out = s;

    tape *tp = &tapes[tape_depth];
    if (tp->len == tp->cap) {
        tp->cap = tp->cap ? 2 * tp->cap : 256;
        tp->nodes = realloc(tp->nodes, (size_t)tp->cap * sizeof *tp->nodes);
        CHECK(tp->nodes, "out of memory growing the tape");
    }
    tp->nodes[tp->len++] = n;
    return n;
}

node *autograd_record(const char *name, backward_fn fn, tensor *out, int n_inputs,
                      tensor *const *inputs) {
    if (!autograd_enabled()) return NULL;
    bool any = false;
    for (int i = 0; i < n_inputs; i++) any |= inputs[i] && inputs[i]->slot;
    return any ? record(name, fn, out, n_inputs, inputs) : NULL;
}

node *autograd_record_always(const char *name, backward_fn fn, tensor *out, int n_inputs,
                             tensor *const *inputs) {
    return autograd_enabled() ? record(name, fn, out, n_inputs, inputs) : NULL;
}

void node_save(node *n, tensor *t) {
    CHECK(n->n_saved < NODE_MAX_SAVED, "%s: too many saved tensors", n->name);
    n->saved[n->n_saved++] = tensor_retain(t);
}

static void slot_accumulate(grad_slot *s, const tensor *grad) {
    if (!s->grad) {
        // Own a contiguous copy: the caller's tensor may be a view or be reused.
        s->grad = tensor_new_like(grad);
        backend_for(grad->dev)->copy(s->grad, grad);
        return;
    }
    CHECK(tensor_same_shape(s->grad, grad), "gradient shape mismatch");
    backend_for(grad->dev)->binary(s->grad, s->grad, grad, BIN_ADD);
}

void node_accumulate(node *n, int i, const tensor *grad) {
    CHECK(i < n->n_inputs && n->in[i], "%s: input %d takes no gradient", n->name, i);
    const tensor_meta *m = &n->in_meta[i];
    CHECK(grad->ndim == m->ndim, "%s: gradient rank %d for input %d of rank %d", n->name,
          grad->ndim, i, m->ndim);
    for (int d = 0; d < m->ndim; d++)
        CHECK(grad->shape[d] == m->shape[d], "%s: gradient shape of input %d", n->name, i);
    if (grad->dtype == m->dtype) {
        slot_accumulate(n->in[i], grad);
        return;
    }
    tensor *cast = tensor_new(m->dtype, grad->dev, grad->ndim, grad->shape);
    backend_for(grad->dev)->copy(cast, grad);
    slot_accumulate(n->in[i], cast);
    tensor_free(cast);
}

tensor *node_zeros_for_input(const node *n, int i) {
    const tensor_meta *m = &n->in_meta[i];
    return tensor_zeros(m->dtype, m->dev, m->ndim, m->shape);
}

void autograd_clear_tape(void) {
    tape *tp = &tapes[tape_depth];
    for (int i = tp->len - 1; i >= 0; i--) node_free(tp->nodes[i]);
    tp->len = 0;
}

int autograd_tape_size(void) { return tapes[tape_depth].len; }

void autograd_backward_multi(int n, tensor *const *roots, const tensor *const *grads) {
    for (int r = 0; r < n; r++) {
        if (!roots[r]->slot) continue;
        if (grads && grads[r]) {
            slot_accumulate(roots[r]->slot, grads[r]);
            continue;
        }
        tensor *ones = tensor_new_like(roots[r]);
        backend_for(ones->dev)->fill(ones, 1.0f);
        slot_accumulate(roots[r]->slot, ones);
        tensor_free(ones);
    }
    // Gradients flow while grad mode is off, so the backward math records nothing.
    autograd_no_grad_begin();
    tape *tp = &tapes[tape_depth];
    for (int i = tp->len - 1; i >= 0; i--) {
        node *nd = tp->nodes[i];
        if (!nd->out->grad) continue;
        nd->backward(nd, nd->out->grad);
        // An intermediate's gradient is spent once its producer has run.
        tensor_free(nd->out->grad);
        nd->out->grad = NULL;
    }
    autograd_no_grad_end();
    autograd_clear_tape();
}

void autograd_backward(tensor *root, const tensor *grad) {
    CHECK(root->slot, "backward from a tensor that needs no gradient");
    autograd_backward_multi(1, &root, grad ? &grad : NULL);
}

// --- gradient checkpointing ---------------------------------------------------------

typedef struct {
    block_fn block;
    void *ctx;
} checkpoint_ctx;

static void checkpoint_backward(node *n, const tensor *grad_out) {
    checkpoint_ctx *c = n->ctx;
    tensor *inputs[NODE_MAX_INPUTS] = {0};
    for (int i = 0; i < n->n_inputs; i++) {
        const tensor *x = n->saved[i];
        inputs[i] = tensor_view(x, x->ndim, x->shape, x->stride, x->offset);
        if (node_needs_grad(n, i)) tensor_set_requires_grad(inputs[i], true);
    }
    CHECK(tape_depth + 1 < MAX_TAPE_DEPTH, "checkpoints nested too deeply");
    tape_depth++;
    // Replay with grad on: we are inside the outer backward's no-grad section.
    int saved_no_grad = no_grad_depth;
    no_grad_depth = 0;
    tensor *out = c->block(c->ctx, inputs);
    if (out->slot) autograd_backward(out, grad_out);
    autograd_clear_tape();
    no_grad_depth = saved_no_grad;
    tape_depth--;
    for (int i = 0; i < n->n_inputs; i++) {
        if (node_needs_grad(n, i) && tensor_grad(inputs[i]))
            node_accumulate(n, i, tensor_grad(inputs[i]));
        tensor_free(inputs[i]);
    }
    tensor_free(out);
}

tensor *op_checkpoint(block_fn block, void *ctx, int n_inputs, tensor *const *inputs) {
    autograd_no_grad_begin();
    tensor *out = block(ctx, inputs);
    autograd_no_grad_end();
    node *n = autograd_record_always("checkpoint", checkpoint_backward, out, n_inputs, inputs);
    if (n) {
        for (int i = 0; i < n_inputs; i++) node_save(n, inputs[i]);
        checkpoint_ctx *c = xmalloc(sizeof *c);
        c->block = block;
        c->ctx = ctx;
        n->ctx = c;
        n->free_ctx = free;
    }
    return out;
}
