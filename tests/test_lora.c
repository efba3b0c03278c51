// suite_lora: LoRA adapters (infer/lora.h) against diffusers.
//
// tests/fixtures/lora holds adapters for the tiny SD model of tests/fixtures/models in
// each layout users have, written by tools/golden/lora.py (diffusers 0.30.3, peft
// 0.12.0), and diffusers' UNet and text-encoder outputs with them, computed in
// float64. Ours must match within 1e-4 (relative L2) merged and at run time, the two
// modes must agree, stacked adapters must add up, the names must go both ways, and
// every bad file must be refused (strict) or skipped and counted (lenient). The
// trained_* cases are the two files our trainer wrote for trained.yaml: what we save
// loads in diffusers and gives the same outputs as our engine with it. comfy-keys.json
// and comfy-deltas.safetensors (tools/golden/comfy_lora.py) are where ComfyUI's own
// comfy/lora.py puts those files' tensors and what it adds to the weights.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/files.h"
#include "core/rng.h"
#include "infer/lora.h"
#include "kernels/tensor_file.h"
#include "train/adapters.h"
#include "tests/harness.h"
#include "tests/test.h"

#define FIXTURES "tests/fixtures/lora/"
#define MODEL "tests/fixtures/models/tiny-sd"
#define TOL 1e-4
#define MODES_TOL 1e-5  // merged against run time: the same sums, rounded differently

// --- the reference and the model --------------------------------------------------------------

static st_file *ref_file;

static st_file *reference(void) {
    if (!ref_file) {
        ref_file = st_open(repo_path(FIXTURES "lora-outputs.safetensors"));
        CHECK(ref_file, "%s", err_msg());
        CHECK(st_meta(ref_file, "format_version") && strcmp(st_meta(ref_file, "format_version"), "1") == 0,
              "lora-outputs.safetensors: format_version is not 1; regenerate with make golden");
    }
    return ref_file;
}



static double rel_between(const tensor *ours, const tensor *ref) {
    if (!tensor_same_shape(ours, ref)) return INFINITY;
    float *a = host_floats(ours), *b = host_floats(ref);
    double err = rel_error(a, b, tensor_numel(ref));
    free(a), free(b);
    return err;
}


#define EXPECT_CLOSE(ours, name, tol)                                                         \
    do {                                                                                       \
        double err_ = fixture_error((ours), reference(), (name));                                           \
        EXPECT(err_ <= (tol), "%s: relative error %.3g > %.3g", (name), err_, (double)(tol)); \
    } while (0)

static bool same_values(const tensor *a, const tensor *b) {
    if (!tensor_same_shape(a, b)) return false;
    float *x = host_floats(a), *y = host_floats(b);
    bool same = memcmp(x, y, (size_t)tensor_numel(a) * sizeof *x) == 0;
    free(x), free(y);
    return same;
}

static void load_model(sd_model *m, device dev) {
    sd_load_options opt = {.dt = DT_F32, .dev = dev};
    CHECK(sd_model_load(m, repo_path(MODEL), &opt) == 0, "%s", err_msg());
}

typedef struct {
    tensor *unet, *te;
} outputs;

// The UNet on the reference's inputs and the text encoder's last layer on its ids.
static outputs run(const sd_model *m, device dev) {
    tensor *ids = st_load(reference(), "inputs.te.input_ids", DT_I32, dev);
    CHECK(ids, "%s", err_msg());
    tensor *sample = fixture_tensor(reference(), "inputs.unet.sample", dev), *t = fixture_tensor(reference(), "inputs.unet.timestep", dev);
    tensor *ctx = fixture_tensor(reference(), "inputs.unet.encoder_hidden_states", dev);
    outputs o = {.unet = unet_forward(&m->unet, sample, t, ctx), .te = clip_encode(&m->text_encoder, ids, 0)};
    tensor_free(ids), tensor_free(sample), tensor_free(t), tensor_free(ctx);
    return o;
}

static void outputs_free(outputs *o) {
    tensor_free(o->unet);
    tensor_free(o->te);
}

static const char *fixture_path(const char *file) {
    static char path[4][1024];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, sizeof path[0], "%s", repo_path(FIXTURES));
    snprintf(p + strlen(p), sizeof path[0] - strlen(p), "%s", file);
    return p;
}

// --- against diffusers --------------------------------------------------------------------------

typedef struct {
    const char *file;
    float scale;
} adapter;

typedef struct {
    const char *name;  // the reference's "<name>.unet" and "<name>.te"
    adapter adapters[2];
    bool te;             // the adapters change the text encoder
    const char *format;  // the first adapter's
    int applied;         // modules, all adapters together
} golden_case;

// The adapters and multipliers of tools/golden/lora.py's cases.
static const golden_case cases[] = {
    {"peft", {{"peft.safetensors", 0.8f}}, true, "peft", 148},
    {"kohya", {{"kohya.safetensors", 0.7f}}, true, "kohya", 222},
    {"old", {{"old.safetensors", 1.3f}}, true, "diffusers-old", 158},
    {"attn_procs", {{"attn-procs.safetensors", 0.6f}}, false, "diffusers-old", 128},
    {"stacked", {{"peft.safetensors", 0.8f}, {"kohya.safetensors", 0.5f}}, true, "peft", 148 + 222},
    {"peft_unet", {{"peft-unet/adapter_model.safetensors", 0.9f}}, false, "peft", 96},
    // Our trainer's own files (tests/fixtures/lora/trained.yaml), as diffusers loaded them.
    {"trained_peft", {{"trained.safetensors", 1.0f}}, true, "peft", 222},
    {"trained_kohya", {{"trained_kohya.safetensors", 1.0f}}, true, "kohya", 222},
};

// Loads the case's adapters onto a fresh model and runs it; false if a load failed.
static bool run_case(const golden_case *c, lora_mode mode, device dev, outputs *o) {
    sd_model m;
    load_model(&m, dev);
    lora_set set = {0};
    int applied = 0;
    bool ok = true;
    for (int a = 0; a < 2 && c->adapters[a].file; a++) {
        lora_report rep;
        const adapter *ad = &c->adapters[a];
        int rc = lora_load(&set, &m, fixture_path(ad->file), ad->scale, mode, false, &rep);
        EXPECT(rc == 0, "%s", err_msg());
        ok = ok && rc == 0;
        EXPECT(rep.skipped == 0, "%d skipped (%s)", rep.skipped, rep.first_skipped);
        if (a == 0) EXPECT(strcmp(rep.format, c->format) == 0, "format %s, want %s", rep.format, c->format);
        applied += rep.applied;
    }
    EXPECT(applied == c->applied, "%d modules applied, want %d", applied, c->applied);
    if (ok) *o = run(&m, dev);
    lora_set_free(&set);
    sd_model_free(&m);
    return ok;
}

static void expect_case_reference(const golden_case *c, const outputs *o, double tol) {
    char name[64];
    snprintf(name, sizeof name, "%s.unet", c->name);
    EXPECT_CLOSE(o->unet, name, tol);
    if (c->te) {
        snprintf(name, sizeof name, "%s.te", c->name);
        EXPECT_CLOSE(o->te, name, tol);
    }
}

static void test_against_diffusers(void) {
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const golden_case *c = &cases[i];
        outputs o[2];
        bool ok[2];
        for (int mode = 0; mode < 2; mode++) {
            test_begin("lora: %s (%s%s) %s matches diffusers within %g", c->name, c->adapters[0].file,
                       c->adapters[1].file ? " + kohya" : "", mode == LORA_MERGE ? "merged" : "at run time",
                       TOL);
            ok[mode] = run_case(c, (lora_mode)mode, DEV_CPU, &o[mode]);
            if (ok[mode]) expect_case_reference(c, &o[mode], TOL);
            if (mode == LORA_RUNTIME && ok[0] && ok[1]) {
                double du = rel_between(o[0].unet, o[1].unet), dt = rel_between(o[0].te, o[1].te);
                EXPECT(du <= MODES_TOL && dt <= MODES_TOL,
                       "merged and run time differ by %.3g (UNet), %.3g (text)", du, dt);
            }
            test_end();
        }
        for (int mode = 0; mode < 2; mode++)
            if (ok[mode]) outputs_free(&o[mode]);
    }
}

static void test_emulated(void) {
#ifndef SDFT_HAVE_EMU
    test_begin("lora: run-time adapters on cuda-emu");
    test_skip("SKIPPED: built without the CUDA emulator");
    test_end();
#else
    const golden_case *c = &cases[1];  // kohya: float16 file, 1x1-conv proj_in/proj_out, alphas
    test_begin("lora: %s at run time on cuda-emu (f32) matches diffusers within %g", c->name, TOL);
    outputs o;
    if (run_case(c, LORA_RUNTIME, DEV_CUDA_EMU, &o)) {
        expect_case_reference(c, &o, TOL);
        outputs_free(&o);
    }
    test_end();
#endif
}

static void test_set_free(void) {
    test_begin("lora: lora_set_free detaches stacked run-time adapters: the base model's outputs again");
    sd_model m;
    load_model(&m, DEV_CPU);
    outputs base = run(&m, DEV_CPU);
    lora_set set = {0};
    int rc = lora_load(&set, &m, fixture_path("peft.safetensors"), 0.8f, LORA_RUNTIME, false, NULL);
    if (rc == 0) rc = lora_load(&set, &m, fixture_path("kohya.safetensors"), 0.5f, LORA_RUNTIME, false, NULL);
    EXPECT(rc == 0, "%s", err_msg());
    EXPECT(set.count == 148 + 222, "%d adapters attached", set.count);
    outputs with = run(&m, DEV_CPU);
    EXPECT(!same_values(with.unet, base.unet) && !same_values(with.te, base.te),
           "the adapters changed nothing");
    lora_set_free(&set);
    EXPECT(set.count == 0 && !set.items, "the set is not empty after lora_set_free");
    int attached = 0;
    for (int i = 0; i < m.params.count; i++) attached += m.params.items[i].linear && m.params.items[i].linear->lora;
    EXPECT(attached == 0, "%d layers still have adapters", attached);
    outputs after = run(&m, DEV_CPU);
    EXPECT(same_values(after.unet, base.unet) && same_values(after.te, base.te), "outputs differ from the base model's");
    outputs_free(&base), outputs_free(&with), outputs_free(&after);
    sd_model_free(&m);
    test_end();
}

// --- names both ways ----------------------------------------------------------------------------

static void test_names(void) {
    test_begin("lora: kohya and PEFT names of canonical modules");
    static const char *const examples[][2] = {
        {"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
         "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"},
        {"unet.up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_out.0",
         "lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_attn2_to_out_0"},
        {"unet.mid_block.attentions.0.proj_in", "lora_unet_mid_block_attentions_0_proj_in"},
        {"unet.up_blocks.1.attentions.0.transformer_blocks.0.ff.net.0.proj",
         "lora_unet_up_blocks_1_attentions_0_transformer_blocks_0_ff_net_0_proj"},
        {"text_encoder.text_model.encoder.layers.11.self_attn.out_proj",
         "lora_te_text_model_encoder_layers_11_self_attn_out_proj"},
        {"text_encoder.text_model.encoder.layers.0.mlp.fc1", "lora_te_text_model_encoder_layers_0_mlp_fc1"},
    };
    char out[PARAM_NAME_MAX];
    for (size_t i = 0; i < sizeof examples / sizeof *examples; i++) {
        bool ok = lora_kohya_name(examples[i][0], out, sizeof out);
        EXPECT(ok && strcmp(out, examples[i][1]) == 0, "%s -> %s", examples[i][0], ok ? out : "(none)");
        ok = lora_peft_name(examples[i][0], out, sizeof out);
        EXPECT(ok && strcmp(out, examples[i][0]) == 0, "%s -> %s", examples[i][0], ok ? out : "(none)");
    }
    EXPECT(!lora_kohya_name("vae.decoder.mid_block.attentions.0.to_q", out, sizeof out), "a VAE module has a kohya name");
    EXPECT(!lora_peft_name("vae.decoder.mid_block.attentions.0.to_q", out, sizeof out), "a VAE module has a PEFT name");
    EXPECT(!lora_kohya_name(examples[0][0], out, 16), "a name cut to 16 bytes was accepted");
    test_end();

    test_begin("lora: proj_in/proj_out are 1x1 convolutions (saved 4-D) in SD1, linear with use_linear_projection");
    sd_model sd1 = {0}, sd2 = {.unet_cfg.use_linear_projection = true};
    EXPECT(lora_conv_1x1(&sd1, "unet.mid_block.attentions.0.proj_in") &&
               lora_conv_1x1(&sd1, "unet.down_blocks.1.attentions.1.proj_out"),
           "SD1's proj_in/proj_out are not 1x1 convolutions");
    EXPECT(!lora_conv_1x1(&sd2, "unet.mid_block.attentions.0.proj_in"), "use_linear_projection: proj_in is a conv");
    EXPECT(!lora_conv_1x1(&sd1, examples[0][0]) && !lora_conv_1x1(&sd1, examples[3][0]) &&
               !lora_conv_1x1(&sd1, examples[4][0]),
           "an attention, feed-forward or text-encoder layer is a conv");
    test_end();
}

// Writes an adapter for every linear layer of the UNet and the text encoder, the
// same random rank-2 tensors under our kohya names (alpha 4: scale 2 x multiplier)
// or our PEFT names (no alpha: scale 1 x multiplier); returns the path.
static const char *write_every_module(const sd_model *m, bool kohya, int *modules) {
    static char path[2][1024];
    char *p = path[kohya];
    snprintf(p, sizeof path[0], "%s/every-%s.safetensors", scratch_dir(), kohya ? "kohya" : "peft");
    st_writer *w = st_writer_new();
    rng_stream rng = {.seed = 11};
    char module[PARAM_NAME_MAX], name[PARAM_NAME_MAX], key[PARAM_NAME_MAX + 32];
    *modules = 0;
    for (int i = 0; i < m->params.count; i++) {
        const param *prm = &m->params.items[i];
        if (!prm->linear || strncmp(prm->name, "vae.", 4) == 0) continue;
        snprintf(module, sizeof module, "%.*s", (int)(strlen(prm->name) - strlen(".weight")), prm->name);
        CHECK(kohya ? lora_kohya_name(module, name, sizeof name) : lora_peft_name(module, name, sizeof name),
              "no name for %s", module);
        const int64_t out = prm->shape[0], in = prm->shape[1];
        float *v = xmalloc(sizeof(float) * 2 * (size_t)(in + out));
        rng_fill_normal(&rng, v, 2 * (size_t)(in + out));
        for (int64_t k = 0; k < 2 * (in + out); k++) v[k] *= 0.1f;
        tensor *down = tensor_from_f32(DT_F32, DEV_CPU, SHAPE(2, in), v);
        tensor *up = tensor_from_f32(DT_F32, DEV_CPU, SHAPE(out, 2), v + 2 * in);
        snprintf(key, sizeof key, "%s%s", name, kohya ? LORA_KOHYA_DOWN : LORA_PEFT_DOWN);
        st_writer_add(w, key, down);
        snprintf(key, sizeof key, "%s%s", name, kohya ? LORA_KOHYA_UP : LORA_PEFT_UP);
        st_writer_add(w, key, up);
        if (kohya) {
            tensor *alpha = tensor_from_f32(DT_F32, DEV_CPU, SHAPE(1), (const float[]){4.0f});
            snprintf(key, sizeof key, "%s%s", name, LORA_KOHYA_ALPHA);
            st_writer_add(w, key, alpha);
            tensor_free(alpha);
        }
        tensor_free(down), tensor_free(up);
        free(v);
        ++*modules;
    }
    CHECK(st_writer_save(w, p) == 0, "%s", err_msg());
    st_writer_free(w);
    return p;
}

static void test_names_round_trip(void) {
    test_begin("lora: every linear layer saved under our kohya and PEFT names loads back, to the same weights");
    sd_model a, b;
    load_model(&a, DEV_CPU);
    load_model(&b, DEV_CPU);
    int n_kohya, n_peft;
    const char *kohya = write_every_module(&a, true, &n_kohya), *peft = write_every_module(&a, false, &n_peft);
    lora_set none = {0};
    lora_report rk, rp;
    int rc = lora_load(&none, &a, kohya, 0.5f, LORA_MERGE, false, &rk);
    EXPECT(rc == 0, "%s", err_msg());
    EXPECT(rk.applied == n_kohya && strcmp(rk.format, "kohya") == 0, "kohya: %d of %d modules, format %s",
           rk.applied, n_kohya, rk.format);
    rc = lora_load(&none, &b, peft, 1.0f, LORA_MERGE, false, &rp);
    EXPECT(rc == 0, "%s", err_msg());
    EXPECT(rp.applied == n_peft && strcmp(rp.format, "peft") == 0, "peft: %d of %d modules, format %s", rp.applied,
           n_peft, rp.format);
    int differ = 0;
    for (int i = 0; i < a.params.count; i++) differ += !same_values(*a.params.items[i].slot, *b.params.items[i].slot);
    EXPECT(differ == 0, "%d parameters differ between the two files' merges", differ);
    EXPECT(none.count == 0, "a merge attached %d adapters", none.count);
    sd_model_free(&a);
    sd_model_free(&b);
    test_end();
}

// --- the PEFT config: diffusers' metadata, adapter_config.json -----------------------------------

// A copy of a fixture adapter with the given tensor edited (edit returns the tensor to
// write or NULL to drop it; NULL edit keeps all), extra tensors and metadata. The
// caller adds more with st_writer_add and saves with save_scratch.
typedef tensor *(*edit_fn)(const char *name, tensor *t);

static st_writer *copy_adapter(const char *file, edit_fn edit) {
    st_file *f = st_open(fixture_path(file));
    CHECK(f, "%s", err_msg());
    st_writer *w = st_writer_new();
    for (int i = 0; i < st_count(f); i++) {
        const st_entry *e = st_entry_at(f, i);
        tensor *t = st_tensor(f, e);
        tensor *out = edit ? edit(e->name, t) : t;
        if (out) st_writer_add(w, e->name, out);
        if (out != t) tensor_free(out);
        tensor_free(t);
    }
    st_close(f);  // the tensors keep the mapping
    return w;
}

static const char *save_scratch(st_writer *w, const char *name) {
    static char path[4][1024];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, sizeof path[0], "%s/%s", scratch_dir(), name);
    CHECK(st_writer_save(w, p) == 0, "%s", err_msg());
    st_writer_free(w);
    return p;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    CHECK(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

// Loads one adapter at run time onto a fresh model and compares with a case's reference.
static void expect_like_case(const char *path, float scale, const golden_case *c) {
    sd_model m;
    load_model(&m, DEV_CPU);
    lora_set set = {0};
    int rc = lora_load(&set, &m, path, scale, LORA_RUNTIME, false, NULL);
    EXPECT(rc == 0, "%s", err_msg());
    if (rc == 0) {
        outputs o = run(&m, DEV_CPU);
        expect_case_reference(c, &o, TOL);
        outputs_free(&o);
    }
    lora_set_free(&set);
    sd_model_free(&m);
}

static void test_peft_config(void) {
    test_begin("lora: newer diffusers' lora_adapter_metadata sets lora_alpha per component");
    // lora_alpha 8 doubles every scale of peft.safetensors (whose default alpha is its
    // common rank, 4), so multiplier 0.4 gives the peft case's 0.8.
    st_writer *w = copy_adapter("peft.safetensors", NULL);
    st_writer_meta(w, "lora_adapter_metadata",
                   "{\"text_encoder.lora_alpha\": 8, \"text_encoder.r\": 4, \"unet.lora_alpha\": 8, \"unet.r\": 4}");
    expect_like_case(save_scratch(w, "peft-meta.safetensors"), 0.4f, &cases[0]);
    test_end();

    test_begin("lora: PEFT's adapter_config.json: lora_alpha, alpha_pattern and use_rslora");
    // alpha / sqrt(4) with alpha 12 (4 in the pattern) is 4 times the fixture's
    // alpha / 4 with alpha 6 (2): multiplier 0.9 / 4 gives the peft_unet case.
    char dir[1024], path[1100], cmd[3200];
    snprintf(dir, sizeof dir, "%s/peft-unet", scratch_dir());
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s' '%s/'", dir,
             fixture_path("peft-unet/adapter_model.safetensors"), dir);
    CHECK(system(cmd) == 0, "%s failed", cmd);
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    write_text(path, "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 12, \"use_rslora\": true,\n"
                     " \"alpha_pattern\": {\"down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q\": 4}}\n");
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    expect_like_case(path, 0.9f / 4, &cases[5]);
    test_end();

    test_begin("lora: a bad PEFT config is an error naming it and the key");
    sd_model m;
    load_model(&m, DEV_CPU);
    lora_set set = {0};
    const char *bad[][2] = {{"{\"lora_alpha\": \"six\"}", "lora_alpha"},
                            {"{\"lora_alpha\": 6, \"use_dora\": true}", "use_dora"},
                            {"{\"lora_alpha\": 6, \"alpha_pattern\": [1]}", "alpha_pattern"},
                            {"{\"lora_alpha\": 6,", "malformed JSON"}};
    char config[1100];
    snprintf(config, sizeof config, "%s/adapter_config.json", dir);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        write_text(config, bad[i][0]);
        int rc = lora_load(&set, &m, path, 1.0f, LORA_RUNTIME, true, NULL);
        EXPECT(rc == -1 && strstr(err_msg(), "adapter_config.json") && strstr(err_msg(), bad[i][1]),
               "%s: rc %d, message \"%s\"", bad[i][0], rc, err_msg());
    }
    w = copy_adapter("peft.safetensors", NULL);
    st_writer_meta(w, "lora_adapter_metadata", "[1, 2]");
    int rc = lora_load(&set, &m, save_scratch(w, "bad-meta.safetensors"), 1.0f, LORA_RUNTIME, true, NULL);
    EXPECT(rc == -1 && strstr(err_msg(), "lora_adapter_metadata"), "message \"%s\"", err_msg());
    EXPECT(set.count == 0, "%d adapters attached from bad files", set.count);
    sd_model_free(&m);
    test_end();
}

// --- bad files ----------------------------------------------------------------------------------

#define KOHYA_Q "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
#define KOHYA_Q_MODULE "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"

static tensor *narrow_q_down(const char *name, tensor *t) {
    return strcmp(name, KOHYA_Q LORA_KOHYA_DOWN) == 0 ? op_slice(t, 1, 0, t->shape[1] - 1) : t;
}

static tensor *drop_q_up(const char *name, tensor *t) {
    return strcmp(name, KOHYA_Q LORA_KOHYA_UP) == 0 ? NULL : t;
}

static void add_zeros(st_writer *w, const char *name, int ndim, const int64_t *shape) {
    tensor *z = tensor_zeros(DT_F32, DEV_CPU, ndim, shape);
    st_writer_add(w, name, z);
    tensor_free(z);
}

// Strict: -1, a one-line message naming the file and `want`, the model unchanged.
// Lenient: loads with `skipped` skips and the first's message naming `want`, and
// applied modules.
static void expect_refused(sd_model *m, const outputs *base, const char *path, const char *want, int skipped,
                           int applied) {
    lora_set set = {0};
    lora_report rep;
    int rc = lora_load(&set, m, path, 1.0f, LORA_MERGE, false, &rep);
    EXPECT(rc == -1, "a strict load accepted %s", path);
    EXPECT(strstr(err_msg(), path) && strstr(err_msg(), want) && !strchr(err_msg(), '\n'),
           "message \"%s\" lacks the path or \"%s\"", err_msg(), want);
    outputs after = run(m, DEV_CPU);
    EXPECT(same_values(after.unet, base->unet) && same_values(after.te, base->te),
           "a refused merge changed the model");
    outputs_free(&after);
    rc = lora_load(&set, m, path, 1.0f, LORA_RUNTIME, true, &rep);
    if (skipped < 0) {  // refused in both modes
        EXPECT(rc == -1 && strstr(err_msg(), want), "lenient: rc %d, message \"%s\"", rc, err_msg());
    } else {
        EXPECT(rc == 0, "lenient: %s", err_msg());
        EXPECT(rep.skipped == skipped && rep.applied == applied && strstr(rep.first_skipped, want),
               "lenient: %d skipped (want %d), %d applied (want %d), first: %s", rep.skipped, skipped, rep.applied,
               applied, rep.first_skipped);
    }
    lora_set_free(&set);
}

static void test_bad_files(void) {
    sd_model m;
    load_model(&m, DEV_CPU);
    outputs base = run(&m, DEV_CPU);
    st_writer *w;

    test_begin("lora: a tensor whose shape does not fit its layer: error naming it (strict), skipped (lenient)");
    w = copy_adapter("kohya.safetensors", narrow_q_down);
    expect_refused(&m, &base, save_scratch(w, "shape.safetensors"), KOHYA_Q LORA_KOHYA_DOWN " has shape [4, 15]", 1,
                   221);
    test_end();

    test_begin("lora: unknown tensors: error naming them (strict), counted (lenient)");
    w = copy_adapter("peft.safetensors", NULL);
    add_zeros(w, "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_z.lora_A.weight", SHAPE(4, 16));
    expect_refused(&m, &base, save_scratch(w, "unknown.safetensors"), "attn1.to_z.lora_A.weight matches no module", 1,
                   148);
    w = copy_adapter("kohya.safetensors", NULL);
    add_zeros(w, "lora_unet_input_blocks_1_1_proj_in.lora_down.weight", SHAPE(4, 16));
    add_zeros(w, "lora_unet_input_blocks_1_1_proj_in.lora_up.weight", SHAPE(16, 4));
    expect_refused(&m, &base, save_scratch(w, "ldm.safetensors"), "original LDM block names", 2, 222);
    w = copy_adapter("kohya.safetensors", NULL);
    add_zeros(w, "lora_unet_conv_in.weight", SHAPE(3));
    expect_refused(&m, &base, save_scratch(w, "stray.safetensors"), "lora_unet_conv_in.weight matches no module", 1,
                   222);
    test_end();

    test_begin("lora: a down without its up is an error (strict), a skipped module (lenient)");
    w = copy_adapter("kohya.safetensors", drop_q_up);
    expect_refused(&m, &base, save_scratch(w, "no-up.safetensors"), KOHYA_Q LORA_KOHYA_DOWN " has no matching up", 1,
                   221);
    test_end();

    test_begin("lora: LoCon (a 3x3 convolution LoRA) and DoRA are refused (strict), skipped (lenient)");
    w = copy_adapter("kohya.safetensors", NULL);
    add_zeros(w, "lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight", SHAPE(4, 16, 3, 3));
    add_zeros(w, "lora_unet_down_blocks_0_resnets_0_conv1.lora_up.weight", SHAPE(16, 4, 1, 1));
    add_zeros(w, "lora_unet_down_blocks_0_resnets_0_conv1.alpha", SHAPE(1));
    expect_refused(&m, &base, save_scratch(w, "locon.safetensors"), "LoCon", 1, 222);
    w = copy_adapter("kohya.safetensors", NULL);
    add_zeros(w, KOHYA_Q ".dora_scale", SHAPE(1, 16));
    expect_refused(&m, &base, save_scratch(w, "dora.safetensors"), "DoRA", 1, 221);
    test_end();

    test_begin("lora: SDXL files are refused in both modes");
    w = copy_adapter("kohya.safetensors", NULL);
    add_zeros(w, "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", SHAPE(4, 32));
    expect_refused(&m, &base, save_scratch(w, "sdxl.safetensors"), "SDXL", -1, 0);
    w = copy_adapter("peft.safetensors", NULL);
    add_zeros(w, "text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight", SHAPE(4, 32));
    expect_refused(&m, &base, save_scratch(w, "sdxl-peft.safetensors"), "SDXL", -1, 0);
    test_end();

    test_begin("lora: truncated and missing files are errors naming them");
    char path[1100], cmd[2400];
    snprintf(path, sizeof path, "%s/truncated.safetensors", scratch_dir());
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", fixture_path("kohya.safetensors"), path);
    CHECK(system(cmd) == 0, "%s failed", cmd);
    CHECK(truncate(path, 100000) == 0, "truncate failed");
    expect_refused(&m, &base, path, "truncated.safetensors", -1, 0);
    expect_refused(&m, &base, "/nonexistent/lora.safetensors", "/nonexistent/lora.safetensors", -1, 0);
    test_end();

    outputs_free(&base);
    sd_model_free(&m);
}

// --- numbers that are not finite floats ---------------------------------------------------------

static const char *alpha_tensor_name;  // replace_alpha's target
static tensor *alpha_replacement;

static tensor *replace_alpha(const char *name, tensor *t) {
    return strcmp(name, alpha_tensor_name) == 0 ? tensor_retain(alpha_replacement) : t;
}

// A one-module kohya file, written byte by byte so that its alpha can have dtypes
// our tensors do not (F64, I64 ...): down [4, 16] and up [16, 4] of 0.01 and the
// alpha as `dtype` with the given little-endian bytes.
static const char *write_raw_kohya(const char *name, const char *dtype, const void *alpha, int alpha_bytes) {
    char header[1024];
    int n = snprintf(header, sizeof header,
                     "{\"" KOHYA_Q LORA_KOHYA_DOWN "\":{\"dtype\":\"F32\",\"shape\":[4,16],\"data_offsets\":[0,256]},"
                     "\"" KOHYA_Q LORA_KOHYA_UP "\":{\"dtype\":\"F32\",\"shape\":[16,4],\"data_offsets\":[256,512]},"
                     "\"" KOHYA_Q LORA_KOHYA_ALPHA "\":{\"dtype\":\"%s\",\"shape\":[],\"data_offsets\":[512,%d]}}",
                     dtype, 512 + alpha_bytes);
    while (n % 8) header[n++] = ' ';
    const char *path = scratch_path("%s", name);
    FILE *f = fopen(path, "wb");
    CHECK(f, "cannot write %s", path);
    uint64_t len = (uint64_t)n;
    fwrite(&len, 8, 1, f);
    fwrite(header, 1, (size_t)n, f);
    for (int i = 0; i < 128; i++) fwrite(&(float){0.01f}, 4, 1, f);
    fwrite(alpha, 1, (size_t)alpha_bytes, f);
    fclose(f);
    return path;
}

static void test_non_finite(void) {
    sd_model m;
    load_model(&m, DEV_CPU);
    outputs base = run(&m, DEV_CPU);
    lora_set set = {0};

    test_begin("lora: a multiplier of nan or inf is an error naming the file");
    const float bad_scales[] = {NAN, INFINITY, -INFINITY};
    for (int i = 0; i < 3; i++) {
        const char *path = fixture_path("kohya.safetensors");
        int rc = lora_load(&set, &m, path, bad_scales[i], LORA_RUNTIME, true, NULL);
        EXPECT(rc == -1 && strstr(err_msg(), path) && strstr(err_msg(), "multiplier") && !strchr(err_msg(), '\n'),
               "multiplier %g: rc %d, message \"%s\"", bad_scales[i], rc, err_msg());
    }
    EXPECT(set.count == 0, "%d adapters attached", set.count);
    test_end();

    test_begin("lora: a kohya alpha tensor of nan or inf (F32, F16, BF16) is refused naming it");
    const struct {
        dtype dt;
        float value;
        const char *file;
    } bad_alphas[] = {{DT_F32, NAN, "alpha-nan-f32.safetensors"},
                      {DT_F16, INFINITY, "alpha-inf-f16.safetensors"},
                      {DT_BF16, -NAN, "alpha-nan-bf16.safetensors"},
                      {DT_F32, -INFINITY, "alpha-minf-f32.safetensors"}};
    alpha_tensor_name = KOHYA_Q LORA_KOHYA_ALPHA;
    for (size_t i = 0; i < sizeof bad_alphas / sizeof *bad_alphas; i++) {
        alpha_replacement = tensor_from_f32(bad_alphas[i].dt, DEV_CPU, 0, NULL, &bad_alphas[i].value);
        st_writer *w = copy_adapter("kohya.safetensors", replace_alpha);
        tensor_free(alpha_replacement);
        expect_refused(&m, &base, save_scratch(w, bad_alphas[i].file), KOHYA_Q ".alpha: alpha", 1, 221);
    }
    test_end();

    test_begin("lora: alphas of other dtypes (F64, I64) are read; an F64 alpha that overflows a float is refused");
    const double f64_three = 3, f64_huge = 1e300;
    const int64_t i64_three = 3;
    const float f32_three = 3;
    const char *paths[3] = {write_raw_kohya("alpha-f32.safetensors", "F32", &f32_three, 4),
                            write_raw_kohya("alpha-f64.safetensors", "F64", &f64_three, 8),
                            write_raw_kohya("alpha-i64.safetensors", "I64", &i64_three, 8)};
    sd_model merged[3];
    for (int i = 0; i < 3; i++) {
        load_model(&merged[i], DEV_CPU);
        lora_report rep;
        int rc = lora_load(&set, &merged[i], paths[i], 1.0f, LORA_MERGE, false, &rep);
        EXPECT(rc == 0 && rep.applied == 1, "%s: rc %d, %d applied: %s", paths[i], rc, rep.applied, err_msg());
    }
    const param *q = params_find(&m.params, "unet." KOHYA_Q_MODULE ".weight");
    CHECK(q, "no parameter " KOHYA_Q_MODULE);
    int at = (int)(q - m.params.items);
    EXPECT(!same_values(*merged[0].params.items[at].slot, *m.params.items[at].slot), "the F32 file changed nothing");
    for (int i = 1; i < 3; i++)
        EXPECT(same_values(*merged[i].params.items[at].slot, *merged[0].params.items[at].slot),
               "%s merges other weights than the F32 alpha's", paths[i]);
    for (int i = 0; i < 3; i++) sd_model_free(&merged[i]);
    expect_refused(&m, &base, write_raw_kohya("alpha-huge-f64.safetensors", "F64", &f64_huge, 8),
                   KOHYA_Q ".alpha: alpha 1e+300 is not a finite float", 1, 0);
    test_end();

    test_begin("lora: a finite alpha whose scale overflows a float is refused naming the tensor");
    alpha_replacement = tensor_from_f32(DT_F32, DEV_CPU, 0, NULL, &(float){1e38f});
    const char *huge = save_scratch(copy_adapter("kohya.safetensors", replace_alpha), "alpha-1e38.safetensors");
    tensor_free(alpha_replacement);
    int rc = lora_load(&set, &m, huge, 100.0f, LORA_RUNTIME, false, NULL);
    EXPECT(rc == -1 && strstr(err_msg(), huge) && strstr(err_msg(), KOHYA_Q LORA_KOHYA_DOWN ": scale"),
           "rc %d, message \"%s\"", rc, err_msg());
    EXPECT(lora_load(&set, &m, huge, 1.0f, LORA_RUNTIME, false, NULL) == 0, "alpha 1e38 at multiplier 1: %s",
           err_msg());
    lora_set_free(&set);
    test_end();

    test_begin("lora: a PEFT config alpha that is inf or overflows a float is an error naming the key");
    const char *metas[][2] = {
        {"{\"unet.lora_alpha\": 1e39, \"unet.r\": 4, \"text_encoder.lora_alpha\": 4, \"text_encoder.r\": 4}",
         "unet.lora_alpha 1e+39"},
        {"{\"unet.lora_alpha\": 4, \"unet.r\": 4, \"text_encoder.lora_alpha\": -1e999, \"text_encoder.r\": 4}",
         "text_encoder.lora_alpha -inf"},
        {"{\"unet.lora_alpha\": 4, \"unet.r\": 4, \"unet.alpha_pattern\": {\"to_q\": 1e999}}",
         "unet.alpha_pattern[\"to_q\"] inf"},
    };
    for (size_t i = 0; i < sizeof metas / sizeof *metas; i++) {
        st_writer *w = copy_adapter("peft.safetensors", NULL);
        st_writer_meta(w, "lora_adapter_metadata", metas[i][0]);
        const char *path = save_scratch(w, "meta-alpha.safetensors");
        rc = lora_load(&set, &m, path, 1.0f, LORA_RUNTIME, true, NULL);
        EXPECT(rc == -1 && strstr(err_msg(), path) && strstr(err_msg(), "lora_adapter_metadata") &&
                   strstr(err_msg(), metas[i][1]) && !strchr(err_msg(), '\n'),
               "%s: rc %d, message \"%s\"", metas[i][0], rc, err_msg());
    }
    char dir[1024], cmd[3200];
    snprintf(dir, sizeof dir, "%s/peft-unet-inf", scratch_dir());
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s' '%s/'", dir,
             fixture_path("peft-unet/adapter_model.safetensors"), dir);
    CHECK(system(cmd) == 0, "%s failed", cmd);
    write_text(scratch_path("peft-unet-inf/adapter_config.json"), "{\"r\": 4, \"lora_alpha\": 1e400}");
    rc = lora_load(&set, &m, scratch_path("peft-unet-inf/adapter_model.safetensors"), 1.0f, LORA_RUNTIME, true, NULL);
    EXPECT(rc == -1 && strstr(err_msg(), "adapter_config.json: lora_alpha inf"), "rc %d, message \"%s\"", rc,
           err_msg());
    EXPECT(set.count == 0, "%d adapters attached from bad files", set.count);
    test_end();

    outputs_free(&base);
    sd_model_free(&m);
}

// --- ComfyUI's loader -------------------------------------------------------------------------------

// tools/golden/comfy_lora.py ran ComfyUI's own comfy/lora.py key maps and load_lora over
// trained.safetensors and trained_kohya.safetensors: comfy-keys.json records the weight each
// of their tensors lands on (as our module name) with its shape, and the tensors ComfyUI left
// unused; comfy-deltas.safetensors what ComfyUI adds to one weight of each kind.

// "a,b,c" into a cfg_strings of pointers into buf (which it cuts).
static cfg_strings split_list(char *buf, char **items, int max) {
    cfg_strings out = {items, 0};
    for (char *tok = strtok(buf, ","); tok && out.count < max; tok = strtok(NULL, ",")) items[out.count++] = tok;
    return out;
}

// Our trainer's files for trained.yaml's targets, rank and alpha (as the fixture records
// them), written fresh into the scratch dir: [0] PEFT layout, [1] kohya layout.
static void write_fresh_adapters(const sd_model *m, char paths[2][1024]) {
    st_file *shown = st_open(fixture_path("trained.safetensors"));
    CHECK(shown, "%s", err_msg());
    const char *unet = st_meta(shown, "sdft_targets"), *te = st_meta(shown, "sdft_text_encoder_targets");
    const char *rank = st_meta(shown, "sdft_rank"), *alpha = st_meta(shown, "sdft_alpha");
    CHECK(unet && te && rank && alpha, "trained.safetensors lacks the sdft_* metadata; regenerate with make golden");
    char unet_buf[512], te_buf[512], *unet_items[32], *te_items[32];
    snprintf(unet_buf, sizeof unet_buf, "%s", unet);
    snprintf(te_buf, sizeof te_buf, "%s", te);
    cfg_strings unet_targets = split_list(unet_buf, unet_items, 32), te_targets = split_list(te_buf, te_items, 32);
    train_adapters ta;
    rng_stream rng = {.seed = 5};
    CHECK(train_adapters_init(&ta, (sd_model *)m, &unet_targets, &te_targets, atoi(rank), (float)atof(alpha), &rng) == 0,
          "%s", err_msg());
    snprintf(paths[0], 1024, "%s", scratch_path("fresh-peft.safetensors"));
    snprintf(paths[1], 1024, "%s", scratch_path("fresh-kohya.safetensors"));
    CHECK(train_adapters_save_peft(&ta, paths[0], 0, NULL, NULL) == 0, "%s", err_msg());
    CHECK(train_adapters_save_kohya(&ta, paths[1], 0, NULL, NULL) == 0, "%s", err_msg());
    train_adapters_free(&ta);
    st_close(shown);
}

static bool in_list(const cJSON *list, const char *s) {
    for (const cJSON *it = list ? list->child : NULL; it; it = it->next)
        if (cJSON_IsString(it) && strcmp(it->valuestring, s) == 0) return true;
    return false;
}

// The fresh file's tensors against ComfyUI's record for the fixture in the same layout:
// each applied one on the module our key names, with the shape ComfyUI got; the others
// in its unused list. Returns how many ComfyUI left unused.
static int expect_comfy_keys(const char *fresh_path, const cJSON *record, bool kohya) {
    const cJSON *applied = cJSON_GetObjectItemCaseSensitive(record, "applied");
    const cJSON *unused = cJSON_GetObjectItemCaseSensitive(record, "unused");
    st_file *f = st_open(fresh_path);
    CHECK(f && cJSON_IsObject(applied) && cJSON_IsArray(unused), "%s / comfy-keys.json: %s", fresh_path, err_msg());
    int n_unused = 0;
    for (int i = 0; i < st_count(f); i++) {
        const st_entry *e = st_entry_at(f, i);
        const cJSON *where = cJSON_GetObjectItemCaseSensitive(applied, e->name);
        if (!where) {
            EXPECT(in_list(unused, e->name), "%s: ComfyUI's record has no tensor %s", fresh_path, e->name);
            n_unused++;
            continue;
        }
        // The module our key names: the key without its suffix, in canonical spelling.
        static const char *const suffixes[][2] = {{LORA_PEFT_DOWN, LORA_PEFT_UP}, {LORA_KOHYA_DOWN, LORA_KOHYA_UP}};
        const char *module = cJSON_GetArrayItem(where, 0)->valuestring, *shape_of = cJSON_GetArrayItem(where, 1)->valuestring;
        char name[PARAM_NAME_MAX], key[PARAM_NAME_MAX + 32];
        CHECK(kohya ? lora_kohya_name(module, name, sizeof name) : lora_peft_name(module, name, sizeof name), "%s",
              module);
        bool ours = false;
        for (int s = 0; s < 2; s++) {
            snprintf(key, sizeof key, "%s%s", name, suffixes[kohya][s]);
            ours = ours || strcmp(key, e->name) == 0;
        }
        snprintf(key, sizeof key, "%s%s", name, LORA_KOHYA_ALPHA);
        ours = ours || (kohya && strcmp(key, e->name) == 0);
        EXPECT(ours, "%s: ComfyUI applies %s to %s (%s), not to the module it names", fresh_path, e->name, module,
               shape_of);
        const cJSON *shape = cJSON_GetArrayItem(where, 2);
        bool same = cJSON_GetArraySize(shape) == e->ndim;
        for (int d = 0; same && d < e->ndim; d++) same = cJSON_GetArrayItem(shape, d)->valuedouble == e->shape[d];
        EXPECT(same, "%s: %s has %d dimensions, not the shape ComfyUI loaded", fresh_path, e->name, e->ndim);
    }
    EXPECT(cJSON_GetArraySize(applied) + cJSON_GetArraySize(unused) == st_count(f),
           "%s: %d tensors; ComfyUI's record has %d applied and %d unused", fresh_path, st_count(f),
           cJSON_GetArraySize(applied), cJSON_GetArraySize(unused));
    st_close(f);
    return n_unused;
}

static void test_comfy(void) {
    test_begin("lora: every tensor of the files our trainer writes lands where ComfyUI's comfy/lora.py puts it, "
               "on the module it names, with its shape");
    sd_model m;
    load_model(&m, DEV_CPU);
    char fresh[2][1024];
    write_fresh_adapters(&m, fresh);
    cJSON *root = NULL;
    CHECK(read_json_object(fixture_path("comfy-keys.json"), &root) == 0, "comfy-keys.json: %s", err_msg());
    const cJSON *peft = cJSON_GetObjectItemCaseSensitive(root, "trained.safetensors");
    const cJSON *kohya = cJSON_GetObjectItemCaseSensitive(root, "trained_kohya.safetensors");
    int kohya_unused = expect_comfy_keys(fresh[1], kohya, true);
    EXPECT(kohya_unused == 0, "ComfyUI leaves %d tensors of the kohya file unused", kohya_unused);
    // ComfyUI's key map spells the UNet's attention projections of this layout as the
    // attention processors did ("...attn1.processor.to_q"), so it leaves diffusers'
    // own names for them unused: the kohya file is the one for ComfyUI.
    int peft_unused = expect_comfy_keys(fresh[0], peft, false);
    const cJSON *unused = cJSON_GetObjectItemCaseSensitive(peft, "unused");
    for (const cJSON *it = unused ? unused->child : NULL; it; it = it->next)
        EXPECT(strncmp(it->valuestring, "unet.", 5) == 0 && strstr(it->valuestring, ".attn") &&
                   strstr(it->valuestring, ".to_"),
               "ComfyUI leaves %s of the PEFT file unused", it->valuestring);
    printf("    ComfyUI leaves %d tensors (the UNet attention projections) of the PEFT layout unused\n", peft_unused);
    cJSON_Delete(root);
    sd_model_free(&m);
    test_end();

    test_begin("lora: our merge adds to each weight what ComfyUI's calculate_weight adds, every layer kind, "
               "both layouts, within %g", TOL);
    st_file *deltas = st_open(fixture_path("comfy-deltas.safetensors"));
    CHECK(deltas, "%s", err_msg());
    const char *files[] = {"trained.safetensors", "trained_kohya.safetensors"};
    int compared = 0;
    for (int k = 0; k < 2; k++) {
        sd_model before, after;
        load_model(&before, DEV_CPU);
        load_model(&after, DEV_CPU);
        lora_set none = {0};
        EXPECT(lora_load(&none, &after, fixture_path(files[k]), 1.0f, LORA_MERGE, false, NULL) == 0, "%s", err_msg());
        for (int i = 0; i < st_count(deltas); i++) {
            const st_entry *e = st_entry_at(deltas, i);
            size_t n = strlen(files[k]);
            if (strncmp(e->name, files[k], n) != 0 || e->name[n] != ':') continue;
            char weight[PARAM_NAME_MAX + 8];
            snprintf(weight, sizeof weight, "%s.weight", e->name + n + 1);
            const param *p = params_find(&after.params, weight);
            CHECK(p, "no parameter %s", weight);
            int at = (int)(p - after.params.items);
            float *w1 = host_floats(*after.params.items[at].slot), *w0 = host_floats(*before.params.items[at].slot);
            tensor *ref = fixture_tensor(deltas, e->name, DEV_CPU);
            float *d = host_floats(ref);
            int64_t numel = tensor_numel(ref);
            EXPECT(numel == tensor_numel(*p->slot), "%s: %lld values, the weight %lld", e->name, (long long)numel,
                   (long long)tensor_numel(*p->slot));
            for (int64_t j = 0; j < numel; j++) w1[j] -= w0[j];
            double err = numel == tensor_numel(*p->slot) ? rel_error(w1, d, numel) : INFINITY;
            EXPECT(err <= TOL, "%s: our delta differs from ComfyUI's by %.3g", e->name, err);
            compared++;
            free(w1), free(w0), free(d);
            tensor_free(ref);
        }
        sd_model_free(&before);
        sd_model_free(&after);
    }
    EXPECT(compared == st_count(deltas) && compared >= 14, "%d of %d deltas compared", compared, st_count(deltas));
    st_close(deltas);
    test_end();
}

void suite_lora(void) {
    reference();
    test_names();
    test_names_round_trip();
    test_against_diffusers();
    test_set_free();
    test_peft_config();
    test_bad_files();
    test_non_finite();
    test_comfy();
    test_emulated();
    st_close(ref_file);
    ref_file = NULL;
}
