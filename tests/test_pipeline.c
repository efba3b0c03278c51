// suite_pipeline: text-to-image on the tiny model against diffusers'
// StableDiffusionPipeline (tests/fixtures/pipeline.safetensors, written by
// tools/golden/pipeline.py): identical initial latents, classifier-free guidance
// with a negative prompt, DDIM and DPM++ 2M; final latents and decoded images
// within 1e-4.
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

#include "core/files.h"
#include "core/png.h"
#include "core/safetensors.h"
#include "infer/pipeline.h"
#include "tests/harness.h"
#include "tests/test.h"

#define TOL 1e-4

// The tiny-sd fixture folder with the build's tokenizer added, in the scratch dir.
static const char *tiny_pipeline_dir(void) {
    static char dir[1024];
    if (!dir[0]) {
        char tok[1024], cmd[4096];
        path_beside_program(tok, sizeof tok, "clip-tokenizer");
        snprintf(dir, sizeof dir, "%s/tiny-pipeline", scratch_dir());
        snprintf(cmd, sizeof cmd, "cp -r '%s' '%s' && cp -r '%s' '%s/tokenizer'",
                 repo_path("tests/fixtures/models/tiny-sd"), dir, tok, dir);
        CHECK(system(cmd) == 0, "%s failed (run make: it derives the tokenizer)", cmd);
    }
    return dir;
}

static void run_case(pipeline *p, st_file *ref, const char *name, const cJSON *settings) {
    test_begin("pipeline: %s with guidance and a negative prompt matches diffusers within %g", name, TOL);
    const cJSON *c = cJSON_GetObjectItem(settings, name);
    char key[128];
    int64_t shape[4];
    snprintf(key, sizeof key, "%s.initial_latents", name);
    float *init = fixture_nhwc(ref, key, shape);
    snprintf(key, sizeof key, "%s.final_latents", name);
    float *want_latents = fixture_nhwc(ref, key, shape);
    snprintf(key, sizeof key, "%s.decoded", name);
    int64_t image_shape[4];
    float *want_image = fixture_nhwc(ref, key, image_shape);

    render_params rp;
    render_params_default(&rp, p);
    rp.prompt = cJSON_GetObjectItem(c, "prompt")->valuestring;
    rp.negative_prompt = cJSON_GetObjectItem(c, "negative_prompt")->valuestring;
    rp.steps = cJSON_GetObjectItem(c, "steps")->valueint;
    rp.batch = cJSON_GetObjectItem(c, "batch")->valueint;
    rp.cfg_scale = (float)cJSON_GetObjectItem(c, "cfg")->valuedouble;
    rp.width = rp.height = cJSON_GetObjectItem(c, "size")->valueint;
    const char *scheduler = cJSON_GetObjectItem(c, "scheduler")->valuestring;
    CHECK(sampler_from_name(strcmp(scheduler, "DDIMScheduler") == 0 ? "ddim" : "dpmpp_2m", &rp.sampler) == 0,
          "%s", err_msg());

    int64_t n = shape[0] * shape[1] * shape[2] * shape[3];
    float *latents = xmalloc((size_t)n * sizeof *latents), *images = NULL;
    int rc = pipeline_render(p, &rp, init, latents, &images);
    EXPECT(rc == 0, "%s", err_msg());
    if (rc == 0) {
        double e1 = rel_error(latents, want_latents, n);
        double e2 = rel_error(images, want_image, image_shape[0] * image_shape[1] * image_shape[2] * image_shape[3]);
        EXPECT(e1 <= TOL, "final latents: relative error %.3g", e1);
        EXPECT(e2 <= TOL, "decoded images: relative error %.3g", e2);
    }
    free(images), free(latents), free(init), free(want_latents), free(want_image);
    test_end();
}

// The sdft-sample program beside this binary, run on a config in the scratch dir.
static int run_sample_program(const char *config_text, const char *args) {
    char config[1024], program[1024], cmd[4096];
    snprintf(config, sizeof config, "%s/run.yaml", scratch_dir());
    FILE *f = fopen(config, "w");
    CHECK(f, "cannot write %s", config);
    fputs(config_text, f);
    fclose(f);
    path_beside_program(program, sizeof program, "sdft-sample");
    snprintf(cmd, sizeof cmd, "'%s' --config '%s' --no-hash %s > '%s/stdout' 2> '%s/stderr'", program, config,
             args, scratch_dir(), scratch_dir());
    return system(cmd);
}

static void test_sample_program(void) {
    test_begin("pipeline: sdft-sample --config renders each prompt to a PNG with parameters, and a grid");
    char text[4096], path[2048];
    char tok[1024];
    path_beside_program(tok, sizeof tok, "clip-tokenizer");
    snprintf(text, sizeof text,
             "model:\n  path: %s\n  tokenizer: %s\n"
             "subject:\n  token: zwx\n  class: cat\n"
             "validation:\n  prompts: [\"a photo of {token} {class}\", \"{class} art\"]\n"
             "  steps: 3\n  width: 64\n  height: 64\n  images_per_prompt: 2\n  seed: 5\n"
             "output:\n  dir: %s/run\n",
             repo_path("tests/fixtures/models/tiny-sd"), tok, scratch_dir());
    int rc = run_sample_program(text, "validation.cfg=4");
    EXPECT(rc == 0, "sdft-sample failed (status %d); see its stderr", rc);
    snprintf(path, sizeof path, "%s/run/samples/00-a-photo-of-zwx-cat-1.png", scratch_dir());
    image_u8 img = {0};
    png_meta meta = {0};
    EXPECT(png_read(path, &img, &meta) == 0, "%s", err_msg());
    const char *params = png_meta_get(&meta, "parameters");
    EXPECT(img.width == 64 && img.height == 64, "%dx%d", img.width, img.height);
    EXPECT(params && strncmp(params, "a photo of zwx cat\n", 19) == 0 && strstr(params, "Seed: 6,") &&
               strstr(params, "CFG scale: 4,") && strstr(params, "Steps: 3,"),
           "parameters: %s", params ? params : "(none)");
    image_free(&img);
    png_meta_free(&meta);
    snprintf(path, sizeof path, "%s/run/samples/grid.png", scratch_dir());
    // Two columns and two rows of tiles, each with a caption band under it.
    EXPECT(png_read(path, &img, NULL) == 0 && img.width == 2 * 64 + 3 * 8 && img.height > 2 * (64 + 30) + 3 * 8,
           "grid: %s %dx%d", err_msg(), img.width, img.height);
    image_free(&img);
    test_end();

    test_begin("pipeline: sdft-sample refuses a config typo, naming the line and the nearest key");
    snprintf(text, sizeof text, "model:\n  path: x\nvalidation:\n  stpes: 3\n");
    rc = run_sample_program(text, "");
    char *err = NULL;
    snprintf(path, sizeof path, "%s/stderr", scratch_dir());
    read_text_file(path, &err, NULL);
    EXPECT(rc != 0 && err && strstr(err, "run.yaml:4:") && strstr(err, "did you mean \"steps\""),
           "status %d, stderr: %s", rc, err ? err : "");
    free(err);
    test_end();
}

// OpenMP's wait policy, which core/thread_policy.c sets in every program before the
// OpenMP runtime starts. The runs below unset OMP_WAIT_POLICY and GOMP_SPINCOUNT
// themselves: this runner passes its own (passive) setting on to its children.
#define NO_WAIT_POLICY "env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT"

static double children_cpu_seconds(void) {
    struct rusage ru;
    CHECK(getrusage(RUSAGE_CHILDREN, &ru) == 0, "getrusage");
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           1e-6 * (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static double wall_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// The line of libgomp's report of its settings (OMP_DISPLAY_ENV) that names setting,
// when program starts with extra_env; caller frees.
static char *openmp_setting(const char *program, const char *extra_env, const char *setting) {
    char path[1024], cmd[4096];
    path_beside_program(path, sizeof path, program);
    snprintf(cmd, sizeof cmd, NO_WAIT_POLICY " %s OMP_DISPLAY_ENV=verbose '%s' --help > '%s' 2>&1", extra_env, path,
             scratch_path("openmp_settings"));
    int rc = system(cmd);  // the status of --help does not matter; the report comes first
    (void)rc;
    char *text = NULL;
    read_text_file(scratch_path("openmp_settings"), &text, NULL);
    const char *at = text ? strstr(text, setting) : NULL;
    char *line = at ? strndup(at, strcspn(at, "\n")) : strdup("(not reported)");
    free(text);
    return line;
}

static void test_wait_policy(void) {
    test_begin("pipeline: the programs' OpenMP threads wait passively unless the environment says otherwise");
    static const char *programs[] = {"sdft-sample", "sdft-train", "sdft-eval"};
    for (int i = 0; i < 3; i++) {
        char *line = openmp_setting(programs[i], "", "GOMP_SPINCOUNT");
        EXPECT(strcmp(line, "GOMP_SPINCOUNT = '0'") == 0, "%s with no policy set: %s", programs[i], line);
        free(line);
    }
    char *line = openmp_setting("sdft-sample", "OMP_WAIT_POLICY=active", "OMP_WAIT_POLICY");
    EXPECT(strcmp(line, "OMP_WAIT_POLICY = 'ACTIVE'") == 0, "OMP_WAIT_POLICY=active: %s", line);
    free(line);
    line = openmp_setting("sdft-sample", "GOMP_SPINCOUNT=1234", "GOMP_SPINCOUNT");
    EXPECT(strcmp(line, "GOMP_SPINCOUNT = '1234'") == 0, "GOMP_SPINCOUNT=1234: %s", line);
    free(line);
    test_end();

    // Measured in CPU time, not wall time: with two busy processes on 2 cores a fair
    // share is half the machine, so even a render whose threads wait well takes about
    // twice its quiet wall time (more when anything else runs), and a 2x bound on wall
    // time would be a coin toss. Spinning shows up directly as CPU time: without the
    // policy this render used 3 to 60 times the CPU time of the quiet one (and ran for
    // minutes), with it 0.9 to 1.2 times.
    test_begin("pipeline: a render beside two busy processes uses at most twice the CPU time of a quiet one");
    char program[1024], tok[1024], cmd[4096];
    path_beside_program(program, sizeof program, "sdft-sample");
    path_beside_program(tok, sizeof tok, "clip-tokenizer");
    // Spinning beside busy processes can take minutes: the busy run is stopped after 20
    // times the quiet one's wall time (at least a minute, for sanitizer builds).
    const char *render = NO_WAIT_POLICY " timeout %d '%s' --model '%s' --tokenizer '%s' --prompt 'a cat' --steps 10 "
                                        "--width 128 --height 128 --no-hash --quiet --out '%s' > /dev/null 2> '%s'";
    snprintf(cmd, sizeof cmd, render, 600, program, repo_path("tests/fixtures/models/tiny-sd"), tok,
             scratch_path("policy.png"), scratch_path("policy.stderr"));
    int rc_quiet, rc_busy;
    double wall = wall_seconds();
    double quiet_cpu = children_cpu_seconds();
    rc_quiet = system(cmd);
    quiet_cpu = children_cpu_seconds() - quiet_cpu;
    double quiet_wall = wall_seconds() - wall;
    int limit = quiet_wall * 20 > 60 ? (int)(quiet_wall * 20) : 60;
    snprintf(cmd, sizeof cmd, render, limit, program, repo_path("tests/fixtures/models/tiny-sd"), tok,
             scratch_path("policy.png"), scratch_path("policy.stderr"));
    pid_t busy[2];
    for (int i = 0; i < 2; i++) {
        busy[i] = fork();
        CHECK(busy[i] >= 0, "fork failed");
        if (busy[i] == 0)
            for (volatile unsigned long spin = 0;; spin++) {
            }
    }
    wall = wall_seconds();
    double busy_cpu = children_cpu_seconds();
    rc_busy = system(cmd);
    busy_cpu = children_cpu_seconds() - busy_cpu;
    double busy_wall = wall_seconds() - wall;
    for (int i = 0; i < 2; i++) kill(busy[i], SIGKILL), waitpid(busy[i], NULL, 0);
    EXPECT(rc_quiet == 0 && rc_busy == 0, "sdft-sample failed (exit status %d quiet, %d busy; 124: over %d s); see %s",
           WEXITSTATUS(rc_quiet), WEXITSTATUS(rc_busy), limit, scratch_path("policy.stderr"));
    EXPECT(busy_cpu <= 2 * quiet_cpu, "quiet: %.2f s CPU in %.2f s; beside two busy processes: %.2f s CPU in %.2f s",
           quiet_cpu, quiet_wall, busy_cpu, busy_wall);
    test_end();
}

// A tokenizer that pads prompts past the text encoder's positions is refused when the
// pipeline opens, naming its folder (it stopped the first render with a CHECK).
static void test_tokenizer_longer_than_encoder(void) {
    test_begin("pipeline: a tokenizer padding past the text encoder's positions is refused at open, naming it");
    char tok[1024], cmd[4096];
    path_beside_program(tok, sizeof tok, "clip-tokenizer");
    const char *dir = scratch_path("long-tokenizer");
    snprintf(cmd, sizeof cmd, "cp -r '%s' '%s' && printf '{\"model_max_length\": 78}' > '%s/tokenizer_config.json'",
             tok, dir, dir);
    CHECK(system(cmd) == 0, "%s failed", cmd);
    pipeline p;
    sd_load_options opt = {.dt = DT_F32, .dev = DEV_CPU};
    int rc = pipeline_open(&p, repo_path("tests/fixtures/models/tiny-sd"), dir, NULL, &opt);
    EXPECT(rc == -1 && strstr(err_msg(), "long-tokenizer: model_max_length 78") &&
               strstr(err_msg(), "max_position_embeddings 77"),
           "rc %d: %s", rc, err_msg());
    if (rc == 0) pipeline_close(&p);
    test_end();
}

void suite_pipeline(void) {
    test_tokenizer_longer_than_encoder();
    test_sample_program();
    test_wait_policy();
    st_file *ref = st_open(repo_path("tests/fixtures/pipeline.safetensors"));
    CHECK(ref, "%s", err_msg());
    CHECK(st_meta(ref, "format_version") && strcmp(st_meta(ref, "format_version"), "1") == 0,
          "pipeline.safetensors: stale format; run make golden");
    cJSON *settings = cJSON_Parse(st_meta(ref, "cases"));
    CHECK(settings, "pipeline.safetensors: no case settings");

    pipeline p;
    sd_load_options opt = {.dt = DT_F32, .dev = DEV_CPU};
    test_begin("pipeline: the tiny folder opens with its tokenizer and scheduler");
    int rc = pipeline_open(&p, tiny_pipeline_dir(), NULL, NULL, &opt);
    EXPECT(rc == 0, "%s", err_msg());
    test_end();
    if (rc == 0) {
        for (const cJSON *c = settings->child; c; c = c->next) run_case(&p, ref, c->string, settings);

        test_begin("pipeline: bad sizes and step counts are refused with a message");
        render_params rp;
        render_params_default(&rp, &p);
        rp.width = 60;
        float *images = NULL;
        EXPECT(pipeline_render(&p, &rp, NULL, NULL, &images) == -1 && strstr(err_msg(), "multiples of 8"),
               "60 px wide: %s", err_msg());
        rp.width = 64;
        rp.steps = 0;
        EXPECT(pipeline_render(&p, &rp, NULL, NULL, &images) == -1 && strstr(err_msg(), "steps"),
               "0 steps: %s", err_msg());
        test_end();

        test_begin("pipeline: A1111 parameters text");
        render_params_default(&rp, &p);
        rp.prompt = "a photo of sks dog";
        rp.negative_prompt = "blurry";
        rp.clip_skip = 1;
        CHECK(sampler_from_name("dpmpp_2m_karras", &rp.sampler) == 0, "%s", err_msg());
        char *text = pipeline_a1111_parameters(&p, &rp, 42, "0123456789", NULL);
        const char *want = "a photo of sks dog\nNegative prompt: blurry\nSteps: 20, Sampler: DPM++ 2M Karras, "
                           "CFG scale: 7.5, Seed: 42, Size: 512x512, Model hash: 0123456789, "
                           "Model: tiny-pipeline, Clip skip: 2, Version: sdft";
        EXPECT(strcmp(text, want) == 0, "got:\n%s\nwant:\n%s", text, want);
        free(text);
        test_end();
        pipeline_close(&p);
    }
    cJSON_Delete(settings);
    st_close(ref);
}
