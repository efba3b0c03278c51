// bench_models: CPU timings of the whole SD1.5 models, loaded from a checkpoint.
//
// Loads a Stable Diffusion checkpoint with sd_model_load (f32, CPU), then times, in
// no-grad mode:
//   text_encoder  clip_encode of [2, 77] token ids (the prompt and the empty prompt)
//   unet          unet_forward on a [2, 64, 64, 4] latent, timesteps {500, 500},
//                 context [2, 77, 768]: one classifier-free-guidance step at 512x512
//   vae_decode    vae_decode of a [1, 64, 64, 4] latent -> [1, 512, 512, 3]
//   render        pipeline_render: "a photo of a dog", 512x512, 20 steps, CFG 7.5, the
//                 model's default sampler (needs --tokenizer DIR); one timed run
// Prints one JSON line for the load, then one per case:
//   {"name": "load", "threads": T, "seconds": s, "rss_mib": RSS after loading,
//    "peak_rss_mib": the peak while loading}
//   {"name": ..., "shape": ..., "pass": "fwd", "threads": T, "repeats": R,
//    "seconds": median, "min_seconds": fastest, "warmup_seconds": s,
//    "rss_after_load_mib": M, "peak_rss_mib": P, "peak_reset": true}
// Memory is in MiB. Before each case the peak-RSS count restarts at the current RSS
// (/proc/self/clear_refs), so a case's peak_rss_mib (ru_maxrss after it) is the
// resident weights plus what the case added, not the load's transient peak;
// "peak_reset": false says the kernel refused and the number includes everything
// before. Freed memory the allocator keeps would still carry over from one case to
// the next, so bench/bench_models.py runs one process per case. See bench/README.md.
//
//   bench_models --model DIR [--tokenizer DIR] [--list] [--only NAME]... [--repeats N]
#include <omp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench/bench_util.h"
#include "core/check.h"
#include "core/rng.h"
#include "infer/pipeline.h"
#include "kernels/autograd.h"
#include "kernels/tensor.h"

typedef enum { K_TEXT_ENCODER, K_UNET, K_VAE_DECODE, K_RENDER } case_kind;

typedef struct {
    const char *name;
    const char *shape;  // our (channels-last) layout, for the table
    case_kind kind;
    int default_repeats;  // timed runs after the warm-up, before the budget cut
} bench_case;

static const bench_case CASES[] = {
    {"text_encoder", "ids[2,77] -> [2,77,768]", K_TEXT_ENCODER, 5},
    {"unet", "x[2,64,64,4] t[2] ctx[2,77,768] -> [2,64,64,4]", K_UNET, 2},
    {"vae_decode", "z[1,64,64,4] -> [1,512,512,3]", K_VAE_DECODE, 2},
    // A whole text-to-image render: one timed run, no warm-up (20 steps amortise it).
    {"render", "512x512, 20 steps, CFG 7.5, the model's sampler", K_RENDER, 1},
};
enum { N_CASES = sizeof CASES / sizeof CASES[0], MAX_REPEATS = 100 };

// The UNet and the VAE take tens of seconds a run on 2 cores. A case's timed runs
// are cut to about CASE_BUDGET_SECONDS (at least one), so the whole bench, both
// sides, stays within minutes; at that length a single run is steady.
// bench/bench_models.py applies the same rule to diffusers.
static const double CASE_BUDGET_SECONDS = 30.0;

static int default_repeats(const bench_case *c, double warm_seconds) {
    int r = c->default_repeats;
    if (warm_seconds * r > CASE_BUDGET_SECONDS) r = (int)(CASE_BUDGET_SECONDS / warm_seconds);
    return r < 1 ? 1 : r;
}


// Peak resident set of this process so far (ru_maxrss is in KiB on Linux).
static double peak_rss_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

// Restarts the peak-RSS count at the current RSS (Linux 4.0+: writing 5 to
// clear_refs resets the high-water mark that both VmHWM and ru_maxrss report), so
// a case's peak is not the load's. false when the kernel refuses.
static bool reset_peak_rss(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return false;
    bool ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok;
}

// Resident set now, from /proc/self/status (VmRSS, in kB); -1 when unreadable.
static double current_rss_mib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    double kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %lf", &kb) == 1) break;
    fclose(f);
    return kb < 0 ? -1 : kb / 1024.0;
}

typedef struct {
    tensor *ids;                      // text_encoder
    tensor *sample, *timesteps, *ctx;  // unet
    tensor *latent;                   // vae_decode
} case_data;

static void setup(const bench_case *c, const sd_model *m, case_data *cd) {
    memset(cd, 0, sizeof *cd);
    switch (c->kind) {
    case K_TEXT_ENCODER: {
        // Any valid ids: CLIP's start token, then random tokens of the vocabulary.
        enum { B = 2, T = 77 };
        cd->ids = tensor_new(DT_I32, DEV_CPU, SHAPE(B, T));
        int32_t *ids = tensor_data(cd->ids);
        uint32_t vocab = (uint32_t)m->clip_cfg.vocab_size;
        for (int i = 0; i < B * T; i++)
            ids[i] = i % T == 0 && vocab > 49406 ? 49406 : (int32_t)rng_below(&bench_rng, vocab);
        break;
    }
    case K_UNET: {
        const unet_config *u = &m->unet_cfg;
        cd->sample = bench_randn(SHAPE(2, 64, 64, u->in_channels));
        cd->timesteps = tensor_from_f32(DT_F32, DEV_CPU, SHAPE(2), (const float[]){500, 500});
        cd->ctx = bench_randn(SHAPE(2, 77, u->cross_attention_dim));
        break;
    }
    case K_VAE_DECODE:
        cd->latent = bench_randn(SHAPE(1, 64, 64, m->vae_cfg.latent_channels));
        break;
    case K_RENDER: break;
    }
}

static void teardown(case_data *cd) {
    tensor_free(cd->ids);
    tensor_free(cd->sample);
    tensor_free(cd->timesteps);
    tensor_free(cd->ctx);
    tensor_free(cd->latent);
}

// The timed region: one forward, freeing the result included.
static void run_once(const bench_case *c, pipeline *p, case_data *cd) {
    const sd_model *m = &p->model;
    tensor *y = NULL;
    switch (c->kind) {
    case K_TEXT_ENCODER: y = clip_encode(&m->text_encoder, cd->ids, 0); break;
    case K_UNET: y = unet_forward(&m->unet, cd->sample, cd->timesteps, cd->ctx); break;
    case K_VAE_DECODE: y = vae_decode(&m->vae, cd->latent); break;
    case K_RENDER: {
        CHECK(p->tokenizer, "the render case needs --tokenizer DIR");
        render_params rp;
        render_params_default(&rp, p);
        rp.prompt = "a photo of a dog";
        float *images;
        CHECK(pipeline_render(p, &rp, NULL, NULL, &images) == 0, "render: %s", err_msg());
        free(images);
        break;
    }
    }
    tensor_free(y);
}


static void bench(const bench_case *c, pipeline *p, int repeats /*0: default*/,
                  double rss_after_load) {
    const sd_model *m = &p->model;
    bool peak_reset = reset_peak_rss();
    case_data cd;
    setup(c, m, &cd);
    autograd_no_grad_begin();

    // Warm-up: first-touch page faults (weights and activations), thread start-up.
    double t0 = now_seconds(), warm = 0;
    if (c->kind != K_RENDER) {
        run_once(c, p, &cd);
        warm = now_seconds() - t0;
    }
    if (repeats <= 0) repeats = c->kind == K_RENDER ? 1 : default_repeats(c, warm);

    double times[MAX_REPEATS];
    for (int r = 0; r < repeats; r++) {
        t0 = now_seconds();
        run_once(c, p, &cd);
        times[r] = now_seconds() - t0;
    }
    autograd_no_grad_end();
    teardown(&cd);

    double med = sorted_median(times, repeats);
    printf("{\"name\": \"%s\", \"shape\": \"%s\", \"pass\": \"fwd\", \"threads\": %d, "
           "\"repeats\": %d, \"seconds\": %.6g, \"min_seconds\": %.6g, \"warmup_seconds\": %.6g, "
           "\"rss_after_load_mib\": %.1f, \"peak_rss_mib\": %.1f, \"peak_reset\": %s}\n",
           c->name, c->shape, omp_get_max_threads(), repeats, med, times[0], warm,
           rss_after_load, peak_rss_mib(), peak_reset ? "true" : "false");
    fflush(stdout);  // the driver reads lines as they come
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: bench_models --model DIR [--tokenizer DIR] [--list] [--only NAME]... [--repeats N]\n"
            "  --model DIR  a diffusers folder (or a single-file .safetensors) to load, f32 CPU\n"
            "  --tokenizer DIR  a CLIP tokenizer folder: loads the pipeline and adds the render case\n"
            "  --list       print the case names and exit\n"
            "  --only NAME  run only this case (repeatable)\n"
            "  --repeats N  timed runs per case after one warm-up (default: %d for\n"
            "               text_encoder, %d for unet and vae_decode, fewer when they would\n"
            "               take over %.0f s: at least 1)\n"
            "Threads: OMP_NUM_THREADS (and OPENBLAS_NUM_THREADS for the GEMMs).\n",
            CASES[K_TEXT_ENCODER].default_repeats, CASES[K_UNET].default_repeats,
            CASE_BUDGET_SECONDS);
}

static const bench_case *find_case(const char *name) {
    for (int i = 0; i < N_CASES; i++)
        if (strcmp(CASES[i].name, name) == 0) return &CASES[i];
    return NULL;
}

int main(int argc, char **argv) {
    int repeats = 0;
    const char *model = NULL, *tokenizer = NULL;
    const bench_case *only[N_CASES];
    int n_only = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--list") == 0) {
            for (int j = 0; j < N_CASES; j++) printf("%s\n", CASES[j].name);
            return 0;
        } else if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) {
            model = argv[++i];
        } else if (strcmp(argv[i], "--tokenizer") == 0 && i + 1 < argc) {
            tokenizer = argv[++i];
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            const bench_case *c = find_case(argv[++i]);
            if (!c) {
                fprintf(stderr, "bench_models: no case named '%s' (see --list)\n", argv[i]);
                return 2;
            }
            if (n_only < N_CASES) only[n_only++] = c;
        } else if (strcmp(argv[i], "--repeats") == 0 && i + 1 < argc) {
            char *end;
            long r = strtol(argv[++i], &end, 10);
            if (*end || r < 1 || r > MAX_REPEATS) {
                fprintf(stderr, "bench_models: --repeats wants 1..%d\n", MAX_REPEATS);
                return 2;
            }
            repeats = (int)r;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!model) {
        fprintf(stderr, "bench_models: --model DIR is required\n");
        usage(stderr);
        return 2;
    }

    // With a tokenizer, the whole pipeline (the render case); else the models alone.
    pipeline p = {0};
    sd_load_options opt = {.dt = DT_F32, .dev = DEV_CPU};
    double t0 = now_seconds();
    if ((tokenizer ? pipeline_open(&p, model, tokenizer, NULL, &opt) : sd_model_load(&p.model, model, &opt)) != 0) {
        fprintf(stderr, "bench_models: %s\n", err_msg());
        return 1;
    }
    double load_seconds = now_seconds() - t0, rss_after_load = current_rss_mib();
    printf("{\"name\": \"load\", \"threads\": %d, \"seconds\": %.6g, \"rss_mib\": %.1f, "
           "\"peak_rss_mib\": %.1f}\n",
           omp_get_max_threads(), load_seconds, rss_after_load, peak_rss_mib());
    fflush(stdout);

    if (n_only)
        for (int i = 0; i < n_only; i++) bench(only[i], &p, repeats, rss_after_load);
    else
        for (int i = 0; i < N_CASES; i++)
            if (CASES[i].kind != K_RENDER || tokenizer) bench(&CASES[i], &p, repeats, rss_after_load);
    if (tokenizer) pipeline_close(&p);
    else sd_model_free(&p.model);
    return 0;
}
