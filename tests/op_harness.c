// suite_ops: every op case on the CPU reference (finite values, guard bytes,
// finite-difference backward), every other backend against it, and the coverage
// of kernels/ops.h. See tests/harness.h.
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/half.h"
#include "core/rng.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu.h"
#include "tests/harness.h"
#include "tests/test.h"

// --- parameters ----------------------------------------------------------------------------

static const char *param_get(const op_params *p, const char *key) {
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->key[i], key) == 0) return p->val[i];
    return NULL;
}

int64_t param_int(const op_params *p, const char *key, int64_t dflt) {
    const char *v = param_get(p, key);
    return v ? strtoll(v, NULL, 10) : dflt;
}

float param_float(const op_params *p, const char *key, float dflt) {
    const char *v = param_get(p, key);
    return v ? strtof(v, NULL) : dflt;
}

int param_ints(const op_params *p, const char *key, int64_t *out, int max) {
    const char *v = param_get(p, key);
    int n = 0;
    while (v && *v && n < max) {
        char *end;
        out[n++] = strtoll(v, &end, 10);
        v = *end == ',' ? end + 1 : end;
        if (end == v && *end != ',') break;
    }
    return n;
}

// --- case parsing -----------------------------------------------------------------------

bool kind_is_differentiable(const char *kind) {
    return kind[0] == 'f' || kind[0] == 'h' || kind[0] == 'b' || kind[0] == 't';
}

void harness_parse_case(op_case *c, const op_spec *spec, int index) {
    memset(c, 0, sizeof *c);
    c->spec = spec;
    c->index = index;
    snprintf(c->name, sizeof c->name, "%s/%d", spec->op, index);

    // The spec's input list: "x:f w:f b:f?"
    bool optional[SPEC_MAX_IO] = {0};
    const char *s = spec->inputs;
    while (*s) {
        while (*s == ' ') s++;
        if (!*s) break;
        CHECK(c->n_inputs < SPEC_MAX_IO, "%s: too many inputs", spec->op);
        int i = c->n_inputs++;
        int len = (int)strcspn(s, ":");
        snprintf(c->input_name[i], sizeof c->input_name[i], "%.*s", len, s);
        s += len + 1;
        len = (int)strcspn(s, "? ");
        snprintf(c->kind[i], sizeof c->kind[i], "%.*s", len, s);
        s += len;
        if (*s == '?') optional[i] = true, s++;
    }
    char default_kind[SPEC_MAX_IO][8];
    memcpy(default_kind, c->kind, sizeof default_kind);
    for (int i = 0; i < c->n_inputs; i++) c->kind[i][0] = 0;

    // The case: "x=2x5x7x3 w=4x3x3x3:h | stride=2 pad=1"
    const char *text = spec->cases[index];
    const char *bar = strchr(text, '|');
    size_t shapes_len = bar ? (size_t)(bar - text) : strlen(text);
    char buf[512];
    snprintf(buf, sizeof buf, "%.*s", (int)shapes_len, text);
    for (char *tok = strtok(buf, " "); tok; tok = strtok(NULL, " ")) {
        char *eq = strchr(tok, '=');
        CHECK(eq, "%s: bad input token '%s'", c->name, tok);
        *eq = 0;
        int i = 0;
        while (i < c->n_inputs && strcmp(c->input_name[i], tok) != 0) i++;
        CHECK(i < c->n_inputs, "%s: no input named '%s'", c->name, tok);
        char *colon = strchr(eq + 1, ':');
        snprintf(c->kind[i], sizeof c->kind[i], "%s", colon ? colon + 1 : default_kind[i]);
        if (colon) *colon = 0;
        for (char *d = eq + 1; *d;) {
            CHECK(c->ndim[i] < TENSOR_MAX_DIMS, "%s: too many dims", c->name);
            char *end;
            c->shape[i][c->ndim[i]++] = strtoll(d, &end, 10);
            d = *end == 'x' ? end + 1 : end;
            CHECK(end != d || !*end, "%s: bad shape", c->name);
        }
    }
    for (int i = 0; i < c->n_inputs; i++)
        CHECK(c->kind[i][0] || optional[i], "%s: input '%s' has no shape", c->name,
              c->input_name[i]);

    if (bar) {
        snprintf(buf, sizeof buf, "%s", bar + 1);
        for (char *tok = strtok(buf, " "); tok; tok = strtok(NULL, " ")) {
            char *eq = strchr(tok, '=');
            CHECK(eq && c->params.n < PARAMS_MAX, "%s: bad parameter '%s'", c->name, tok);
            *eq = 0;
            snprintf(c->params.key[c->params.n], sizeof c->params.key[0], "%s", tok);
            snprintf(c->params.val[c->params.n], sizeof c->params.val[0], "%s", eq + 1);
            c->params.n++;
        }
    }
}

void harness_print_cases_json(FILE *out) {
    fprintf(out, "[\n");
    bool first = true;
    for (int s = 0; harness_spec_at(s); s++) {
        const op_spec *spec = harness_spec_at(s);
        for (int k = 0; k < SPEC_MAX_CASES && spec->cases[k]; k++) {
            op_case c;
            harness_parse_case(&c, spec, k);
            fprintf(out, "%s  {\"op\": \"%s\", \"case\": \"%s\", \"inputs\": [", first ? "" : ",\n",
                    spec->op, c.name);
            first = false;
            bool first_in = true;
            for (int i = 0; i < c.n_inputs; i++) {
                if (!c.kind[i][0]) continue;
                fprintf(out, "%s{\"name\": \"%s\", \"kind\": \"%s\", \"shape\": [",
                        first_in ? "" : ", ", c.input_name[i], c.kind[i]);
                first_in = false;
                for (int d = 0; d < c.ndim[i]; d++)
                    fprintf(out, "%s%lld", d ? ", " : "", (long long)c.shape[i][d]);
                fprintf(out, "]}");
            }
            fprintf(out, "], \"params\": {");
            for (int i = 0; i < c.params.n; i++)
                fprintf(out, "%s\"%s\": \"%s\"", i ? ", " : "", c.params.key[i], c.params.val[i]);
            fprintf(out, "}}");
        }
    }
    fprintf(out, "\n]\n");
}

// --- inputs ----------------------------------------------------------------------------------

static uint64_t hash_name(const char *s) {
    uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static dtype kind_dtype(const char *kind) {
    switch (kind[0]) {
    case 'h': return DT_F16;
    case 'b': return DT_BF16;
    case 'i': return DT_I32;
    default: return DT_F32;
    }
}

// Host values of input i, drawn from the case's own stream.
static float *input_values(const op_case *c, int i, int64_t n) {
    float *v = xmalloc((size_t)n * sizeof *v);
    rng_stream s = {hash_name(c->name) + 7919u * (uint64_t)i, 0};
    const char *kind = c->kind[i];
    if (kind[0] == 'f' || kind[0] == 'h' || kind[0] == 'b' || kind[0] == 'c') {
        rng_fill_normal(&s, v, (size_t)n);
        return v;
    }
    rng_fill_uniform(&s, v, (size_t)n);
    float lo = 0, span = 1;
    if (kind[0] == 'p') lo = 0.5f;
    if (kind[0] == 't') span = 1000;
    if (kind[0] == 'i') span = (float)strtol(kind + 1, NULL, 10);
    for (int64_t j = 0; j < n; j++) {
        v[j] = lo + span * v[j];
        if (kind[0] == 'i') v[j] = floorf(v[j]) < span ? floorf(v[j]) : span - 1;
    }
    return v;
}

tensor *harness_make_input(const op_case *c, int i, device dev, const float *values) {
    dtype dt = kind_dtype(c->kind[i]);
    if (dt != DT_I32) return tensor_from_f32(dt, dev, c->ndim[i], c->shape[i], values);
    tensor *t = tensor_new(DT_I32, dev, c->ndim[i], c->shape[i]);
    int64_t n = tensor_numel(t);
    int32_t *ids = xmalloc((size_t)n * sizeof *ids);
    for (int64_t j = 0; j < n; j++) ids[j] = (int32_t)values[j];
    backend_for(dev)->upload(t->st->data, ids, (size_t)n * sizeof *ids);
    free(ids);
    return t;
}

// --- checks ----------------------------------------------------------------------------------

static float *host_copy(const tensor *t) {
    int64_t n = tensor_numel(t);
    float *v = xmalloc((size_t)(n ? n : 1) * sizeof *v);
    tensor_copy_to_f32(t, v, (size_t)n);
    return v;
}

static bool all_finite(const float *v, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return false;
    return true;
}

double rel_error(const float *ours, const float *ref, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)ours[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    if (den == 0) return sqrt(num);
    return sqrt(num / den);
}

// sum_k <outs[k], seeds[k]> in double: the scalar whose gradient the harness checks.
static double probe(tensor **outs, int n_out, float *const *seeds) {
    double f = 0;
    for (int k = 0; k < n_out; k++) {
        float *v = host_copy(outs[k]);
        int64_t n = tensor_numel(outs[k]);
        for (int64_t j = 0; j < n; j++) f += (double)v[j] * seeds[k][j];
        free(v);
    }
    return f;
}

static int run_no_grad(const op_case *c, tensor **outs, tensor *const *ins) {
    autograd_no_grad_begin();
    int n = c->spec->run(outs, ins, &c->params);
    autograd_no_grad_end();
    return n;
}

static void free_outputs(tensor **outs, int n) {
    for (int k = 0; k < n; k++) tensor_free(outs[k]);
}

#define FD_POINTS 10

// Central differences on FD_POINTS elements of each differentiable f32 input against
// the analytic gradients. Returns the worst error as a multiple of the case's
// tolerance (above 1 fails) and names that input in worst_input.
static double finite_difference_ratio(const op_case *c, tensor **ins, float **values,
                                      tensor *const *grads, float *const *seeds,
                                      char *worst_input, size_t len) {
    float eps = param_float(&c->params, "fd_eps", 1e-2f);
    float tol = param_float(&c->params, "fd_tol", 1e-2f);
    double worst = 0;
    for (int i = 0; i < c->n_inputs; i++) {
        if (!ins[i] || !kind_is_differentiable(c->kind[i]) || ins[i]->dtype != DT_F32) continue;
        EXPECT(grads[i], "%s: no gradient reached input %s", c->name, c->input_name[i]);
        if (!grads[i]) continue;
        float *analytic = host_copy(grads[i]);
        int64_t n = tensor_numel(ins[i]);
        int points = n < FD_POINTS ? (int)n : FD_POINTS;
        double diff2 = 0, norm2 = 0;
        for (int p = 0; p < points; p++) {
            int64_t j = (int64_t)(((double)p + 0.5) * (double)n / points);
            float saved = values[i][j];
            double f[2];
            for (int side = 0; side < 2; side++) {
                values[i][j] = saved + (side ? -eps : eps);
                tensor_copy_from_f32(ins[i], values[i], (size_t)n);
                tensor *outs[SPEC_MAX_IO] = {0};
                int k = run_no_grad(c, outs, ins);
                f[side] = probe(outs, k, seeds);
                free_outputs(outs, k);
            }
            values[i][j] = saved;
            tensor_copy_from_f32(ins[i], values[i], (size_t)n);
            double numeric = (f[0] - f[1]) / (2.0 * eps);
            diff2 += (numeric - analytic[j]) * (numeric - analytic[j]);
            norm2 += (double)analytic[j] * analytic[j];
        }
        // The floor keeps FD noise on near-zero gradients from reading as an error.
        double ratio = sqrt(diff2) / (sqrt(norm2) + 1e-3 * sqrt((double)points)) / tol;
        if (ratio > worst) {
            worst = ratio;
            snprintf(worst_input, len, "%s", c->input_name[i]);
        }
        free(analytic);
    }
    return worst;
}

// Forward and backward of one case on one device. outs, grads: results (caller frees).
static int run_with_grad(const op_case *c, tensor **ins, tensor **outs, tensor **grads,
                         float *const *seeds) {
    for (int i = 0; i < c->n_inputs; i++)
        if (ins[i] && kind_is_differentiable(c->kind[i])) tensor_set_requires_grad(ins[i], true);
    int n_out = c->spec->run(outs, ins, &c->params);
    tensor *seed_t[SPEC_MAX_IO];
    for (int k = 0; k < n_out; k++)
        seed_t[k] = tensor_from_f32(outs[k]->dtype, outs[k]->dev, outs[k]->ndim, outs[k]->shape,
                                    seeds[k]);
    autograd_backward_multi(n_out, outs, (const tensor *const *)seed_t);
    for (int k = 0; k < n_out; k++) tensor_free(seed_t[k]);
    for (int i = 0; i < c->n_inputs; i++) {
        grads[i] = ins[i] && tensor_grad(ins[i]) ? tensor_retain(tensor_grad(ins[i])) : NULL;
        if (ins[i]) tensor_set_requires_grad(ins[i], false);
    }
    return n_out;
}

// --- other backends against the CPU -----------------------------------------------------------

// Host copies of one run's outputs and input gradients, with the dtypes they had.
typedef struct {
    int n_out;
    float *out[SPEC_MAX_IO], *grad[SPEC_MAX_IO];
    int64_t out_n[SPEC_MAX_IO], grad_n[SPEC_MAX_IO];
    dtype out_dt[SPEC_MAX_IO], grad_dt[SPEC_MAX_IO];
} case_result;

static void result_free(case_result *r) {
    for (int k = 0; k < SPEC_MAX_IO; k++) free(r->out[k]), free(r->grad[k]);
    memset(r, 0, sizeof *r);
}

// Runs the case on dev from host values (float inputs stored as bf16 when as_bf16)
// with the given upstream gradients, keeping host copies of the results.
static void capture(const op_case *c, device dev, float *const *values, bool as_bf16,
                    float *const *seeds, case_result *r) {
    tensor *ins[SPEC_MAX_IO] = {0}, *outs[SPEC_MAX_IO] = {0}, *grads[SPEC_MAX_IO] = {0};
    for (int i = 0; i < c->n_inputs; i++) {
        if (!c->kind[i][0]) continue;
        bool float_kind = kind_dtype(c->kind[i]) != DT_I32;
        ins[i] = as_bf16 && float_kind
                     ? tensor_from_f32(DT_BF16, dev, c->ndim[i], c->shape[i], values[i])
                     : harness_make_input(c, i, dev, values[i]);
    }
    r->n_out = run_with_grad(c, ins, outs, grads, seeds);
    for (int k = 0; k < r->n_out; k++) {
        r->out[k] = host_copy(outs[k]);
        r->out_n[k] = tensor_numel(outs[k]);
        r->out_dt[k] = outs[k]->dtype;
    }
    for (int i = 0; i < c->n_inputs; i++) {
        if (!grads[i]) continue;
        r->grad[i] = host_copy(grads[i]);
        r->grad_n[i] = tensor_numel(grads[i]);
        r->grad_dt[i] = grads[i]->dtype;
    }
    free_outputs(outs, r->n_out);
    for (int i = 0; i < c->n_inputs; i++) tensor_free(ins[i]), tensor_free(grads[i]);
}

// The bar for a result held in dt: 1e-5 in f32, the type's rounding otherwise.
static double backend_tolerance(dtype dt) {
    return dt == DT_BF16 ? 1e-2 : dt == DT_F16 ? 1e-3 : 1e-5;
}

static void expect_same_results(const op_case *c, const char *what, const case_result *ours,
                                const case_result *ref) {
    EXPECT(ours->n_out == ref->n_out, "%s %s: %d outputs, cpu %d", c->name, what, ours->n_out,
           ref->n_out);
    for (int k = 0; k < ours->n_out && k < ref->n_out; k++) {
        double err = rel_error(ours->out[k], ref->out[k], ref->out_n[k]);
        double tol = backend_tolerance(ours->out_dt[k]);
        EXPECT(ours->out_n[k] == ref->out_n[k] && all_finite(ours->out[k], ours->out_n[k]) &&
                   err <= tol,
               "%s %s: output %d relative error %.3g > %.3g", c->name, what, k, err, tol);
    }
    for (int i = 0; i < c->n_inputs; i++) {
        if (!ref->grad[i] && !ours->grad[i]) continue;
        EXPECT(ours->grad[i] && ref->grad[i], "%s %s: gradient of %s missing on one side",
               c->name, what, c->input_name[i]);
        if (!ours->grad[i] || !ref->grad[i]) continue;
        double err = rel_error(ours->grad[i], ref->grad[i], ref->grad_n[i]);
        double tol = backend_tolerance(ours->grad_dt[i]);
        EXPECT(all_finite(ours->grad[i], ours->grad_n[i]) && err <= tol,
               "%s %s: d/d%s relative error %.3g > %.3g", c->name, what, c->input_name[i], err,
               tol);
    }
}

// The devices compared against the CPU: every other backend that runs here.
static int compare_devices(device *devs) {
    int n = 0;
    for (int d = 0; d < DEV_COUNT; d++)
        if (d != DEV_CPU && backend_available((device)d)) devs[n++] = (device)d;
    return n;
}

// SDFT_EMU_OPS=a,b limits the cuda-emu comparison to those ops (while kernel families
// are being written); unset, every op is compared.
static bool compared_on(device dev, const char *op) {
    const char *only = getenv("SDFT_EMU_OPS");
    if (dev != DEV_CUDA_EMU || !only || !*only) return true;
    size_t len = strlen(op);
    for (const char *p = only; (p = strstr(p, op)); p += len)
        if ((p == only || p[-1] == ',') && (p[len] == ',' || p[len] == 0)) return true;
    return false;
}

// A case runs on bf16 storage unless it says bf16=0 or already has half inputs.
static bool has_bf16_path(const op_case *c) {
    if (!param_int(&c->params, "bf16", 1)) return false;
    for (int i = 0; i < c->n_inputs; i++)
        if (c->kind[i][0] == 'h' || c->kind[i][0] == 'b') return false;
    return true;
}

static int cases_compared[DEV_COUNT];

// Every other backend against the CPU: the f32 path against the CPU run cpu_ref, then
// the bf16 path against the CPU in f32 on the same bf16-rounded inputs and seeds.
static void compare_backends(const op_case *c, float *const *values, float *const *seeds,
                             const case_result *cpu_ref) {
    device devs[DEV_COUNT];
    int n_dev = compare_devices(devs);
    for (int d = 0; d < n_dev; d++) {
        if (!compared_on(devs[d], c->spec->op)) continue;
        char what[64];
        case_result ours = {0};
        capture(c, devs[d], values, false, seeds, &ours);
        snprintf(what, sizeof what, "%s f32", device_name(devs[d]));
        expect_same_results(c, what, &ours, cpu_ref);
        result_free(&ours);
        cases_compared[devs[d]]++;
        if (!has_bf16_path(c)) continue;

        float *rounded[SPEC_MAX_IO] = {0}, *rounded_seeds[SPEC_MAX_IO] = {0};
        for (int i = 0; i < c->n_inputs; i++) {
            if (!values[i]) continue;
            int64_t n = 1;
            for (int k = 0; k < c->ndim[i]; k++) n *= c->shape[i][k];
            rounded[i] = xmalloc((size_t)(n ? n : 1) * sizeof(float));
            for (int64_t j = 0; j < n; j++)
                rounded[i][j] = kind_dtype(c->kind[i]) == DT_I32 ? values[i][j]
                                                                 : bf16_to_f32(f32_to_bf16(values[i][j]));
        }
        for (int k = 0; k < cpu_ref->n_out; k++) {
            rounded_seeds[k] = xmalloc((size_t)(cpu_ref->out_n[k] ? cpu_ref->out_n[k] : 1) * sizeof(float));
            for (int64_t j = 0; j < cpu_ref->out_n[k]; j++)
                rounded_seeds[k][j] = bf16_to_f32(f32_to_bf16(seeds[k][j]));
        }
        case_result ref = {0};
        capture(c, DEV_CPU, rounded, false, rounded_seeds, &ref);
        capture(c, devs[d], rounded, true, rounded_seeds, &ours);
        snprintf(what, sizeof what, "%s bf16", device_name(devs[d]));
        expect_same_results(c, what, &ours, &ref);
        result_free(&ours);
        result_free(&ref);
        for (int i = 0; i < SPEC_MAX_IO; i++) free(rounded[i]), free(rounded_seeds[i]);
    }
}

// Every check of one case but the finite-difference verdict, which it returns as the
// worst error over tolerance (see finite_difference_ratio).
static double check_case(const op_case *c, char *worst_input, size_t len) {
    tensor *ins[SPEC_MAX_IO] = {0}, *outs[SPEC_MAX_IO] = {0}, *grads[SPEC_MAX_IO] = {0};
    float *values[SPEC_MAX_IO] = {0}, *seeds[SPEC_MAX_IO] = {0};
    for (int i = 0; i < c->n_inputs; i++) {
        if (!c->kind[i][0]) continue;
        int64_t n = 1;
        for (int d = 0; d < c->ndim[i]; d++) n *= c->shape[i][d];
        values[i] = input_values(c, i, n);
        ins[i] = harness_make_input(c, i, DEV_CPU, values[i]);
    }
    // Upstream gradients: one normal draw per output element, from a stream of their
    // own. A first no-grad run tells the output shapes.
    int n_out = run_no_grad(c, outs, ins);
    for (int k = 0; k < n_out; k++) {
        int64_t n = tensor_numel(outs[k]);
        float *v = host_copy(outs[k]);
        EXPECT(all_finite(v, n), "%s: output %d has NaN or inf", c->name, k);
        free(v);
        seeds[k] = xmalloc((size_t)(n ? n : 1) * sizeof(float));
        rng_stream s = {hash_name(c->name) ^ 0x5eedull, (uint64_t)k << 32};
        rng_fill_normal(&s, seeds[k], (size_t)n);
    }
    free_outputs(outs, n_out);
    EXPECT(cpu_guard_check() == 0, "%s: forward wrote outside a buffer", c->name);

    n_out = run_with_grad(c, ins, outs, grads, seeds);
    case_result cpu_ref = {.n_out = n_out};
    for (int k = 0; k < n_out; k++) {
        cpu_ref.out[k] = host_copy(outs[k]);
        cpu_ref.out_n[k] = tensor_numel(outs[k]);
        cpu_ref.out_dt[k] = outs[k]->dtype;
    }
    for (int i = 0; i < c->n_inputs; i++) {
        if (!grads[i]) continue;
        cpu_ref.grad[i] = host_copy(grads[i]);
        cpu_ref.grad_n[i] = tensor_numel(grads[i]);
        cpu_ref.grad_dt[i] = grads[i]->dtype;
    }
    EXPECT(cpu_guard_check() == 0, "%s: backward wrote outside a buffer", c->name);
    EXPECT(autograd_tape_size() == 0, "%s: tape not cleared after backward", c->name);
    for (int i = 0; i < c->n_inputs; i++) {
        if (!grads[i]) continue;
        float *g = host_copy(grads[i]);
        EXPECT(all_finite(g, tensor_numel(grads[i])), "%s: gradient of %s has NaN or inf",
               c->name, c->input_name[i]);
        free(g);
    }
    free_outputs(outs, n_out);
    double ratio = finite_difference_ratio(c, ins, values, grads, seeds, worst_input, len);
    compare_backends(c, values, seeds, &cpu_ref);
    result_free(&cpu_ref);

    for (int i = 0; i < c->n_inputs; i++) {
        tensor_free(ins[i]);
        tensor_free(grads[i]);
        free(values[i]);
    }
    for (int k = 0; k < n_out; k++) free(seeds[k]);
    return ratio;
}

static void run_case(const op_case *c) {
    test_begin("ops/%s [%s]", c->name, c->spec->cases[c->index]);
    char worst[16] = "";
    double ratio = check_case(c, worst, sizeof worst);
    EXPECT(ratio <= 1, "%s: d/d%s finite-difference error %.3g x the tolerance", c->name, worst,
           ratio);
    test_end();
}

// --- self-tests: the harness must catch planted bugs ----------------------------------------

// silu whose backward is 5% off: the finite-difference check must reject it.
static void wrong_silu_backward(node *n, const tensor *gy) {
    tensor *gx = tensor_new_like(n->saved[0]);
    backend_for(gx->dev)->unary_backward(gx, gy, n->saved[0], UN_SILU, 0);
    tensor *off = tensor_new_like(gx);
    backend_for(gx->dev)->unary_forward(off, gx, UN_SCALE, 1.05f);
    node_accumulate(n, 0, off);
    tensor_free(off);
    tensor_free(gx);
}

static int run_wrong_silu(tensor **outs, tensor *const *in, const op_params *p) {
    tensor *x = in[0];
    outs[0] = tensor_new_like(x);
    backend_for(x->dev)->unary_forward(outs[0], x, UN_SILU, 0);
    node *n = autograd_record("wrong_silu", wrong_silu_backward, outs[0], 1, &x);
    if (n) node_save(n, x);
    return 1;
}

static void harness_self_tests(void) {
    test_begin("ops/self-test: a 5%% gradient error fails the finite-difference check");
    static const op_spec wrong = {"wrong_silu", "x:f", run_wrong_silu, {"x=2x5x7x3"}};
    op_case c;
    harness_parse_case(&c, &wrong, 0);
    char worst[16] = "";
    double ratio = check_case(&c, worst, sizeof worst);
    EXPECT(ratio > 1, "planted gradient bug passed: error %.3g x the tolerance", ratio);
    test_end();

    test_begin("ops/self-test: guard bytes catch a one-element overrun");
    tensor *t = tensor_new(DT_F32, DEV_CPU, SHAPE(5));
    EXPECT(cpu_guard_check() == 0, "guards dirty before the overrun");
    ((float *)tensor_data(t))[5] = 1.0f;  // inside the guard zone of this block
    EXPECT(cpu_guard_check() == 1, "overrun of a live buffer not seen");
    tensor_free(t);
    EXPECT(cpu_guard_check() == 1, "overrun of a freed buffer not seen");
    EXPECT(cpu_guard_check() == 0, "the count does not reset");
    test_end();
}

// Ops declared in kernels/ops.h that no spec covers.
// Ops declared in kernels/ops.h ("<type> op_name(" or "<type> *op_name(" at the start
// of a line) that no spec covers.
static void check_coverage(void) {
    test_begin("ops/coverage of kernels/ops.h");
    FILE *f = fopen(repo_path("kernels/ops.h"), "r");
    EXPECT(f, "cannot open kernels/ops.h");
    char line[512];
    int declared = 0;
    while (f && fgets(line, sizeof line, f)) {
        if (!isalpha((unsigned char)line[0])) continue;
        const char *p = strstr(line, "op_");
        if (!p || p == line || (p[-1] != ' ' && p[-1] != '*')) continue;
        p += 3;
        int len = 0;
        while (isalnum((unsigned char)p[len]) || p[len] == '_') len++;
        if (p[len] != '(') continue;
        char name[64];
        snprintf(name, sizeof name, "%.*s", len < 63 ? len : 63, p);
        declared++;
        EXPECT(harness_find_spec(name), "op_%s has no harness spec", name);
    }
    if (f) fclose(f);
    EXPECT(declared > 20, "found only %d op declarations in kernels/ops.h", declared);
    printf("  %d ops declared and specified\n", declared);
    test_end();
}

int harness_backends_to_compare(device *devs, const char *what) {
    int n = compare_devices(devs);
    bool required = getenv("SDFT_REQUIRE_GPU") != NULL;
#ifdef SDFT_HAVE_CUDA
    if (!backend_available(DEV_CUDA)) {
        test_begin("%s on cuda", what);
        if (required)
            EXPECT(false, "SDFT_REQUIRE_GPU is set but no GPU answers");
        else
            test_skip("this build has the cuda backend but no GPU answers here; make test-gpu runs it on one");
        test_end();
    }
#else
    if (required) {
        test_begin("%s on cuda", what);
        EXPECT(false, "SDFT_REQUIRE_GPU is set but this build has no cuda backend (no nvcc)");
        test_end();
    }
#endif
    return n;
}

// Which backends this run compares, and a failure when a GPU was required and is absent.
static void report_backends(void) {
    device devs[DEV_COUNT];
    int n = harness_backends_to_compare(devs, "ops: the harness");
    printf("  backends compared against cpu:");
    for (int d = 0; d < n; d++) printf(" %s", device_name(devs[d]));
    printf("%s\n", n ? "" : " none");
}

void suite_ops(void) {
    cpu_guard_mode(true);
    harness_self_tests();
    check_coverage();
    report_backends();
    for (int s = 0; harness_spec_at(s); s++) {
        const op_spec *spec = harness_spec_at(s);
        for (int k = 0; k < SPEC_MAX_CASES && spec->cases[k]; k++) {
            op_case c;
            harness_parse_case(&c, spec, k);
            run_case(&c);
        }
    }
    cpu_guard_mode(false);
    for (int d = 0; d < DEV_COUNT; d++)
        if (cases_compared[d])
            printf("  %s: %d cases compared against cpu (f32, and bf16 where the case has it)\n",
                   device_name((device)d), cases_compared[d]);
}
