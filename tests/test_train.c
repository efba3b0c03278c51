// suite_train: the trainer's pieces against diffusers + peft
// (tests/fixtures/train/train.safetensors, tools/golden/train.py, whose docstring is
// the protocol): LR schedules; one DreamBooth-LoRA step with prior preservation and
// Min-SNR (loss within 1e-5, LoRA gradients within 1e-4); 20 AdamW steps with
// cosine_with_restarts (losses within 1e-4); the same step on cuda-emu.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/files.h"
#include "core/png.h"

#include "infer/lora.h"
#include "infer/sd_model.h"
#include "kernels/tensor_file.h"
#include "tests/harness.h"
#include "tests/test.h"
#include "train/adapters.h"
#include "train/lr_schedule.h"
#include "train/optimizer.h"
#include "train/step.h"
#include "train/trainer.h"

#define LOSS_TOL 1e-5
#define GRAD_TOL 1e-4
#define TRACK_TOL 1e-4

static st_file *ref;

static void test_lr_tables(void) {
    static const struct {
        const char *name;
        lr_kind kind;
        double cycles, power;
    } cases[] = {{"constant", LR_CONSTANT, 0.5, 1},           {"constant_with_warmup", LR_CONSTANT_WITH_WARMUP, 0.5, 1},
                 {"linear", LR_LINEAR, 0.5, 1},               {"cosine", LR_COSINE, 0.5, 1},
                 {"cosine_with_restarts", LR_COSINE_WITH_RESTARTS, 3, 1}, {"polynomial", LR_POLYNOMIAL, 0.5, 2}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        test_begin("train: LR schedule %s as diffusers' get_scheduler", cases[c].name);
        char name[64];
        snprintf(name, sizeof name, "lr.%s", cases[c].name);
        int64_t n;
        float *want = fixture_floats(ref, name, &n);
        lr_schedule s = {.kind = cases[c].kind, .base_lr = 1e-4, .warmup_steps = 5, .total_steps = 50,
                         .num_cycles = cases[c].cycles, .power = cases[c].power, .lr_end = 1e-7};
        for (int i = 0; i < n; i++) {
            float got = (float)lr_at(&s, i);
            EXPECT(fabsf(got - want[i]) <= 1e-6f * fabsf(want[i]) + 1e-12f, "step %d: %g, diffusers %g", i, got,
                   want[i]);
        }
        free(want);
        test_end();
    }
}

// The tiny model with the case's adapters set to the fixture's initial values.
typedef struct {
    sd_model model;
    noise_schedule schedule;
    train_adapters adapters;
} trainee;

static int trainee_open(trainee *t, const char *which, bool text_encoder, dtype dt, device dev) {
    sd_load_options opt = {.dt = dt, .dev = dev};
    char path[1024];
    if (sd_model_load(&t->model, repo_path("tests/fixtures/models/tiny-sd"), &opt)) return -1;
    snprintf(path, sizeof path, "%s", repo_path("tests/fixtures/models/tiny-sd/scheduler/scheduler_config.json"));
    CHECK(noise_schedule_load(&t->schedule, path) == 0, "%s", err_msg());
    if (strncmp(which, "v_", 2) == 0) t->schedule.prediction = PRED_V;
    char *unet_t[] = {"to_k", "to_q", "to_v", "to_out.0"}, *te_t[] = {"q_proj", "k_proj", "v_proj", "out_proj"};
    cfg_strings unet_targets = {unet_t, 4}, te_targets = {te_t, 4};
    rng_stream rng = {.seed = 1};
    CHECK(train_adapters_init(&t->adapters, &t->model, &unet_targets, text_encoder ? &te_targets : NULL, 4, 4.0f,
                              &rng) == 0,
          "%s", err_msg());
    for (int i = 0; i < t->adapters.count; i++) {
        char name[512];
        const train_adapter *a = &t->adapters.items[i];
        int64_t n;
        snprintf(name, sizeof name, "%s.init.%s.lora_A.weight", which, a->module);
        float *v = fixture_floats(ref, name, &n);
        tensor_copy_from_f32(a->lora->down, v, (size_t)n);
        free(v);
        snprintf(name, sizeof name, "%s.init.%s.lora_B.weight", which, a->module);
        v = fixture_floats(ref, name, &n);
        tensor_copy_from_f32(a->lora->up, v, (size_t)n);
        free(v);
    }
    return 0;
}

static void trainee_close(trainee *t) {
    train_adapters_free(&t->adapters);
    sd_model_free(&t->model);
    noise_schedule_free(&t->schedule);
}

// Latents of the fixture's pixels with the given VAE noise, times the scaling factor.
static float *encode_latents(trainee *t, const float *pixels, const int64_t *pshape, const float *eps,
                             int64_t *lshape) {
    autograd_no_grad_begin();
    tensor *img = tensor_from_f32(DT_F32, t->model.params.dev, 4, pshape, pixels);
    tensor *mean, *logvar;
    vae_encode(&t->model.vae, img, &mean, &logvar);
    int64_t n = tensor_numel(mean);
    float *mu = xmalloc((size_t)n * sizeof *mu), *lv = xmalloc((size_t)n * sizeof *lv);
    tensor_copy_to_f32(mean, mu, (size_t)n);
    tensor_copy_to_f32(logvar, lv, (size_t)n);
    for (int d = 0; d < 4; d++) lshape[d] = mean->shape[d];
    for (int64_t i = 0; i < n; i++)
        mu[i] = (mu[i] + expf(0.5f * lv[i]) * eps[i]) * t->model.vae_cfg.scaling_factor;
    free(lv);
    tensor_free(mean), tensor_free(logvar), tensor_free(img);
    autograd_no_grad_end();
    return mu;
}

// The step's batch: fixture pixels and ids, the given noise, VAE eps and timesteps.
typedef struct {
    float *latents, *noise;
    int timesteps[2];
    int32_t ids[2 * 77];
    int64_t lshape[4];
} batch_data;

static void batch_load(batch_data *b, trainee *t, const float *pixels, const int64_t *pshape, const char *eps_name,
                       const char *noise_name, const char *t_name, int row) {
    int64_t eshape[4], n;
    float *eps_all = NULL, *noise_all = NULL;
    if (row < 0) {
        eps_all = fixture_nhwc(ref, eps_name, eshape);
        noise_all = fixture_nhwc(ref, noise_name, eshape);
    } else {
        // [20, 2, 4, h, w]: take step `row` and permute it like fixture_nhwc does.
        float *e = fixture_floats(ref, eps_name, &n), *z = fixture_floats(ref, noise_name, &n);
        int64_t per = n / 20, h = 16, w = 16, C = 4;
        eps_all = xmalloc((size_t)per * sizeof(float));
        noise_all = xmalloc((size_t)per * sizeof(float));
        for (int64_t bb = 0; bb < 2; bb++)
            for (int64_t c = 0; c < C; c++)
                for (int64_t y = 0; y < h; y++)
                    for (int64_t x = 0; x < w; x++) {
                        int64_t src = row * per + ((bb * C + c) * h + y) * w + x, dst = ((bb * h + y) * w + x) * C + c;
                        eps_all[dst] = e[src];
                        noise_all[dst] = z[src];
                    }
        free(e), free(z);
    }
    b->latents = encode_latents(t, pixels, pshape, eps_all, b->lshape);
    b->noise = noise_all;
    free(eps_all);
    int32_t *ts = fixture_ints(ref, t_name, &n);
    for (int i = 0; i < 2; i++) b->timesteps[i] = ts[(row < 0 ? 0 : 2 * row) + i];
    free(ts);
    int32_t *ids = fixture_ints(ref, "input_ids", &n);
    memcpy(b->ids, ids, sizeof b->ids);
    free(ids);
}

static train_batch as_train_batch(const batch_data *b) {
    return (train_batch){.batch = 2, .n_instance = 1, .height = (int)b->lshape[1], .width = (int)b->lshape[2],
                         .latents = b->latents, .noise = b->noise, .timesteps = b->timesteps, .ids = b->ids};
}

static const loss_config protocol_loss = {.snr_gamma = 5.0f, .prior_loss_weight = 1.0f};

// One step 0 on the fixture's batch for `which`: the loss, every LoRA gradient as one
// vector (down then up per adapter) and the fixture's gradients in the same order.
typedef struct {
    float loss;
    float *grads, *want;
    int64_t n;
} step0_result;

static step0_result step0(const char *which, bool text_encoder, dtype dt, device dev, bool checkpoint, float dropout) {
    trainee t;
    CHECK(trainee_open(&t, which, text_encoder, dt, dev) == 0, "%s", err_msg());
    t.model.unet.checkpoint = checkpoint;
    int64_t pshape[4];
    float *pixels = fixture_nhwc(ref, "pixel_values", pshape);
    char e[64], z[64], ts[64];
    snprintf(e, sizeof e, "%s.step0.vae_eps", which);
    snprintf(z, sizeof z, "%s.step0.noise", which);
    snprintf(ts, sizeof ts, "%s.step0.timesteps", which);
    batch_data b;
    batch_load(&b, &t, pixels, pshape, e, z, ts, -1);
    train_batch tb = as_train_batch(&b);
    train_adapters_set_dropout(&t.adapters, dropout, 1234, 0);
    loss_parts parts;
    tensor *loss = dreambooth_loss(&t.model, &t.schedule, &tb, &protocol_loss, &parts);
    autograd_backward(loss, NULL);
    step0_result r = {.loss = parts.loss};
    for (int i = 0; i < t.adapters.count; i++)
        r.n += tensor_numel(t.adapters.items[i].lora->down) + tensor_numel(t.adapters.items[i].lora->up);
    r.grads = xcalloc((size_t)r.n, sizeof *r.grads);
    r.want = xcalloc((size_t)r.n, sizeof *r.want);
    int64_t at = 0;
    for (int i = 0; i < t.adapters.count; i++)
        for (int k = 0; k < 2; k++) {
            const train_adapter *a = &t.adapters.items[i];
            tensor *w = k ? a->lora->up : a->lora->down, *g = tensor_grad(w);
            int64_t count = tensor_numel(w), n;
            if (g) tensor_copy_to_f32(g, r.grads + at, (size_t)count);
            char name[512];
            snprintf(name, sizeof name, "%s.step0.grad.%s.lora_%s.weight", which, a->module, k ? "B" : "A");
            float *want = fixture_floats(ref, name, &n);
            CHECK(n == count, "%s: %lld values for %lld", name, (long long)n, (long long)count);
            memcpy(r.want + at, want, (size_t)n * sizeof *want);
            free(want);
            at += count;
        }
    tensor_free(loss);
    free(pixels), free(b.latents), free(b.noise);
    trainee_close(&t);
    return r;
}

static void step0_free(step0_result *r) { free(r->grads), free(r->want); }

static void test_step0(const char *which, bool text_encoder, dtype dt, device dev, bool checkpoint) {
    double loss_tol = dt == DT_F32 ? LOSS_TOL : 5e-2, grad_tol = dt == DT_F32 ? GRAD_TOL : 5e-2;
    test_begin("train: %s step 0 on %s (%s%s): loss within %g and LoRA gradients within %g of diffusers + peft",
               which, device_name(dev), dtype_name(dt), checkpoint ? ", gradient checkpointing" : "", loss_tol,
               grad_tol);
    step0_result r = step0(which, text_encoder, dt, dev, checkpoint, 0);
    char l[64];
    snprintf(l, sizeof l, "%s.step0.loss", which);
    int64_t n;
    float *want = fixture_floats(ref, l, &n);
    double rel = fabs(r.loss - want[0]) / fabs(want[0]);
    EXPECT(rel <= loss_tol, "loss %.8g, diffusers %.8g (relative %.3g)", r.loss, want[0], rel);
    double gerr = rel_error(r.grads, r.want, r.n);
    EXPECT(gerr <= grad_tol, "LoRA gradients: relative error %.3g", gerr);
    free(want);
    test_end();
    if (dev != DEV_CPU) {
        // The bound for the backends against each other: 1e-5 in f32.
        double tol = dt == DT_F32 ? 1e-5 : 5e-2;
        test_begin("train: %s step 0 on %s (%s): loss and LoRA gradients within %g of the CPU step", which,
                   device_name(dev), dtype_name(dt), tol);
        step0_result cpu = step0(which, text_encoder, DT_F32, DEV_CPU, checkpoint, 0);
        double lerr = fabs(r.loss - cpu.loss) / fabs(cpu.loss), cerr = rel_error(r.grads, cpu.grads, r.n);
        EXPECT(lerr <= tol, "loss %.8g, cpu %.8g (relative %.3g)", r.loss, cpu.loss, lerr);
        EXPECT(cerr <= tol, "LoRA gradients: relative error %.3g against the cpu", cerr);
        step0_free(&cpu);
        test_end();
    }
    step0_free(&r);
}

static void test_dropout(void) {
    test_begin("train: LoRA dropout masks repeat in the checkpoint recompute (same gradients) and change the gradients");
    step0_result plain = step0("eps_te", true, DT_F32, DEV_CPU, false, 0.5f);
    step0_result recomputed = step0("eps_te", true, DT_F32, DEV_CPU, true, 0.5f);
    step0_result none = step0("eps_te", true, DT_F32, DEV_CPU, false, 0);
    double same = rel_error(recomputed.grads, plain.grads, plain.n), apart = rel_error(none.grads, plain.grads, plain.n);
    EXPECT(same <= 1e-6, "checkpointing changed the dropout gradients: relative %.3g", same);
    EXPECT(apart >= 0.05, "dropout 0.5 left the gradients almost unchanged: relative %.3g", apart);
    step0_free(&plain), step0_free(&recomputed), step0_free(&none);
    test_end();
}

// The fixture's training protocol on t for `steps` steps: AdamW with cosine_with_restarts
// over 20 steps (the text encoder at half the UNet's rate), clipping at 1, each step's
// batch from the fixture. Each step's loss and gradient norm into losses and norms.
static void run_protocol_steps(trainee *t, int steps, float *losses, double *norms) {
    int n_tensors = 2 * t->adapters.count;
    tensor **params = xmalloc((size_t)n_tensors * sizeof *params);
    bool *te = xmalloc((size_t)n_tensors * sizeof *te);
    int *group = xmalloc((size_t)n_tensors * sizeof *group);
    train_adapters_tensors(&t->adapters, params, te);
    for (int i = 0; i < n_tensors; i++) group[i] = te[i];
    adamw_state opt;
    adamw_init(&opt, n_tensors, params, group);
    lr_schedule unet_lr = {.kind = LR_COSINE_WITH_RESTARTS, .base_lr = 1e-3, .warmup_steps = 3, .total_steps = 20,
                           .num_cycles = 2};
    lr_schedule te_lr = unet_lr;
    te_lr.base_lr = 5e-4;
    adamw_config cfg = {.beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 1e-2f};
    int64_t pshape[4];
    float *pixels = fixture_nhwc(ref, "pixel_values", pshape);
    for (int s = 0; s < steps; s++) {
        batch_data b;
        batch_load(&b, t, pixels, pshape, "eps_te.steps.vae_eps", "eps_te.steps.noise", "eps_te.steps.timesteps", s);
        train_batch tb = as_train_batch(&b);
        loss_parts parts;
        adamw_zero_grad(&opt);
        tensor *loss = dreambooth_loss(&t->model, &t->schedule, &tb, &protocol_loss, &parts);
        autograd_backward(loss, NULL);
        double lr[2] = {lr_at(&unet_lr, s), lr_at(&te_lr, s)};
        norms[s] = adamw_clip_and_step(&opt, &cfg, lr, 1.0);
        losses[s] = parts.loss;
        tensor_free(loss);
        free(b.latents), free(b.noise);
    }
    free(pixels), free(params), free(te), free(group);
    adamw_free(&opt);
}

// Every adapter's down then up values, in adapter order (caller frees); *n values.
static float *adapter_values(const trainee *t, int64_t *n) {
    *n = 0;
    for (int i = 0; i < t->adapters.count; i++)
        *n += tensor_numel(t->adapters.items[i].lora->down) + tensor_numel(t->adapters.items[i].lora->up);
    float *v = xmalloc((size_t)*n * sizeof *v);
    int64_t at = 0;
    for (int i = 0; i < t->adapters.count; i++)
        for (int k = 0; k < 2; k++) {
            const tensor *w = k ? t->adapters.items[i].lora->up : t->adapters.items[i].lora->down;
            tensor_copy_to_f32(w, v + at, (size_t)tensor_numel(w));
            at += tensor_numel(w);
        }
    return v;
}

static void test_twenty_steps(void) {
    test_begin("train: 20 AdamW steps with cosine_with_restarts track diffusers' losses within %g", TRACK_TOL);
    trainee t;
    CHECK(trainee_open(&t, "eps_te", true, DT_F32, DEV_CPU) == 0, "%s", err_msg());
    float losses[20];
    double norms[20];
    run_protocol_steps(&t, 20, losses, norms);
    int64_t n;
    float *want = fixture_floats(ref, "eps_te.steps.loss", &n);
    float *want_norm = fixture_floats(ref, "eps_te.steps.grad_norm", &n);
    double worst = 0, worst_norm = 0;
    for (int s = 0; s < 20; s++) {
        worst = fmax(worst, fabs(losses[s] - want[s]) / fabs(want[s]));
        worst_norm = fmax(worst_norm, fabs(norms[s] - want_norm[s]) / want_norm[s]);
    }
    EXPECT(worst <= TRACK_TOL, "losses: worst relative difference %.3g", worst);
    EXPECT(worst_norm <= TRACK_TOL, "gradient norms: worst relative difference %.3g", worst_norm);
    // The trained adapters themselves.
    double diff = 0, norm2 = 0;
    for (int i = 0; i < t.adapters.count; i++)
        for (int k = 0; k < 2; k++) {
            char name[512];
            snprintf(name, sizeof name, "eps_te.final.%s.lora_%s.weight", t.adapters.items[i].module, k ? "B" : "A");
            float *w = fixture_floats(ref, name, &n), *got = xmalloc((size_t)n * sizeof *got);
            tensor_copy_to_f32(k ? t.adapters.items[i].lora->up : t.adapters.items[i].lora->down, got, (size_t)n);
            for (int64_t j = 0; j < n; j++) diff += ((double)got[j] - w[j]) * ((double)got[j] - w[j]), norm2 += (double)w[j] * w[j];
            free(w), free(got);
        }
    EXPECT(sqrt(diff / norm2) <= TRACK_TOL, "final adapters: relative error %.3g", sqrt(diff / norm2));
    free(want), free(want_norm);
    trainee_close(&t);
    test_end();
}

// A few training steps of the tiny model on every other backend (cuda-emu in make test,
// a GPU too in make test-gpu) against the same steps on the CPU: each step's loss, and
// the trained adapters, within 1e-4 in f32 and 5e-2 in bf16 (bf16 weights and
// activations, f32 adapters, as `device: cuda` trains).
#define BACKEND_STEPS 3
static void test_steps_on_backends(void) {
    device devs[DEV_COUNT];
    int n_devs = harness_backends_to_compare(devs, "train: steps against the CPU's");
    trainee t;
    float cpu_losses[BACKEND_STEPS], losses[BACKEND_STEPS];
    double norms[BACKEND_STEPS];
    int64_t n;
    CHECK(trainee_open(&t, "eps_te", true, DT_F32, DEV_CPU) == 0, "%s", err_msg());
    run_protocol_steps(&t, BACKEND_STEPS, cpu_losses, norms);
    float *cpu_adapters = adapter_values(&t, &n);
    trainee_close(&t);
    const dtype dts[2] = {DT_F32, DT_BF16};
    for (int d = 0; d < n_devs; d++)
        for (int k = 0; k < 2; k++) {
            double tol = dts[k] == DT_F32 ? 1e-4 : 5e-2;
            test_begin("train: %d steps on %s (%s): losses and trained adapters within %g of the CPU's", BACKEND_STEPS,
                       device_name(devs[d]), dtype_name(dts[k]), tol);
            int rc = trainee_open(&t, "eps_te", true, dts[k], devs[d]);
            EXPECT(rc == 0, "%s", err_msg());
            if (rc == 0) {
                run_protocol_steps(&t, BACKEND_STEPS, losses, norms);
                double worst = 0;
                for (int s = 0; s < BACKEND_STEPS; s++)
                    worst = fmax(worst, fabs(losses[s] - cpu_losses[s]) / fabs(cpu_losses[s]));
                int64_t m;
                float *adapters = adapter_values(&t, &m);
                double err = rel_error(adapters, cpu_adapters, n);
                EXPECT(worst <= tol, "losses: worst relative difference %.3g", worst);
                EXPECT(m == n && err <= tol, "trained adapters: relative error %.3g", err);
                free(adapters);
                trainee_close(&t);
            }
            test_end();
        }
    free(cpu_adapters);
}

// tests/fixtures/lora/trained.yaml (the run whose adapters diffusers loaded in make
// golden) on drawn photos, writing to <name>-out in the scratch dir, for `steps` steps
// and with the extra overrides given (up to 4). 0, or -1 with err_msg().
static int read_run_config(run_config *cfg, const char *name, int steps, int n_extra, char *const *extra) {
    char images[1024], program[1024], cmd[4096], tok[1024];
    snprintf(images, sizeof images, "%s", scratch_path("train-photos"));
    path_beside_program(program, sizeof program, "sdft-demo-images");
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && '%s' '%s'", images, program, images);
    CHECK(system(cmd) == 0, "%s failed", cmd);
    path_beside_program(tok, sizeof tok, "clip-tokenizer");
    char set[8][1100];
    snprintf(set[0], sizeof set[0], "model.path=%s", repo_path("tests/fixtures/models/tiny-sd"));
    snprintf(set[1], sizeof set[1], "model.tokenizer=%s", tok);
    snprintf(set[2], sizeof set[2], "data.instance_dir=%s", images);
    snprintf(set[3], sizeof set[3], "output.dir=%s", scratch_path("%s-out", name));
    snprintf(set[4], sizeof set[4], "train.steps=%d", steps);
    CHECK(n_extra <= 3, "read_run_config: %d extra overrides", n_extra);
    char *overrides[8];
    for (int i = 0; i < 5; i++) overrides[i] = set[i];
    for (int i = 0; i < n_extra; i++) overrides[5 + i] = extra[i];
    return run_config_read(cfg, repo_path("tests/fixtures/lora/trained.yaml"), 5 + n_extra, overrides);
}

// Two files hold the same bytes (false when either is missing).
static bool same_bytes(const char *a, const char *b) {
    if (access(a, R_OK) != 0 || access(b, R_OK) != 0) return false;
    size_t na, nb;
    unsigned char *x = read_whole(a, &na), *y = read_whole(b, &nb);
    bool same = na == nb && memcmp(x, y, na) == 0;
    free(x), free(y);
    return same;
}

// metrics.jsonl holds one complete line for each of steps 1..steps, in order; false
// with the first wrong step in *at.
static bool metrics_steps(const char *text, int steps, int *at) {
    *at = 1;
    for (const char *line = text; *line; (*at)++) {
        const char *end = strchr(line, '\n');
        int step;
        if (!end || sscanf(line, "{\"step\": %d", &step) != 1 || step != *at) return false;
        line = end + 1;
    }
    return *at == steps + 1;
}

static void test_resume(void) {
    test_begin("train: 20 steps straight and 10 + stop + resume 10 elsewhere give byte-identical adapter files (LoRA "
               "dropout on)");
    run_config a, b;
    train_options quiet = {0}, stop10 = {.stop_after = 10};
    char *resume[] = {"train.resume=latest"};
    int rc = read_run_config(&a, "straight", 20, 0, NULL);
    if (rc == 0) rc = train_run(&a, &quiet);
    EXPECT(rc == 0, "straight run: %s", err_msg());
    // Another output.dir, whose parent does not exist yet, and train.resume set.
    rc = read_run_config(&b, "resumed/nested", 20, 0, NULL);
    if (rc == 0) rc = train_run(&b, &stop10);
    EXPECT(rc == 0, "first half: %s", err_msg());
    config_free(&run_config_schema, &b);
    // As if killed after step 12 with its last state at step 10: metrics.jsonl holds
    // lines the resume writes again, the last one torn.
    char metrics[1024];
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", scratch_path("resumed/nested-out"));
    size_t first_len = 0;
    unsigned char *first = access(metrics, R_OK) == 0 ? read_whole(metrics, &first_len) : NULL;
    FILE *f = fopen(metrics, "a");
    CHECK(f, "cannot append to %s", metrics);
    fputs("{\"step\": 11, \"loss\": 0.5}\n{\"step\": 12, \"loss\": 0.5}\n{\"step\": 1", f);
    fclose(f);
    rc = read_run_config(&b, "resumed/nested", 20, 1, resume);
    if (rc == 0) rc = train_run(&b, &quiet);
    EXPECT(rc == 0, "second half: %s", err_msg());
    char pa[1024], pb[1024];
    for (int k = 0; k < 2; k++) {
        const char *file = k ? "lora_kohya.safetensors" : "lora.safetensors";
        snprintf(pa, sizeof pa, "%s/%s", scratch_path("straight-out"), file);
        snprintf(pb, sizeof pb, "%s/%s", scratch_path("resumed/nested-out"), file);
        EXPECT(same_bytes(pa, pb), "%s differs between the runs", file);
    }
    // metrics.jsonl: the first half's lines as they were, then steps 11-20 once each.
    size_t len;
    char *text = (char *)read_whole(metrics, &len);
    int at;
    EXPECT(first && len > first_len && memcmp(text, first, first_len) == 0, "%s: the first half's lines changed",
           metrics);
    EXPECT(metrics_steps(text, 20, &at), "%s: step %d missing, repeated or out of order", metrics, at);
    free(text), free(first);
    // The run wrote what it promises.
    const char *outputs[] = {"loss.png", "metrics.jsonl", "state-000020.safetensors", "validation/step-000020.png",
                             "class/class-00001.png"};
    for (size_t i = 0; i < sizeof outputs / sizeof *outputs; i++) {
        snprintf(pa, sizeof pa, "%s/%s", scratch_path("straight-out"), outputs[i]);
        EXPECT(access(pa, R_OK) == 0, "%s is missing", pa);
    }
    config_free(&run_config_schema, &a);
    config_free(&run_config_schema, &b);
    test_end();

    test_begin("train: no validation prompts: the run ends without a grid");
    rc = read_run_config(&a, "novalidation", 1, 1, (char *[]){"validation.prompts=[]"});
    if (rc == 0) rc = train_run(&a, &quiet);
    EXPECT(rc == 0, "%s", err_msg());
    snprintf(pa, sizeof pa, "%s/validation", scratch_path("novalidation-out"));
    EXPECT(access(pa, F_OK) != 0, "%s exists", pa);
    config_free(&run_config_schema, &a);
    test_end();

    test_begin("train: a missing photo folder is a one-line error naming it");
    rc = read_run_config(&a, "nophotos", 2, 1, (char *[]){"data.instance_dir=/nonexistent/photos"});
    if (rc == 0) rc = train_run(&a, &quiet);
    EXPECT(rc == -1 && strstr(err_msg(), "/nonexistent/photos") && !strchr(err_msg(), '\n'), "%s", err_msg());
    config_free(&run_config_schema, &a);
    test_end();
}

// Names, dtypes and shapes of every tensor, and the metadata keys, of file `now` are
// those of `shown`; the first difference goes to why.
static bool same_layout(const char *now, const char *shown, char *why, size_t why_len) {
    st_file *a = st_open(now), *b = st_open(shown);
    bool same = a && b;
    if (!same) snprintf(why, why_len, "%s", err_msg());
    if (same && st_count(a) != st_count(b)) {
        snprintf(why, why_len, "%d tensors, the fixture %d", st_count(a), st_count(b));
        same = false;
    }
    for (int i = 0; same && i < st_count(b); i++) {
        const st_entry *e = st_entry_at(b, i), *g = st_find(a, e->name);
        same = g && g->dtype == e->dtype && g->ndim == e->ndim &&
               memcmp(g->shape, e->shape, (size_t)e->ndim * sizeof *e->shape) == 0;
        if (!same) snprintf(why, why_len, "%s: missing or another dtype or shape", e->name);
    }
    for (int k = 0; same && k < 2; k++) {
        st_file *x = k ? b : a, *y = k ? a : b;
        for (int i = 0; same && i < st_meta_count(x); i++) {
            same = st_meta(y, st_meta_key(x, i)) != NULL;
            if (!same) snprintf(why, why_len, "metadata key %s only in %s", st_meta_key(x, i), k ? shown : now);
        }
    }
    st_close(a), st_close(b);
    return same;
}

// The straight run of test_resume wrote its adapters with trained.yaml's settings.
static void test_adapter_files(void) {
    test_begin("train: the adapter files have the layout of tests/fixtures/lora/trained*.safetensors, which diffusers loaded");
    const char *files[][2] = {{"lora.safetensors", "trained.safetensors"},
                              {"lora_kohya.safetensors", "trained_kohya.safetensors"}};
    for (int k = 0; k < 2; k++) {
        char now[1024], shown[1024], why[1200] = "";
        snprintf(now, sizeof now, "%s/%s", scratch_path("straight-out"), files[k][0]);
        snprintf(shown, sizeof shown, "%s%s", repo_path("tests/fixtures/lora/"), files[k][1]);
        EXPECT(same_layout(now, shown, why, sizeof why), "%s against %s: %s (stale fixture? make golden)", files[k][0],
               files[k][1], why);
    }
    test_end();

    test_begin("train: the kohya file holds every trained module's down, up and alpha (lora.alpha)");
    char path[1024];
    snprintf(path, sizeof path, "%s/lora.safetensors", scratch_path("straight-out"));
    st_file *peft = st_open(path);
    snprintf(path, sizeof path, "%s/lora_kohya.safetensors", scratch_path("straight-out"));
    st_file *kohya = st_open(path);
    CHECK(peft && kohya, "%s", err_msg());
    int modules = 0;
    for (int i = 0; i < st_count(peft); i++) {
        char module[512], name[512], key[600];
        const char *peft_name = st_entry_at(peft, i)->name;
        size_t len = strlen(peft_name), suffix = strlen(LORA_PEFT_DOWN);
        if (len <= suffix || strcmp(peft_name + len - suffix, LORA_PEFT_DOWN) != 0) continue;
        snprintf(module, sizeof module, "%.*s", (int)(len - suffix), peft_name);
        modules++;
        EXPECT(lora_kohya_name(module, name, sizeof name), "%s: no kohya name", module);
        const char *parts[] = {LORA_KOHYA_DOWN, LORA_KOHYA_UP};
        for (int p = 0; p < 2; p++) {
            snprintf(key, sizeof key, "%s%s", name, parts[p]);
            EXPECT(st_find(kohya, key), "%s is missing", key);
        }
        snprintf(key, sizeof key, "%s%s", name, LORA_KOHYA_ALPHA);
        tensor *alpha = st_find(kohya, key) ? st_load(kohya, key, DT_F32, DEV_CPU) : NULL;
        float value = NAN;
        if (alpha) tensor_copy_to_f32(alpha, &value, 1);
        EXPECT(value == 2.0f, "%s: %g, want lora.alpha = 2", key, value);
        tensor_free(alpha);
    }
    EXPECT(modules > 0 && st_count(kohya) == 3 * modules, "%d kohya tensors for %d modules", st_count(kohya), modules);
    st_close(peft), st_close(kohya);
    test_end();

    test_begin("train: both files record the UNet and text-encoder targets and save SD1's 1x1-conv proj_in/proj_out "
               "adapters 4-D");
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/%s", scratch_path("straight-out"), files[k][0]);
        st_file *f = st_open(path);
        CHECK(f, "%s", err_msg());
        const char *unet = st_meta(f, "sdft_targets"), *te = st_meta(f, "sdft_text_encoder_targets");
        EXPECT(unet && strcmp(unet, "to_q,to_k,to_v,to_out.0,ff.net.0.proj,ff.net.2,proj_in,proj_out") == 0,
               "%s: sdft_targets %s", files[k][0], unet ? unet : "(none)");
        EXPECT(te && strcmp(te, "q_proj,k_proj,v_proj,out_proj,fc1,fc2") == 0, "%s: sdft_text_encoder_targets %s",
               files[k][0], te ? te : "(none)");
        int conv = 0, linear = 0;
        for (int i = 0; i < st_count(f); i++) {
            const st_entry *e = st_entry_at(f, i);
            if (strstr(e->name, "alpha")) continue;
            bool is_conv = strstr(e->name, "proj_in") || strstr(e->name, "proj_out");
            bool four_d = e->ndim == 4 && e->shape[2] == 1 && e->shape[3] == 1;
            EXPECT(is_conv ? four_d : e->ndim == 2, "%s: %s has %d dimensions", files[k][0], e->name, e->ndim);
            conv += is_conv, linear += !is_conv;
        }
        EXPECT(conv > 0 && linear > 0, "%s: %d 1x1-conv and %d linear adapter tensors", files[k][0], conv, linear);
        st_close(f);
    }
    test_end();
}

// sdft-train (beside this binary) on tests/fixtures/lora/trained.yaml with the
// overrides given, writing to <name>-out in the scratch dir; its stderr in *err
// (caller frees). The exit status, or -1 when it did not exit (a crash).
static int run_train_program(const char *name, const char *overrides, char **err) {
    char program[1024], tok[1024], err_path[1024], cmd[8192];
    path_beside_program(program, sizeof program, "sdft-train");
    path_beside_program(tok, sizeof tok, "clip-tokenizer");
    snprintf(err_path, sizeof err_path, "%s", scratch_path("%s.stderr", name));
    snprintf(cmd, sizeof cmd,
             "'%s' --quiet --config '%s' 'model.tokenizer=%s' 'data.instance_dir=%s' 'output.dir=%s' %s 2> '%s'",
             program, repo_path("tests/fixtures/lora/trained.yaml"), tok, scratch_path("train-photos"),
             scratch_path("%s-out", name), overrides, err_path);
    fflush(stdout);
    int status = system(cmd);
    size_t len;
    *err = (char *)read_whole(err_path, &len);
    return status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// A model or scheduler that cannot be opened used to end in free(): invalid pointer
// (a failed pipeline_open freed the tokenizer and schedule, then the trainer again).
static void test_bad_model_inputs(void) {
    char not_model[1024], missing_model[1024], missing_sched[1024];
    snprintf(not_model, sizeof not_model, "%s", scratch_path("not-a-model.safetensors"));
    write_whole(not_model, "plain text, not a checkpoint\n", 29);
    snprintf(missing_model, sizeof missing_model, "%s", scratch_path("no-such-model"));
    snprintf(missing_sched, sizeof missing_sched, "%s", scratch_path("no-such-scheduler.json"));
    const struct {
        const char *what, *key, *value, *named;
    } cases[] = {
        {"a model path that does not exist", "model.path", missing_model, missing_model},
        {"a model file that is not a checkpoint", "model.path", not_model, not_model},
        {"a missing scheduler config", "model.scheduler_config", missing_sched, missing_sched},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        test_begin("train: sdft-train with %s: a one-line error naming it, exit status 1", cases[i].what);
        char overrides[2400], *err;
        snprintf(overrides, sizeof overrides, "'model.path=%s' '%s=%s'", repo_path("tests/fixtures/models/tiny-sd"),
                 cases[i].key, cases[i].value);
        int status = run_train_program("badmodel", overrides, &err);
        char *newline = strchr(err, '\n');
        EXPECT(status == 1, "exit status %d (-1: it crashed); stderr: %s", status, err);
        EXPECT(strstr(err, cases[i].named) && newline && newline[1] == '\0', "stderr is not one line naming %s: %s",
               cases[i].named, err);
        free(err);
        test_end();
    }
}

// A stderr of exactly one line.
static bool one_line(const char *err) {
    const char *newline = strchr(err, '\n');
    return newline && newline[1] == '\0';
}

// output.dir is checked first: these runs name a model that does not exist, and
// must fail on the folder instead.
static void test_output_dir_first(void) {
    char file[1024], model[1024], under_file[1100], nested[1024], overrides[4096], *err;
    snprintf(file, sizeof file, "%s", scratch_path("a-file"));
    write_whole(file, "x", 1);
    snprintf(model, sizeof model, "%s", scratch_path("no-such-model"));
    snprintf(under_file, sizeof under_file, "%s/out", file);
    snprintf(nested, sizeof nested, "%s", scratch_path("new/parents/out"));
    const struct {
        const char *what, *dir;
    } bad[] = {{"a file in its place", file}, {"a file among its parents", under_file}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        test_begin("train: an output.dir with %s is reported before the models load", bad[i].what);
        snprintf(overrides, sizeof overrides, "'model.path=%s' 'output.dir=%s'", model, bad[i].dir);
        int status = run_train_program("outdir", overrides, &err);
        EXPECT(status == 1 && one_line(err) && strstr(err, "output.dir") && strstr(err, bad[i].dir) &&
                   !strstr(err, model),
               "exit status %d, stderr: %s", status, err);
        free(err);
        test_end();
    }

    test_begin("train: output.dir's missing parent folders are made (before the models load)");
    snprintf(overrides, sizeof overrides, "'model.path=%s' 'output.dir=%s'", model, nested);
    int status = run_train_program("outdir", overrides, &err);
    struct stat st;
    EXPECT(stat(nested, &st) == 0 && S_ISDIR(st.st_mode), "%s was not made", nested);
    EXPECT(status == 1 && one_line(err) && strstr(err, model), "exit status %d, stderr: %s", status, err);
    free(err);
    test_end();

    test_begin("train: an output.dir without write permission is reported before the models load");
    if (geteuid() == 0) {
        test_skip("running as root, which may write in any folder");
    } else {
        char locked[1024];
        snprintf(locked, sizeof locked, "%s", scratch_path("locked-out"));
        CHECK(mkdir(locked, 0555) == 0, "cannot make %s", locked);
        snprintf(overrides, sizeof overrides, "'model.path=%s' 'output.dir=%s'", model, locked);
        status = run_train_program("outdir", overrides, &err);
        EXPECT(status == 1 && one_line(err) && strstr(err, "output.dir") && strstr(err, locked) && !strstr(err, model),
               "exit status %d, stderr: %s", status, err);
        free(err);
        chmod(locked, 0755);
    }
    test_end();
}

// Saves write "<file>.tmp.<pid>" and rename it; a killed run leaves the temporary.
static void test_stale_temporaries(void) {
    test_begin("train: a run removes the temporaries its interrupted saves left, not live ones or other files");
    pid_t gone = fork();  // a pid whose process has ended
    CHECK(gone >= 0, "fork failed");
    if (gone == 0) _exit(0);
    waitpid(gone, NULL, 0);
    char dir[1024], path[1600], overrides[1200], *err;
    snprintf(dir, sizeof dir, "%s", scratch_path("stale-out"));
    snprintf(path, sizeof path, "%s/validation", dir);
    CHECK(mkdir(dir, 0777) == 0 && mkdir(path, 0777) == 0, "cannot make %s", path);
    const char *stale[] = {"state-000010.safetensors", "lora_kohya.safetensors", "lora-step000005.safetensors",
                           "interrupted.safetensors", "loss.png", "metrics.jsonl", "validation/step-000010.png"};
    const char *kept[] = {"notes.txt.tmp.%d", "state-000010.safetensors.tmp.%d", "lora.safetensors", "a.tmp.%dx"};
    const int kept_pid[] = {gone, getpid(), 0, gone};  // another file's; a live process's; no temporary
    for (size_t i = 0; i < sizeof stale / sizeof *stale; i++) {
        snprintf(path, sizeof path, "%s/%s.tmp.%d", dir, stale[i], gone);
        write_whole(path, "x", 1);
    }
    for (size_t i = 0; i < sizeof kept / sizeof *kept; i++) {
        char name[256];
        snprintf(name, sizeof name, kept[i], kept_pid[i]);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        write_whole(path, "x", 1);
    }
    snprintf(overrides, sizeof overrides, "'model.path=%s'", scratch_path("no-such-model"));
    int status = run_train_program("stale", overrides, &err);
    EXPECT(status == 1, "exit status %d, stderr: %s", status, err);
    free(err);
    for (size_t i = 0; i < sizeof stale / sizeof *stale; i++) {
        snprintf(path, sizeof path, "%s/%s.tmp.%d", dir, stale[i], gone);
        EXPECT(access(path, F_OK) != 0, "%s is still there", path);
    }
    for (size_t i = 0; i < sizeof kept / sizeof *kept; i++) {
        char name[256];
        snprintf(name, sizeof name, kept[i], kept_pid[i]);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        EXPECT(access(path, F_OK) == 0, "%s was removed", path);
    }
    test_end();
}

// A full disk, as /dev/full plays it: every write fails with ENOSPC.
static void test_metrics_write_error(void) {
    test_begin("train: metrics.jsonl on a full disk stops the run with a one-line error naming it");
    char link[1024];
    snprintf(link, sizeof link, "%s/metrics.jsonl", scratch_path("fulldisk-out"));
    if (access("/dev/full", W_OK) != 0) {
        test_skip("no writable /dev/full here");
        test_end();
        return;
    }
    CHECK(mkdir(scratch_path("fulldisk-out"), 0777) == 0 && symlink("/dev/full", link) == 0, "cannot make %s", link);
    run_config c;
    train_options quiet = {0};
    int rc = read_run_config(&c, "fulldisk", 2, 1, (char *[]){"prior.enabled=false"});
    if (rc == 0) rc = train_run(&c, &quiet);
    EXPECT(rc == -1 && strstr(err_msg(), link) && !strchr(err_msg(), '\n'), "rc %d: %s", rc, err_msg());
    config_free(&run_config_schema, &c);
    test_end();
}

// The pictures of a one-step run: loss.png with its axes and title (a single point
// used to divide by the zero range of the steps), and the validation grid with a
// caption band under its tile.
static void test_run_pictures(void) {
    test_begin("train: one step writes loss.png with a title and tick values, and a captioned validation grid");
    run_config cfg;
    train_options quiet = {0};
    int rc = read_run_config(&cfg, "onestep", 1, 0, NULL);
    if (rc == 0) rc = train_run(&cfg, &quiet);
    EXPECT(rc == 0, "%s", err_msg());
    char path[1024];
    image_u8 img = {0};
    png_meta meta = {0};
    snprintf(path, sizeof path, "%s/loss.png", scratch_path("onestep-out"));
    EXPECT(png_read(path, &img, &meta) == 0, "%s", err_msg());
    const char *description = png_meta_get(&meta, "Description");
    EXPECT(description && strncmp(description, "steps 1-1, loss from ", 21) == 0, "Description: %s",
           description ? description : "(none)");
    // Dark pixels in the title band, left of the plot (loss ticks), under it (the step).
    int title = 0, left = 0, bottom = 0;
    for (int y = 0; y < img.height; y++)
        for (int x = 0; x < img.width; x++) {
            const unsigned char *p = img.pixels + ((size_t)y * img.width + x) * 3;
            bool dark = p[0] < 200 && p[1] < 200 && p[2] < 200;
            title += dark && y < 40;
            left += dark && x < 76 && y > 44 && y < img.height - 56;
            bottom += dark && y > img.height - 50;
        }
    EXPECT(img.width == 900 && img.height == 450 && title > 100 && left > 100 && bottom > 20,
           "%dx%d, dark pixels: %d in the title, %d left, %d under the plot", img.width, img.height, title, left,
           bottom);
    image_free(&img);
    png_meta_free(&meta);
    snprintf(path, sizeof path, "%s/validation/step-000001.png", scratch_path("onestep-out"));
    EXPECT(png_read(path, &img, NULL) == 0, "%s", err_msg());
    int band_ink = 0;
    for (int y = 8 + 64; y < img.height - 8; y++)
        for (int x = 8; x < 8 + 64 && img.width >= 80; x++) {
            const unsigned char *p = img.pixels + ((size_t)y * img.width + x) * 3;
            band_ink += p[0] < 200 && p[1] < 200 && p[2] < 200;
        }
    EXPECT(img.width == 64 + 16 && img.height > 64 + 16 + 30 && band_ink > 20,
           "grid %dx%d, %d dark pixels under the tile", img.width, img.height, band_ink);
    image_free(&img);
    config_free(&run_config_schema, &cfg);
    test_end();
}

void suite_train(void) {
    test_bad_model_inputs();
    test_output_dir_first();
    test_stale_temporaries();
    test_metrics_write_error();
    test_resume();
    test_run_pictures();
    test_adapter_files();
    ref = st_open(repo_path("tests/fixtures/train/train.safetensors"));
    CHECK(ref, "%s", err_msg());
    CHECK(st_meta(ref, "format_version") && strcmp(st_meta(ref, "format_version"), "1") == 0,
          "train.safetensors: stale format; run make golden");
    test_lr_tables();
    test_step0("eps_te", true, DT_F32, DEV_CPU, false);
    test_step0("eps_te", true, DT_F32, DEV_CPU, true);
    test_step0("v_unet", false, DT_F32, DEV_CPU, false);
    test_dropout();
#ifdef SDFT_HAVE_EMU
    // The step with the CUDA kernels (through the emulator): f32, and bf16 weights
    // and activations with f32 adapters, as `device: cuda` trains.
    test_step0("eps_te", true, DT_F32, DEV_CUDA_EMU, false);
    test_step0("eps_te", true, DT_BF16, DEV_CUDA_EMU, false);
#endif
    test_twenty_steps();
    test_steps_on_backends();
    st_close(ref);
    ref = NULL;
}
