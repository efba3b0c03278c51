// Harness specs: upsample_nearest2x.
#include "tests/harness.h"

static int run_upsample_nearest2x(tensor **outs, tensor *const *in, const op_params *p) {
    outs[0] = op_upsample_nearest2x(in[0]);
    return 1;
}

const op_spec upsample_specs[] = {
    {"upsample_nearest2x", "x:f", run_upsample_nearest2x,
     {"x=2x5x7x3", "x=1x4x4x320", "x=1x7x11x8:h"}},
    {0},
};
