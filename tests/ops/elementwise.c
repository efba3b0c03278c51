// Harness specs: add, sub, mul (with broadcasting), scale, sum, mean.
#include "tests/harness.h"

static int run_add(tensor **outs, tensor *const *in, const op_params *p) {
    outs[0] = op_add(in[0], in[1]);
    return 1;
}
static int run_sub(tensor **outs, tensor *const *in, const op_params *p) {
    outs[0] = op_sub(in[0], in[1]);
    return 1;
}
static int run_mul(tensor **outs, tensor *const *in, const op_params *p) {
    outs[0] = op_mul(in[0], in[1]);
    return 1;
}
static int run_scale(tensor **outs, tensor *const *in, const op_params *p) {
    outs[0] = op_scale(in[0], param_float(p, "s", 1.0f));
    return 1;
}
static int run_dropout(tensor **outs, tensor *const *in, const op_params *p) {
    outs[0] = op_dropout(in[0], param_float(p, "p", 0.5f), (uint64_t)param_int(p, "seed", 1), 0);
    return 1;
}
static int axis_param(const op_params *p) {
    return param_int(p, "all", 0) ? ALL_AXES : (int)param_int(p, "axis", 0);
}
static int run_sum(tensor **outs, tensor *const *in, const op_params *p) {
    outs[0] = op_sum(in[0], axis_param(p));
    return 1;
}
static int run_mean(tensor **outs, tensor *const *in, const op_params *p) {
    outs[0] = op_mean(in[0], axis_param(p));
    return 1;
}

// The broadcast cases are the UNet's: a bias or a time embedding [N, 1, 1, C] added
// to [N, H, W, C], and a per-sample factor [N, 1, 1, 1].
#define BROADCAST_CASES                                                                \
    "a=2x5x7x3 b=2x5x7x3", "a=2x5x7x11 b=11", "a=2x5x7x4 b=2x1x1x4", "a=2x1x4 b=3x1", \
        "a=2x5x7x3 b=2x1x1x1", "a=3x4:h b=3x4:b"

const op_spec elementwise_specs[] = {
    // The last add case is a bias over a feature map: its backward sums b's gradient
    // over 1024 rows, which the cuda sum_reduce splits into chunks (two passes).
    {"add", "a:f b:f", run_add, {BROADCAST_CASES, "a=4x16x16x40 b=40"}},
    {"sub", "a:f b:f", run_sub, {BROADCAST_CASES}},
    {"mul", "a:f b:f", run_mul, {BROADCAST_CASES}},
    {"scale", "x:f", run_scale, {"x=2x5x7x3 | s=0.18215", "x=9 | s=-2"}},
    // No PyTorch golden: its generator is not our Philox stream. The mask itself is
    // checked against core/rng.h in suite rng; here the backends and the gradient.
    {"dropout", "x:f", run_dropout, {"x=2x5x7x3 | p=0.3 seed=7 golden=0", "x=4x6:b | p=0.5 seed=9 golden=0"}},
    // The last two are long enough for the cuda sum_reduce to split into chunks: column
    // sums (the bias-gradient pattern) and one sum of everything.
    {"sum", "x:f", run_sum,
     {"x=2x5x7x3 | all=1", "x=2x5x7x3 | axis=3", "x=4x6x5 | axis=0", "x=600x40 | axis=0",
      "x=3x40x41 | all=1"}},
    {"mean", "x:f", run_mean, {"x=2x5x7x3 | all=1", "x=4x6x5 | axis=1", "x=3x8 | axis=-1"}},
    {0},
};
