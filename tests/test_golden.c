// suite_golden: every op-harness case run on the inputs in tests/fixtures/ops.safetensors
// (written by tools/golden/ops.py from PyTorch in float64) and compared with the
// stored outputs and input gradients by relative error.
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/tensor_file.h"
#include "tests/harness.h"
#include "tests/test.h"

#define GOLDEN_FORMAT_VERSION "1"

// The comparison tolerance for a result held in dtype dt: 1e-5 in f32 (the issue's
// bar), else the rounding of the narrower type.
static double tolerance(dtype dt) {
    switch (dt) {
    case DT_F16: return 1e-3;
    case DT_BF16: return 8e-3;
    default: return 1e-5;
    }
}

static float *fixture_values(st_file *f, const char *name, int64_t *n) {
    tensor *t = st_load(f, name, DT_F32, DEV_CPU);
    if (!t) return NULL;
    *n = tensor_numel(t);
    float *v = xmalloc((size_t)(*n ? *n : 1) * sizeof *v);
    tensor_copy_to_f32(t, v, (size_t)*n);
    tensor_free(t);
    return v;
}

// Compares tensor `ours` with fixture tensor `name`; returns whether it matched.
static void expect_matches(st_file *f, const char *name, const tensor *ours) {
    int64_t n = 0;
    float *ref = fixture_values(f, name, &n);
    EXPECT(ref, "fixture has no %s", name);
    if (!ref) return;
    EXPECT(n == tensor_numel(ours), "%s: %lld elements, we have %lld", name, (long long)n,
           (long long)tensor_numel(ours));
    if (n == tensor_numel(ours)) {
        float *v = xmalloc((size_t)(n ? n : 1) * sizeof *v);
        tensor_copy_to_f32(ours, v, (size_t)n);
        double err = rel_error(v, ref, n), tol = tolerance(ours->dtype);
        EXPECT(err <= tol, "%s: relative error %.3g > %.3g", name, err, tol);
        free(v);
    }
    free(ref);
}

// The fixture's case must still be the harness's: same inputs, shapes and params.
static bool case_is_current(const cJSON *jc, const op_case *c) {
    const cJSON *inputs = cJSON_GetObjectItem(jc, "inputs");
    int present = 0;
    for (int i = 0; i < c->n_inputs; i++) present += c->kind[i][0] != 0;
    if (cJSON_GetArraySize(inputs) != present) return false;
    const cJSON *ji = inputs->child;
    for (int i = 0; i < c->n_inputs; i++) {
        if (!c->kind[i][0]) continue;
        const cJSON *shape = cJSON_GetObjectItem(ji, "shape");
        if (strcmp(cJSON_GetObjectItem(ji, "name")->valuestring, c->input_name[i]) != 0 ||
            strcmp(cJSON_GetObjectItem(ji, "kind")->valuestring, c->kind[i]) != 0 ||
            cJSON_GetArraySize(shape) != c->ndim[i])
            return false;
        for (int d = 0; d < c->ndim[i]; d++)
            if (cJSON_GetArrayItem(shape, d)->valuedouble != (double)c->shape[i][d]) return false;
        ji = ji->next;
    }
    const cJSON *params = cJSON_GetObjectItem(jc, "params");
    if (cJSON_GetArraySize(params) != c->params.n) return false;
    for (int i = 0; i < c->params.n; i++) {
        const cJSON *v = cJSON_GetObjectItem(params, c->params.key[i]);
        if (!cJSON_IsString(v) || strcmp(v->valuestring, c->params.val[i]) != 0) return false;
    }
    return true;
}

static void run_golden_case(st_file *f, const cJSON *jc, const op_case *c) {
    test_begin("golden/%s [%s]", c->name, c->spec->cases[c->index]);
    EXPECT(case_is_current(jc, c), "fixture case differs from the harness case: run make golden");
    if (!test_ok()) {
        test_end();
        return;
    }
    char key[160];
    tensor *ins[SPEC_MAX_IO] = {0}, *outs[SPEC_MAX_IO] = {0}, *seeds[SPEC_MAX_IO] = {0};
    for (int i = 0; i < c->n_inputs; i++) {
        if (!c->kind[i][0]) continue;
        snprintf(key, sizeof key, "%s/in/%s", c->name, c->input_name[i]);
        const st_entry *e = st_find(f, key);
        ins[i] = e ? st_load(f, key, (dtype)e->dtype, DEV_CPU) : NULL;
        EXPECT(ins[i], "fixture input %s: %s", key, e ? err_msg() : "missing");
        if (ins[i] && kind_is_differentiable(c->kind[i])) tensor_set_requires_grad(ins[i], true);
    }
    int n_out = test_ok() ? c->spec->run(outs, ins, &c->params) : 0;
    int stored_outputs = cJSON_GetObjectItem(jc, "n_outputs")->valueint;
    EXPECT(n_out == stored_outputs || !test_ok(), "%d outputs, fixture has %d", n_out,
           stored_outputs);
    for (int k = 0; k < n_out && k < stored_outputs; k++) {
        snprintf(key, sizeof key, "%s/out/%d", c->name, k);
        expect_matches(f, key, outs[k]);
        snprintf(key, sizeof key, "%s/gout/%d", c->name, k);
        int64_t n;
        float *g = fixture_values(f, key, &n);
        EXPECT(g && n == tensor_numel(outs[k]), "fixture gradient %s", key);
        seeds[k] = g && n == tensor_numel(outs[k])
                       ? tensor_from_f32(outs[k]->dtype, DEV_CPU, outs[k]->ndim, outs[k]->shape, g)
                       : NULL;
        free(g);
    }
    if (test_ok() && n_out > 0) {
        autograd_backward_multi(n_out, outs, (const tensor *const *)seeds);
        for (int i = 0; i < c->n_inputs; i++) {
            if (!ins[i] || !kind_is_differentiable(c->kind[i])) continue;
            snprintf(key, sizeof key, "%s/grad/%s", c->name, c->input_name[i]);
            EXPECT(tensor_grad(ins[i]), "no gradient for %s", c->input_name[i]);
            if (tensor_grad(ins[i])) expect_matches(f, key, tensor_grad(ins[i]));
        }
    }
    autograd_clear_tape();
    for (int k = 0; k < n_out; k++) tensor_free(outs[k]), tensor_free(seeds[k]);
    for (int i = 0; i < c->n_inputs; i++) tensor_free(ins[i]);
    test_end();
}

void suite_golden(void) {
    const char *path = repo_path("tests/fixtures/ops.safetensors");
    test_begin("golden/fixture %s", path);
    st_file *f = st_open(path);
    EXPECT(f, "%s", err_msg());
    const char *version = f ? st_meta(f, "format_version") : NULL;
    EXPECT(!f || (version && strcmp(version, GOLDEN_FORMAT_VERSION) == 0),
           "format_version %s, expected %s", version ? version : "(none)", GOLDEN_FORMAT_VERSION);
    cJSON *cases = f && st_meta(f, "cases") ? cJSON_Parse(st_meta(f, "cases")) : NULL;
    EXPECT(!f || cJSON_IsArray(cases), "metadata 'cases' is not a JSON list");
    bool usable = test_ok();
    test_end();
    if (!usable) {
        cJSON_Delete(cases);
        if (f) st_close(f);
        return;
    }

    int covered = 0, total = 0;
    char missing[2048] = "";
    for (int s = 0; harness_spec_at(s); s++) {
        const op_spec *spec = harness_spec_at(s);
        for (int k = 0; k < SPEC_MAX_CASES && spec->cases[k]; k++) {
            op_case c;
            harness_parse_case(&c, spec, k);
            if (!param_int(&c.params, "golden", 1)) continue;  // backend-only sizes
            total++;
            const cJSON *jc = NULL;
            cJSON_ArrayForEach(jc, cases) {
                if (strcmp(cJSON_GetObjectItem(jc, "case")->valuestring, c.name) == 0) break;
            }
            if (!jc) {
                if (strlen(missing) < sizeof missing - 80)
                    snprintf(missing + strlen(missing), sizeof missing - strlen(missing), " %s",
                             c.name);
                continue;
            }
            covered++;
            run_golden_case(f, jc, &c);
        }
    }
    test_begin("golden/every harness case has a PyTorch golden");
    EXPECT(covered == total, "%d of %d cases have no golden (run make golden):%s",
           total - covered, total, missing);
    test_end();
    cJSON_Delete(cases);
    st_close(f);
}
