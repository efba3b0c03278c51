// Harness specs: attention. Head dims 40, 80 and 160 are SD1.5's UNet levels (8 heads);
// 77 keys are the text tokens of cross-attention; causal is CLIP's text encoder.
#include "tests/harness.h"

static int run_attention(tensor **outs, tensor *const *in, const op_params *p) {
    outs[0] = op_attention(in[0], in[1], in[2], (int)param_int(p, "heads", 1),
                           param_int(p, "causal", 0) != 0);
    return 1;
}

const op_spec attention_specs[] = {
    {"attention", "q:f k:f v:f", run_attention,
     {"q=1x16x40 k=1x16x40 v=1x16x40 | heads=1",
      "q=2x32x320 k=2x32x320 v=2x32x320 | heads=8",
      "q=2x16x320 k=2x77x320 v=2x77x320 | heads=8",
      "q=1x24x640 k=1x24x640 v=1x24x640 | heads=8",
      "q=2x16x160 k=2x77x160 v=2x77x160 | heads=2",
      "q=1x16x1280 k=1x16x1280 v=1x16x1280 | heads=8",
      "q=1x16x320 k=1x77x320 v=1x77x320 | heads=2",
      "q=2x20x128 k=2x20x128 v=2x20x128 | heads=2 causal=1",
      "q=1x64x48 k=1x64x48 v=1x64x48 | heads=4 causal=1",
      "q=1x20x64 k=1x77x64 v=1x77x64 | heads=1",
      // More query rows than the CPU kernel's block of 1024.
      "q=1x1030x16 k=1x1030x16 v=1x1030x16 | heads=2 causal=1",
      "q=2x1030x16 k=2x77x16 v=2x77x16 | heads=2",
      // Several CUDA blocks with ragged last tiles at SD1.5's and CLIP's head dims
      // (kernels/cuda/attention.cu tiles 16 rows per warp, 16 to 64 streamed rows).
      "q=1x150x80 k=1x150x80 v=1x150x80 | heads=2",
      "q=1x130x160 k=1x77x160 v=1x77x160 | heads=2",
      "q=1x70x320 k=1x90x320 v=1x90x320 | heads=2",
      "q=1x77x128 k=1x77x128 v=1x77x128 | heads=2 causal=1"}},
    {0},
};
