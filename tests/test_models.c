// suite_models: the SD model stack against diffusers/transformers.
//
// tests/fixtures/models holds tiny models with SD1.5's structure (and a UNet with
// SD2's options), written by tools/golden/models.py as a diffusers folder and as an
// original single file, with reference outputs computed in float64. The models
// here must match them (relative L2 error <= 1e-5 in f32), give identical outputs
// from both file formats, run the same on cuda-emu, and refuse bad checkpoints with
// one-line messages.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/half.h"
#include "core/files.h"
#include "infer/ldm_names.h"
#include "infer/pipeline.h"
#include "infer/sd_model.h"
#include "kernels/backend.h"
#include "kernels/tensor_file.h"
#include "tests/harness.h"
#include "tests/test.h"

#define FIXTURES "tests/fixtures/models/"
#define F32_TOL 1e-5
#define BF16_TOL 5e-2

// The reference outputs the current suite compares with.
static st_file *ref_file;

static st_file *reference(void) {
    if (!ref_file) {
        ref_file = st_open(repo_path(FIXTURES "tiny-sd-outputs.safetensors"));
        CHECK(ref_file, "%s", err_msg());
        CHECK(st_meta(ref_file, "format_version") && strcmp(st_meta(ref_file, "format_version"), "1") == 0,
              "tiny-sd-outputs.safetensors: format_version is not 1; regenerate with make golden");
    }
    return ref_file;
}


static tensor *fixture_ids(device dev) {
    tensor *t = st_load(reference(), "te.input_ids", DT_I32, dev);
    CHECK(t, "%s", err_msg());
    return t;
}



#define EXPECT_CLOSE(ours, name, tol)                                                    \
    do {                                                                                  \
        double err_ = fixture_error((ours), reference(), (name));                                      \
        EXPECT(err_ <= (tol), "%s: relative error %.3g > %.3g", (name), err_, (double)(tol)); \
    } while (0)

static int load(sd_model *m, const char *path, dtype dt, device dev, const char *config_dir) {
    sd_load_options opt = {.dt = dt, .dev = dev, .config_dir = config_dir};
    return sd_model_load(m, path, &opt);
}

// --- the three models against the reference --------------------------------------------------

typedef struct {
    tensor *te, *te_skip, *unet, *vae_mean, *vae_logvar, *vae_decoded;
} outputs;

static outputs run_tiny_sd(const sd_model *m, device dev) {
    outputs o;
    tensor *ids = fixture_ids(dev);
    o.te = clip_encode(&m->text_encoder, ids, 0);
    o.te_skip = clip_encode(&m->text_encoder, ids, 1);
    tensor_free(ids);
    tensor *sample = fixture_tensor(reference(), "unet.sample", dev);
    tensor *t = fixture_tensor(reference(), "unet.timestep", dev);
    tensor *ctx = fixture_tensor(reference(), "unet.encoder_hidden_states", dev);
    o.unet = unet_forward(&m->unet, sample, t, ctx);
    tensor_free(sample);
    tensor_free(t);
    tensor_free(ctx);
    tensor *image = fixture_tensor(reference(), "vae.image", dev);
    tensor *latent = fixture_tensor(reference(), "vae.latent", dev);
    vae_encode(&m->vae, image, &o.vae_mean, &o.vae_logvar);
    o.vae_decoded = vae_decode(&m->vae, latent);
    tensor_free(image);
    tensor_free(latent);
    return o;
}

static void outputs_free(outputs *o) {
    tensor *all[] = {o->te, o->te_skip, o->unet, o->vae_mean, o->vae_logvar, o->vae_decoded};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) tensor_free(all[i]);
}

static void expect_reference(const outputs *o, double tol) {
    EXPECT_CLOSE(o->te, "te.last_hidden_state", tol);
    EXPECT_CLOSE(o->te_skip, "te.clip_skip_1", tol);
    EXPECT_CLOSE(o->unet, "unet.out", tol);
    EXPECT_CLOSE(o->vae_mean, "vae.mean", tol);
    EXPECT_CLOSE(o->vae_logvar, "vae.logvar", tol);
    EXPECT_CLOSE(o->vae_decoded, "vae.decoded", tol);
}

static bool same_values(const tensor *a, const tensor *b) {
    if (!tensor_same_shape(a, b)) return false;
    float *x = host_floats(a), *y = host_floats(b);
    bool same = memcmp(x, y, (size_t)tensor_numel(a) * sizeof *x) == 0;
    free(x);
    free(y);
    return same;
}

static void test_folder_and_single_file(void) {
    sd_model folder, single;
    test_begin("models: tiny SD from a diffusers folder matches diffusers/transformers (f32)");
    int rc = load(&folder, repo_path(FIXTURES "tiny-sd"), DT_F32, DEV_CPU, NULL);
    EXPECT(rc == 0, "load failed: %s", err_msg());
    if (rc == 0) {
        for (int c = 0; c < 3; c++) {
            EXPECT(folder.report[c].missing == 0 && folder.report[c].unexpected == 0,
                   "component %d: %d missing, %d unexpected", c, folder.report[c].missing,
                   folder.report[c].unexpected);
        }
        EXPECT(folder.report[0].used + folder.report[1].used + folder.report[2].used ==
                   folder.params.count,
               "%d parameters registered, %d loaded", folder.params.count,
               folder.report[0].used + folder.report[1].used + folder.report[2].used);
    }
    test_end();
    if (rc) return;
    outputs ref_out = run_tiny_sd(&folder, DEV_CPU);

    test_begin("models: text encoder, UNet, VAE encode/decode within 1e-5 of float64 diffusers");
    expect_reference(&ref_out, F32_TOL);
    test_end();

    test_begin("models: UNet at a 10x14 latent (odd sizes on the way down) matches diffusers");
    tensor *odd_x = fixture_tensor(reference(), "unet_odd.sample", DEV_CPU);
    tensor *odd_t = fixture_tensor(reference(), "unet_odd.timestep", DEV_CPU);
    tensor *odd_c = fixture_tensor(reference(), "unet_odd.encoder_hidden_states", DEV_CPU);
    tensor *odd_y = unet_forward(&folder.unet, odd_x, odd_t, odd_c);
    EXPECT_CLOSE(odd_y, "unet_odd.out", F32_TOL);
    tensor_free(odd_x), tensor_free(odd_t), tensor_free(odd_c), tensor_free(odd_y);
    test_end();

    test_begin("models: the original single file loads with one unexpected key (position_ids)");
    rc = load(&single, repo_path(FIXTURES "tiny-sd.safetensors"), DT_F32, DEV_CPU,
              repo_path(FIXTURES "tiny-sd"));
    EXPECT(rc == 0, "load failed: %s", err_msg());
    if (rc == 0) {
        int unexpected = single.report[0].unexpected + single.report[1].unexpected +
                         single.report[2].unexpected;
        EXPECT(unexpected == 1 && strstr(single.report[0].first_unexpected, "position_ids"),
               "%d unexpected (first %s)", unexpected, single.report[0].first_unexpected);
    }
    test_end();
    if (rc == 0) {
        test_begin("models: single file and diffusers folder give identical outputs");
        outputs o = run_tiny_sd(&single, DEV_CPU);
        EXPECT(same_values(o.te, ref_out.te) && same_values(o.te_skip, ref_out.te_skip),
               "text encoder differs");
        EXPECT(same_values(o.unet, ref_out.unet), "UNet differs");
        EXPECT(same_values(o.vae_mean, ref_out.vae_mean) && same_values(o.vae_decoded, ref_out.vae_decoded),
               "VAE differs");
        outputs_free(&o);
        test_end();
        sd_model_free(&single);
    }

    test_begin("models: vae_sample is mean + exp(logvar/2) * eps with eps from our RNG");
    rng_stream rng = {.seed = 42}, replay = rng;
    tensor *z = vae_sample(ref_out.vae_mean, ref_out.vae_logvar, &rng);
    int64_t n = tensor_numel(z);
    float *zv = host_floats(z), *mu = host_floats(ref_out.vae_mean);
    float *lv = host_floats(ref_out.vae_logvar), *eps = xmalloc((size_t)n * sizeof *eps);
    rng_fill_normal(&replay, eps, (size_t)n);
    double worst = 0;
    for (int64_t i = 0; i < n; i++) worst = fmax(worst, fabs(zv[i] - (mu[i] + expf(0.5f * lv[i]) * eps[i])));
    EXPECT(worst < 1e-6, "sample differs by %.3g", worst);
    EXPECT(rng.offset == (uint64_t)n, "the stream advanced by %llu, want %lld",
           (unsigned long long)rng.offset, (long long)n);
    free(zv), free(mu), free(lv), free(eps);
    tensor_free(z);
    test_end();

    outputs_free(&ref_out);
    sd_model_free(&folder);
}

// The SD2-style UNet: linear projections, per-block head counts, more transformer layers.
static void test_unet_v2(void) {
    test_begin("models: UNet with SD2.x options (linear proj, per-block heads) matches diffusers");
    unet_config cfg;
    int rc = unet_config_load(&cfg, repo_path(FIXTURES "tiny-unet-v2/config.json"));
    EXPECT(rc == 0, "%s", err_msg());
    if (rc == 0) {
        param_set ps;
        params_init(&ps, DT_F32, DEV_CPU);
        unet_model m;
        unet_init(&m, &cfg, &ps, "");
        weight_index wi;
        weight_index_init(&wi);
        load_report rep;
        rc = weight_index_add_file(&wi, repo_path(FIXTURES "tiny-unet-v2/diffusion_pytorch_model.safetensors"),
                                   "unet.");
        if (rc == 0) rc = params_load(&ps, &wi, "unet.", &rep);
        EXPECT(rc == 0, "%s", err_msg());
        if (rc == 0) {
            EXPECT(rep.unexpected == 0, "%d unexpected (%s)", rep.unexpected, rep.first_unexpected);
            tensor *s = fixture_tensor(reference(), "unet_v2.sample", DEV_CPU);
            tensor *t = fixture_tensor(reference(), "unet_v2.timestep", DEV_CPU);
            tensor *c = fixture_tensor(reference(), "unet_v2.encoder_hidden_states", DEV_CPU);
            tensor *out = unet_forward(&m, s, t, c);
            EXPECT_CLOSE(out, "unet_v2.out", F32_TOL);
            tensor_free(out), tensor_free(s), tensor_free(t), tensor_free(c);
        }
        weight_index_free(&wi);
        params_free(&ps);
        unet_free(&m);
    }
    test_end();
}

// The VAE's middle block attends with one 512-wide head, above the fused kernel's
// limit: nn_sdpa takes the matmul-softmax-matmul path there.
static void test_wide_head_attention(void) {
    const device devs[2] = {DEV_CPU, DEV_CUDA_EMU};
    for (int d = 0; d < 2; d++) {
        if (!backend_available(devs[d])) continue;
        test_begin("models: single-head attention of width %d on %s matches the formula",
                   ATTENTION_MAX_HEAD_DIM + 40, device_name(devs[d]));
        const int B = 2, N = 9, M = 11, D = ATTENTION_MAX_HEAD_DIM + 40;
        rng_stream rng = {.seed = 7};
        float *q = xmalloc(sizeof(float) * B * N * D), *k = xmalloc(sizeof(float) * B * M * D);
        float *v = xmalloc(sizeof(float) * B * M * D), *want = xmalloc(sizeof(float) * B * N * D);
        rng_fill_normal(&rng, q, (size_t)B * N * D);
        rng_fill_normal(&rng, k, (size_t)B * M * D);
        rng_fill_normal(&rng, v, (size_t)B * M * D);
        for (int b = 0; b < B; b++)
            for (int i = 0; i < N; i++) {
                double s[16], mx = -INFINITY, sum = 0;
                for (int j = 0; j < M; j++) {
                    s[j] = 0;
                    for (int c = 0; c < D; c++) s[j] += (double)q[(b * N + i) * D + c] * k[(b * M + j) * D + c];
                    s[j] /= sqrt((double)D);
                    mx = fmax(mx, s[j]);
                }
                for (int j = 0; j < M; j++) sum += s[j] = exp(s[j] - mx);
                for (int c = 0; c < D; c++) {
                    double o = 0;
                    for (int j = 0; j < M; j++) o += s[j] / sum * v[(b * M + j) * D + c];
                    want[(b * N + i) * D + c] = (float)o;
                }
            }
        tensor *tq = tensor_from_f32(DT_F32, devs[d], SHAPE(B, N, D), q);
        tensor *tk = tensor_from_f32(DT_F32, devs[d], SHAPE(B, M, D), k);
        tensor *tv = tensor_from_f32(DT_F32, devs[d], SHAPE(B, M, D), v);
        tensor *out = nn_sdpa(tq, tk, tv, 1, false);
        float *got = host_floats(out);
        double err = rel_error(got, want, (int64_t)B * N * D);
        EXPECT(err <= F32_TOL, "relative error %.3g", err);
        free(got), free(q), free(k), free(v), free(want);
        tensor_free(out), tensor_free(tq), tensor_free(tk), tensor_free(tv);
        test_end();
    }
}

// --- the name map --------------------------------------------------------------------------

static bool same_entry_values(st_file *fa, const st_entry *a, st_file *fb, const st_entry *b) {
    tensor *x = st_tensor(fa, a), *y = st_tensor(fb, b);
    bool same = x && y && tensor_numel(x) == tensor_numel(y);
    if (same) {
        float *u = host_floats(x), *v = host_floats(y);
        same = memcmp(u, v, (size_t)tensor_numel(x) * sizeof *u) == 0;
        free(u), free(v);
    }
    tensor_free(x), tensor_free(y);
    return same;
}

static void test_ldm_names(void) {
    test_begin("models: LDM name map, canonical -> original and back, on the fixture's tensors");
    sd_model m;
    int rc = load(&m, repo_path(FIXTURES "tiny-sd"), DT_F32, DEV_CPU, NULL);
    st_file *single = st_open(repo_path(FIXTURES "tiny-sd.safetensors"));
    weight_index folder;
    weight_index_init(&folder);
    EXPECT(rc == 0 && single, "fixtures do not load: %s", err_msg());
    if (rc == 0 && single) {
        const char *parts[3][2] = {{"text_encoder/model.safetensors", "text_encoder."},
                                   {"unet/diffusion_pytorch_model.safetensors", "unet."},
                                   {"vae/diffusion_pytorch_model.safetensors", "vae."}};
        char path[1024];
        for (int c = 0; c < 3; c++) {
            snprintf(path, sizeof path, "%s/%s", repo_path(FIXTURES "tiny-sd"), parts[c][0]);
            CHECK(weight_index_add_file(&folder, path, parts[c][1]) == 0, "%s", err_msg());
        }
        name_map nm = {0};
        ldm_name_map(&nm, &m.params, &m.unet_cfg, &m.vae_cfg);
        int mapped = 0, wrong = 0;
        char key[PARAM_NAME_MAX];
        for (int i = 0; i < m.params.count; i++) {
            const char *name = m.params.items[i].name;
            CHECK(ldm_name_for(name, &m.unet_cfg, &m.vae_cfg, key, sizeof key), "%s", name);
            const st_entry *e = st_find(single, key);
            const weight_ref *r = weight_index_find(&folder, name);
            // The same values under both names (the single file is f16 and holds 1x1
            // convs where diffusers has linears).
            bool same = e && r && same_entry_values(single, e, r->file, r->entry);
            if (!same && wrong++ < 3) test_fail_at(__FILE__, __LINE__, "%s -> %s: %s", name, key,
                                                   e ? "different data" : "not in the single file");
            const char *back = name_map_lookup(&nm, key);
            EXPECT(back && strcmp(back, name) == 0, "%s -> %s -> %s", name, key, back ? back : "nothing");
            mapped += same;
        }
        EXPECT(mapped == m.params.count, "%d of %d parameters found under their LDM names", mapped,
               m.params.count);
        // Back: every key of the single file but the position ids maps to a parameter.
        int unknown = 0;
        for (int i = 0; i < st_count(single); i++) {
            const char *k = st_entry_at(single, i)->name;
            if (!name_map_lookup(&nm, k) && !strstr(k, "position_ids") && unknown++ < 3)
                test_fail_at(__FILE__, __LINE__, "single-file key %s maps to nothing", k);
        }
        name_map_free(&nm);
    }
    weight_index_free(&folder);
    st_close(single);
    if (rc == 0) sd_model_free(&m);
    test_end();
}

// --- configs ---------------------------------------------------------------------------------

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    CHECK(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

// Writes text to a scratch file; returns its path.
static const char *write_text(const char *name, const char *text) {
    static char path[4][1024];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, sizeof path[0], "%s/%s", scratch_dir(), name);
    write_file(p, text);
    return p;
}

static void expect_config_error(int rc, const char *path, const char *want) {
    EXPECT(rc == -1, "accepted a bad config (%s)", want);
    EXPECT(strstr(err_msg(), path) && strstr(err_msg(), want) && !strchr(err_msg(), '\n'),
           "message \"%s\" lacks the path or \"%s\"", err_msg(), want);
}

static void test_configs(void) {
    test_begin("models: built-in SD1.5 configs equal the official config.json files");
    clip_config c1, c2;
    unet_config u1, u2;
    vae_config v1, v2;
    clip_config_sd15(&c1);
    unet_config_sd15(&u1);
    vae_config_sd15(&v1);
    bool loaded = clip_config_load(&c2, repo_path("tools/sd15_configs/text_encoder.json")) == 0 &&
                  unet_config_load(&u2, repo_path("tools/sd15_configs/unet.json")) == 0 &&
                  vae_config_load(&v2, repo_path("tools/sd15_configs/vae.json")) == 0;
    EXPECT(loaded, "%s", err_msg());
    if (loaded) {
        EXPECT(memcmp(&c1, &c2, sizeof c1) == 0, "text encoder config differs");
        EXPECT(memcmp(&u1, &u2, sizeof u1) == 0, "UNet config differs");
        EXPECT(memcmp(&v1, &v2, sizeof v1) == 0, "VAE config differs");
    }
    test_end();

    test_begin("models: SD1.5's parameter counts (123.06M, 859.52M, 83.65M)");
    param_set ps;
    params_init(&ps, DT_F32, DEV_CPU);
    clip_text_model te;
    clip_init(&te, &c1, &ps, "text_encoder.");
    int64_t n_te = params_numel(&ps);
    unet_model un;
    unet_init(&un, &u1, &ps, "");
    int64_t n_unet = params_numel(&ps) - n_te;
    vae_model va;
    vae_init(&va, &v1, &ps, "");
    int64_t n_vae = params_numel(&ps) - n_te - n_unet;
    // The counts torch reports for the official weights (position_ids is a buffer).
    EXPECT(n_te == 123060480, "text encoder: %lld", (long long)n_te);
    EXPECT(n_unet == 859520964, "UNet: %lld", (long long)n_unet);
    EXPECT(n_vae == 83653863, "VAE: %lld", (long long)n_vae);
    params_free(&ps);
    clip_free(&te);
    unet_free(&un);
    vae_free(&va);
    test_end();

    test_begin("models: config errors name the file and the key");
    unet_config u;
    vae_config v;
    clip_config c;
    const char *p = write_text("bad1.json", "{\"block_out_channels\": [32, 64],\n \"down_block_types\": "
                                            "[\"CrossAttnDownBlock2D\", \"FancyBlock\"]}");
    expect_config_error(unet_config_load(&u, p), p, "FancyBlock");
    p = write_text("bad2.json", "{\"block_out_channels\": [32], \"down_block_types\": [\"DownBlock2D\"],"
                                " \"up_block_types\": [\"UpBlock2D\"], \"addition_embed_type\": \"text_time\"}");
    expect_config_error(unet_config_load(&u, p), p, "addition_embed_type");
    p = write_text("bad3.json", "{\n\"hidden_size\": 32,\n\"layers\": [1, 2,\n}");
    expect_config_error(clip_config_load(&c, p), p, ":4:");
    p = write_text("bad4.json", "{\"hidden_size\": \"wide\"}");
    expect_config_error(clip_config_load(&c, p), p, "hidden_size");
    p = write_text("bad5.json", "{\"block_out_channels\": [30], \"down_block_types\": [\"DownEncoderBlock2D\"],"
                                " \"up_block_types\": [\"UpDecoderBlock2D\"]}");
    expect_config_error(vae_config_load(&v, p), p, "norm_num_groups");
    p = write_text("bad6.json", "{\"block_out_channels\": [32, 64], \"attention_head_dim\": [8, 8, 8],"
                                " \"down_block_types\": [\"DownBlock2D\", \"DownBlock2D\"],"
                                " \"up_block_types\": [\"UpBlock2D\", \"UpBlock2D\"]}");
    expect_config_error(unet_config_load(&u, p), p, "attention_head_dim");
    expect_config_error(unet_config_load(&u, "/nonexistent/config.json"), "/nonexistent/config.json",
                        "cannot open");
    test_end();
}

// A valid UNet config of n_blocks plain blocks of `layers` ResNets, 8 channels each,
// with the keys in extra (", \"key\": value") added.
static const char *unet_config_text(int n_blocks, int layers, const char *extra) {
    static char text[1024];
    char channels[64] = "", down[256] = "", up[256] = "";
    for (int i = 0; i < n_blocks; i++) {
        snprintf(channels + strlen(channels), sizeof channels - strlen(channels), "%s8", i ? ", " : "");
        snprintf(down + strlen(down), sizeof down - strlen(down), "%s\"DownBlock2D\"", i ? ", " : "");
        snprintf(up + strlen(up), sizeof up - strlen(up), "%s\"UpBlock2D\"", i ? ", " : "");
    }
    snprintf(text, sizeof text,
             "{\"block_out_channels\": [%s], \"layers_per_block\": %d, \"norm_num_groups\": 4,\n"
             " \"attention_head_dim\": 1, \"cross_attention_dim\": 8,\n"
             " \"down_block_types\": [%s],\n \"up_block_types\": [%s]%s}",
             channels, layers, down, up, extra);
    return text;
}

// A valid one-block VAE config with the keys in extra added.
static const char *vae_config_text(const char *extra) {
    static char text[512];
    snprintf(text, sizeof text,
             "{\"block_out_channels\": [8], \"norm_num_groups\": 4, \"down_block_types\": [\"DownEncoderBlock2D\"],"
             " \"up_block_types\": [\"UpDecoderBlock2D\"]%s}",
             extra);
    return text;
}

// Every parameter registered in ps as a zero tensor of our layout (conv weights NHWC).
static void params_zero(param_set *ps) {
    for (int i = 0; i < ps->count; i++) {
        const param *p = &ps->items[i];
        int64_t shape[4];
        memcpy(shape, p->shape, sizeof shape);
        if (p->kind == PARAM_CONV) shape[1] = p->shape[2], shape[2] = p->shape[3], shape[3] = p->shape[1];
        *p->slot = tensor_zeros(DT_F32, DEV_CPU, p->ndim, shape);
    }
}

// Counts and sizes in config.json are bounded where they are read, and the arrays
// sized by those bounds hold a model at the bounds: a UNet with more layers per
// block than unet_forward's stack of skip connections holds is refused, not run
// over the end of the stack.
static void test_config_bounds(void) {
    test_begin("models: counts beyond the bounds are refused; a UNet at the bounds runs");
    unet_config u;
    vae_config v;
    clip_config c;
    // Each file is valid but for the key named.
    const char *p = write_text("valid_unet.json", unet_config_text(2, 2, ""));
    EXPECT(unet_config_load(&u, p) == 0, "%s", err_msg());
    p = write_text("valid_vae.json", vae_config_text(""));
    EXPECT(vae_config_load(&v, p) == 0, "%s", err_msg());
    p = write_text("many_layers.json", unet_config_text(2, 48, ""));
    expect_config_error(unet_config_load(&u, p), p, "key \"layers_per_block\": expected an integer from 1 to 8");
    p = write_text("many_blocks.json", unet_config_text(CFG_MAX_BLOCKS + 1, 2, ""));
    expect_config_error(unet_config_load(&u, p), p, "key \"block_out_channels\"");
    p = write_text("deep_blocks.json", unet_config_text(2, 2, ", \"transformer_layers_per_block\": 1000"));
    expect_config_error(unet_config_load(&u, p), p, "key \"transformer_layers_per_block\"");
    p = write_text("wide.json", "{\"block_out_channels\": [8, 1048576], \"norm_num_groups\": 8,"
                                " \"down_block_types\": [\"DownBlock2D\", \"DownBlock2D\"],"
                                " \"up_block_types\": [\"UpBlock2D\", \"UpBlock2D\"]}");
    expect_config_error(unet_config_load(&u, p), p, "key \"block_out_channels\"");
    p = write_text("unet_sample.json", unet_config_text(2, 2, ", \"sample_size\": 1000000"));
    expect_config_error(unet_config_load(&u, p), p, "key \"sample_size\"");
    p = write_text("huge_sample.json", vae_config_text(", \"sample_size\": 1000000"));
    expect_config_error(vae_config_load(&v, p), p, "key \"sample_size\"");
    p = write_text("vae_layers.json", vae_config_text(", \"layers_per_block\": 9"));
    expect_config_error(vae_config_load(&v, p), p, "key \"layers_per_block\"");
    p = write_text("clip_layers.json", "{\"num_hidden_layers\": 100000}");
    expect_config_error(clip_config_load(&c, p), p, "key \"num_hidden_layers\"");
    p = write_text("clip_positions.json", "{\"max_position_embeddings\": 100000000}");
    expect_config_error(clip_config_load(&c, p), p, "key \"max_position_embeddings\"");
    p = write_text("clip_vocab.json", "{\"vocab_size\": 2000000000}");
    expect_config_error(clip_config_load(&c, p), p, "key \"vocab_size\"");

    // The largest UNet the bounds allow: a forward pass pushes and pops every skip
    // connection (AddressSanitizer, make test-asan, watches the stack's end).
    p = write_text("at_bounds.json", unet_config_text(CFG_MAX_BLOCKS, CFG_MAX_LAYERS_PER_BLOCK, ""));
    int rc = unet_config_load(&u, p);
    EXPECT(rc == 0, "%s", err_msg());
    if (rc == 0) {
        param_set ps;
        params_init(&ps, DT_F32, DEV_CPU);
        unet_model m;
        unet_init(&m, &u, &ps, "");
        params_zero(&ps);
        autograd_no_grad_begin();
        const int side = 1 << (CFG_MAX_BLOCKS - 1);  // halved at each downsampler, down to 1
        tensor *sample = tensor_zeros(DT_F32, DEV_CPU, SHAPE(1, side, side, 4));
        tensor *t = tensor_from_f32(DT_F32, DEV_CPU, SHAPE(1), (const float[]){500});
        tensor *ctx = tensor_zeros(DT_F32, DEV_CPU, SHAPE(1, 3, 8));
        tensor *out = unet_forward(&m, sample, t, ctx);
        EXPECT(out->shape[1] == side && out->shape[2] == side && out->shape[3] == 4, "output shape");
        tensor_free(out), tensor_free(sample), tensor_free(t), tensor_free(ctx);
        autograd_no_grad_end();
        params_free(&ps);
        unet_free(&m);
    }
    test_end();

    test_begin("models: non-finite and out-of-range numbers in config.json name the file and the key");
    p = write_text("eps_inf.json", unet_config_text(2, 2, ", \"norm_eps\": 1e999"));
    expect_config_error(unet_config_load(&u, p), p, "key \"norm_eps\": expected a finite number from");
    p = write_text("eps_zero.json", unet_config_text(2, 2, ", \"norm_eps\": 0"));
    expect_config_error(unet_config_load(&u, p), p, "key \"norm_eps\": expected a finite number from");
    p = write_text("eps_negative.json", "{\"layer_norm_eps\": -1e-5}");
    expect_config_error(clip_config_load(&c, p), p, "key \"layer_norm_eps\"");
    p = write_text("eps_big.json", "{\"layer_norm_eps\": -1e999}");
    expect_config_error(clip_config_load(&c, p), p, "key \"layer_norm_eps\"");
    p = write_text("scale_inf.json", vae_config_text(", \"scaling_factor\": Infinity"));
    expect_config_error(vae_config_load(&v, p), p, "key \"scaling_factor\": expected a finite number");
    p = write_text("scale_zero.json", vae_config_text(", \"scaling_factor\": 0"));
    expect_config_error(vae_config_load(&v, p), p, "key \"scaling_factor\"");
    p = write_text("scale_float.json", unet_config_text(2, 2, ", \"mid_block_scale_factor\": 1e300"));
    expect_config_error(unet_config_load(&u, p), p, "key \"mid_block_scale_factor\"");
    p = write_text("shift.json", unet_config_text(2, 2, ", \"freq_shift\": 1e999"));
    expect_config_error(unet_config_load(&u, p), p, "key \"freq_shift\"");
    // JSON has no NaN: Python's json writes a bare NaN, which does not parse.
    p = write_text("nan.json", "{\"scaling_factor\": NaN}");
    expect_config_error(vae_config_load(&v, p), p, "malformed JSON");
    test_end();
}

// --- loading errors ------------------------------------------------------------------------------

// A copy of the tiny folder in the scratch dir, to break.
static const char *scratch_copy(const char *name) {
    static char dst[1024];
    snprintf(dst, sizeof dst, "%s/%s", scratch_dir(), name);
    char cmd[2600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", dst, repo_path(FIXTURES "tiny-sd"), dst);
    CHECK(system(cmd) == 0, "%s failed", cmd);
    return dst;
}

// Rewrites a safetensors file through edit(name, tensor) -> the tensor to write
// (NULL drops it); extra (if not NULL) is added under extra_name.
static void rewrite(const char *path, tensor *(*edit)(const char *name, tensor *t),
                    const char *extra_name, tensor *extra) {
    st_file *f = st_open(path);
    CHECK(f, "%s", err_msg());
    st_writer *w = st_writer_new();
    for (int i = 0; i < st_count(f); i++) {
        const st_entry *e = st_entry_at(f, i);
        tensor *t = st_tensor(f, e);
        tensor *out = edit(e->name, t);
        if (out) st_writer_add(w, e->name, out);
        if (out != t) tensor_free(out);
        tensor_free(t);
    }
    if (extra) st_writer_add(w, extra_name, extra);
    CHECK(st_writer_save(w, path) == 0, "%s", err_msg());
    st_writer_free(w);
    st_close(f);
}

static tensor *keep(const char *name, tensor *t) { return t; }

static tensor *drop_conv_in(const char *name, tensor *t) {
    return strcmp(name, "conv_in.weight") == 0 ? NULL : t;
}

static tensor *narrow_conv_in_bias(const char *name, tensor *t) {
    return strcmp(name, "conv_in.bias") == 0 ? op_slice(t, 0, 0, t->shape[0] - 1) : t;
}

static tensor *to_f16(const char *name, tensor *t) { return op_cast(t, DT_F16); }

static void expect_load_error(const char *path, const char *config_dir, const char *want) {
    sd_model m;
    int rc = load(&m, path, DT_F32, DEV_CPU, config_dir);
    EXPECT(rc == -1, "loaded a broken checkpoint (%s)", want);
    if (rc == 0) sd_model_free(&m);
    EXPECT(strstr(err_msg(), want) && !strchr(err_msg(), '\n'), "message \"%s\" lacks \"%s\"",
           err_msg(), want);
}

static void test_load_errors(void) {
    char path[1200];
    const char *dir;

    test_begin("models: a tensor missing from the checkpoint is an error naming it");
    dir = scratch_copy("missing");
    snprintf(path, sizeof path, "%s/unet/diffusion_pytorch_model.safetensors", dir);
    rewrite(path, drop_conv_in, NULL, NULL);
    expect_load_error(dir, NULL, "unet.conv_in.weight");
    test_end();

    test_begin("models: a tensor of the wrong shape is an error naming file, tensor and shapes");
    dir = scratch_copy("shape");
    snprintf(path, sizeof path, "%s/unet/diffusion_pytorch_model.safetensors", dir);
    rewrite(path, narrow_conv_in_bias, NULL, NULL);
    expect_load_error(dir, NULL, "conv_in.bias has shape [15], the model config needs [16]");
    test_end();

    test_begin("models: a truncated weights file is an error naming it");
    dir = scratch_copy("truncated");
    snprintf(path, sizeof path, "%s/vae/diffusion_pytorch_model.safetensors", dir);
    CHECK(truncate(path, 4096) == 0, "truncate failed");
    expect_load_error(dir, NULL, "vae/diffusion_pytorch_model.safetensors");
    test_end();

    test_begin("models: unexpected tensors are counted and reported, not fatal");
    dir = scratch_copy("unexpected");
    snprintf(path, sizeof path, "%s/unet/diffusion_pytorch_model.safetensors", dir);
    tensor *extra = tensor_zeros(DT_F32, DEV_CPU, SHAPE(3));
    rewrite(path, keep, "extra.weight", extra);
    tensor_free(extra);
    sd_model m;
    int rc = load(&m, dir, DT_F32, DEV_CPU, NULL);
    EXPECT(rc == 0, "%s", err_msg());
    if (rc == 0) {
        EXPECT(m.report[1].unexpected == 1 && strcmp(m.report[1].first_unexpected, "unet.extra.weight") == 0,
               "unet: %d unexpected (%s)", m.report[1].unexpected, m.report[1].first_unexpected);
        sd_model_free(&m);
    }
    test_end();

    test_begin("models: unknown architectures are refused");
    dir = scratch_copy("sdxl");
    snprintf(path, sizeof path, "%s/model_index.json", dir);
    write_file(path, "{\"_class_name\": \"StableDiffusionXLPipeline\", \"text_encoder\": [\"transformers\", "
          "\"CLIPTextModel\"], \"text_encoder_2\": [\"transformers\", \"CLIPTextModelWithProjection\"], "
          "\"unet\": [\"diffusers\", \"UNet2DConditionModel\"], \"vae\": [\"diffusers\", \"AutoencoderKL\"]}");
    expect_load_error(dir, NULL, "SDXL");
    dir = scratch_copy("unet2d");
    snprintf(path, sizeof path, "%s/model_index.json", dir);
    write_file(path, "{\"text_encoder\": [\"transformers\", \"CLIPTextModel\"], \"unet\": [\"diffusers\", "
          "\"UNet2DModel\"], \"vae\": [\"diffusers\", \"AutoencoderKL\"]}");
    expect_load_error(dir, NULL, "UNet2DModel");
    snprintf(path, sizeof path, "%s/xl.safetensors", scratch_dir());
    st_writer *w = st_writer_new();
    tensor *z = tensor_zeros(DT_F32, DEV_CPU, SHAPE(2));
    st_writer_add(w, "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight", z);
    st_writer_add(w, "model.diffusion_model.out.2.bias", z);
    CHECK(st_writer_save(w, path) == 0, "%s", err_msg());
    st_writer_free(w);
    expect_load_error(path, NULL, "SDXL");
    snprintf(path, sizeof path, "%s/other.safetensors", scratch_dir());
    w = st_writer_new();
    st_writer_add(w, "encoder.weight", z);
    CHECK(st_writer_save(w, path) == 0, "%s", err_msg());
    st_writer_free(w);
    tensor_free(z);
    expect_load_error(path, NULL, "not a Stable Diffusion 1.x checkpoint");
    test_end();

    test_begin("models: pickle checkpoints (.ckpt, .bin) are refused with how to convert them");
    snprintf(path, sizeof path, "%s/model.ckpt", scratch_dir());
    write_file(path, "\x80\x02}q\x00.");
    expect_load_error(path, NULL, "convert it to .safetensors");
    snprintf(path, sizeof path, "%s/zipped.safetensors", scratch_dir());
    write_file(path, "PK\x03\x04 a torch zip archive");
    expect_load_error(path, NULL, "pickle");
    dir = scratch_copy("bin");
    snprintf(path, sizeof path, "cd '%s/vae' && mv diffusion_pytorch_model.safetensors "
                                "diffusion_pytorch_model.bin", dir);
    CHECK(system(path) == 0, "mv failed");
    expect_load_error(dir, NULL, "diffusion_pytorch_model.bin");
    test_end();

    test_begin("models: missing or broken config.json and model_index.json");
    dir = scratch_copy("noconfig");
    snprintf(path, sizeof path, "%s/unet/config.json", dir);
    unlink(path);
    expect_load_error(dir, NULL, "unet/config.json");
    snprintf(path, sizeof path, "%s/model_index.json", dir);
    write_file(path, "{\n  \"unet\": [\"diffusers\",\n");
    expect_load_error(dir, NULL, "model_index.json:3: malformed JSON");
    unlink(path);
    expect_load_error(dir, NULL, "model_index.json: missing");
    expect_load_error("/nonexistent/model", NULL, "no such file or folder");
    test_end();
}

static void test_fp16_variant(void) {
    test_begin("models: .fp16 variant files load, converted to f32 at load");
    const char *dir = scratch_copy("fp16");
    const char *comps[3][2] = {{"text_encoder", "model"}, {"unet", "diffusion_pytorch_model"},
                               {"vae", "diffusion_pytorch_model"}};
    char path[1200], variant[1200];
    for (int c = 0; c < 3; c++) {
        snprintf(path, sizeof path, "%s/%s/%s.safetensors", dir, comps[c][0], comps[c][1]);
        snprintf(variant, sizeof variant, "%s/%s/%s.fp16.safetensors", dir, comps[c][0], comps[c][1]);
        rewrite(path, to_f16, NULL, NULL);
        CHECK(rename(path, variant) == 0, "rename failed");
    }
    sd_model m, ref;
    int rc = load(&m, dir, DT_F32, DEV_CPU, NULL);
    EXPECT(rc == 0, "%s", err_msg());
    int rc_ref = load(&ref, repo_path(FIXTURES "tiny-sd"), DT_F32, DEV_CPU, NULL);
    if (rc == 0 && rc_ref == 0) {
        // Each parameter is the f16 rounding of the f32 original.
        int differ = 0;
        for (int i = 0; i < m.params.count; i++) {
            const tensor *a = *m.params.items[i].slot, *b = *ref.params.items[i].slot;
            float *x = host_floats(a), *y = host_floats(b);
            for (int64_t k = 0; k < tensor_numel(a); k++) differ += x[k] != f16_to_f32(f32_to_f16(y[k]));
            free(x);
            free(y);
        }
        EXPECT(differ == 0, "%d values are not the f16 rounding of the originals", differ);
        sd_model_free(&m);
    }
    if (rc_ref == 0) sd_model_free(&ref);
    sd_load_options opt = {.dt = DT_F32, .dev = DEV_CPU, .variant = "bf16"};
    rc = sd_model_load(&m, dir, &opt);
    EXPECT(rc == -1 && strstr(err_msg(), "bf16.safetensors"), "a missing variant: %s", err_msg());
    test_end();
}

// --- the models on cuda-emu ----------------------------------------------------------------------

static void test_emulated(void) {
#ifndef SDFT_HAVE_EMU
    test_begin("models: tiny SD on cuda-emu");
    test_skip("SKIPPED: built without the CUDA emulator");
    test_end();
#else
    const dtype dts[2] = {DT_F32, DT_BF16};
    for (int d = 0; d < 2; d++) {
        test_begin("models: tiny SD on cuda-emu in %s matches the reference within %g",
                   dtype_name(dts[d]), dts[d] == DT_F32 ? F32_TOL : BF16_TOL);
        sd_model m;
        int rc = load(&m, repo_path(FIXTURES "tiny-sd"), dts[d], DEV_CUDA_EMU, NULL);
        EXPECT(rc == 0, "%s", err_msg());
        if (rc == 0) {
            outputs o = run_tiny_sd(&m, DEV_CUDA_EMU);
            expect_reference(&o, dts[d] == DT_F32 ? F32_TOL : BF16_TOL);
            outputs_free(&o);
            sd_model_free(&m);
        }
        test_end();
    }
#endif
}

// The tiny model rendered on every other backend (cuda-emu in make test, a GPU too in
// make test-gpu) against the CPU's render: 64x64, 4 DPM++ steps with guidance and a
// negative prompt, decoded images within 1e-4 in f32 and 5e-2 in bf16.
static float *render_tiny(device dev, dtype dt, const char *tokenizer) {
    pipeline p;
    sd_load_options opt = {.dt = dt, .dev = dev};
    int rc = pipeline_open(&p, repo_path(FIXTURES "tiny-sd"), tokenizer, NULL, &opt);
    EXPECT(rc == 0, "%s", err_msg());
    if (rc) return NULL;
    render_params rp;
    render_params_default(&rp, &p);
    rp.prompt = "a photo of a red ball";
    rp.negative_prompt = "blurry";
    rp.width = rp.height = 64;
    rp.steps = 4;
    rp.seed = 3;
    CHECK(sampler_from_name("dpmpp_2m", &rp.sampler) == 0, "%s", err_msg());
    float *images = NULL;
    rc = pipeline_render(&p, &rp, NULL, NULL, &images);
    EXPECT(rc == 0, "%s", err_msg());
    pipeline_close(&p);
    return images;
}

static void test_render_on_backends(void) {
    device devs[DEV_COUNT];
    int n_devs = harness_backends_to_compare(devs, "models: tiny SD render against the CPU's");
    char tokenizer[1024], vocab[1100];
    path_beside_program(tokenizer, sizeof tokenizer, "clip-tokenizer");
    snprintf(vocab, sizeof vocab, "%s/vocab.json", tokenizer);
    if (access(vocab, R_OK) != 0) {
        test_begin("models: tiny SD render on the other backends against the CPU's");
        test_skip("no CLIP tokenizer at %s (the build derives it from ../shared/data/clip; make device-check packs it)",
                  tokenizer);
        test_end();
        return;
    }
    float *cpu = render_tiny(DEV_CPU, DT_F32, tokenizer);
    CHECK(cpu, "the CPU render failed: %s", err_msg());
    const dtype dts[2] = {DT_F32, DT_BF16};
    for (int d = 0; d < n_devs; d++)
        for (int k = 0; k < 2; k++) {
            double tol = dts[k] == DT_F32 ? 1e-4 : BF16_TOL;
            test_begin("models: tiny SD rendered on %s (%s): images within %g of the CPU's", device_name(devs[d]),
                       dtype_name(dts[k]), tol);
            float *images = render_tiny(devs[d], dts[k], tokenizer);
            if (images) {
                double err = rel_error(images, cpu, 64 * 64 * 3);
                EXPECT(err <= tol, "decoded images: relative error %.3g", err);
            }
            free(images);
            test_end();
        }
    free(cpu);
}

// A failed load names the file at fault (not the first file it opened), and leaves
// the model or pipeline zeroed, so freeing or closing it again is harmless.
static void test_failed_loads(void) {
    static const char *components[][2] = {{"unet", "diffusion_pytorch_model"}, {"vae", "diffusion_pytorch_model"}};
    char path[1200], cmd[2600];
    for (int c = 0; c < 2; c++) {
        test_begin("models: a %s weights file holding another model's tensors is reported against that file",
                   components[c][0]);
        const char *dir = scratch_copy("swapped");
        snprintf(path, sizeof path, "%s/%s/%s.safetensors", dir, components[c][0], components[c][1]);
        snprintf(cmd, sizeof cmd, "cp '%s/text_encoder/model.safetensors' '%s'", dir, path);
        CHECK(system(cmd) == 0, "%s failed", cmd);
        sd_model m;
        int rc = load(&m, dir, DT_F32, DEV_CPU, NULL);
        EXPECT(rc == -1 && strstr(err_msg(), path) && !strstr(err_msg(), "text_encoder/") &&
                   !strchr(err_msg(), '\n'),
               "rc %d: \"%s\" does not name %s", rc, err_msg(), path);
        EXPECT(m.params.count == 0 && m.unet.cfg.n_blocks == 0 && m.vae.cfg.n_blocks == 0,
               "the failed load left the model filled");
        sd_model_free(&m);
        if (rc == 0) sd_model_free(&m);
        test_end();
    }

    test_begin("models: a tensor missing from one component's file names that file");
    const char *dir = scratch_copy("missing-unet");
    snprintf(path, sizeof path, "%s/unet/diffusion_pytorch_model.safetensors", dir);
    rewrite(path, drop_conv_in, NULL, NULL);
    expect_load_error(dir, NULL, path);
    test_end();

    test_begin("models: a failed pipeline_open leaves the pipeline zeroed, and closing it is harmless");
    char tok[1024];
    path_beside_program(tok, sizeof tok, "clip-tokenizer");
    pipeline p;
    sd_load_options opt = {.dt = DT_F32, .dev = DEV_CPU};
    const char *sched = scratch_path("no-scheduler.json");
    int rc = pipeline_open(&p, repo_path(FIXTURES "tiny-sd"), tok, sched, &opt);
    EXPECT(rc == -1 && strstr(err_msg(), sched), "rc %d: %s", rc, err_msg());
    EXPECT(!p.tokenizer && !p.schedule.betas && p.model.params.count == 0, "the failed open left the pipeline filled");
    pipeline_close(&p);
    if (rc == 0) pipeline_close(&p);
    test_end();
}

void suite_models(void) {
    reference();
    test_configs();
    test_config_bounds();
    test_folder_and_single_file();
    test_unet_v2();
    test_wide_head_attention();
    test_ldm_names();
    test_load_errors();
    test_failed_loads();
    test_fp16_variant();
    test_emulated();
    test_render_on_backends();
    st_close(ref_file);
    ref_file = NULL;
}

// --- full size (make test-full) --------------------------------------------------------------

#define FULL_TOL 1e-4

// Every parameter of a equals b's, bit for bit.
static int count_differing_params(const sd_model *a, const sd_model *b) {
    int differ = 0;
    for (int i = 0; i < a->params.count; i++) {
        const tensor *x = *a->params.items[i].slot, *y = *b->params.items[i].slot;
        differ += !(tensor_same_shape(x, y) &&
                    memcmp(tensor_data(x), tensor_data(y), (size_t)tensor_numel(x) * dtype_size(x->dtype)) == 0);
    }
    return differ;
}

// The random SD1.5-shaped checkpoint (tools/make_random_sd15.py) against diffusers'
// passes over it (tools/golden/full_reference.py); make test-full sets the paths.
void suite_full(void) {
    const char *dir = getenv("SDFT_FULL_MODEL"), *ref = getenv("SDFT_FULL_REFERENCE");
    const char *single_path = getenv("SDFT_FULL_SINGLE_FILE");
    if (!dir || !ref) {
        test_begin("full: SD1.5-shaped model against diffusers");
        test_skip("SKIPPED: SDFT_FULL_MODEL and SDFT_FULL_REFERENCE are not set (run make test-full)");
        test_end();
        return;
    }
    ref_file = st_open(ref);
    CHECK(ref_file, "%s", err_msg());
    sd_model m;
    test_begin("full: SD1.5-shaped diffusers folder loads");
    int rc = load(&m, dir, DT_F32, DEV_CPU, NULL);
    EXPECT(rc == 0, "%s", err_msg());
    if (rc == 0) sd_model_print_report(&m);
    test_end();
    if (rc == 0) {
        autograd_no_grad_begin();
        test_begin("full: text encoder (and clip skip 1) within %g of diffusers", FULL_TOL);
        tensor *ids = fixture_ids(DEV_CPU);
        tensor *te = clip_encode(&m.text_encoder, ids, 0), *te_skip = clip_encode(&m.text_encoder, ids, 1);
        EXPECT_CLOSE(te, "te.last_hidden_state", FULL_TOL);
        EXPECT_CLOSE(te_skip, "te.clip_skip_1", FULL_TOL);
        tensor_free(ids), tensor_free(te), tensor_free(te_skip);
        test_end();

        test_begin("full: UNet forward at a 64x64 latent, batch 2, within %g of diffusers", FULL_TOL);
        tensor *sample = fixture_tensor(reference(), "unet.sample", DEV_CPU);
        tensor *t = fixture_tensor(reference(), "unet.timestep", DEV_CPU);
        tensor *ctx = fixture_tensor(reference(), "unet.encoder_hidden_states", DEV_CPU);
        tensor *out = unet_forward(&m.unet, sample, t, ctx);
        EXPECT_CLOSE(out, "unet.out", FULL_TOL);
        tensor_free(out), tensor_free(sample), tensor_free(t), tensor_free(ctx);
        test_end();

        test_begin("full: VAE decode to 512x512 within %g of diffusers", FULL_TOL);
        tensor *latent = fixture_tensor(reference(), "vae.latent", DEV_CPU);
        tensor *image = vae_decode(&m.vae, latent);
        EXPECT_CLOSE(image, "vae.decoded", FULL_TOL);
        tensor_free(image), tensor_free(latent);
        test_end();
        autograd_no_grad_end();

        if (single_path) {
            test_begin("full: the single file with the built-in SD1.5 configs holds the same weights");
            sd_model s;
            rc = load(&s, single_path, DT_F32, DEV_CPU, NULL);
            EXPECT(rc == 0, "%s", err_msg());
            if (rc == 0) {
                sd_model_print_report(&s);
                EXPECT(s.params.count == m.params.count, "%d parameters, folder %d", s.params.count,
                       m.params.count);
                if (s.params.count == m.params.count) {
                    int differ = count_differing_params(&s, &m);
                    EXPECT(differ == 0, "%d parameters differ from the folder's", differ);
                }
                sd_model_free(&s);
            }
            test_end();
        }
        sd_model_free(&m);
    }
    st_close(ref_file);
    ref_file = NULL;
}
