// Helpers shared by the op front-ends (kernels/ops/*.c); not part of the public API.
#pragma once
#include <stdio.h>

#include "core/check.h"
#include "kernels/autograd.h"
#include "kernels/backend.h"
#include "kernels/ops.h"

static inline const backend *be_of(const tensor *t) { return backend_for(t->dev); }

// The form a kernel reads: contiguous, and a float dtype the backend computes in
// natively (others become f32). Returns a new reference: x itself when it already
// fits, else a cast or copy recorded on the tape so gradients still reach x.
tensor *op_input(tensor *x);
// The same for an op's further operands: a float operand takes the dtype of the op's
// first input (an op computes in one dtype). NULL stays NULL.
tensor *op_input_like(tensor *x, const tensor *first);

// Aborts with "file:line: op: <message>, got [shape] dtype" unless cond holds.
NORETURN void shape_fail_at(const char *file, int line, const char *op, const tensor *t,
                            const char *fmt, ...) PRINTF_LIKE(5, 6);
#define CHECK_SHAPE(cond, op, t, ...)                                          \
    do {                                                                       \
        if (!(cond)) shape_fail_at(__FILE__, __LINE__, op, t, __VA_ARGS__);    \
    } while (0)

// Product of dims [from, to).
static inline int64_t dims_product(const tensor *t, int from, int to) {
    int64_t p = 1;
    for (int i = from; i < to; i++) p *= t->shape[i];
    return p;
}
