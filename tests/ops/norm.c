// Harness specs: group_norm and layer_norm.
#include "tests/harness.h"

static int run_group_norm(tensor **outs, tensor *const *in, const op_params *p) {
    outs[0] = op_group_norm(in[0], in[1], in[2], (int)param_int(p, "groups", 32),
                            param_float(p, "eps", 1e-5f));
    return 1;
}
static int run_group_norm_silu(tensor **outs, tensor *const *in, const op_params *p) {
    outs[0] = op_group_norm_silu(in[0], in[1], in[2], (int)param_int(p, "groups", 32),
                                 param_float(p, "eps", 1e-5f));
    return 1;
}
static int run_layer_norm(tensor **outs, tensor *const *in, const op_params *p) {
    outs[0] = op_layer_norm(in[0], in[1], in[2], param_float(p, "eps", 1e-5f));
    return 1;
}

// SD's group norm is 32 groups with eps 1e-5 (UNet) or 1e-6 (VAE and the
// transformer's input norm); here over 64 channels, one group, a 3-D token input
// and RGB-sized channels; a frozen affine (only dx) and a constant input (only
// d_gamma, d_beta). group_norm_silu repeats the main shapes, plus the VAE's 4 channels
// per group over more positions. The last case of each op spans several of the CUDA
// kernels' chunks of positions (kernels/cuda/norm.cu: 128 rows, more per chunk past
// 32768 positions), the last one cut short, and channels that are no multiple of 32.
const op_spec norm_specs[] = {
    {"group_norm", "x:f gamma:f beta:f", run_group_norm,
     {"x=2x5x7x64 gamma=64 beta=64 | groups=32", "x=1x7x11x12 gamma=12 beta=12 | groups=1",
      "x=2x5x7x64 gamma=64 beta=64 | groups=32 eps=1e-6",
      "x=2x35x16 gamma=16 beta=16 | groups=4", "x=1x5x7x3 gamma=3 beta=3 | groups=3",
      "x=2x4x4x32:h gamma=32 beta=32 | groups=8",
      "x=2x5x7x64 gamma=64:c beta=64:c | groups=32", "x=2x35x16:c gamma=16 beta=16 | groups=4",
      "x=1x17x19x40 gamma=40 beta=40 | groups=4"}},
    {"group_norm_silu", "x:f gamma:f beta:f", run_group_norm_silu,
     {"x=2x5x7x64 gamma=64 beta=64 | groups=32", "x=1x7x11x12 gamma=12 beta=12 | groups=1",
      "x=1x16x16x128 gamma=128 beta=128 | groups=32 eps=1e-6",
      "x=2x35x16 gamma=16 beta=16 | groups=4", "x=1x5x7x3 gamma=3 beta=3 | groups=3",
      "x=2x4x4x32:h gamma=32 beta=32 | groups=8",
      "x=2x5x7x64 gamma=64:c beta=64:c | groups=32", "x=2x35x16:c gamma=16 beta=16 | groups=4",
      "x=1x185x200x8 gamma=8 beta=8 | groups=2 eps=1e-6 golden=0"}},
    {"layer_norm", "x:f gamma:f beta:f", run_layer_norm,
     {"x=2x77x48 gamma=48 beta=48", "x=5x320 gamma=320 beta=320",
      "x=3x7x40 gamma=40 beta=40 | eps=1e-6", "x=6x16:h gamma=16 beta=16",
      "x=2x7x48 gamma=48:c beta=48:c", "x=2x7x48:c gamma=48 beta=48",
      "x=3x100x40 gamma=40 beta=40"}},
    {0},
};
