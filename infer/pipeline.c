#include "infer/pipeline.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/check.h"
#include "core/files.h"
#include "core/sha256.h"
#include "core/log.h"
#include "kernels/backend.h"
#include "kernels/ops.h"

// --- opening ----------------------------------------------------------------------------------

// Prompts are padded to the tokenizer's model_max_length, and the text encoder has a
// position for each token: a tokenizer that pads further than that is refused here,
// naming its folder, instead of stopping the first render.
static int check_prompt_length(const pipeline *p, const char *tokenizer_dir) {
    int len = clip_tokenizer_max_length(p->tokenizer), positions = p->model.clip_cfg.max_position_embeddings;
    if (len <= positions) return 0;
    err_set("%s: model_max_length %d is more than the text encoder's max_position_embeddings %d", tokenizer_dir, len,
            positions);
    return -1;
}

int pipeline_open(pipeline *p, const char *model_path, const char *tokenizer_dir,
                  const char *scheduler_config, const sd_load_options *opt) {
    *p = (pipeline){0};
    snprintf(p->model_path, sizeof p->model_path, "%s", model_path);
    char tok_buf[PATH_MAX + 32], sched_buf[PATH_MAX + 64];
    bool folder = is_dir(model_path);
    if (!tokenizer_dir) {
        if (folder) snprintf(tok_buf, sizeof tok_buf, "%s/tokenizer", model_path);
        else path_beside_program(tok_buf, sizeof tok_buf, "clip-tokenizer");
        tokenizer_dir = tok_buf;
    }
    if (!scheduler_config) {
        if (folder) snprintf(sched_buf, sizeof sched_buf, "%s/scheduler/scheduler_config.json", model_path);
        else path_beside_program(sched_buf, sizeof sched_buf, "sd15_configs/scheduler.json");
        scheduler_config = sched_buf;
    }
    p->tokenizer = clip_tokenizer_load(tokenizer_dir);
    if (!p->tokenizer || noise_schedule_load(&p->schedule, scheduler_config) ||
        sd_model_load(&p->model, model_path, opt) || check_prompt_length(p, tokenizer_dir)) {
        // One way out: what did open is closed, and *p is left zeroed.
        pipeline_close(p);
        return -1;
    }
    return 0;
}

void pipeline_close(pipeline *p) {
    sd_model_free(&p->model);
    noise_schedule_free(&p->schedule);
    clip_tokenizer_free(p->tokenizer);
    *p = (pipeline){0};
}

void render_params_default(render_params *rp, const pipeline *p) {
    *rp = (render_params){.prompt = "", .width = 512, .height = 512, .steps = 20, .cfg_scale = 7.5f,
                          .batch = 1, .sampler = sampler_default(&p->schedule)};
}

// --- pieces -------------------------------------------------------------------------------------

tensor *pipeline_encode_prompt(pipeline *p, const char *prompt, int n, int clip_skip) {
    int len = clip_tokenizer_max_length(p->tokenizer);
    int32_t *ids = xmalloc((size_t)n * len * sizeof *ids);
    clip_tokenize_padded(p->tokenizer, prompt, ids, len);
    for (int i = 1; i < n; i++) memcpy(ids + (size_t)i * len, ids, (size_t)len * sizeof *ids);
    tensor *t = tensor_new(DT_I32, p->model.params.dev, SHAPE(n, len));
    backend_for(t->dev)->upload(tensor_data(t), ids, (size_t)n * len * sizeof *ids);
    free(ids);
    tensor *emb = clip_encode(&p->model.text_encoder, t, clip_skip);
    tensor_free(t);
    return emb;
}

static tensor *host_to_device(const float *x, device dev, int ndim, const int64_t *shape) {
    return tensor_from_f32(DT_F32, dev, ndim, shape, x);
}

static void progress(const pipeline *p, int done, int total, double started) {
    if (!p->show_progress) return;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double elapsed = now.tv_sec + now.tv_nsec * 1e-9 - started;
    double rate = done > 0 ? done / elapsed : 0;
    char bar[21];
    int filled = total ? 20 * done / total : 20;
    for (int i = 0; i < 20; i++) bar[i] = i < filled ? '#' : '.';
    bar[20] = '\0';
    fprintf(stderr, "\r[%s] %d/%d  %.2f it/s  ETA %.0fs ", bar, done, total, rate,
            rate > 0 ? (total - done) / rate : 0.0);
    if (done == total) fputc('\n', stderr);
    fflush(stderr);
}

static double seconds_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

// --- rendering ----------------------------------------------------------------------------------

static int check_params(const pipeline *p, const render_params *rp) {
    int f = 1 << (p->model.vae_cfg.n_blocks - 1);
    if (rp->width <= 0 || rp->height <= 0 || rp->width % f || rp->height % f) {
        err_set("size %dx%d: width and height must be positive multiples of %d for this model",
                rp->width, rp->height, f);
        return -1;
    }
    if (rp->steps < 1 || rp->batch < 1) {
        err_set("steps (%d) and batch (%d) must be at least 1", rp->steps, rp->batch);
        return -1;
    }
    if (rp->clip_skip < 0 || rp->clip_skip >= p->model.clip_cfg.num_hidden_layers) {
        err_set("clip skip %d: the text encoder has %d layers", rp->clip_skip,
                p->model.clip_cfg.num_hidden_layers);
        return -1;
    }
    return 0;
}

int pipeline_render(pipeline *p, const render_params *rp, const float *initial_latents,
                    float *final_latents, float **images) {
    *images = NULL;
    if (check_params(p, rp)) return -1;
    const device dev = p->model.params.dev;
    const int B = rp->batch, C = p->model.unet_cfg.in_channels;
    const int vae_f = 1 << (p->model.vae_cfg.n_blocks - 1);
    const int64_t h = rp->height / vae_f, w = rp->width / vae_f;
    const size_t per_image = (size_t)h * w * C, n = per_image * B;
    const bool cfg = rp->cfg_scale > 1.0f;
    autograd_no_grad_begin();

    // Context: [uncond x B, cond x B] as diffusers concatenates them.
    tensor *cond = pipeline_encode_prompt(p, rp->prompt, B, rp->clip_skip), *context = cond;
    if (cfg) {
        tensor *uncond = pipeline_encode_prompt(p, rp->negative_prompt ? rp->negative_prompt : "", B,
                                                rp->clip_skip);
        context = op_concat(2, (tensor *[]){uncond, cond}, 0);
        tensor_free(uncond);
        tensor_free(cond);
    }

    sampler *s = sampler_new(rp->sampler, &p->schedule, rp->steps);
    if (!s) {
        tensor_free(context);
        autograd_no_grad_end();
        return -1;
    }
    // Image i draws from stream seed + i, so one image of a batch renders again alone
    // with its own seed (as A1111 numbers them).
    rng_stream *rng = xmalloc((size_t)B * sizeof *rng);
    float *x = xmalloc(n * sizeof *x), *noise = xmalloc(n * sizeof *noise);
    double sigma0 = sampler_init_noise_sigma(s);
    for (int b = 0; b < B; b++) {
        rng[b] = (rng_stream){.seed = rp->seed + (uint64_t)b};
        rng_fill_normal(&rng[b], x + b * per_image, per_image);
    }
    if (initial_latents) memcpy(x, initial_latents, n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = (float)(x[i] * sigma0);

    const int batch_in = cfg ? 2 * B : B, total = sampler_num_steps(s);
    float *in = xmalloc(n * (cfg ? 2 : 1) * sizeof *in), *out = xmalloc(n * (cfg ? 2 : 1) * sizeof *out);
    float *timesteps = xmalloc((size_t)batch_in * sizeof *timesteps);
    double started = seconds_now();
    for (int i = 0; i < total; i++) {
        float scale = (float)sampler_input_scale(s, i);
        for (size_t k = 0; k < n; k++) in[k] = x[k] * scale;
        if (cfg) memcpy(in + n, in, n * sizeof *in);
        for (int b = 0; b < batch_in; b++) timesteps[b] = (float)sampler_timestep(s, i);
        tensor *xt = host_to_device(in, dev, SHAPE(batch_in, h, w, C));
        tensor *tt = host_to_device(timesteps, dev, SHAPE(batch_in));
        tensor *eps = unet_forward(&p->model.unet, xt, tt, context);
        tensor_copy_to_f32(eps, out, n * (cfg ? 2 : 1));
        tensor_free(eps), tensor_free(xt), tensor_free(tt);
        if (cfg)  // uncond + scale * (cond - uncond)
            for (size_t k = 0; k < n; k++) out[k] = out[k] + rp->cfg_scale * (out[n + k] - out[k]);
        const float *step_noise = NULL;
        if (sampler_needs_noise(s)) {
            for (int b = 0; b < B; b++) rng_fill_normal(&rng[b], noise + b * per_image, per_image);
            step_noise = noise;
        }
        sampler_step(s, i, out, x, n, step_noise);
        progress(p, i + 1, total, started);
    }
    free(timesteps), free(in), free(out), free(noise), free(rng);
    sampler_free(s);
    tensor_free(context);
    if (final_latents) memcpy(final_latents, x, n * sizeof *x);

    // The VAE decodes unscaled latents.
    float inv = 1.0f / p->model.vae_cfg.scaling_factor;
    for (size_t k = 0; k < n; k++) x[k] *= inv;
    tensor *z = host_to_device(x, dev, SHAPE(B, h, w, C));
    tensor *img = vae_decode(&p->model.vae, z);
    tensor_free(z);
    free(x);
    size_t pixels = (size_t)tensor_numel(img);
    *images = xmalloc(pixels * sizeof(float));
    tensor_copy_to_f32(img, *images, pixels);
    tensor_free(img);
    autograd_no_grad_end();
    return 0;
}

char *pipeline_a1111_parameters(const pipeline *p, const render_params *rp, uint64_t seed,
                                const char *model_hash, const char *extra) {
    const char *name = strrchr(p->model_path, '/');
    name = name && name[1] ? name + 1 : p->model_path;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    fputs(rp->prompt, f);
    if (rp->negative_prompt && *rp->negative_prompt) fprintf(f, "\nNegative prompt: %s", rp->negative_prompt);
    fprintf(f, "\nSteps: %d, Sampler: %s, CFG scale: %g, Seed: %llu, Size: %dx%d", rp->steps,
            sampler_a1111_name(rp->sampler), rp->cfg_scale, (unsigned long long)seed, rp->width,
            rp->height);
    if (model_hash) fprintf(f, ", Model hash: %s", model_hash);
    fprintf(f, ", Model: %s", name);
    // A1111 counts clip skip from 1 (the last layer); diffusers, and we, from 0.
    if (rp->clip_skip) fprintf(f, ", Clip skip: %d", rp->clip_skip + 1);
    if (extra && *extra) fprintf(f, ", %s", extra);
    fputs(", Version: sdft", f);
    fclose(f);
    return text;
}

int pipeline_model_hash(const char *model, char out[11]) {
    char path[4096];
    snprintf(path, sizeof path, "%s", model);
    if (is_dir(model)) {
        snprintf(path, sizeof path, "%s/unet/diffusion_pytorch_model.safetensors", model);
        struct stat s;
        if (stat(path, &s) != 0)
            snprintf(path, sizeof path, "%s/unet/diffusion_pytorch_model.fp16.safetensors", model);
    }
    uint8_t h[32];
    char hex[65];
    if (sha256_file(path, h)) return -1;
    sha256_hex(h, hex);
    memcpy(out, hex, 10);
    out[10] = '\0';
    return 0;
}
