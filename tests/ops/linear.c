// Harness specs: linear and matmul.
#include "tests/harness.h"

static int run_linear(tensor **outs, tensor *const *in, const op_params *p) {
    outs[0] = op_linear(in[0], in[1], in[2]);
    return 1;
}
static int run_matmul(tensor **outs, tensor *const *in, const op_params *p) {
    outs[0] = op_matmul(in[0], in[1]);
    return 1;
}

// SD's shapes, scaled down: a CLIP token sequence [2, 77, C], a projection from 320
// channels, a flattened 2-D input, an odd row count and an f16 input. The ":c" cases
// are a frozen layer (only dx) and a layer whose input needs no gradient (only dW,
// db), the two ways a backward skips work.
const op_spec linear_specs[] = {
    {"linear", "x:f w:f b:f?", run_linear,
     {"x=2x77x48 w=96x48 b=96", "x=2x77x48 w=96x48", "x=5x48 w=40x48 b=40",
      "x=2x7x320 w=40x320 b=40", "x=1x5x7x3 w=11x3 b=11", "x=3x16:h w=8x16 b=8",
      "x=2x7x48 w=24x48:c b=24:c", "x=2x7x48:c w=24x48 b=24"}},
    {"matmul", "a:f b:f", run_matmul,
     {"a=2x5x7 b=2x7x3", "a=3x77x40 b=40x8", "a=1x9x16 b=1x16x11", "a=4x6x10 b=10x6:h",
      "a=2x5x7:c b=2x7x3", "a=3x5x7 b=7x3:c"}},
    {0},
};
