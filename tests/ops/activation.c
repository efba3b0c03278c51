// Harness specs: silu, gelu (erf and tanh), quick_gelu, geglu.
#include "tests/harness.h"

static int run_silu(tensor **outs, tensor *const *in, const op_params *p) {
    outs[0] = op_silu(in[0]);
    return 1;
}
static int run_gelu(tensor **outs, tensor *const *in, const op_params *p) {
    outs[0] = op_gelu(in[0], param_int(p, "tanh", 0) != 0);
    return 1;
}
static int run_quick_gelu(tensor **outs, tensor *const *in, const op_params *p) {
    outs[0] = op_quick_gelu(in[0]);
    return 1;
}
static int run_geglu(tensor **outs, tensor *const *in, const op_params *p) {
    outs[0] = op_geglu(in[0]);
    return 1;
}

const op_spec activation_specs[] = {
    {"silu", "x:f", run_silu, {"x=2x5x7x3", "x=1x4x5x320", "x=4x6:h"}},
    {"gelu", "x:f", run_gelu, {"x=2x5x7x3", "x=2x5x7x3 | tanh=1", "x=3x77x64", "x=4x6:b"}},
    {"quick_gelu", "x:f", run_quick_gelu, {"x=2x77x48", "x=5x7x11"}},
    {"geglu", "x:f", run_geglu, {"x=2x35x16", "x=1x16x2560", "x=5x7x22"}},
    {0},
};
