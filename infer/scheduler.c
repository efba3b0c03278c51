// Noise schedules and samplers, numerically as diffusers 0.30.3 computes them.
//
// diffusers keeps betas, alphas_cumprod and sigmas in float32 tensors, plans
// timesteps and sigmas in numpy float64, and steps in float32 tensor arithmetic where
// every operation rounds to float32. Each number here is computed in the type
// diffusers computes it in, with the operations in diffusers' order, so the results
// agree to the last bit or nearly: torch takes exp and log from SLEEF, which is an
// ulp away from libm now and then. The arithmetic must not be fused into FMAs
// (GCC does not fuse in ISO C mode, -std=c11) except where torch's own kernel fuses.
//
// What diffusers does that is easy to get wrong, mirrored here:
// - Options a config leaves out take the default of the class being built
//   (from_config), and those defaults differ: DDIM clips x0 to [-1, 1] and sets
//   set_alpha_to_one unless told otherwise, Euler and DPM-Solver space timesteps by
//   "linspace" where DDPM, DDIM and PNDM use "leading" (so SD1.5's config gives Euler
//   999 … 0 but DDIM 951 … 1). Keys in `_use_default_values` count as left out.
// - PNDMScheduler has no rescale_betas_zero_snr option: with a zero-SNR config it
//   samples the unrescaled schedule. Euler, Euler ancestral and DPM-Solver replace the
//   last alphas_cumprod (0 after rescaling) by 2^-24 so sigma stays finite.
// - DDPM, DDIM and PNDM step from t to t - num_train_timesteps // steps whatever the
//   spacing, so with "trailing" or "linspace" spacing their steps do not land on the
//   next planned timestep.
// - PLMS evaluates steps + 1 times: its second timestep repeats, and that second
//   evaluation restarts from the first sample with the average of both outputs.
// - DPM-Solver plans steps + 1 points and drops the last ("linspace", "leading");
//   its last step is first order whenever the final sigma is zero.
// - torch.linspace (the betas) starts each block of 8 floats from the nearer end
//   with a fused multiply-add, and torch.cumprod accumulates in double.
#include "infer/scheduler.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/check.h"
#include "core/json_reader.h"

// --- reading scheduler_config.json ---------------------------------------------------------

// A string option that must be one of `choices`, copied into out.
static bool read_choice(json_reader *r, const char *key, const char *const *choices, char *out,
                        size_t cap) {
    int i;
    if (!json_choice(r, key, choices, &i)) return false;
    snprintf(out, cap, "%s", choices[i]);
    return true;
}

static void read_options(json_reader *r, noise_schedule *ns) {
    static const char *const beta_schedules[] = {"linear", "scaled_linear", "squaredcos_cap_v2", NULL};
    static const char *const spacings[] = {"leading", "trailing", "linspace", NULL};
    static const char *const predictions[] = {"epsilon", "v_prediction", "sample", NULL};
    // Not "fixed_large_log": diffusers takes the square root of its log variance (NaN).
    static const char *const variance_types[] = {"fixed_small", "fixed_small_log", "fixed_large", NULL};
    static const char *const final_sigmas[] = {"zero", "sigma_min", NULL};
    static const char *const linear_only[] = {"linear", NULL}, *const discrete_only[] = {"discrete", NULL};
    char s[32];

    json_int(r, "num_train_timesteps", 2, 100000, &ns->num_train_timesteps);
    // A beta of 0 gives a zero sigma (whose log the samplers take), 1 a zero alpha;
    // 0.999 is diffusers' own cap (betas_for_alpha_bar's max_beta).
    json_number(r, "beta_start", DBL_MIN, 0.999, &ns->beta_start);
    json_number(r, "beta_end", DBL_MIN, 0.999, &ns->beta_end);
    read_choice(r, "beta_schedule", beta_schedules, ns->beta_schedule, sizeof ns->beta_schedule);
    if (read_choice(r, "prediction_type", predictions, s, sizeof s))
        ns->prediction = strcmp(s, "epsilon") == 0 ? PRED_EPSILON
                         : strcmp(s, "v_prediction") == 0 ? PRED_V
                                                          : PRED_SAMPLE;
    if (read_choice(r, "timestep_spacing", spacings, ns->timestep_spacing, sizeof ns->timestep_spacing))
        ns->given |= NS_GIVEN_TIMESTEP_SPACING;
    json_int(r, "steps_offset", 0, 100000, &ns->steps_offset);
    if (json_bool(r, "set_alpha_to_one", &ns->set_alpha_to_one)) ns->given |= NS_GIVEN_SET_ALPHA_TO_ONE;
    json_bool(r, "skip_prk_steps", &ns->skip_prk_steps);
    json_bool(r, "clip_sample", &ns->clip_sample);
    double range;
    if (json_number(r, "clip_sample_range", FLT_MIN, FLT_MAX, &range)) ns->clip_sample_range = (float)range;
    json_bool(r, "rescale_betas_zero_snr", &ns->rescale_betas_zero_snr);
    read_choice(r, "variance_type", variance_types, ns->variance_type, sizeof ns->variance_type);
    read_choice(r, "final_sigmas_type", final_sigmas, ns->final_sigmas_type, sizeof ns->final_sigmas_type);
    json_bool(r, "lower_order_final", &ns->lower_order_final);
    json_bool(r, "euler_at_final", &ns->euler_at_final);
    json_bool(r, "use_karras_sigmas", &ns->use_karras_sigmas);
    read_choice(r, "interpolation_type", linear_only, s, sizeof s);
    read_choice(r, "timestep_type", discrete_only, s, sizeof s);

    json_require_absent(r, "trained_betas", "trained betas are not implemented");
    json_require_false(r, "thresholding", "dynamic thresholding is not implemented");
    json_require_false(r, "use_lu_lambdas", "Lu's lambda spacing is not implemented");
    json_require_false(r, "use_exponential_sigmas", "exponential sigmas are not implemented");
    json_require_false(r, "use_beta_sigmas", "beta sigmas are not implemented");
    json_require_absent(r, "sigma_min", "a custom sigma range is not implemented");
    json_require_absent(r, "sigma_max", "a custom sigma range is not implemented");
    // diffusers saves the default, -inf, as Python's -Infinity (read_json_object
    // reads it as -inf), the one infinity a config may hold.
    const cJSON *lambda_min = json_item(r, "lambda_min_clipped");
    if (lambda_min && !(cJSON_IsNumber(lambda_min) && lambda_min->valuedouble == -INFINITY))
        json_reader_fail(r, "lambda_min_clipped", "clipping lambda is not implemented");

    const cJSON *name = cJSON_GetObjectItemCaseSensitive(r->root, "_class_name");
    if (cJSON_IsString(name))
        snprintf(ns->default_sampler, sizeof ns->default_sampler, "%s", name->valuestring);
}

// --- the training schedule -------------------------------------------------------------------

// torch.linspace(start, end, n, dtype=float32) as torch 1.13's CPU kernel computes
// it on AVX2 machines: a float step; blocks of 8 values start from the nearer end
// with a fused multiply-add and add k * step; the last n % 16 values are computed
// one by one from the nearer end.
static float torch_linspace_at(float start, float end, float step, int n, int i) {
    return i < n / 2 ? fmaf(step, (float)i, start) : fmaf(-step, (float)(n - 1 - i), end);
}

static void torch_linspace_f32(float start, float end, int n, float *out) {
    const float step = (end - start) / (float)(n - 1);
    const int blocked = n - n % 16;
    int i = 0;
    for (; i < blocked; i += 8) {
        float base = torch_linspace_at(start, end, step, n, i);
        for (int k = 0; k < 8; k++) out[i + k] = base + (float)k * step;
    }
    for (; i < n; i++) out[i] = torch_linspace_at(start, end, step, n, i);
}

// Nichol & Dhariwal's cosine schedule, in double as diffusers' betas_for_alpha_bar.
static double cosine_alpha_bar(double t) {
    return pow(cos((t + 0.008) / 1.008 * M_PI / 2), 2);
}

// torch.cumprod(1 - betas) on float32: the CPU kernel accumulates in double and
// rounds each partial product.
static void cumprod_alphas(const float *betas, int T, float *acp) {
    double acc = 1;
    for (int i = 0; i < T; i++) {
        acc *= (double)(1.0f - betas[i]);
        acp[i] = (float)acc;
    }
}

// Lin et al.'s zero terminal SNR (diffusers' rescale_zero_terminal_snr), in float32.
static void rescale_zero_terminal_snr(float *betas, int T) {
    float *s = xmalloc((size_t)T * sizeof *s);
    cumprod_alphas(betas, T, s);
    for (int i = 0; i < T; i++) s[i] = sqrtf(s[i]);
    const float s0 = s[0], sT = s[T - 1], k = s0 / (s0 - sT);
    for (int i = 0; i < T; i++) s[i] = (s[i] - sT) * k;
    // Back from sqrt(alphas_cumprod) to betas: alphas[i] = bar[i] / bar[i - 1].
    float prev = s[0] * s[0];
    betas[0] = 1.0f - prev;
    for (int i = 1; i < T; i++) {
        float bar = s[i] * s[i];
        betas[i] = 1.0f - bar / prev;
        prev = bar;
    }
    free(s);
}

// The float32 betas and alphas_cumprod a diffusers class builds from the config;
// `rescale` is false for PNDMScheduler, which has no rescale option.
static void class_schedule(const noise_schedule *ns, bool rescale, float *betas, float *acp) {
    const int T = ns->num_train_timesteps;
    if (strcmp(ns->beta_schedule, "linear") == 0) {
        torch_linspace_f32((float)ns->beta_start, (float)ns->beta_end, T, betas);
    } else if (strcmp(ns->beta_schedule, "scaled_linear") == 0) {
        torch_linspace_f32((float)pow(ns->beta_start, 0.5), (float)pow(ns->beta_end, 0.5), T, betas);
        for (int i = 0; i < T; i++) betas[i] *= betas[i];
    } else {
        CHECK(strcmp(ns->beta_schedule, "squaredcos_cap_v2") == 0, "beta_schedule %s", ns->beta_schedule);
        for (int i = 0; i < T; i++)
            betas[i] = (float)fmin(
                1 - cosine_alpha_bar((double)(i + 1) / T) / cosine_alpha_bar((double)i / T), 0.999);
    }
    if (rescale) rescale_zero_terminal_snr(betas, T);
    cumprod_alphas(betas, T, acp);
}

int noise_schedule_load(noise_schedule *ns, const char *path) {
    // The defaults of the classes that read each option; where classes differ, the
    // samplers apply their own where `given` says the file is silent.
    *ns = (noise_schedule){
        .num_train_timesteps = 1000, .prediction = PRED_EPSILON, .timestep_spacing = "leading",
        .clip_sample = true, .clip_sample_range = 1.0f, .beta_schedule = "linear",
        .beta_start = 0.0001, .beta_end = 0.02, .variance_type = "fixed_small",
        .final_sigmas_type = "zero", .lower_order_final = true,
    };
    json_reader r;
    if (json_reader_open(&r, path)) return -1;
    r.defaulted = cJSON_GetObjectItemCaseSensitive(r.root, "_use_default_values");
    read_options(&r, ns);
    if (json_reader_close(&r)) return -1;

    const int T = ns->num_train_timesteps;
    float *betas = xmalloc((size_t)T * sizeof *betas), *acp = xmalloc((size_t)T * sizeof *acp);
    class_schedule(ns, ns->rescale_betas_zero_snr, betas, acp);
    ns->betas = xmalloc((size_t)T * sizeof *ns->betas);
    ns->alphas_cumprod = xmalloc((size_t)T * sizeof *ns->alphas_cumprod);
    for (int i = 0; i < T; i++) ns->betas[i] = betas[i], ns->alphas_cumprod[i] = acp[i];
    free(betas);
    free(acp);
    return 0;
}

void noise_schedule_free(noise_schedule *ns) {
    free(ns->betas);
    free(ns->alphas_cumprod);
    ns->betas = ns->alphas_cumprod = NULL;
}

// --- the forward process ----------------------------------------------------------------------

// DDPMScheduler.add_noise / get_velocity: the square roots in float32, as diffusers
// takes them of alphas_cumprod cast to the sample's dtype.
static void forward_coefficients(const noise_schedule *ns, int t, float *sqrt_a, float *sqrt_1ma) {
    CHECK(t >= 0 && t < ns->num_train_timesteps, "timestep %d outside [0, %d)", t, ns->num_train_timesteps);
    float a = (float)ns->alphas_cumprod[t];
    *sqrt_a = sqrtf(a);
    *sqrt_1ma = sqrtf(1.0f - a);
}

void noise_schedule_add_noise(const noise_schedule *ns, float *noisy, const float *x0,
                              const float *noise, const int *t, int batch, size_t per_sample) {
    for (int b = 0; b < batch; b++) {
        float sa, s1;
        forward_coefficients(ns, t[b], &sa, &s1);
        for (size_t k = b * per_sample; k < (b + 1) * per_sample; k++) noisy[k] = sa * x0[k] + s1 * noise[k];
    }
}

void noise_schedule_velocity(const noise_schedule *ns, float *velocity, const float *x0,
                             const float *noise, const int *t, int batch, size_t per_sample) {
    for (int b = 0; b < batch; b++) {
        float sa, s1;
        forward_coefficients(ns, t[b], &sa, &s1);
        for (size_t k = b * per_sample; k < (b + 1) * per_sample; k++)
            velocity[k] = sa * noise[k] - s1 * x0[k];
    }
}

double noise_schedule_snr(const noise_schedule *ns, int t) {
    CHECK(t >= 0 && t < ns->num_train_timesteps, "timestep %d outside [0, %d)", t, ns->num_train_timesteps);
    double a = ns->alphas_cumprod[t];
    return a / (1 - a);
}

// --- sampler names ----------------------------------------------------------------------------

static const struct {
    const char *name, *a1111, *class_name;
} sampler_names[SAMPLER_COUNT] = {
    [SAMPLER_DDPM] = {"ddpm", "DDPM", "DDPMScheduler"},
    [SAMPLER_DDIM] = {"ddim", "DDIM", "DDIMScheduler"},
    [SAMPLER_PNDM] = {"pndm", "PLMS", "PNDMScheduler"},
    [SAMPLER_EULER] = {"euler", "Euler", "EulerDiscreteScheduler"},
    [SAMPLER_EULER_ANCESTRAL] = {"euler_a", "Euler a", "EulerAncestralDiscreteScheduler"},
    [SAMPLER_DPMPP_2M] = {"dpmpp_2m", "DPM++ 2M", NULL},  // see sampler_default
    [SAMPLER_DPMPP_2M_KARRAS] = {"dpmpp_2m_karras", "DPM++ 2M Karras", NULL},
};

const char *sampler_name(sampler_kind k) {
    CHECK(k >= 0 && k < SAMPLER_COUNT, "sampler kind %d", (int)k);
    return sampler_names[k].name;
}

const char *sampler_a1111_name(sampler_kind k) {
    CHECK(k >= 0 && k < SAMPLER_COUNT, "sampler kind %d", (int)k);
    return sampler_names[k].a1111;
}

// Our names and A1111's, in any case.
int sampler_from_name(const char *name, sampler_kind *k) {
    char valid[256];
    int n = 0;
    for (int i = 0; i < SAMPLER_COUNT; i++) {
        if (strcasecmp(name, sampler_names[i].name) == 0 || strcasecmp(name, sampler_names[i].a1111) == 0) {
            *k = (sampler_kind)i;
            return 0;
        }
        n += snprintf(valid + n, sizeof valid - (size_t)n, "%s%s", i ? ", " : "", sampler_names[i].name);
    }
    err_set("unknown sampler \"%.60s\" (one of: %s)", name, valid);
    return -1;
}

// The class the config names. DPMSolverMultistepScheduler gives DPM++ 2M (Karras
// with use_karras_sigmas), and so does a class we do not implement (LMS, UniPC,
// DEIS, ...): the nearest multistep sampler.
sampler_kind sampler_default(const noise_schedule *ns) {
    for (int i = 0; i < SAMPLER_COUNT; i++)
        if (sampler_names[i].class_name && strcmp(ns->default_sampler, sampler_names[i].class_name) == 0)
            return (sampler_kind)i;
    return ns->use_karras_sigmas ? SAMPLER_DPMPP_2M_KARRAS : SAMPLER_DPMPP_2M;
}

// --- planning the timesteps (numpy float64) ---------------------------------------------------

// numpy.linspace(start, stop, num): i * step + start, and stop exactly at the end.
static void np_linspace(double start, double stop, int num, double *out) {
    out[0] = start;
    if (num == 1) return;
    const double step = (stop - start) / (num - 1);
    for (int i = 1; i < num - 1; i++) out[i] = i * step + start;
    out[num - 1] = stop;
}

// numpy.arange(start, stop, step) for a float step: ceil((stop - start) / step)
// values start, start + step, then start + i * delta with numpy's delta,
// (start + step) - start. Returns the count (at most cap).
static int np_arange(double start, double stop, double step, double *out, int cap) {
    double len = ceil((stop - start) / step);
    int n = len > 0 ? (int)len : 0;
    CHECK(n <= cap, "arange of %d values, room for %d", n, cap);
    const double second = start + step, delta = second - start;
    for (int i = 0; i < n; i++) out[i] = i == 0 ? start : i == 1 ? second : start + i * delta;
    return n;
}

static bool spacing_is(const char *spacing, const char *name) {
    return strcmp(spacing, name) == 0;
}

// The timesteps DDPM, DDIM, Euler and Euler ancestral plan (PNDM the same ones
// reversed), descending: "linspace" N points over [0, T - 1], rounded unless the
// class keeps them as float32 (Euler); "leading" multiples of T // N plus
// steps_offset; "trailing" T down in steps of T / N, rounded, minus one. Returns the
// count: N, or N + 1 where numpy's float arange rounds up ("trailing"); ts holds N + 1.
static int plan_timesteps(const noise_schedule *ns, const char *spacing, int N, bool keep_fraction,
                          double *ts) {
    const int T = ns->num_train_timesteps;
    if (spacing_is(spacing, "linspace")) {
        np_linspace(0, T - 1, N, ts);
        for (int i = 0; i < N / 2; i++) {
            double tmp = ts[i];
            ts[i] = ts[N - 1 - i], ts[N - 1 - i] = tmp;
        }
        for (int i = 0; i < N; i++) ts[i] = keep_fraction ? (float)ts[i] : rint(ts[i]);
        return N;
    }
    if (spacing_is(spacing, "leading")) {
        for (int i = 0; i < N; i++) ts[i] = (double)(N - 1 - i) * (T / N) + ns->steps_offset;
        return N;
    }
    int n = np_arange(T, 0, -((double)T / N), ts, N + 1);
    for (int i = 0; i < n; i++) ts[i] = rint(ts[i]) - 1;
    return n;
}

// DPM-Solver's plan: the same trailing timesteps, else the plan for N + 1 without its
// last point (ts holds N + 2).
static int plan_dpm_timesteps(const noise_schedule *ns, const char *spacing, int N, double *ts) {
    if (spacing_is(spacing, "trailing")) return plan_timesteps(ns, spacing, N, false, ts);
    plan_timesteps(ns, spacing, N + 1, false, ts);
    return N;
}

// sigma(t) = sqrt((1 - acp[t]) / acp[t]) per training step, in float32.
static void train_sigmas(const float *acp, int T, float *sigma) {
    for (int t = 0; t < T; t++) sigma[t] = sqrtf((1.0f - acp[t]) / acp[t]);
}

// numpy.interp(x, arange(T), sigma).
static double interp_sigma(double x, const float *sigma, int T) {
    if (x <= 0) return sigma[0];
    if (x >= T - 1) return sigma[T - 1];
    int j = (int)x;
    if (x == j) return sigma[j];
    double slope = (double)sigma[j + 1] - sigma[j];  // over a grid step of 1
    return slope * (x - j) + sigma[j];
}

// diffusers' _sigma_to_t: the fractional training step whose log sigma is log(sigma),
// interpolated linearly between the two neighbours in log sigma (numpy's float32
// log of the sigmas, promoted).
static double sigma_to_t(double sigma, const float *log_sigmas, int T) {
    double log_sigma = log(fmax(sigma, 1e-10));
    int low = 0;
    for (int t = 0; t < T; t++)
        if (log_sigma - log_sigmas[t] >= 0) low = t;
    if (low > T - 2) low = T - 2;
    double lo = log_sigmas[low], hi = log_sigmas[low + 1];
    double w = fmin(fmax((lo - log_sigma) / (lo - hi), 0), 1);
    return (1 - w) * low + w * (low + 1);
}

// Karras et al.'s sigmas (rho = 7) from the largest training sigma down to the
// smallest, in float64 as diffusers' _convert_to_karras.
static void karras_sigmas(double sigma_min, double sigma_max, int N, double *out) {
    const double rho = 7.0, min_inv = pow(sigma_min, 1 / rho), max_inv = pow(sigma_max, 1 / rho);
    np_linspace(0, 1, N, out);
    for (int i = 0; i < N; i++) out[i] = pow(max_inv + out[i] * (min_inv - max_inv), rho);
}

// --- samplers -----------------------------------------------------------------------------------

typedef enum { VAR_FIXED_SMALL, VAR_FIXED_SMALL_LOG, VAR_FIXED_LARGE } variance_kind;

struct sampler {
    sampler_kind kind;
    prediction_type prediction;
    int T;              // num_train_timesteps
    int n;              // model evaluations
    double *timesteps;  // [n] as diffusers holds them: integers, or float32 values (Euler)
    float *sigmas;      // [n + 1] Euler, Euler ancestral and DPM++; NULL for the others
    float *acp;         // [T] the class's alphas_cumprod
    float final_acp;    // DDIM, PNDM: alphas_cumprod past t = 0 (set_alpha_to_one)
    int step_ratio;     // T // steps: DDPM, DDIM and PNDM step from t to t - step_ratio
    float init_noise_sigma;
    bool clip_sample;
    float clip_range;
    variance_kind variance;  // DDPM
    int prk_steps;           // PNDM: Runge-Kutta warm-up evaluations (12, or 0 with skip_prk_steps)
    bool first_order_last;   // DPM++: the last step is first order
    // Per run state.
    int next;           // the evaluation sampler_step expects
    size_t len;         // values per buffer, fixed by the first step
    float *history[4];  // PNDM: model outputs (ets); DPM++: x0 predictions; oldest first
    int n_history;
    float *cur_sample, *cur_output;  // PNDM: the saved sample, the Runge-Kutta sum
    float *scratch;
    int lower_order_nums;  // DPM++
};

// The k-diffusion style classes (Euler, Euler ancestral, DPM-Solver) keep sigmas,
// default to "linspace" spacing and patch a zero-SNR schedule's end.
static bool keeps_sigmas(sampler_kind kind) {
    return kind == SAMPLER_EULER || kind == SAMPLER_EULER_ANCESTRAL || kind == SAMPLER_DPMPP_2M ||
           kind == SAMPLER_DPMPP_2M_KARRAS;
}

static const char *class_spacing(const noise_schedule *ns, sampler_kind kind) {
    if (ns->given & NS_GIVEN_TIMESTEP_SPACING) return ns->timestep_spacing;
    return keeps_sigmas(kind) ? "linspace" : "leading";
}

// Euler and Euler ancestral: sigmas interpolated at the timesteps, then 0 (or
// sigma_min for Euler with final_sigmas_type "sigma_min").
static void plan_euler(sampler *s, const noise_schedule *ns, const char *spacing, int steps) {
    double *ts = xmalloc((size_t)(steps + 1) * sizeof *ts);
    s->n = plan_timesteps(ns, spacing, steps, true, ts);
    s->timesteps = ts;
    float *train = xmalloc((size_t)s->T * sizeof *train);
    train_sigmas(s->acp, s->T, train);
    s->sigmas = xmalloc((size_t)(s->n + 1) * sizeof *s->sigmas);
    for (int i = 0; i < s->n; i++) s->sigmas[i] = (float)interp_sigma(ts[i], train, s->T);
    bool sigma_min_last = s->kind == SAMPLER_EULER && strcmp(ns->final_sigmas_type, "sigma_min") == 0;
    s->sigmas[s->n] = sigma_min_last ? train[0] : 0.0f;
    free(train);
    float max = 0;
    for (int i = 0; i <= s->n; i++) max = fmaxf(max, s->sigmas[i]);
    s->init_noise_sigma = spacing_is(spacing, "leading") ? sqrtf(max * max + 1.0f) : max;
}

static void plan_dpm(sampler *s, const noise_schedule *ns, const char *spacing, int steps) {
    const int T = s->T;
    double *ts = xmalloc((size_t)(steps + 2) * sizeof *ts);
    float *train = xmalloc((size_t)T * sizeof *train);
    train_sigmas(s->acp, T, train);
    double *sigmas = xmalloc((size_t)(steps + 1) * sizeof *sigmas);
    if (s->kind == SAMPLER_DPMPP_2M_KARRAS) {
        s->n = steps;
        karras_sigmas(train[0], train[T - 1], steps, sigmas);
        float *log_sigmas = xmalloc((size_t)T * sizeof *log_sigmas);
        for (int t = 0; t < T; t++) log_sigmas[t] = logf(train[t]);
        for (int i = 0; i < steps; i++) ts[i] = rint(sigma_to_t(sigmas[i], log_sigmas, T));
        free(log_sigmas);
    } else {
        s->n = plan_dpm_timesteps(ns, spacing, steps, ts);
        for (int i = 0; i < s->n; i++) sigmas[i] = interp_sigma(ts[i], train, T);
    }
    s->timesteps = ts;
    s->sigmas = xmalloc((size_t)(s->n + 1) * sizeof *s->sigmas);
    for (int i = 0; i < s->n; i++) s->sigmas[i] = (float)sigmas[i];
    bool zero_last = strcmp(ns->final_sigmas_type, "zero") == 0;
    s->sigmas[s->n] = zero_last ? 0.0f : train[0];
    s->first_order_last = ns->euler_at_final || (ns->lower_order_final && s->n < 15) || zero_last;
    s->init_noise_sigma = 1.0f;
    free(sigmas);
    free(train);
}

// PNDM's plan from the ascending timesteps a_0 < ... < a_{N-1}: PLMS runs
// a_{N-1}, a_{N-2}, a_{N-2}, a_{N-3}, ..., a_0; with the Runge-Kutta warm-up, the four
// largest b_0 < ... < b_3 give b_3, b_2 + h, b_2 + h, b_2, b_2, b_1 + h, b_1 + h, b_1, b_1,
// b_0 + h, b_0 + h, b_0 (h = T // N // 2), then PLMS over a_{N-4} down to a_0.
static void plan_pndm(sampler *s, const noise_schedule *ns, const char *spacing, int steps) {
    double *desc = xmalloc((size_t)(steps + 1) * sizeof *desc);
    int N = plan_timesteps(ns, spacing, steps, false, desc);  // a_{N-1} first
    s->timesteps = xmalloc((size_t)(N + 9) * sizeof *s->timesteps);
    double *ts = s->timesteps;
    int n = 0;
    if (s->prk_steps) {
        const double *b = desc;  // b_3, b_2, b_1, b_0
        const int h = s->step_ratio / 2;
        ts[n++] = b[0];
        for (int k = 1; k < 4; k++) {
            ts[n++] = b[k] + h, ts[n++] = b[k] + h;
            ts[n++] = b[k];
            if (k < 3) ts[n++] = b[k];
        }
        for (int i = 3; i < N; i++) ts[n++] = desc[i];
    } else {
        for (int i = 0; i < N; i++) {
            ts[n++] = desc[i];
            if (i == 1) ts[n++] = desc[i];
        }
    }
    s->n = n;
    s->init_noise_sigma = 1.0f;
    free(desc);
}

// The largest timestep at which DDPM, DDIM or PNDM will index alphas_cumprod (PLMS's
// second evaluation steps from its timestep + step_ratio).
static int last_indexed_timestep(const sampler *s) {
    double top = 0;
    for (int i = 0; i < s->n; i++) top = fmax(top, s->timesteps[i]);
    if (s->kind == SAMPLER_PNDM && !s->prk_steps && s->n > 1)
        top = fmax(top, s->timesteps[1] + s->step_ratio);
    return (int)top;
}

sampler *sampler_new(sampler_kind kind, const noise_schedule *ns, int steps) {
    CHECK(kind >= 0 && kind < SAMPLER_COUNT, "sampler kind %d", (int)kind);
    const int T = ns->num_train_timesteps;
    const char *name = sampler_names[kind].name;
    if (steps < 1 || steps > T) {
        err_set("%s: %d steps: expected 1 to %d (num_train_timesteps)", name, steps, T);
        return NULL;
    }
    if (ns->prediction == PRED_SAMPLE && (kind == SAMPLER_PNDM || kind == SAMPLER_EULER_ANCESTRAL)) {
        err_set("%s: prediction_type \"sample\" is not supported (diffusers refuses it too)", name);
        return NULL;
    }
    if (kind == SAMPLER_PNDM && !ns->skip_prk_steps && steps < 4) {
        err_set("%s: the Runge-Kutta warm-up (skip_prk_steps false) needs 4 steps or more", name);
        return NULL;
    }
    sampler *s = xmalloc(sizeof *s);
    *s = (sampler){.kind = kind, .prediction = ns->prediction, .T = T, .step_ratio = T / steps,
                   .clip_sample = ns->clip_sample, .clip_range = ns->clip_sample_range};
    float *betas = xmalloc((size_t)T * sizeof *betas);
    s->acp = xmalloc((size_t)T * sizeof *s->acp);
    class_schedule(ns, ns->rescale_betas_zero_snr && kind != SAMPLER_PNDM, betas, s->acp);
    free(betas);
    if (keeps_sigmas(kind) && ns->rescale_betas_zero_snr) s->acp[T - 1] = 0x1p-24f;

    bool alpha_to_one = ns->given & NS_GIVEN_SET_ALPHA_TO_ONE ? ns->set_alpha_to_one : kind == SAMPLER_DDIM;
    s->final_acp = alpha_to_one ? 1.0f : s->acp[0];
    s->variance = strcmp(ns->variance_type, "fixed_small_log") == 0 ? VAR_FIXED_SMALL_LOG
                  : strcmp(ns->variance_type, "fixed_large") == 0   ? VAR_FIXED_LARGE
                                                                    : VAR_FIXED_SMALL;
    s->prk_steps = kind == SAMPLER_PNDM && !ns->skip_prk_steps ? 12 : 0;

    const char *spacing = class_spacing(ns, kind);
    if (kind == SAMPLER_EULER || kind == SAMPLER_EULER_ANCESTRAL) plan_euler(s, ns, spacing, steps);
    else if (kind == SAMPLER_DPMPP_2M || kind == SAMPLER_DPMPP_2M_KARRAS) plan_dpm(s, ns, spacing, steps);
    else if (kind == SAMPLER_PNDM) plan_pndm(s, ns, spacing, steps);
    else {
        s->timesteps = xmalloc((size_t)(steps + 1) * sizeof *s->timesteps);
        s->n = plan_timesteps(ns, spacing, steps, false, s->timesteps);
        s->init_noise_sigma = 1.0f;
    }
    if (!keeps_sigmas(kind) && last_indexed_timestep(s) >= T) {
        err_set("%s: steps_offset %d with %d steps reaches timestep %d, past num_train_timesteps %d", name,
                ns->steps_offset, steps, last_indexed_timestep(s), T);
        sampler_free(s);
        return NULL;
    }
    return s;
}

void sampler_free(sampler *s) {
    if (!s) return;
    for (int i = 0; i < 4; i++) free(s->history[i]);
    free(s->cur_sample);
    free(s->cur_output);
    free(s->scratch);
    free(s->timesteps);
    free(s->sigmas);
    free(s->acp);
    free(s);
}

int sampler_num_steps(const sampler *s) {
    return s->n;
}

double sampler_timestep(const sampler *s, int i) {
    CHECK(i >= 0 && i < s->n, "evaluation %d of %d", i, s->n);
    return s->timesteps[i];
}

double sampler_init_noise_sigma(const sampler *s) {
    return s->init_noise_sigma;
}

// Euler's scale_model_input divides by sqrt(sigma^2 + 1), in float32.
double sampler_input_scale(const sampler *s, int i) {
    CHECK(i >= 0 && i < s->n, "evaluation %d of %d", i, s->n);
    if (s->kind != SAMPLER_EULER && s->kind != SAMPLER_EULER_ANCESTRAL) return 1.0;
    float sigma = s->sigmas[i];
    return 1.0 / (double)sqrtf(sigma * sigma + 1.0f);
}

double sampler_sigma(const sampler *s, int i) {
    CHECK(i >= 0 && i <= s->n, "sigma %d of %d", i, s->n);
    return s->sigmas ? s->sigmas[i] : NAN;
}

bool sampler_needs_noise(const sampler *s) {
    return s->kind == SAMPLER_DDPM || s->kind == SAMPLER_EULER_ANCESTRAL;
}

// --- steps: float32 tensor arithmetic, one rounding per torch operation --------------------------

static float clip_x0(const sampler *s, float x0) {
    if (!s->clip_sample) return x0;
    const float r = s->clip_range;
    return x0 < -r ? -r : x0 > r ? r : x0;
}

// alphas_cumprod at t, or past the start (t < 0): `past` (1 for DDPM).
static float acp_at(const sampler *s, int t, float past) {
    CHECK(t < s->T, "timestep %d of %d", t, s->T);
    return t >= 0 ? s->acp[t] : past;
}

// DDPMScheduler.step: the posterior mean, plus fresh noise scaled by the variance
// while t > 0.
static void ddpm_step(sampler *s, int i, const float *m, float *x, size_t n, const float *noise) {
    const int t = (int)s->timesteps[i], prev = t - s->step_ratio;
    const float a_t = acp_at(s, t, 1.0f), a_prev = acp_at(s, prev, 1.0f);
    const float b_t = 1.0f - a_t, b_prev = 1.0f - a_prev;
    const float cur_alpha = a_t / a_prev, cur_beta = 1.0f - cur_alpha;
    const float sa = sqrtf(a_t), sb = sqrtf(b_t);
    const float c_x0 = sqrtf(a_prev) * cur_beta / b_t, c_x = sqrtf(cur_alpha) * b_prev / b_t;
    float std = 0;
    if (t > 0) {
        float variance = fmaxf((1.0f - a_prev) / (1.0f - a_t) * cur_beta, 1e-20f);
        std = s->variance == VAR_FIXED_SMALL       ? sqrtf(variance)
              : s->variance == VAR_FIXED_SMALL_LOG ? expf(0.5f * logf(variance))
                                                   : sqrtf(cur_beta);
    }
    for (size_t k = 0; k < n; k++) {
        float x0 = s->prediction == PRED_EPSILON ? (x[k] - sb * m[k]) / sa
                   : s->prediction == PRED_V     ? sa * x[k] - sb * m[k]
                                                 : m[k];
        x0 = clip_x0(s, x0);
        float prev_x = c_x0 * x0 + c_x * x[k];
        x[k] = t > 0 ? prev_x + std * noise[k] : prev_x;
    }
}

// DDIMScheduler.step with eta 0: x0 and the noise direction, deterministic.
static void ddim_step(sampler *s, int i, const float *m, float *x, size_t n) {
    const int t = (int)s->timesteps[i], prev = t - s->step_ratio;
    const float a_t = acp_at(s, t, s->final_acp), a_prev = acp_at(s, prev, s->final_acp);
    const float b_t = 1.0f - a_t, sa = sqrtf(a_t), sb = sqrtf(b_t);
    // With eta 0 the noise's share, eta^2 times the posterior variance, is 0.
    const float c_x0 = sqrtf(a_prev), c_eps = sqrtf(1.0f - a_prev);
    for (size_t k = 0; k < n; k++) {
        float x0, eps;
        if (s->prediction == PRED_EPSILON) x0 = (x[k] - sb * m[k]) / sa, eps = m[k];
        else if (s->prediction == PRED_V) x0 = sa * x[k] - sb * m[k], eps = sa * m[k] + sb * x[k];
        else x0 = m[k], eps = (x[k] - sa * x0) / sb;
        x[k] = c_x0 * clip_x0(s, x0) + c_eps * eps;
    }
}

static float *buffer(float **b, size_t n) {
    if (!*b) *b = xmalloc(n * sizeof **b);
    return *b;
}

// Appends a copy of v to the history, dropping the oldest beyond `keep`.
static void push_history(sampler *s, const float *v, int keep) {
    if (s->n_history == keep) {
        float *oldest = s->history[0];
        memmove(s->history, s->history + 1, (size_t)(keep - 1) * sizeof *s->history);
        s->history[keep - 1] = oldest;
    } else {
        s->n_history++;
    }
    memcpy(buffer(&s->history[s->n_history - 1], s->len), v, s->len * sizeof *v);
}

// PNDMScheduler._get_prev_sample: x at prev_t from `sample` at t and the (combined)
// noise prediction e.
static void pndm_prev_sample(const sampler *s, const float *sample, int t, int prev_t, const float *e,
                             float *x) {
    const float a_t = acp_at(s, t, s->final_acp), a_prev = acp_at(s, prev_t, s->final_acp);
    const float b_t = 1.0f - a_t, b_prev = 1.0f - a_prev;
    const float sa = sqrtf(a_t), sb = sqrtf(b_t);
    const float c_sample = sqrtf(a_prev / a_t), c_diff = a_prev - a_t;
    const float denom = a_t * sqrtf(b_prev) + sqrtf(a_t * b_t * a_prev);
    for (size_t k = 0; k < s->len; k++) {
        float eps = s->prediction == PRED_V ? sa * e[k] + sb * sample[k] : e[k];
        x[k] = c_sample * sample[k] - c_diff * eps / denom;
    }
}

// One Runge-Kutta warm-up evaluation: four per step from the saved sample, the
// outputs weighted 1/6, 1/3, 1/3, 1/6.
static void prk_step(sampler *s, int i, const float *m, float *x) {
    const int t_in = (int)s->timesteps[i];
    const int prev_t = t_in - (i % 2 ? 0 : s->step_ratio / 2), t = (int)s->timesteps[i / 4 * 4];
    const float sixth = (float)(1.0 / 6), third = (float)(1.0 / 3);
    float *acc = buffer(&s->cur_output, s->len), *combined = buffer(&s->scratch, s->len);
    const float *e = m;
    if (i % 4 == 0) {
        for (size_t k = 0; k < s->len; k++) acc[k] = 0.0f + sixth * m[k];
        push_history(s, m, 4);
        memcpy(buffer(&s->cur_sample, s->len), x, s->len * sizeof *x);
    } else if (i % 4 < 3) {
        for (size_t k = 0; k < s->len; k++) acc[k] = acc[k] + third * m[k];
    } else {
        for (size_t k = 0; k < s->len; k++) combined[k] = acc[k] + sixth * m[k];
        e = combined;
    }
    pndm_prev_sample(s, s->cur_sample, t, prev_t, e, x);
}

// One PLMS evaluation: Adams-Bashforth over the kept outputs. The second evaluation
// repeats the first timestep's step from the saved first sample, with the average
// of the two outputs (a second-order start), and is not kept.
static void plms_step(sampler *s, int i, const float *m, float *x) {
    int t = (int)s->timesteps[i], prev_t = t - s->step_ratio;
    if (i != 1) push_history(s, m, 4);
    else prev_t = t, t += s->step_ratio;
    float *e = buffer(&s->scratch, s->len);
    const float *sample = x;
    float *const *h = s->history + s->n_history - 1;  // h[0] newest, h[-1] the one before, ...
    for (size_t k = 0; k < s->len; k++) {
        switch (s->n_history) {
            case 1: e[k] = i == 0 ? m[k] : (m[k] + h[0][k]) / 2.0f; break;
            case 2: e[k] = (3.0f * h[0][k] - h[-1][k]) / 2.0f; break;
            case 3: e[k] = (23.0f * h[0][k] - 16.0f * h[-1][k] + 5.0f * h[-2][k]) / 12.0f; break;
            default:
                e[k] = (float)(1.0 / 24) *
                       (55.0f * h[0][k] - 59.0f * h[-1][k] + 37.0f * h[-2][k] - 9.0f * h[-3][k]);
        }
    }
    if (s->n_history == 1 && i == 0) {
        memcpy(buffer(&s->cur_sample, s->len), x, s->len * sizeof *x);
    } else if (s->n_history == 1) {
        sample = s->cur_sample;
    }
    pndm_prev_sample(s, sample, t, prev_t, e, x);
}

// Euler (s_churn 0) and Euler ancestral: x0 from the prediction, then a step along
// (x - x0) / sigma; the ancestral one steps to sigma_down and adds sigma_up noise.
static void euler_step(sampler *s, int i, const float *m, float *x, size_t n, const float *noise) {
    const float sigma = s->sigmas[i], next = s->sigmas[i + 1];
    const float v_scale = -sigma / sqrtf(sigma * sigma + 1.0f), v_div = sigma * sigma + 1.0f;
    float dt = next - sigma, up = 0;
    if (s->kind == SAMPLER_EULER_ANCESTRAL) {
        up = sqrtf(next * next * (sigma * sigma - next * next) / (sigma * sigma));
        dt = sqrtf(next * next - up * up) - sigma;
    }
    for (size_t k = 0; k < n; k++) {
        float x0 = s->prediction == PRED_EPSILON ? x[k] - sigma * m[k]
                   : s->prediction == PRED_V     ? m[k] * v_scale + x[k] / v_div
                                                 : m[k];
        float derivative = (x[k] - x0) / sigma, prev = x[k] + derivative * dt;
        x[k] = s->kind == SAMPLER_EULER_ANCESTRAL ? prev + noise[k] * up : prev;
    }
}

// DPM-Solver's alpha_t, sigma_t for a sigma, and lambda = log(alpha_t / sigma_t).
static void dpm_alpha_sigma(float sigma, float *alpha_t, float *sigma_t, float *lambda) {
    *alpha_t = 1.0f / sqrtf(sigma * sigma + 1.0f);
    *sigma_t = sigma * *alpha_t;
    *lambda = logf(*alpha_t) - logf(*sigma_t);
}

// DPM-Solver++(2M): the x0 prediction, then a first-order step (the first, and the
// last when first_order_last) or the second-order multistep update with the
// previous x0 prediction. Evaluation i is step i even where Karras rounding makes the
// first two timesteps equal: diffusers' index_for_timestep starts at the second of
// those and runs off the end of its sigmas.
static void dpm_step(sampler *s, int i, const float *m, float *x, size_t n) {
    float alpha_s, sigma_s, lambda_s, alpha_t, sigma_t, lambda_t;
    dpm_alpha_sigma(s->sigmas[i], &alpha_s, &sigma_s, &lambda_s);
    dpm_alpha_sigma(s->sigmas[i + 1], &alpha_t, &sigma_t, &lambda_t);
    float *x0 = buffer(&s->scratch, n);
    for (size_t k = 0; k < n; k++)
        x0[k] = s->prediction == PRED_EPSILON ? (x[k] - sigma_s * m[k]) / alpha_s
                : s->prediction == PRED_V     ? alpha_s * x[k] - sigma_s * m[k]
                                              : m[k];
    push_history(s, x0, 2);
    const float h = lambda_t - lambda_s, c_x = sigma_t / sigma_s, c_d0 = alpha_t * (expf(-h) - 1.0f);
    if (s->lower_order_nums < 1 || (i == s->n - 1 && s->first_order_last)) {
        for (size_t k = 0; k < n; k++) x[k] = c_x * x[k] - c_d0 * x0[k];
    } else {
        float alpha_p, sigma_p, lambda_p;
        dpm_alpha_sigma(s->sigmas[i - 1], &alpha_p, &sigma_p, &lambda_p);
        const float r0 = (lambda_s - lambda_p) / h, inv_r0 = 1.0f / r0, c_d1 = 0.5f * c_d0;
        const float *m1 = s->history[0];
        for (size_t k = 0; k < n; k++) {
            float d1 = inv_r0 * (x0[k] - m1[k]);
            x[k] = c_x * x[k] - c_d0 * x0[k] - c_d1 * d1;
        }
    }
    if (s->lower_order_nums < 2) s->lower_order_nums++;
}

void sampler_step(sampler *s, int i, const float *model_output, float *x, size_t n, const float *noise) {
    CHECK(i == s->next && i < s->n, "sampler_step %d: expected evaluation %d of %d", i, s->next, s->n);
    CHECK(!sampler_needs_noise(s) || noise, "%s needs noise at every step", sampler_name(s->kind));
    if (i == 0) s->len = n;
    CHECK(n == s->len, "sampler_step: %zu values, the first step had %zu", n, s->len);
    switch (s->kind) {
        case SAMPLER_DDPM: ddpm_step(s, i, model_output, x, n, noise); break;
        case SAMPLER_DDIM: ddim_step(s, i, model_output, x, n); break;
        case SAMPLER_PNDM:
            if (i < s->prk_steps) prk_step(s, i, model_output, x);
            else plms_step(s, i, model_output, x);
            break;
        case SAMPLER_EULER:
        case SAMPLER_EULER_ANCESTRAL: euler_step(s, i, model_output, x, n, noise); break;
        default: dpm_step(s, i, model_output, x, n);
    }
    s->next++;
}
