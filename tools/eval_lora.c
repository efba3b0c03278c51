// sdft-eval: does an adapter learn the subject and keep the class? For a run config
// and an adapter file, on noise held out from training (a seed of its own), with the
// model loaded as the config says (device, dtype, config_dir, clip_skip, ...):
//   instance_loss    the trainer's denoising loss (train/step.h: the target is the
//                    noise, or the velocity for a v-prediction model; no Min-SNR
//                    weight) on the config's photos with their training captions, for
//                    the base model and with the adapter (lower after training: it
//                    learned the subject)
//   class_loss       the same on the same photos with the class prompt
//   class_drift      relative L2 change of the UNet's prediction under the class
//                    prompt (prior preservation should keep it small)
//   instance_change  the same under the captions
// The draws: photos in file-name order; draw d of a photo takes its noise [h, w, C],
// then its timestep (rng_below(num_train_timesteps)), from one Philox stream {seed};
// every pass (base and adapted, captions and class prompt) repeats the same draws. A
// photo's latents are its VAE mean (center crop at data.resolution) times the VAE's
// scaling factor.
//
//   build/sdft-eval --config FILE --adapter FILE [--draws N] [--seed N] [section.key=value ...]
// Prints one JSON line.
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/args.h"
#include "core/check.h"
#include "data/dataset.h"
#include "data/image_io.h"
#include "data/transform.h"
#include "infer/lora.h"
#include "kernels/ops.h"
#include "train/run_config.h"
#include "train/step.h"

#define DEFAULT_SEED 0xe7a1  // no training stream uses it

// The photos' latents, and the draws each pass repeats.
typedef struct {
    int n_photos, draws, h, w, C;
    size_t per;      // h * w * C
    float *latents;  // [n_photos, h, w, C]
    uint64_t seed;
} eval_set;

// A pass's results: the mean loss and the predictions [n_photos, draws, h, w, C].
typedef struct {
    double loss;
    float *pred;
} eval_pass;

static int photo_latents(eval_set *e, pipeline *p, const dataset *ds, int size) {
    float *pixels = xmalloc((size_t)size * size * 3 * sizeof *pixels);
    transform_options to = {.size = size, .center_crop = true};
    int rc = 0;
    for (int i = 0; i < ds->n_images && rc == 0; i++) {
        image_u8 img;
        rc = image_load(ds->images[i].path, &img);
        if (rc == 0) {
            rc = image_transform(&img, &to, NULL, pixels, NULL);
            image_free(&img);
            if (rc) err_set("%s: %s", ds->images[i].path, err_msg());
        }
        if (rc) break;
        tensor *x = tensor_from_f32(DT_F32, p->model.params.dev, SHAPE(1, size, size, 3), pixels), *mu, *lv;
        vae_encode(&p->model.vae, x, &mu, &lv);
        if (i == 0) {
            e->h = (int)mu->shape[1], e->w = (int)mu->shape[2], e->C = (int)mu->shape[3];
            e->per = (size_t)e->h * e->w * e->C;
            e->latents = xmalloc(e->per * ds->n_images * sizeof *e->latents);
        }
        float *z = e->latents + i * e->per;
        tensor_copy_to_f32(mu, z, e->per);
        for (size_t k = 0; k < e->per; k++) z[k] *= p->model.vae_cfg.scaling_factor;
        tensor_free(x), tensor_free(mu), tensor_free(lv);
    }
    free(pixels);
    return rc;
}

// Every photo's draws through the trainer's loss, photo i with prompts[i] (or with
// class_prompt when it is not NULL), the draws of a photo as one batch.
static eval_pass run_pass(pipeline *p, const eval_set *e, const dataset *ds, const char *class_prompt,
                          int clip_skip) {
    const int D = e->draws;
    eval_pass out = {.pred = xmalloc((size_t)e->n_photos * D * e->per * sizeof(float))};
    float *latents = xmalloc(D * e->per * sizeof *latents), *noise = xmalloc(D * e->per * sizeof *noise);
    int *timesteps = xmalloc((size_t)D * sizeof *timesteps);
    rng_stream rng = {.seed = e->seed};
    for (int i = 0; i < e->n_photos; i++) {
        for (int d = 0; d < D; d++) {
            memcpy(latents + d * e->per, e->latents + i * e->per, e->per * sizeof *latents);
            rng_fill_normal(&rng, noise + d * e->per, e->per);
            timesteps[d] = (int)rng_below(&rng, (uint32_t)p->schedule.num_train_timesteps);
        }
        tensor *ctx = pipeline_encode_prompt(p, class_prompt ? class_prompt : ds->images[i].caption, D, clip_skip);
        train_batch b = {.batch = D, .n_instance = D, .height = e->h, .width = e->w, .latents = latents,
                         .noise = noise, .timesteps = timesteps, .clip_skip = clip_skip, .context = ctx};
        tensor *pred, *target;
        denoising_prediction(&pred, &target, &p->model, &p->schedule, &b);
        tensor *loss = op_mse_loss(pred, target, NULL);
        float value;
        tensor_copy_to_f32(loss, &value, 1);
        out.loss += (double)value / e->n_photos;  // every photo has D draws: the mean of the means
        tensor_copy_to_f32(pred, out.pred + (size_t)i * D * e->per, D * e->per);
        tensor_free(loss), tensor_free(pred), tensor_free(target), tensor_free(ctx);
    }
    free(latents), free(noise), free(timesteps);
    return out;
}

static double rel_change(const float *a, const float *b, size_t n) {
    double d = 0, r = 0;
    for (size_t k = 0; k < n; k++) d += ((double)a[k] - b[k]) * ((double)a[k] - b[k]), r += (double)b[k] * b[k];
    return sqrt(d / r);
}

static void usage(FILE *f) {
    fputs("usage: sdft-eval --config FILE --adapter FILE [--draws N] [--seed N] [section.key=value ...]\n", f);
}

int main(int argc, char **argv) {
    const char *config = NULL, *adapter = NULL;
    eval_set e = {.draws = 4, .seed = DEFAULT_SEED};
    static const struct option longopts[] = {{"config", required_argument, 0, 'c'},
                                              {"adapter", required_argument, 0, 'a'},
                                              {"draws", required_argument, 0, 'd'},
                                              {"seed", required_argument, 0, 's'},
                                              {"help", no_argument, 0, 'h'},
                                              {0, 0, 0, 0}};
    for (int c; (c = getopt_long(argc, argv, "", longopts, NULL)) != -1;) {
        int64_t seed;
        switch (c) {
        case 'c': config = optarg; break;
        case 'a': adapter = optarg; break;
        case 'h': usage(stdout); return 0;
        case 'd':
            if (arg_int(&e.draws, "--draws", optarg, 1, 1000)) goto bad_number;
            break;
        case 's':
            if (arg_field(&seed, "--seed", optarg, run_config_field("train.seed"))) goto bad_number;
            e.seed = (uint64_t)seed;
            break;
        default: usage(stderr); return 2;
        }
        continue;
    bad_number:
        fprintf(stderr, "sdft-eval: %s\n", err_msg());
        return 2;
    }
    if (!config || !adapter) {
        usage(stderr);
        return 2;
    }
    run_config cfg;
    pipeline p = {0};
    dataset ds = {0};
    dataset_report rep = {0};
    lora_set set = {0};
    eval_pass base_inst = {0}, base_cls = {0}, tuned_inst = {0}, tuned_cls = {0};
    char *instance = NULL, *cls = NULL;
    int rc = run_config_read(&cfg, config, argc - optind, argv + optind);
    if (rc == 0 && !cfg.data.instance_dir) {
        err_set("%s: data.instance_dir is not set: the folder of the subject's photos", config);
        rc = -1;
    }
    if (rc == 0) rc = run_config_open_pipeline(&p, &cfg);
    if (rc == 0) {
        // The training captions: the expanded instance prompt, or a photo's NAME.txt.
        instance = run_config_expand(&cfg, cfg.data.instance_prompt);
        cls = run_config_expand(&cfg, cfg.prior.class_prompt);
        rc = dataset_open(&ds, cfg.data.instance_dir, instance, 1, cfg.data.strict, &rep);
        for (int i = 0; i < rep.n_notes; i++)
            fprintf(stderr, "sdft-eval: %s: %s\n", rep.notes[i].level == NOTE_ERROR ? "error" : "warning",
                    rep.notes[i].message);
    }
    autograd_no_grad_begin();
    e.n_photos = ds.n_images;
    if (rc == 0) rc = photo_latents(&e, &p, &ds, cfg.data.resolution);
    const int clip_skip = run_config_clip_skip(&cfg);
    if (rc == 0) {
        base_inst = run_pass(&p, &e, &ds, NULL, clip_skip);
        base_cls = run_pass(&p, &e, &ds, cls, clip_skip);
        rc = lora_load(&set, &p.model, adapter, 1.0f, LORA_RUNTIME, false, NULL);
    }
    if (rc == 0) {
        tuned_inst = run_pass(&p, &e, &ds, NULL, clip_skip);
        tuned_cls = run_pass(&p, &e, &ds, cls, clip_skip);
        size_t n = (size_t)e.n_photos * e.draws * e.per;
        printf("{\"photos\": %d, \"draws\": %d, \"instance_loss_base\": %.9g, \"instance_loss_adapted\": %.9g, "
               "\"class_loss_base\": %.9g, \"class_loss_adapted\": %.9g, \"class_drift\": %.9g, "
               "\"instance_change\": %.9g}\n",
               e.n_photos, e.draws, base_inst.loss, tuned_inst.loss, base_cls.loss, tuned_cls.loss,
               rel_change(tuned_cls.pred, base_cls.pred, n), rel_change(tuned_inst.pred, base_inst.pred, n));
    }
    autograd_no_grad_end();
    if (rc) fprintf(stderr, "sdft-eval: %s\n", err_msg());
    free(base_inst.pred), free(base_cls.pred), free(tuned_inst.pred), free(tuned_cls.pred), free(e.latents);
    free(instance), free(cls);
    lora_set_free(&set);  // before the model it is attached to
    dataset_free(&ds);
    dataset_report_free(&rep);
    pipeline_close(&p);
    config_free(&run_config_schema, &cfg);
    return rc ? 1 : 0;
}
