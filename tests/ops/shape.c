// Harness specs: cast, contiguous, reshape, permute, slice, concat, split.
#include <string.h>

#include "tests/harness.h"

static dtype dtype_param(const op_params *p) {
    int64_t code = param_int(p, "dtype", 0);  // 0 f32, 1 f16, 2 bf16
    return code == 1 ? DT_F16 : code == 2 ? DT_BF16 : DT_F32;
}

static int run_cast(tensor **outs, tensor *const *in, const op_params *p) {
    outs[0] = op_cast(in[0], dtype_param(p));
    return 1;
}

// A permuted (strided) view made contiguous: the copy path of every backend.
static int run_contiguous(tensor **outs, tensor *const *in, const op_params *p) {
    tensor *t = op_permute(in[0], (int[]){0, 2, 1});
    outs[0] = op_contiguous(t);
    tensor_free(t);
    return 1;
}

static int run_reshape(tensor **outs, tensor *const *in, const op_params *p) {
    int64_t shape[TENSOR_MAX_DIMS];
    int nd = param_ints(p, "shape", shape, TENSOR_MAX_DIMS);
    outs[0] = op_reshape(in[0], nd, shape);
    return 1;
}

static int run_permute(tensor **outs, tensor *const *in, const op_params *p) {
    int64_t perm64[TENSOR_MAX_DIMS];
    int nd = param_ints(p, "perm", perm64, TENSOR_MAX_DIMS);
    int perm[TENSOR_MAX_DIMS];
    for (int i = 0; i < nd; i++) perm[i] = (int)perm64[i];
    outs[0] = op_permute(in[0], perm);
    return 1;
}

static int run_slice(tensor **outs, tensor *const *in, const op_params *p) {
    outs[0] = op_slice(in[0], (int)param_int(p, "axis", 0), param_int(p, "start", 0),
                       param_int(p, "end", 0));
    return 1;
}

static int run_concat(tensor **outs, tensor *const *in, const op_params *p) {
    int n = 0;
    while (n < SPEC_MAX_IO && in[n]) n++;
    outs[0] = op_concat(n, in, (int)param_int(p, "axis", -1));
    return 1;
}

static int run_split(tensor **outs, tensor *const *in, const op_params *p) {
    int64_t sizes[SPEC_MAX_IO];
    int n = param_ints(p, "sizes", sizes, SPEC_MAX_IO);
    op_split(outs, in[0], (int)param_int(p, "axis", -1), n, sizes);
    return n;
}

const op_spec shape_specs[] = {
    {"cast", "x:f", run_cast,
     {"x=3x5x7 | dtype=1 fd_eps=0.25 fd_tol=0.02", "x=3x5x7 | dtype=2 fd_eps=1 fd_tol=0.05",
      "x=4x6:h | dtype=0", "x=4x6:b | dtype=1"}},
    {"contiguous", "x:f", run_contiguous, {"x=2x5x7", "x=3x1x4"}},
    {"reshape", "x:f", run_reshape, {"x=2x5x7x3 | shape=2,35,3", "x=6x4 | shape=-1"}},
    {"permute", "x:f", run_permute, {"x=2x5x7x3 | perm=0,3,1,2", "x=4x6 | perm=1,0"}},
    {"slice", "x:f", run_slice,
     {"x=2x5x7x3 | axis=2 start=1 end=6", "x=8x6 | axis=0 start=3 end=8",
      "x=2x4x9 | axis=-1 start=0 end=4"}},
    {"concat", "a:f b:f c:f?", run_concat,
     {"a=2x5x7x3 b=2x5x7x5 | axis=-1", "a=2x4x6 b=1x4x6 c=3x4x6 | axis=0",
      "a=1x3x4x320 b=1x3x4x640 | axis=3"}},
    {"split", "x:f", run_split,
     {"x=2x5x7x8 | axis=-1 sizes=3,5", "x=6x4 | axis=0 sizes=1,2,3"}},
    {0},
};
