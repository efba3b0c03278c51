// Harness specs: conv2d.
#include "tests/harness.h"

static int run_conv2d(tensor **outs, tensor *const *in, const op_params *p) {
    outs[0] = op_conv2d(in[0], in[1], in[2], (int)param_int(p, "stride", 1),
                        (int)param_int(p, "pad", 0));
    return 1;
}

// The UNet's convolutions on odd grids: 3x3 same-size, the 3x3 stride-2 downsampler,
// 1x1 shortcuts, an RGB input, plus a 5x5 kernel, an even 2x2 stride-2 kernel, no
// bias, a stride that skips input pixels, an f16 input, a frozen conv (only dx) and
// one whose input needs no gradient (only dW, db). The last four span several tiles
// of the CUDA kernels (128 rows or columns): several M and N tiles with vector loads,
// stride-2 input-gradient phases of over 128 pixels, element-wise loads over two M
// tiles (Cin 3), and a 1x1 stride-2 conv whose split-K input gradient has pixels no
// kernel tap reaches.
const op_spec conv2d_specs[] = {
    {"conv2d", "x:f w:f b:f?", run_conv2d,
     {"x=2x5x7x8 w=16x3x3x8 b=16 | stride=1 pad=1", "x=1x7x11x8 w=8x3x3x8 b=8 | stride=2 pad=1",
      "x=2x5x7x16 w=8x1x1x16 b=8", "x=1x7x11x4 w=6x5x5x4 b=6 | pad=2",
      "x=2x5x7x3 w=8x3x3x3 b=8 | pad=1", "x=2x5x7x8 w=4x3x3x8 | pad=1",
      "x=1x6x6x32 w=32x3x3x32 b=32 | pad=1", "x=1x8x6x4 w=5x2x2x4 b=5 | stride=2",
      "x=1x7x11x3 w=4x1x1x3 b=4 | stride=3", "x=1x5x7x8:h w=8x3x3x8 b=8 | pad=1",
      "x=2x5x7x8 w=8x3x3x8:c b=8:c | pad=1", "x=2x5x7x8:c w=8x3x3x8 b=8 | stride=2 pad=1",
      "x=2x9x9x16 w=136x3x3x16 b=136 | pad=1", "x=2x18x18x8 w=16x3x3x8 b=16 | stride=2 pad=1",
      "x=1x13x13x3 w=5x3x3x3 b=5 | pad=1", "x=1x6x6x8 w=64x1x1x8 b=64 | stride=2"}},
    {0},
};
