// Harness specs: embedding (CLIP's token and position tables) and timestep_embedding.
#include "tests/harness.h"

static int run_embedding(tensor **outs, tensor *const *in, const op_params *p) {
    outs[0] = op_embedding(in[0], in[1]);
    return 1;
}

// Defaults as in diffusers' get_timestep_embedding.
static int run_timestep_embedding(tensor **outs, tensor *const *in, const op_params *p) {
    outs[0] =
        op_timestep_embedding(in[0], (int)param_int(p, "dim", 320), param_int(p, "flip", 0) != 0,
                              param_float(p, "shift", 1.0f), param_float(p, "scale", 1.0f),
                              param_float(p, "max_period", 10000.0f));
    return 1;
}

const op_spec embedding_specs[] = {
    // The small table repeats ids, so its backward adds several rows into one.
    {"embedding", "ids:i1000 table:f", run_embedding,
     {"ids=2x77:i1000 table=1000x48", "ids=3x5:i7 table=7x4", "ids=9:i4 table=4x16",
      // More ids than one 256-id tile of the cuda backward's duplicate search.
      "ids=4x77:i50 table=50x24"}},
    // SD's UNet: dim 320, flip_sin_to_cos, shift 0.
    {"timestep_embedding", "t:t", run_timestep_embedding,
     {"t=2 | dim=320 flip=1 shift=0", "t=3 | dim=33 shift=1", "t=4 | dim=64 shift=1",
      "t=3 | dim=16 flip=1 shift=0 scale=0.5 max_period=100"}},
    {0},
};
