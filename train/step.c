#include "train/step.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "kernels/backend.h"
#include "kernels/ops.h"

float min_snr_weight(const noise_schedule *ns, int t, float gamma) {
    if (gamma <= 0) return 1.0f;
    // compute_snr: (sqrt(acp) / sqrt(1 - acp))^2 on float32 tensors.
    float acp = (float)ns->alphas_cumprod[t];
    float alpha = sqrtf(acp), sigma = sqrtf(1.0f - acp);
    float ratio = alpha / sigma, snr = ratio * ratio;
    float clipped = fminf(snr, gamma);
    return ns->prediction == PRED_V ? clipped / (snr + 1.0f) : clipped / snr;
}

static tensor *ids_tensor(const int32_t *ids, int rows, int len, device dev) {
    tensor *t = tensor_new(DT_I32, dev, SHAPE(rows, len));
    backend_for(dev)->upload(tensor_data(t), ids, (size_t)rows * len * sizeof *ids);
    return t;
}

static float scalar_value(const tensor *t) {
    float v;
    tensor_copy_to_f32(t, &v, 1);
    return v;
}

void denoising_prediction(tensor **pred, tensor **target, sd_model *m, const noise_schedule *ns,
                          const train_batch *b) {
    const device dev = m->params.dev;
    const int B = b->batch, C = m->unet_cfg.in_channels;
    const size_t per = (size_t)b->height * b->width * C, n = per * B;
    const int len = m->clip_cfg.max_position_embeddings;

    float *noisy = xmalloc(n * sizeof *noisy), *y = xmalloc(n * sizeof *y), *t = xmalloc((size_t)B * sizeof *t);
    noise_schedule_add_noise(ns, noisy, b->latents, b->noise, b->timesteps, B, per);
    if (ns->prediction == PRED_V) noise_schedule_velocity(ns, y, b->latents, b->noise, b->timesteps, B, per);
    else memcpy(y, b->noise, n * sizeof *y);
    for (int i = 0; i < B; i++) t[i] = (float)b->timesteps[i];
    tensor *x = tensor_from_f32(DT_F32, dev, SHAPE(B, b->height, b->width, C), noisy);
    tensor *tt = tensor_from_f32(DT_F32, dev, SHAPE(B), t);
    *target = tensor_from_f32(DT_F32, dev, SHAPE(B, b->height, b->width, C), y);
    free(noisy), free(y), free(t);

    tensor *ctx;
    if (b->context) {
        ctx = tensor_retain(b->context);
    } else {
        tensor *ids = ids_tensor(b->ids, B, len, dev);
        ctx = clip_encode(&m->text_encoder, ids, b->clip_skip);
        tensor_free(ids);
    }
    *pred = unet_forward(&m->unet, x, tt, ctx);
    if ((*pred)->dtype != DT_F32) *pred = nn_replace(*pred, op_cast(*pred, DT_F32));  // losses in f32
    tensor_free(ctx), tensor_free(tt), tensor_free(x);
}

tensor *dreambooth_loss(sd_model *m, const noise_schedule *ns, const train_batch *b,
                        const loss_config *lc, loss_parts *parts) {
    const device dev = m->params.dev;
    const int B = b->batch, n_inst = b->n_instance;
    CHECK(n_inst >= 1 && n_inst <= B, "dreambooth_loss: %d instance rows of %d", n_inst, B);
    float *w = xmalloc((size_t)n_inst * sizeof *w);
    for (int i = 0; i < n_inst; i++) w[i] = min_snr_weight(ns, b->timesteps[i], lc->snr_gamma);
    tensor *pred, *y;
    denoising_prediction(&pred, &y, m, ns, b);

    tensor *weights = lc->snr_gamma > 0 ? tensor_from_f32(DT_F32, dev, SHAPE(n_inst), w) : NULL;
    free(w);
    tensor *pi = op_slice(pred, 0, 0, n_inst), *yi = op_slice(y, 0, 0, n_inst);
    tensor *loss = op_mse_loss(pi, yi, weights);
    float inst = scalar_value(loss), prior = 0;
    if (n_inst < B) {
        tensor *pc = op_slice(pred, 0, n_inst, B), *yc = op_slice(y, 0, n_inst, B);
        tensor *lp = op_mse_loss(pc, yc, NULL);
        prior = scalar_value(lp);
        lp = nn_replace(lp, op_scale(lp, lc->prior_loss_weight));
        loss = nn_replace(loss, op_add(loss, lp));
        tensor_free(lp), tensor_free(pc), tensor_free(yc);
    }
    tensor_free(pi), tensor_free(yi), tensor_free(weights), tensor_free(pred), tensor_free(y);
    if (parts) *parts = (loss_parts){.loss = scalar_value(loss), .instance = inst, .prior = prior};
    return loss;
}
