// suite_eval: sdft-eval against the library. Its losses must be the trainer's loss
// (train/step.h's dreambooth_loss, no Min-SNR weight) computed here, draw by draw,
// for the protocol its header states: the same photos, captions, held-out draws and
// adapter, on the tiny model loaded as the config says (a diffusers folder; a
// single file with model.config_dir, v-prediction and model.clip_skip 2). Bad
// input is a one-line error with exit status 1. Under make test-asan the program is
// built with LeakSanitizer: a leak's report on stderr (or its exit status 23 after
// a success) fails these checks.
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "core/files.h"
#include "data/dataset.h"
#include "data/image_io.h"
#include "data/transform.h"
#include "infer/lora.h"
#include "infer/pipeline.h"
#include "kernels/backend.h"
#include "tests/test.h"
#include "train/step.h"

#define LOSS_TOL 1e-5
#define SEED 77
#define DRAWS 2
#define SIZE 64

static const char *photos_dir(void) {
    static char dir[1024];
    if (!dir[0]) {
        char program[1024], cmd[4096];
        snprintf(dir, sizeof dir, "%s", scratch_path("eval-photos"));
        path_beside_program(program, sizeof program, "sdft-demo-images");
        snprintf(cmd, sizeof cmd, "mkdir -p '%s' && '%s' '%s'", dir, program, dir);
        CHECK(system(cmd) == 0, "%s failed", cmd);
        // One photo with a caption of its own: the eval uses the training captions.
        snprintf(cmd, sizeof cmd, "%s/01.txt", dir);
        write_whole(cmd, "a zwx ball on the lawn\n", 23);
    }
    return dir;
}

// sdft-eval on a config in the scratch dir with the given arguments; its exit status
// (-1 when it did not exit), its stdout and stderr (caller frees).
static int run_eval(const char *config_text, const char *args, char **out, char **err) {
    char config[1024], program[1024], cmd[8192];
    snprintf(config, sizeof config, "%s", scratch_path("eval.yaml"));
    write_whole(config, config_text, strlen(config_text));
    path_beside_program(program, sizeof program, "sdft-eval");
    snprintf(cmd, sizeof cmd, "'%s' --config '%s' %s > '%s' 2> '%s'", program, config, args,
             scratch_path("eval.stdout"), scratch_path("eval.stderr"));
    int status = system(cmd);
    *out = *err = NULL;
    read_text_file(scratch_path("eval.stdout"), out, NULL);
    read_text_file(scratch_path("eval.stderr"), err, NULL);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// The run config text: the tiny model as model_yaml gives it, the photos, token zwx
// and class ball.
static const char *config_text(const char *model_yaml) {
    static char text[4096];
    char tok[1024];
    path_beside_program(tok, sizeof tok, "clip-tokenizer");
    snprintf(text, sizeof text,
             "model: {tokenizer: %s, %s}\nsubject: {token: zwx, class: ball}\n"
             "data: {instance_dir: %s, resolution: %d}\n",
             tok, model_yaml, photos_dir(), SIZE);
    return text;
}

// The mean of dreambooth_loss over every photo and draw of the eval's protocol, each
// draw a batch of its own: photo i with its caption, or with class_prompt.
static double reference_loss(pipeline *p, const dataset *ds, const float *latents, int h, int w, int C,
                             const char *class_prompt, int clip_skip) {
    const size_t per = (size_t)h * w * C;
    float *noise = xmalloc(per * sizeof *noise);
    rng_stream rng = {.seed = SEED};
    loss_config lc = {.snr_gamma = 0, .prior_loss_weight = 0};
    double sum = 0;
    for (int i = 0; i < ds->n_images; i++) {
        tensor *ctx = pipeline_encode_prompt(p, class_prompt ? class_prompt : ds->images[i].caption, 1, clip_skip);
        for (int d = 0; d < DRAWS; d++) {
            rng_fill_normal(&rng, noise, per);
            int t = (int)rng_below(&rng, (uint32_t)p->schedule.num_train_timesteps);
            train_batch b = {.batch = 1, .n_instance = 1, .height = h, .width = w, .latents = latents + i * per,
                             .noise = noise, .timesteps = &t, .clip_skip = clip_skip, .context = ctx};
            loss_parts parts;
            tensor_free(dreambooth_loss(&p->model, &p->schedule, &b, &lc, &parts));
            sum += parts.loss;
        }
        tensor_free(ctx);
    }
    free(noise);
    return sum / (ds->n_images * DRAWS);
}

static double json_number(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

// sdft-eval's four losses against reference_loss, for a model loaded with the
// given options, prediction type and clip skip (A1111's numbering).
static void check_losses(const char *what, const char *model_yaml, const char *model_path, const char *config_dir,
                         const char *scheduler_config, int clip_skip) {
    test_begin("eval: sdft-eval's losses are the trainer's loss for its draws (%s)", what);
    const char *adapter = repo_path("tests/fixtures/lora/trained.safetensors");
    char args[2048], *out, *err;
    snprintf(args, sizeof args, "--adapter '%s' --draws %d --seed %d", adapter, DRAWS, SEED);
    int status = run_eval(config_text(model_yaml), args, &out, &err);
    cJSON *j = out ? cJSON_Parse(out) : NULL;
    EXPECT(status == 0 && j, "status %d, stderr: %s", status, err ? err : "");
    if (j) {
        char tok[1024];
        path_beside_program(tok, sizeof tok, "clip-tokenizer");
        pipeline p;
        sd_load_options lo = {.dt = DT_F32, .dev = DEV_CPU, .config_dir = config_dir};
        CHECK(pipeline_open(&p, model_path, tok, scheduler_config, &lo) == 0, "%s", err_msg());
        dataset ds;
        dataset_report rep;
        CHECK(dataset_open(&ds, photos_dir(), "a photo of zwx ball", 1, false, &rep) == 0, "%s", err_msg());
        dataset_report_free(&rep);
        // The photos' latents: VAE means of the center crops, scaled.
        autograd_no_grad_begin();
        const int f = 1 << (p.model.vae_cfg.n_blocks - 1), h = SIZE / f, w = SIZE / f,
                  C = p.model.vae_cfg.latent_channels;
        const size_t per = (size_t)h * w * C;
        float *latents = xmalloc(per * ds.n_images * sizeof *latents), *pixels = xmalloc(SIZE * SIZE * 3 * sizeof *pixels);
        transform_options to = {.size = SIZE, .center_crop = true};
        for (int i = 0; i < ds.n_images; i++) {
            image_u8 img;
            CHECK(image_load(ds.images[i].path, &img) == 0 && image_transform(&img, &to, NULL, pixels, NULL) == 0,
                  "%s", err_msg());
            image_free(&img);
            tensor *x = tensor_from_f32(DT_F32, DEV_CPU, SHAPE(1, SIZE, SIZE, 3), pixels), *mu, *lv;
            vae_encode(&p.model.vae, x, &mu, &lv);
            tensor_copy_to_f32(mu, latents + i * per, per);
            for (size_t k = 0; k < per; k++) latents[i * per + k] *= p.model.vae_cfg.scaling_factor;
            tensor_free(x), tensor_free(mu), tensor_free(lv);
        }
        double want[4];
        want[0] = reference_loss(&p, &ds, latents, h, w, C, NULL, clip_skip - 1);
        want[1] = reference_loss(&p, &ds, latents, h, w, C, "a photo of ball", clip_skip - 1);
        lora_set set = {0};
        CHECK(lora_load(&set, &p.model, adapter, 1.0f, LORA_RUNTIME, false, NULL) == 0, "%s", err_msg());
        want[2] = reference_loss(&p, &ds, latents, h, w, C, NULL, clip_skip - 1);
        want[3] = reference_loss(&p, &ds, latents, h, w, C, "a photo of ball", clip_skip - 1);
        autograd_no_grad_end();
        const char *keys[4] = {"instance_loss_base", "class_loss_base", "instance_loss_adapted", "class_loss_adapted"};
        for (int k = 0; k < 4; k++) {
            double got = json_number(j, keys[k]);
            EXPECT(fabs(got - want[k]) <= LOSS_TOL * fabs(want[k]), "%s: %.9g, the trainer's loss %.9g", keys[k], got,
                   want[k]);
        }
        EXPECT(want[2] != want[0], "the adapter changes nothing: a useless check");
        EXPECT(json_number(j, "photos") == ds.n_images && json_number(j, "draws") == DRAWS, "%s", out);
        for (int k = 0; k < 2; k++) {
            double change = json_number(j, k ? "class_drift" : "instance_change");
            EXPECT(isfinite(change) && change > 0, "%s", out);
        }
        free(latents), free(pixels);
        lora_set_free(&set);
        dataset_free(&ds);
        pipeline_close(&p);
    }
    cJSON_Delete(j);
    free(out), free(err);
    test_end();
}

// Bad input: exit status 1 (2 for a bad argument) and one line on stderr that names
// the culprit.
static void check_refusal(const char *what, const char *model_yaml, const char *args, int want_status,
                          const char *named) {
    test_begin("eval: %s is a one-line error naming it", what);
    char *out, *err;
    int status = run_eval(config_text(model_yaml), args, &out, &err);
    size_t len = err ? strlen(err) : 0;
    EXPECT(status == want_status && err && strstr(err, named) && len > 0 && !memchr(err, '\n', len - 1) &&
               err[len - 1] == '\n',
           "status %d (want %d), stderr: %s", status, want_status, err ? err : "");
    EXPECT(!out || !*out, "stdout: %s", out);
    free(out), free(err);
    test_end();
}

void suite_eval(void) {
    char folder[1100], single[2300], v_sched[1024];
    snprintf(folder, sizeof folder, "path: %s", repo_path("tests/fixtures/models/tiny-sd"));
    check_losses("diffusers folder, epsilon", folder, repo_path("tests/fixtures/models/tiny-sd"), NULL, NULL, 1);

    // The same model as one file with its configs beside, trained for v-prediction.
    snprintf(v_sched, sizeof v_sched, "%s", scratch_path("v-scheduler.json"));
    char *sched = NULL;
    CHECK(read_text_file(repo_path("tests/fixtures/models/tiny-sd/scheduler/scheduler_config.json"), &sched, NULL) == 0,
          "%s", err_msg());
    char *brace = strrchr(sched, '}');
    CHECK(brace, "scheduler_config.json without a closing brace");
    *brace = '\0';
    char *text = xmalloc(strlen(sched) + 64);
    sprintf(text, "%s, \"prediction_type\": \"v_prediction\"}\n", sched);
    write_whole(v_sched, text, strlen(text));
    free(sched), free(text);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", repo_path("tests/fixtures/models/tiny-sd"));
    snprintf(single, sizeof single, "path: %s, config_dir: %s, scheduler_config: %s, clip_skip: 2",
             repo_path("tests/fixtures/models/tiny-sd.safetensors"), dir, v_sched);
    check_losses("single file with model.config_dir, v-prediction, clip_skip 2", single,
                 repo_path("tests/fixtures/models/tiny-sd.safetensors"), dir, v_sched, 2);

    char args[2048];
    const char *bad = scratch_path("not-an-adapter.safetensors");
    write_whole(bad, "not an adapter", 14);
    snprintf(args, sizeof args, "--adapter '%s'", bad);
    check_refusal("an adapter file that is not one", folder, args, 1, bad);
    snprintf(args, sizeof args, "--adapter '%s'", scratch_path("missing.safetensors"));
    check_refusal("a missing adapter file", folder, args, 1, scratch_path("missing.safetensors"));
    char missing_sched[1200];
    snprintf(missing_sched, sizeof missing_sched, "%s, scheduler_config: /nonexistent/scheduler.json", folder);
    check_refusal("a missing scheduler config", missing_sched, "--adapter x", 1, "/nonexistent/scheduler.json");
    snprintf(args, sizeof args, "--adapter x %s", "model.path=/nonexistent/model");
    check_refusal("a missing model", folder, args, 1, "/nonexistent/model");
    check_refusal("a missing run config", folder, "--adapter x --config /nonexistent/run.yaml", 1,
                  "/nonexistent/run.yaml");
    if (!backend_available(DEV_CUDA)) {
        snprintf(args, sizeof args, "--adapter x model.device=cuda");
        check_refusal("model.device cuda without a CUDA device", folder, args, 1, "model.device");
    }
}
