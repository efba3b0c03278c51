// suite_pipeline: text-to-image on the tiny model against diffusers'
// StableDiffusionPipeline (tests/fixtures/pipeline.safetensors, written by
// tools/golden/pipeline.py): identical initial latents, classifier-free guidance
// with a negative prompt, DDIM and DPM++ 2M; final latents and decoded images
// within 1e-4.
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/files.h"
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

// NCHW fixture tensor -> NHWC host floats.
static float *nhwc(st_file *f, const char *name, int64_t *shape) {
    tensor *t = st_load(f, name, DT_F32, DEV_CPU);
    CHECK(t && t->ndim == 4, "fixture %s: %s", name, err_msg());
    tensor *p = op_permute(t, (const int[]){0, 2, 3, 1});
    tensor *c = op_contiguous(p);
    int64_t n = tensor_numel(c);
    float *v = xmalloc((size_t)n * sizeof *v);
    tensor_copy_to_f32(c, v, (size_t)n);
    for (int d = 0; d < 4; d++) shape[d] = c->shape[d];
    tensor_free(c), tensor_free(p), tensor_free(t);
    return v;
}

static void run_case(pipeline *p, st_file *ref, const char *name, const cJSON *settings) {
    test_begin("pipeline: %s with guidance and a negative prompt matches diffusers within %g", name, TOL);
    const cJSON *c = cJSON_GetObjectItem(settings, name);
    char key[128];
    int64_t shape[4];
    snprintf(key, sizeof key, "%s.initial_latents", name);
    float *init = nhwc(ref, key, shape);
    snprintf(key, sizeof key, "%s.final_latents", name);
    float *want_latents = nhwc(ref, key, shape);
    snprintf(key, sizeof key, "%s.decoded", name);
    int64_t image_shape[4];
    float *want_image = nhwc(ref, key, image_shape);

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

void suite_pipeline(void) {
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
