#include <string.h>

#include "tests/harness.h"

static const op_spec *const families[] = {
    shape_specs, elementwise_specs, activation_specs, linear_specs, conv2d_specs, norm_specs,
    upsample_specs, softmax_specs, attention_specs, embedding_specs, loss_specs, optim_specs,
};

const op_spec *harness_find_spec(const char *op) {
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++)
        for (const op_spec *s = families[f]; s->op; s++)
            if (strcmp(s->op, op) == 0) return s;
    return NULL;
}

// Iteration over every spec for the harness and the JSON listing.
const op_spec *harness_spec_at(int i) {
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++)
        for (const op_spec *s = families[f]; s->op; s++)
            if (i-- == 0) return s;
    return NULL;
}
