// sdft-eval: does an adapter learn the subject and keep the class? For a run config
// and an adapter file, on held-out noise (a seed of its own, not the training's):
//   instance_loss  mean denoising MSE on the config's photos with the instance prompt,
//                  base model vs base + adapter (lower after training: it learned)
//   class_drift    relative L2 change of the UNet's prediction on the class prompt
//                  (the prior preservation should keep it small)
//
//   build/sdft-eval --config FILE --adapter FILE [--draws N] [section.key=value ...]
// Prints one JSON line.
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "data/dataset.h"
#include "data/image_io.h"
#include "data/transform.h"
#include "infer/lora.h"
#include "infer/pipeline.h"
#include "kernels/ops.h"
#include "train/run_config.h"

#define EVAL_SEED 0xe7a1u  // held-out noise: no training stream uses this seed

// The UNet's predictions for each photo x draw: noisy latents from the photo, its
// noise and timestep, with the prompt's embedding. out[photo][draw] stacked.
static float *predictions(pipeline *p, const float *latents, int n_photos, size_t per, const char *prompt,
                          int draws, int h, int w, float *targets, double *mse) {
    tensor *ctx = pipeline_encode_prompt(p, prompt, 1, 0);
    float *out = xmalloc((size_t)n_photos * draws * per * sizeof *out);
    float *noisy = xmalloc(per * sizeof *noisy), *noise = xmalloc(per * sizeof *noise);
    rng_stream rng = {.seed = EVAL_SEED};
    double sum = 0;
    for (int i = 0; i < n_photos; i++)
        for (int d = 0; d < draws; d++) {
            rng_fill_normal(&rng, noise, per);
            int t = (int)rng_below(&rng, (uint32_t)p->schedule.num_train_timesteps);
            noise_schedule_add_noise(&p->schedule, noisy, latents + i * per, noise, &t, 1, per);
            tensor *x = tensor_from_f32(DT_F32, p->model.params.dev, SHAPE(1, h, w, 4), noisy);
            tensor *tt = tensor_from_f32(DT_F32, p->model.params.dev, SHAPE(1), (const float[]){(float)t});
            tensor *y = unet_forward(&p->model.unet, x, tt, ctx);
            float *o = out + ((size_t)i * draws + d) * per;
            tensor_copy_to_f32(y, o, per);
            for (size_t k = 0; k < per; k++) sum += ((double)o[k] - noise[k]) * ((double)o[k] - noise[k]);
            if (targets) memcpy(targets + ((size_t)i * draws + d) * per, noise, per * sizeof *noise);
            tensor_free(x), tensor_free(tt), tensor_free(y);
        }
    *mse = sum / ((double)n_photos * draws * per);
    free(noisy), free(noise);
    tensor_free(ctx);
    return out;
}

static double rel_change(const float *a, const float *b, size_t n) {
    double d = 0, r = 0;
    for (size_t k = 0; k < n; k++) d += ((double)a[k] - b[k]) * ((double)a[k] - b[k]), r += (double)b[k] * b[k];
    return sqrt(d / r);
}

int main(int argc, char **argv) {
    const char *config = NULL, *adapter = NULL;
    int draws = 4;
    static const struct option longopts[] = {{"config", required_argument, 0, 'c'},
                                              {"adapter", required_argument, 0, 'a'},
                                              {"draws", required_argument, 0, 'd'},
                                              {0, 0, 0, 0}};
    for (int c; (c = getopt_long(argc, argv, "", longopts, NULL)) != -1;) {
        if (c == 'c') config = optarg;
        else if (c == 'a') adapter = optarg;
        else if (c == 'd') draws = atoi(optarg);
        else return 2;
    }
    if (!config || !adapter || draws < 1) {
        fprintf(stderr, "usage: sdft-eval --config FILE --adapter FILE [--draws N] [key=value ...]\n");
        return 2;
    }
    run_config cfg;
    pipeline p;
    sd_load_options lo = {.dt = DT_F32, .dev = DEV_CPU};
    if (run_config_read(&cfg, config, argc - optind, argv + optind) ||
        pipeline_open(&p, cfg.model.path, cfg.model.tokenizer, cfg.model.scheduler_config, &lo)) {
        fprintf(stderr, "sdft-eval: %s\n", err_msg());
        return 1;
    }
    dataset ds;
    dataset_report rep = {0};
    if (dataset_open(&ds, cfg.data.instance_dir, cfg.data.instance_prompt, 1, false, &rep)) {
        fprintf(stderr, "sdft-eval: %s\n", err_msg());
        return 1;
    }
    dataset_report_free(&rep);
    autograd_no_grad_begin();
    // The photos' latents (distribution means, scaled), center-cropped.
    const int s = cfg.data.resolution, f = 1 << (p.model.vae_cfg.n_blocks - 1), h = s / f, w = s / f;
    const size_t per = (size_t)h * w * 4;
    float *latents = xmalloc(per * ds.n_images * sizeof *latents), *pixels = xmalloc((size_t)s * s * 3 * sizeof *pixels);
    transform_options to = {.size = s, .center_crop = true};
    for (int i = 0; i < ds.n_images; i++) {
        image_u8 img;
        CHECK(image_load(ds.images[i].path, &img) == 0 && image_transform(&img, &to, NULL, pixels, NULL) == 0, "%s",
              err_msg());
        image_free(&img);
        tensor *x = tensor_from_f32(DT_F32, DEV_CPU, SHAPE(1, s, s, 3), pixels), *mu, *lv;
        vae_encode(&p.model.vae, x, &mu, &lv);
        tensor_copy_to_f32(mu, latents + i * per, per);
        for (size_t k = 0; k < per; k++) latents[i * per + k] *= p.model.vae_cfg.scaling_factor;
        tensor_free(x), tensor_free(mu), tensor_free(lv);
    }
    char *instance = run_config_expand(&cfg, cfg.data.instance_prompt), *cls = run_config_expand(&cfg, cfg.prior.class_prompt);
    double base_mse, class_mse, tuned_mse, tuned_class_mse;
    float *base_inst = predictions(&p, latents, ds.n_images, per, instance, draws, h, w, NULL, &base_mse);
    float *base_cls = predictions(&p, latents, ds.n_images, per, cls, draws, h, w, NULL, &class_mse);
    lora_set set = {0};
    if (lora_load(&set, &p.model, adapter, 1.0f, LORA_RUNTIME, false, NULL)) {
        fprintf(stderr, "sdft-eval: %s\n", err_msg());
        return 1;
    }
    float *tuned_inst = predictions(&p, latents, ds.n_images, per, instance, draws, h, w, NULL, &tuned_mse);
    float *tuned_cls = predictions(&p, latents, ds.n_images, per, cls, draws, h, w, NULL, &tuned_class_mse);
    size_t n = (size_t)ds.n_images * draws * per;
    printf("{\"photos\": %d, \"draws\": %d, \"instance_loss_base\": %.6g, \"instance_loss_adapted\": %.6g, "
           "\"class_loss_base\": %.6g, \"class_loss_adapted\": %.6g, \"class_drift\": %.6g, \"instance_change\": %.6g}\n",
           ds.n_images, draws, base_mse, tuned_mse, class_mse, tuned_class_mse, rel_change(tuned_cls, base_cls, n),
           rel_change(tuned_inst, base_inst, n));
    autograd_no_grad_end();
    free(base_inst), free(base_cls), free(tuned_inst), free(tuned_cls), free(latents), free(pixels), free(instance),
        free(cls);
    lora_set_free(&set);
    dataset_free(&ds);
    pipeline_close(&p);
    config_free(&run_config_schema, &cfg);
    return 0;
}
