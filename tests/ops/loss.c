// Harness specs: mse_loss, weighted (Min-SNR) and plain. The last case spans two of
// the CUDA forward's chunks of 4096 values per sample, the second cut short.
#include "tests/harness.h"

static int run_mse_loss(tensor **outs, tensor *const *in, const op_params *p) {
    outs[0] = op_mse_loss(in[0], in[1], in[2]);
    return 1;
}

const op_spec loss_specs[] = {
    {"mse_loss", "pred:f target:f weights:p?", run_mse_loss,
     {"pred=2x4x8x8 target=2x4x8x8 weights=2", "pred=3x5x7 target=3x5x7",
      "pred=1x4x64x64 target=1x4x64x64 weights=1", "pred=5x3 target=5x3 weights=5",
      "pred=3x4x33x33 target=3x4x33x33 weights=3"}},
    {0},
};
