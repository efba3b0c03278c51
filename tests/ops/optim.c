// Harness specs: adamw_step and global_norm. Both work in place outside autograd, so
// the run functions step f32 copies of the state and return them (param, m, v), and
// the norm comes back as a [1] tensor; the harness then checks finite values and
// guard bytes and compares the other backends against the CPU.
#include "tests/harness.h"

#include "kernels/backend.h"

// An f32 copy of t on t's device: the optimizer state the step may overwrite.
static tensor *f32_copy(const tensor *t) {
    tensor *c = tensor_new(DT_F32, t->dev, t->ndim, t->shape);
    backend_for(t->dev)->copy(c, t);
    return c;
}

static int run_adamw_step(tensor **outs, tensor *const *in, const op_params *p) {
    adamw_config cfg = {
        .lr = param_float(p, "lr", 1e-3f),
        .beta1 = param_float(p, "beta1", 0.9f),
        .beta2 = param_float(p, "beta2", 0.999f),
        .eps = param_float(p, "eps", 1e-8f),
        .weight_decay = param_float(p, "weight_decay", 1e-2f),
    };
    outs[0] = f32_copy(in[0]), outs[1] = f32_copy(in[2]), outs[2] = f32_copy(in[3]);
    op_adamw_step(outs[0], outs[1], outs[2], in[1], &cfg, param_int(p, "step", 1));
    return 3;
}

static int run_global_norm(tensor **outs, tensor *const *in, const op_params *p) {
    tensor *xs[4];
    int n = 0;
    for (int i = 0; i < 4; i++)
        if (in[i]) xs[n++] = in[i];
    float norm = (float)op_global_norm(n, xs);
    outs[0] = tensor_from_f32(DT_F32, in[0]->dev, SHAPE(1), &norm);
    return 1;
}

// AdamW: a single element; sizes that are no multiple of the CUDA kernel's 4-wide
// vectors, up to several blocks (64x320 is a rank-64 LoRA factor of a 320-wide
// layer); the first step (bias corrections 1 - beta) and later ones; weight decay
// 0, torch's default 1e-2 and 0.1; learning rates large enough that the update is
// not lost in param's rounding. v is positive, as a second moment is.
// global_norm: one tensor to four of mixed sizes (no multiples of 4 or 8, several
// blocks).
const op_spec optim_specs[] = {
    {"adamw_step", "param:c grad:c m:c v:p", run_adamw_step,
     {"param=1 grad=1 m=1 v=1 | lr=1e-3 weight_decay=1e-2 step=1",
      "param=37 grad=37 m=37 v=37 | lr=0.1 weight_decay=0 step=1",
      "param=5x67 grad=5x67 m=5x67 v=5x67 | lr=1e-2 weight_decay=1e-2 step=10",
      "param=3001 grad=3001 m=3001 v=3001 | lr=0.5 beta1=0.8 beta2=0.99 eps=1e-6 "
      "weight_decay=0.1 step=10",
      "param=64x320 grad=64x320 m=64x320 v=64x320 | lr=1e-4 weight_decay=1e-2 step=1000",
      "param=4x4x3 grad=4x4x3 m=4x4x3 v=4x4x3 | lr=0.05 beta1=0 beta2=0.5 eps=1e-3 "
      "weight_decay=1e-2 step=2"}},
    {"global_norm", "a:c b:c? c:c? d:c?", run_global_norm,
     {"a=1", "a=37", "a=5x67 b=3 c=3001", "a=64x320 b=320x64 c=1 d=4099"}},
    {0},
};
