// suite_schedulers: noise schedules and samplers against diffusers 0.30.3.
//
// tests/fixtures/schedulers (tools/golden/schedulers.py) holds four scheduler configs
// and what diffusers' classes, made with from_config from them, compute: betas and
// alphas_cumprod, add_noise and get_velocity, timesteps and sigmas for a range of
// step counts, and sampling runs (timesteps, sigmas, input scales, initial noise
// sigma, and x after every step). A run's model output at step i is
// 0.5 * scale_model_input(x_i) + eps_bank[i], and the ancestral samplers draw
// noise_bank[i].
//
// Each step is replayed on the reference's own state (its x before the step, hence
// the same model output), so every update is compared on its own: relative L2 error
// and largest absolute error (relative to the largest value) within 1e-6. Then the
// whole run goes again from x_0 on our own states and outputs, within the same bound
// at every step. The error cases of noise_schedule_load, sampler_new and the sampler
// names have their own tests.
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/safetensors.h"
#include "infer/scheduler.h"
#include "tests/harness.h"
#include "tests/test.h"

#define FIXTURES "tests/fixtures/schedulers/"
#define FORMAT_VERSION "1"
#define TOL 1e-6
#define SAMPLE_SIZE 512  // x is [2, 4, 8, 8]

static st_file *fixture;

static st_file *reference(void) {
    if (!fixture) {
        fixture = st_open(repo_path(FIXTURES "schedulers.safetensors"));
        CHECK(fixture, "%s", err_msg());
        const char *version = st_meta(fixture, "format_version");
        CHECK(version && strcmp(version, FORMAT_VERSION) == 0,
              "schedulers.safetensors: format_version %s, expected %s; run make golden",
              version ? version : "(none)", FORMAT_VERSION);
    }
    return fixture;
}

// A copy of the fixture tensor the format names (f32 or i32: 4 bytes a value), or NULL
// when there is none.
static void *fixture_values(int64_t *count, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void *fixture_values(int64_t *count, const char *fmt, ...) {
    char name[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    const st_entry *e = st_find(reference(), name);
    if (!e) return NULL;
    CHECK(strcmp(e->dtype_str, "F32") == 0 || strcmp(e->dtype_str, "I32") == 0, "%s: dtype %s", name,
          e->dtype_str);
    size_t bytes = e->end - e->begin;
    void *v = xmalloc(bytes ? bytes : 1);
    memcpy(v, st_data(reference(), e), bytes);
    if (count) *count = (int64_t)(bytes / 4);
    return v;
}

static cJSON *fixture_json(const char *key) {
    cJSON *j = cJSON_Parse(st_meta(reference(), key));
    CHECK(j, "schedulers.safetensors: metadata %s is not JSON", key);
    return j;
}

static bool load_config(noise_schedule *ns, const char *config) {
    char path[256];
    snprintf(path, sizeof path, "%s%s.json", FIXTURES, config);
    int rc = noise_schedule_load(ns, repo_path(path));
    EXPECT(rc == 0, "%s", err_msg());
    return rc == 0;
}

// The largest |ours - ref| over the largest |ref| (at least 1).
static double max_error(const float *ours, const float *ref, int64_t n) {
    double err = 0, scale = 1;
    for (int64_t k = 0; k < n; k++) {
        err = fmax(err, fabs((double)ours[k] - ref[k]));
        scale = fmax(scale, fabs((double)ref[k]));
        if (isnan(ours[k]) != isnan(ref[k])) err = INFINITY;
    }
    return err / scale;
}

// Whether two lists of schedule values agree within TOL (relative, each value).
static bool values_match(const double *ours, const float *ref, int n, const char *what, const char *label) {
    for (int i = 0; i < n; i++) {
        double scale = fmax(1e-30, fabs((double)ref[i]));
        if (!(fabs(ours[i] - ref[i]) <= TOL * scale) && !(ours[i] == ref[i])) {
            EXPECT(false, "%s: %s[%d] = %.9g, diffusers %.9g", label, what, i, ours[i], (double)ref[i]);
            return false;
        }
    }
    return true;
}

// --- the training schedule and forward process -----------------------------------------------

static void test_schedule(const char *config) {
    test_begin("schedulers: %s: betas and alphas_cumprod as DDPMScheduler's", config);
    noise_schedule ns;
    if (!load_config(&ns, config)) return test_end();
    int64_t T;
    float *betas = fixture_values(&T, "%s.betas", config);
    float *acp = fixture_values(NULL, "%s.alphas_cumprod", config);
    EXPECT(T == ns.num_train_timesteps, "%d training steps, diffusers %lld", ns.num_train_timesteps,
           (long long)T);
    if (T == ns.num_train_timesteps) {
        values_match(ns.betas, betas, (int)T, "betas", config);
        values_match(ns.alphas_cumprod, acp, (int)T, "alphas_cumprod", config);
        for (int t = 0; t < T; t++) {
            double a = acp[t], snr = noise_schedule_snr(&ns, t);
            if (!(fabs(snr - a / (1 - a)) <= 1e-6 * a / (1 - a))) {
                EXPECT(false, "snr(%d) = %g, alphas_cumprod gives %g", t, snr, a / (1 - a));
                break;
            }
        }
    }
    free(betas);
    free(acp);
    noise_schedule_free(&ns);
    test_end();
}

static void test_forward_process(const char *config) {
    test_begin("schedulers: %s: add_noise and velocity as DDPMScheduler's", config);
    noise_schedule ns;
    if (!load_config(&ns, config)) return test_end();
    float *x0 = fixture_values(NULL, "x_init"), *noise = fixture_values(NULL, "eps_bank");
    float *noisy_ref = fixture_values(NULL, "%s.noisy", config);
    float *velocity_ref = fixture_values(NULL, "%s.velocity", config);
    cJSON *pairs = fixture_json("forward_t");
    float noisy[SAMPLE_SIZE], velocity[SAMPLE_SIZE];
    int p = 0;
    for (const cJSON *pair = pairs->child; pair; pair = pair->next, p++) {
        int t[2] = {(int)cJSON_GetArrayItem(pair, 0)->valuedouble,
                    (int)cJSON_GetArrayItem(pair, 1)->valuedouble};
        noise_schedule_add_noise(&ns, noisy, x0, noise, t, 2, SAMPLE_SIZE / 2);
        noise_schedule_velocity(&ns, velocity, x0, noise, t, 2, SAMPLE_SIZE / 2);
        double e1 = rel_error(noisy, noisy_ref + p * SAMPLE_SIZE, SAMPLE_SIZE);
        double e2 = rel_error(velocity, velocity_ref + p * SAMPLE_SIZE, SAMPLE_SIZE);
        EXPECT(e1 <= TOL && e2 <= TOL, "t = (%d, %d): add_noise error %.2e, velocity %.2e", t[0], t[1], e1,
               e2);
    }
    cJSON_Delete(pairs);
    free(x0), free(noise), free(noisy_ref), free(velocity_ref);
    noise_schedule_free(&ns);
    test_end();
}

// --- sampling runs ---------------------------------------------------------------------------

typedef struct {
    const char *name, *config;
    sampler_kind kind;
    int steps;
    float *timesteps, *sigmas, *input_scale, *x;  // the reference (sigmas NULL when none)
    float init_noise_sigma;
    int64_t n;  // evaluations
} run_ref;

static void free_run(run_ref *r) {
    free(r->timesteps), free(r->sigmas), free(r->input_scale), free(r->x);
}

// The model output at a state: 0.5 * x / divisor + eps, in float32 as the script has it.
static void model_output(float *out, const float *x, float divisor, const float *eps) {
    for (int k = 0; k < SAMPLE_SIZE; k++) out[k] = 0.5f * (x[k] / divisor) + eps[k];
}

static bool check_plan(const sampler *s, const run_ref *r) {
    bool ok = true;
    EXPECT(sampler_num_steps(s) == r->n, "%s: %d evaluations, diffusers %lld", r->name, sampler_num_steps(s),
           (long long)r->n);
    if (sampler_num_steps(s) != r->n) return false;
    double *ours = xmalloc((size_t)(r->n + 1) * sizeof *ours);
    for (int i = 0; i < r->n; i++) ours[i] = sampler_timestep(s, i);
    ok &= values_match(ours, r->timesteps, (int)r->n, "timesteps", r->name);
    for (int i = 0; i < r->n; i++) ours[i] = 1.0 / sampler_input_scale(s, i);
    ok &= values_match(ours, r->input_scale, (int)r->n, "input scale divisor", r->name);
    if (r->sigmas) {
        for (int i = 0; i <= r->n; i++) ours[i] = sampler_sigma(s, i);
        ok &= values_match(ours, r->sigmas, (int)r->n + 1, "sigmas", r->name);
    } else {
        EXPECT(isnan(sampler_sigma(s, 0)), "%s: a sigma where diffusers keeps none", r->name);
    }
    ours[0] = sampler_init_noise_sigma(s);
    ok &= values_match(ours, &r->init_noise_sigma, 1, "init_noise_sigma", r->name);
    free(ours);
    return ok;
}

// Every step from the reference's state before it; returns the worst errors.
static void replay_steps(const run_ref *r, const noise_schedule *ns, const float *x_start, const float *eps,
                         const float *noise, double *worst_rel, double *worst_max) {
    sampler *s = sampler_new(r->kind, ns, r->steps);
    float x[SAMPLE_SIZE], m[SAMPLE_SIZE];
    for (int i = 0; i < r->n; i++) {
        const float *before = i ? r->x + (i - 1) * SAMPLE_SIZE : x_start, *after = r->x + i * SAMPLE_SIZE;
        model_output(m, before, r->input_scale[i], eps + i * SAMPLE_SIZE);
        memcpy(x, before, sizeof x);
        sampler_step(s, i, m, x, SAMPLE_SIZE, sampler_needs_noise(s) ? noise + i * SAMPLE_SIZE : NULL);
        double rel = rel_error(x, after, SAMPLE_SIZE), max = max_error(x, after, SAMPLE_SIZE);
        EXPECT(rel <= TOL && max <= TOL, "%s: step %d: relative error %.2e, largest %.2e", r->name, i, rel,
               max);
        *worst_rel = fmax(*worst_rel, rel), *worst_max = fmax(*worst_max, max);
    }
    sampler_free(s);
}

// The whole run on our own states, as a pipeline runs it; returns the worst error.
static double run_alone(const run_ref *r, const noise_schedule *ns, const float *x_start, const float *eps,
                        const float *noise) {
    sampler *s = sampler_new(r->kind, ns, r->steps);
    float x[SAMPLE_SIZE], m[SAMPLE_SIZE];
    memcpy(x, x_start, sizeof x);
    double worst = 0;
    for (int i = 0; i < r->n; i++) {
        model_output(m, x, (float)(1.0 / sampler_input_scale(s, i)), eps + i * SAMPLE_SIZE);
        sampler_step(s, i, m, x, SAMPLE_SIZE, sampler_needs_noise(s) ? noise + i * SAMPLE_SIZE : NULL);
        worst = fmax(worst, rel_error(x, r->x + i * SAMPLE_SIZE, SAMPLE_SIZE));
    }
    sampler_free(s);
    EXPECT(worst <= TOL, "%s: run on its own states: relative error up to %.2e", r->name, worst);
    return worst;
}

static void test_run(const cJSON *c, const float *x_init, const float *eps, const float *noise) {
    run_ref r = {.name = cJSON_GetObjectItem(c, "name")->valuestring,
                 .config = cJSON_GetObjectItem(c, "config")->valuestring,
                 .steps = (int)cJSON_GetObjectItem(c, "steps")->valuedouble};
    const cJSON *refused = cJSON_GetObjectItem(c, "refused");
    CHECK(sampler_from_name(cJSON_GetObjectItem(c, "sampler")->valuestring, &r.kind) == 0, "%s", err_msg());
    test_begin("schedulers: %s %s", r.name,
               refused ? "is refused as diffusers refuses it" : "steps as diffusers");
    noise_schedule ns;
    if (!load_config(&ns, r.config)) return test_end();
    sampler *s = sampler_new(r.kind, &ns, r.steps);
    if (refused) {
        EXPECT(!s, "%s: diffusers refuses (%s), sampler_new did not", r.name, refused->valuestring);
        EXPECT(s || strstr(err_msg(), sampler_name(r.kind)), "message: %s", err_msg());
    } else {
        EXPECT(s, "%s: %s", r.name, err_msg());
    }
    if (!s || refused) {
        sampler_free(s);
        noise_schedule_free(&ns);
        return test_end();
    }
    r.timesteps = fixture_values(&r.n, "%s.timesteps", r.name);
    r.sigmas = fixture_values(NULL, "%s.sigmas", r.name);
    r.input_scale = fixture_values(NULL, "%s.input_scale", r.name);
    r.x = fixture_values(NULL, "%s.x", r.name);
    float *init = fixture_values(NULL, "%s.init_noise_sigma", r.name);
    r.init_noise_sigma = *init;
    free(init);
    if (check_plan(s, &r)) {
        float x_start[SAMPLE_SIZE];
        for (int k = 0; k < SAMPLE_SIZE; k++) x_start[k] = x_init[k] * r.init_noise_sigma;
        double rel = 0, max = 0;
        replay_steps(&r, &ns, x_start, eps, noise, &rel, &max);
        double alone = run_alone(&r, &ns, x_start, eps, noise);
        printf("  %-28s steps: relative %.1e, largest %.1e; run alone %.1e\n", r.name, rel, max, alone);
    }
    sampler_free(s);
    free_run(&r);
    noise_schedule_free(&ns);
    test_end();
}

// --- timesteps and sigmas over step counts ----------------------------------------------------

// One step count of a table: diffusers' evaluations, timesteps and sigmas (NULL when none).
static void check_table_entry(const sampler *s, int n_ref, const float *ts, const float *sigmas,
                              const char *label) {
    int n = sampler_num_steps(s);
    EXPECT(n == n_ref, "%s: %d evaluations, diffusers %d", label, n, n_ref);
    if (n != n_ref) return;
    double ours[64];
    CHECK(n < 64, "table of %d", n);
    for (int i = 0; i < n; i++) ours[i] = sampler_timestep(s, i);
    values_match(ours, ts, n, "timesteps", label);
    if (!sigmas) return;
    for (int i = 0; i <= n; i++) ours[i] = sampler_sigma(s, i);
    values_match(ours, sigmas, n + 1, "sigmas", label);
}

static void test_tables(const char *config) {
    test_begin("schedulers: %s: timesteps and sigmas of every sampler at 1 to 50 steps", config);
    noise_schedule ns;
    if (!load_config(&ns, config)) return test_end();
    cJSON *counts = fixture_json("table_steps");
    for (int kind = 0; kind < SAMPLER_COUNT; kind++) {
        const char *name = sampler_name((sampler_kind)kind);
        int32_t *lengths = fixture_values(NULL, "%s.%s.table_lengths", config, name);
        float *ts = fixture_values(NULL, "%s.%s.table_timesteps", config, name);
        float *sigmas = fixture_values(NULL, "%s.%s.table_sigmas", config, name);
        int at = 0, at_sigma = 0, j = 0;
        for (const cJSON *c = counts->child; c && lengths; c = c->next, j++) {
            int steps = (int)c->valuedouble;
            char label[96];
            snprintf(label, sizeof label, "%s %s %d steps", config, name, steps);
            sampler *s = sampler_new((sampler_kind)kind, &ns, steps);
            if (lengths[j] < 0) {  // diffusers refuses this count (PNDM's warm-up)
                EXPECT(!s, "%s: diffusers refuses, sampler_new did not", label);
            } else if (!s) {  // PNDM and Euler ancestral refuse prediction "sample" (diffusers in step)
                EXPECT(ns.prediction == PRED_SAMPLE, "%s: %s", label, err_msg());
            } else {
                check_table_entry(s, lengths[j], ts + at, sigmas ? sigmas + at_sigma : NULL, label);
            }
            if (lengths[j] >= 0) at += lengths[j], at_sigma += lengths[j] + 1;
            sampler_free(s);
        }
        free(lengths), free(ts), free(sigmas);
    }
    cJSON_Delete(counts);
    noise_schedule_free(&ns);
    test_end();
}

// --- errors and names ------------------------------------------------------------------------

// noise_schedule_load of a file with `text` must fail with a message holding `needle`.
static void expect_load_error(const char *text, const char *needle) {
    char path[512];
    snprintf(path, sizeof path, "%s/scheduler_config.json", scratch_dir());
    FILE *fp = fopen(path, "w");
    CHECK(fp && fputs(text, fp) >= 0 && fclose(fp) == 0, "cannot write %s", path);
    noise_schedule ns;
    int rc = noise_schedule_load(&ns, path);
    EXPECT(rc == -1, "accepted: %s", text);
    if (rc == 0) return noise_schedule_free(&ns);
    EXPECT(strstr(err_msg(), path) && strstr(err_msg(), needle) && !strchr(err_msg(), '\n'),
           "message \"%s\" should name the file and hold \"%s\"", err_msg(), needle);
}

static void test_load_errors(void) {
    test_begin("schedulers: config errors name the file and the key");
    expect_load_error("{\"beta_schedule\": \"linear\",", "malformed JSON");
    expect_load_error("[1, 2]", "not a JSON object");
    expect_load_error("{\"beta_schedule\": \"sigmoid\"}",
                      "\"beta_schedule\": \"sigmoid\" is not supported");
    expect_load_error("{\"thresholding\": true}", "\"thresholding\"");
    expect_load_error("{\"trained_betas\": [0.1, 0.2]}", "\"trained_betas\"");
    expect_load_error("{\"variance_type\": \"learned_range\"}", "\"variance_type\": \"learned_range\"");
    expect_load_error("{\"prediction_type\": \"flow\"}", "\"prediction_type\"");
    expect_load_error("{\"timestep_spacing\": \"uniform\"}", "\"timestep_spacing\"");
    expect_load_error("{\"timestep_type\": \"continuous\"}", "\"timestep_type\"");
    expect_load_error("{\"interpolation_type\": \"log_linear\"}", "\"interpolation_type\"");
    expect_load_error("{\"use_lu_lambdas\": true}", "\"use_lu_lambdas\"");
    expect_load_error("{\"use_exponential_sigmas\": true}", "\"use_exponential_sigmas\"");
    expect_load_error("{\"sigma_min\": 0.1}", "\"sigma_min\"");
    expect_load_error("{\"lambda_min_clipped\": -5.1}", "\"lambda_min_clipped\"");
    expect_load_error("{\"steps_offset\": \"1\"}", "\"steps_offset\": expected an integer");
    expect_load_error("{\"num_train_timesteps\": 1}", "\"num_train_timesteps\"");
    expect_load_error("{\"clip_sample\": 1}", "\"clip_sample\": expected true or false");
    // Numbers must be finite and in range: 1e999 and Python's Infinity read as infinities.
    expect_load_error("{\"beta_start\": 1e999}", "\"beta_start\": expected a finite number");
    expect_load_error("{\"beta_end\": Infinity}", "\"beta_end\": expected a finite number");
    expect_load_error("{\"beta_end\": -Infinity}", "\"beta_end\": expected a finite number");
    expect_load_error("{\"beta_start\": 0}", "\"beta_start\": expected a finite number from");
    expect_load_error("{\"beta_end\": 1}", "\"beta_end\": expected a finite number from");
    expect_load_error("{\"beta_start\": -0.0001}", "\"beta_start\"");
    expect_load_error("{\"clip_sample_range\": 1e999}", "\"clip_sample_range\": expected a finite number");
    expect_load_error("{\"clip_sample_range\": 1e39}", "\"clip_sample_range\"");
    expect_load_error("{\"clip_sample_range\": 0}", "\"clip_sample_range\"");
    expect_load_error("{\"lambda_min_clipped\": Infinity}", "\"lambda_min_clipped\"");
    expect_load_error("{\"beta_start\": NaN}", "malformed JSON");
    noise_schedule ns;
    int rc = noise_schedule_load(&ns, repo_path(FIXTURES "missing.json"));
    EXPECT(rc == -1 && strstr(err_msg(), "missing.json"), "a missing file: %s", err_msg());
    test_end();

    // -Infinity as Python's json writes it into every DPM-Solver config.
    test_begin("schedulers: keys that change nothing are accepted, null means the default");
    char path[512];
    snprintf(path, sizeof path, "%s/scheduler_config.json", scratch_dir());
    FILE *fp = fopen(path, "w");
    CHECK(fp, "cannot write %s", path);
    fputs("{\"_class_name\": \"UniPCMultistepScheduler\", \"_diffusers_version\": \"0.30.3\", "
          "\"predict_x0\": true, \"solver_p\": null, \"trained_betas\": null, \"thresholding\": false, "
          "\"dynamic_thresholding_ratio\": 0.995, \"sample_max_value\": 1.0, \"lambda_min_clipped\": -Infinity, "
          "\"note\": \"-Infinity stays text in a string\", "
          "\"solver_order\": 2, \"use_karras_sigmas\": true, \"timestep_spacing\": null}\n",
          fp);
    CHECK(fclose(fp) == 0, "cannot write %s", path);
    EXPECT(noise_schedule_load(&ns, path) == 0, "%s", err_msg());
    if (test_ok()) {
        EXPECT(sampler_default(&ns) == SAMPLER_DPMPP_2M_KARRAS, "default %s for UniPC with Karras sigmas",
               sampler_name(sampler_default(&ns)));
        EXPECT(!(ns.given & NS_GIVEN_TIMESTEP_SPACING), "null timestep_spacing counted as given");
        noise_schedule_free(&ns);
    }
    test_end();
}

static void test_sampler_refusals(void) {
    test_begin("schedulers: sampler_new refuses 0 and 1001 steps, and an offset past the schedule");
    noise_schedule ns;
    if (load_config(&ns, "sd15")) {
        for (int kind = 0; kind < SAMPLER_COUNT; kind++) {
            for (int steps = 0; steps <= 1001; steps += 1001) {
                sampler *s = sampler_new((sampler_kind)kind, &ns, steps);
                EXPECT(!s && strstr(err_msg(), "steps"), "%s with %d steps: %s",
                       sampler_name((sampler_kind)kind), steps, s ? "accepted" : err_msg());
                sampler_free(s);
            }
        }
        // SD1.5's steps_offset 1 at 1000 steps: timestep 1000 (an IndexError in diffusers).
        sampler *s = sampler_new(SAMPLER_DDIM, &ns, 1000);
        EXPECT(!s && strstr(err_msg(), "steps_offset"), "DDIM at 1000 steps with steps_offset 1: %s",
               s ? "accepted" : err_msg());
        sampler_free(s);
        s = sampler_new(SAMPLER_EULER, &ns, 1000);
        EXPECT(s && sampler_num_steps(s) == 1000, "Euler at 1000 steps: %s", err_msg());
        sampler_free(s);
        noise_schedule_free(&ns);
    }
    test_end();
}

// The default sampler of a fixture config.
static const char *default_of(const char *config) {
    noise_schedule ns;
    if (!load_config(&ns, config)) return "(none)";
    const char *name = sampler_name(sampler_default(&ns));
    noise_schedule_free(&ns);
    return name;
}

static void test_names(void) {
    test_begin("schedulers: sampler names, A1111 names and the config's default sampler");
    for (int i = 0; i < SAMPLER_COUNT; i++) {
        const char *name = sampler_name((sampler_kind)i), *a1111 = sampler_a1111_name((sampler_kind)i);
        sampler_kind k1 = SAMPLER_COUNT, k2 = SAMPLER_COUNT;
        EXPECT(sampler_from_name(name, &k1) == 0 && k1 == (sampler_kind)i, "%s does not name itself", name);
        EXPECT(sampler_from_name(a1111, &k2) == 0 && k2 == (sampler_kind)i, "%s does not name %s", a1111,
               name);
    }
    sampler_kind k;
    EXPECT(sampler_from_name("heun", &k) == -1, "heun accepted");
    const char *msg = err_msg();
    EXPECT(strstr(msg, "\"heun\"") && strstr(msg, "ddim") && strstr(msg, "euler_a") &&
               strstr(msg, "dpmpp_2m_karras"),
           "the message should list the valid names: %s", msg);
    EXPECT(strcmp(sampler_a1111_name(SAMPLER_DPMPP_2M_KARRAS), "DPM++ 2M Karras") == 0 &&
               strcmp(sampler_a1111_name(SAMPLER_EULER_ANCESTRAL), "Euler a") == 0,
           "A1111 names");
    EXPECT(strcmp(default_of("sd15"), "pndm") == 0, "SD1.5's default is %s", default_of("sd15"));
    // DPMSolverMultistepScheduler with use_karras_sigmas.
    EXPECT(strcmp(default_of("cosine_sample"), "dpmpp_2m_karras") == 0, "default %s",
           default_of("cosine_sample"));
    test_end();
}

void suite_schedulers(void) {
    static const char *const configs[] = {"sd15", "v_trailing", "linspace", "cosine_sample"};
    for (int c = 0; c < 4; c++) test_schedule(configs[c]);
    test_forward_process("sd15");
    test_forward_process("v_trailing");
    float *x_init = fixture_values(NULL, "x_init"), *eps = fixture_values(NULL, "eps_bank");
    float *noise = fixture_values(NULL, "noise_bank");
    cJSON *cases = fixture_json("cases");
    for (const cJSON *c = cases->child; c; c = c->next) test_run(c, x_init, eps, noise);
    cJSON_Delete(cases);
    free(x_init), free(eps), free(noise);
    for (int c = 0; c < 4; c++) test_tables(configs[c]);
    test_load_errors();
    test_sampler_refusals();
    test_names();
    st_close(fixture);
    fixture = NULL;
}
