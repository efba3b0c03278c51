// The op harness: every op of kernels/ops.h is described once, as an op_spec, by
// the test file of its family (tests/ops/<family>.c). From those specs:
//   - suite_ops runs each case on the CPU reference with guard bytes around every
//     buffer, rejects NaN/inf, checks every backward by central finite differences,
//     compares every other backend in the build against the CPU, and lists the ops
//     of kernels/ops.h that no spec covers;
//   - `run_tests --list-op-cases` prints the cases for tools/golden/ops.py, which
//     writes PyTorch's answers to tests/fixtures/ops.safetensors;
//   - suite_golden runs the same cases on those inputs and compares.
//
// An input list reads "x:f w:f b:f?": name, kind, and '?' when the input may be
// absent (the op gets NULL). Kinds:
//   f  f32, N(0,1), differentiable        h / b  same in f16 / bf16
//   c  f32, N(0,1), constant              p      f32 in [0.5, 1.5), constant
//   t  f32 in [0, 1000), differentiable   iV     i32 ids in [0, V), constant
// A case reads "x=2x5x7x3 w=4x3x3x3 | stride=2 pad=1": a shape per present input
// (a kind may follow, "x=4x5:h", to override the spec's), then op parameters.
// The parameters fd_eps and fd_tol tune the finite-difference check of that case;
// bf16=0 leaves out the bf16 backend comparison, and golden=0 the PyTorch golden (for
// sizes that only stress a backend's tiling and would bloat the fixture).
#pragma once
#include <stdio.h>

#include "kernels/ops.h"

#define SPEC_MAX_CASES 16
#define SPEC_MAX_IO 8
#define PARAMS_MAX 8

typedef struct {
    int n;
    char key[PARAMS_MAX][32];
    char val[PARAMS_MAX][64];
} op_params;

int64_t param_int(const op_params *p, const char *key, int64_t dflt);
float param_float(const op_params *p, const char *key, float dflt);
// A comma-separated integer list ("0,2,1"); returns its length.
int param_ints(const op_params *p, const char *key, int64_t *out, int max);

// Computes the op from ins (NULL where an optional input is absent) and returns the
// number of outputs written to outs.
typedef int (*op_run_fn)(tensor **outs, tensor *const *ins, const op_params *p);

typedef struct {
    const char *op;      // name in kernels/ops.h without the "op_" prefix
    const char *inputs;  // "x:f w:f b:f?"
    op_run_fn run;
    const char *cases[SPEC_MAX_CASES];
} op_spec;

// Every family's table ends with an entry whose op is NULL.
extern const op_spec shape_specs[], elementwise_specs[], activation_specs[], linear_specs[],
    conv2d_specs[], norm_specs[], upsample_specs[], softmax_specs[], attention_specs[],
    embedding_specs[], loss_specs[], optim_specs[];
const op_spec *harness_find_spec(const char *op);
const op_spec *harness_spec_at(int i);  // the i-th spec of all families, NULL past the end
void harness_print_cases_json(FILE *out);

// A parsed case: its inputs and parameters.
typedef struct {
    const op_spec *spec;
    int index;  // position in spec->cases
    char name[64];  // "conv2d/0"
    int n_inputs;
    char input_name[SPEC_MAX_IO][16];
    char kind[SPEC_MAX_IO][8];  // "" when the optional input is absent
    int ndim[SPEC_MAX_IO];
    int64_t shape[SPEC_MAX_IO][TENSOR_MAX_DIMS];
    op_params params;
} op_case;

// Parses spec->cases[index]; aborts on a malformed spec (a bug in the test table).
void harness_parse_case(op_case *c, const op_spec *spec, int index);
bool kind_is_differentiable(const char *kind);
// The backends a test compares with the CPU into devs (cuda-emu, and cuda when a GPU
// answers); returns how many. When the cuda backend cannot run, a test "<what> on cuda"
// is recorded: SKIPPED with the reason, or FAILED under SDFT_REQUIRE_GPU (make test-gpu).
int harness_backends_to_compare(device *devs, const char *what);
// ‖ours − ref‖₂ / ‖ref‖₂ (‖ours − ref‖₂ when ref is all zero).
double rel_error(const float *ours, const float *ref, int64_t n);
