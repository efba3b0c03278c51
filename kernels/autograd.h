// Tape autograd.
//
// An op whose inputs include a tensor with a grad slot records a node on the
// current tape; the node keeps the tensors its backward needs ("saved") and the
// grad slots of its inputs, not the inputs themselves, so model code may free its
// intermediates as it goes. A frozen weight has no slot, so the node's backward
// sees needs_grad false for it and never computes its gradient.
//
// autograd_backward walks the tape in reverse: each node whose output received a
// gradient runs its backward, then drops that gradient. Gradients of leaves stay in
// their slots (tensor_grad). The tape is cleared at the end.
#pragma once
#include "kernels/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NODE_MAX_INPUTS 8
#define NODE_MAX_SAVED 8

typedef struct grad_slot {
    int refs;
    struct node *producer;  // NULL for a leaf
    tensor *grad;           // accumulated gradient, contiguous, the tensor's shape
} grad_slot;

// What a backward needs to know about an input even when it was not saved.
typedef struct {
    dtype dtype;
    device dev;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
} tensor_meta;

typedef struct node node;
typedef void (*backward_fn)(node *n, const tensor *grad_out);

struct node {
    const char *name;
    backward_fn backward;
    grad_slot *out;
    int n_inputs;
    grad_slot *in[NODE_MAX_INPUTS];  // NULL where no gradient is needed
    tensor_meta in_meta[NODE_MAX_INPUTS];
    int n_saved;
    tensor *saved[NODE_MAX_SAVED];
    int64_t iparam[8];
    float fparam[8];
    void *ctx;
    void (*free_ctx)(void *ctx);
};

bool autograd_enabled(void);
void autograd_no_grad_begin(void);  // nestable
void autograd_no_grad_end(void);

// Records a node producing `out` when grad mode is on and some input has a slot;
// returns NULL otherwise (then the op records nothing). NULL inputs are allowed.
node *autograd_record(const char *name, backward_fn fn, tensor *out, int n_inputs,
                      tensor *const *inputs);
// Like autograd_record but records even when no input needs a gradient.
node *autograd_record_always(const char *name, backward_fn fn, tensor *out, int n_inputs,
                             tensor *const *inputs);
void node_save(node *n, tensor *t);  // takes a reference
static inline bool node_needs_grad(const node *n, int i) { return n->in[i] != NULL; }
// Adds grad into input i's slot (shape must match the input).
void node_accumulate(node *n, int i, const tensor *grad);
// A zero tensor shaped as input i, on its device, in its dtype.
tensor *node_zeros_for_input(const node *n, int i);

// Runs the backward pass from `root` with gradient `grad` (NULL: ones), on the
// current tape, then clears the tape.
void autograd_backward(tensor *root, const tensor *grad);
// The same from several roots at once (an op with several outputs, several losses);
// roots without a grad slot are skipped.
void autograd_backward_multi(int n, tensor *const *roots, const tensor *const *grads);
// Drops every node of the current tape (after an evaluation you will not
// differentiate, for example).
void autograd_clear_tape(void);
int autograd_tape_size(void);

// Gradient checkpointing: runs block(ctx, inputs) without recording, and records one
// node whose backward runs the block again with grad on and backpropagates through
// it. The block must be deterministic (draw randomness from counters it keeps in
// ctx). It records whenever grad mode is on, because the parameters that need
// gradients live inside the block.
typedef tensor *(*block_fn)(void *ctx, tensor *const *inputs);
tensor *op_checkpoint(block_fn block, void *ctx, int n_inputs, tensor *const *inputs);

#ifdef __cplusplus
}
#endif
