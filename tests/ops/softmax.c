// Harness specs: softmax.
#include "tests/harness.h"

static int run_softmax(tensor **outs, tensor *const *in, const op_params *p) {
    outs[0] = op_softmax(in[0]);
    return 1;
}

const op_spec softmax_specs[] = {
    {"softmax", "x:f", run_softmax, {"x=2x5x7", "x=3x77x77", "x=6x1", "x=4x1000", "x=4x9:h"}},
    {0},
};
