#include "train/trainer.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/check.h"
#include "core/files.h"
#include "core/log.h"
#include "core/plot.h"
#include "core/png.h"
#include "data/dataset.h"
#include "data/image_io.h"
#include "data/transform.h"
#include "infer/pipeline.h"
#include "kernels/tensor_file.h"
#include "train/adapters.h"
#include "train/lr_schedule.h"
#include "train/optimizer.h"
#include "train/step.h"

// Streams of the run, each its own Philox seed so that none shifts another: the
// adapters' init, the noise (VAE samples, diffusion noise, offset noise), the
// timesteps, the augmentation (crops, flips), the two data orders and the adapters'
// dropout masks (addressed by micro-step, not drawn in sequence: see micro_step).
enum { STREAM_INIT, STREAM_NOISE, STREAM_TIME, STREAM_AUG, STREAM_INSTANCE_ORDER, STREAM_CLASS_ORDER, STREAM_DROPOUT };

// A folder of training images with what the steps need of each.
typedef struct {
    dataset ds;
    bool cached;          // latents encoded once (center crop); else each step
    float *mean, *logvar;  // [n_images * (flips ? 2 : 1), h, w, C] when cached
    tensor **context;      // [n_images] frozen text-encoder outputs [1, 77, D], or NULL
    int32_t *ids;          // [n_images, 77]
    int64_t pos;           // samples drawn so far (epoch = pos / n_items)
    uint64_t order_seed;
    int *order;            // the current epoch's order
    int64_t order_epoch;
} image_set;

typedef struct {
    const run_config *cfg;
    const train_options *opt;
    pipeline p;
    train_adapters adapters;
    adamw_state adam;
    image_set instances, classes;
    rng_stream noise_rng, time_rng, aug_rng;
    int step;            // optimizer steps done
    int latent_h, latent_w;
    float *losses;       // [steps]
    char hash[11];       // the base model's A1111 hash, for the adapters' metadata
    FILE *metrics;
    char metrics_path[4096];
} trainer;

static char *expand(const trainer *t, const char *text) { return run_config_expand(t->cfg, text); }

// mkdir -p: the folder and its missing parents. An existing folder is fine; a file
// in its place is not.
static int make_dir(const char *path) {
    char part[4096];
    if (snprintf(part, sizeof part, "%s", path) >= (int)sizeof part) {
        err_set("%s: path too long", path);
        return -1;
    }
    for (char *at = part + (part[0] == '/');; at++) {
        if (*at != '/' && *at != '\0') continue;
        char end = *at;
        *at = '\0';
        if (mkdir(part, 0777) != 0 && errno != EEXIST) {
            err_set("%s: cannot create the folder %s: %s", path, part, strerror(errno));
            return -1;
        }
        *at = end;
        if (!end) break;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        err_set("%s: not a folder (a file is in its place)", path);
        return -1;
    }
    return 0;
}

// Whether a file can be created in the folder: a probe file made and removed.
static int check_writable(const char *dir) {
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/.sdft-write-test-XXXXXX", dir);
    int fd = mkstemp(probe);
    if (fd < 0) {
        err_set("%s: cannot write in the folder: %s", dir, strerror(errno));
        return -1;
    }
    close(fd);
    unlink(probe);
    return 0;
}

// The class images' folder: prior.class_dir, or <output.dir>/class.
static void class_folder(const run_config *c, char *out, size_t len) {
    if (c->prior.class_dir && *c->prior.class_dir) snprintf(out, len, "%s", c->prior.class_dir);
    else snprintf(out, len, "%s/class", c->output.dir);
}

// Files are saved as "<name>.tmp.<pid>", then renamed (core/files.h). True, with
// the name in stem, for such a temporary whose process is gone (a save it never
// finished); a live process, another run's say, may still be writing it.
static bool stale_temporary(const char *file, char *stem, size_t len) {
    const char *tmp = NULL;
    const size_t mark = strlen(FILE_TEMP_MARK);
    for (const char *at = strstr(file, FILE_TEMP_MARK); at; at = strstr(at + 1, FILE_TEMP_MARK)) tmp = at;
    if (!tmp || tmp == file || !isdigit((unsigned char)tmp[mark])) return false;
    char *end;
    long pid = strtol(tmp + mark, &end, 10);
    if (*end || pid <= 0 || pid > INT_MAX) return false;
    // Our own pid: an earlier process's, since this run has written nothing yet.
    bool alive = (pid_t)pid != getpid() && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
    snprintf(stem, len, "%.*s", (int)(tmp - file), file);
    return !alive;
}

// Removes the stale temporaries of this run's own files in dir: those whose name
// starts with one of the prefixes and ends with the suffix beside it.
static void remove_stale_temporaries(const char *dir, int n, const char *const *prefix, const char *const *suffix) {
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        char stem[256], path[4400];
        if (!stale_temporary(e->d_name, stem, sizeof stem)) continue;
        for (int i = 0; i < n; i++) {
            size_t ls = strlen(stem), lp = strlen(prefix[i]), lx = strlen(suffix[i]);
            if (ls < lp + lx || strncmp(stem, prefix[i], lp) != 0 || strcmp(stem + ls - lx, suffix[i]) != 0) continue;
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            if (unlink(path) == 0) log_info("removed %s, left by an interrupted save", path);
            break;
        }
    }
    closedir(d);
}

// Before anything slow: output.dir (with its parents) exists and takes files, and the
// temporaries that interrupted saves of this run left there are gone.
static int prepare_output(const run_config *c) {
    if (make_dir(c->output.dir) || check_writable(c->output.dir)) {
        err_set("output.dir: %s", err_msg());
        return -1;
    }
    // States, adapters (<name>*, interrupted*), the loss plot, metrics.jsonl's cut.
    const char *out_prefix[] = {"state-", c->output.name ? c->output.name : "interrupted", "interrupted", "loss.png",
                                "metrics.jsonl"};
    const char *out_suffix[] = {".safetensors", ".safetensors", ".safetensors", "", ""};
    remove_stale_temporaries(c->output.dir, 5, out_prefix, out_suffix);
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/validation", c->output.dir);
    remove_stale_temporaries(dir, 1, (const char *[]){"step-"}, (const char *[]){".png"});
    class_folder(c, dir, sizeof dir);
    remove_stale_temporaries(dir, 1, (const char *[]){"class-"}, (const char *[]){".png"});
    return 0;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// --- images -----------------------------------------------------------------------------------

// One image through the configured transform to [size, size, 3] floats in [-1, 1].
static int load_pixels(const trainer *t, const char *path, bool flip, rng_stream *rng, float *out) {
    image_u8 img;
    if (image_load(path, &img)) return -1;
    transform_options to = {.size = t->cfg->data.resolution, .center_crop = t->cfg->data.center_crop,
                            .random_flip = rng != NULL && t->cfg->data.random_flip};
    int rc = image_transform(&img, &to, rng, out, NULL);
    if (rc) err_set("%s: %s", path, err_msg());
    if (rc == 0 && flip) {
        // A flipped copy for the cache: mirror the float image row by row.
        int s = to.size;
        for (int y = 0; y < s; y++)
            for (int x = 0; x < s / 2; x++)
                for (int c = 0; c < 3; c++) {
                    float *a = out + ((size_t)y * s + x) * 3 + c, *b = out + ((size_t)y * s + s - 1 - x) * 3 + c;
                    float tmp = *a;
                    *a = *b, *b = tmp;
                }
    }
    image_free(&img);
    return rc;
}

// The VAE's latent distribution of one image: mean and logvar [h, w, C] (host).
static void encode(trainer *t, const float *pixels, float *mean, float *logvar) {
    int s = t->cfg->data.resolution;
    autograd_no_grad_begin();
    tensor *x = tensor_from_f32(DT_F32, t->p.model.params.dev, SHAPE(1, s, s, 3), pixels);
    tensor *mu, *lv;
    vae_encode(&t->p.model.vae, x, &mu, &lv);
    t->latent_h = (int)mu->shape[1], t->latent_w = (int)mu->shape[2];
    tensor_copy_to_f32(mu, mean, (size_t)tensor_numel(mu));
    tensor_copy_to_f32(lv, logvar, (size_t)tensor_numel(lv));
    tensor_free(x), tensor_free(mu), tensor_free(lv);
    autograd_no_grad_end();
}

static size_t latent_size(const trainer *t) {
    int f = 1 << (t->p.model.vae_cfg.n_blocks - 1);
    int side = t->cfg->data.resolution / f;
    return (size_t)side * side * t->p.model.vae_cfg.latent_channels;
}

static int prepare_set(trainer *t, image_set *set, const char *dir, const char *caption, int repeats, bool frozen_te,
                       uint64_t order_seed) {
    dataset_report rep = {0};
    int rc = dataset_open(&set->ds, dir, caption, repeats, t->cfg->data.strict, &rep);
    for (int i = 0; i < rep.n_notes; i++) log_warn("%s", rep.notes[i].message);
    dataset_report_free(&rep);
    if (rc) return -1;
    const int n = set->ds.n_images, len = clip_tokenizer_max_length(t->p.tokenizer);
    set->order_seed = order_seed;
    set->order = xmalloc((size_t)set->ds.n_items * sizeof *set->order);
    set->order_epoch = -1;
    set->ids = xmalloc((size_t)n * len * sizeof *set->ids);
    for (int i = 0; i < n; i++) clip_tokenize_padded(t->p.tokenizer, set->ds.images[i].caption, set->ids + (size_t)i * len, len);
    if (frozen_te) {
        set->context = xcalloc((size_t)n, sizeof *set->context);
        autograd_no_grad_begin();
        for (int i = 0; i < n; i++)
            set->context[i] =
                pipeline_encode_prompt(&t->p, set->ds.images[i].caption, 1, run_config_clip_skip(t->cfg));
        autograd_no_grad_end();
    }
    // The latent cache: exact when the crop does not depend on the draw.
    set->cached = t->cfg->data.center_crop;
    if (set->cached) {
        int s = t->cfg->data.resolution, copies = t->cfg->data.random_flip ? 2 : 1;
        size_t per = latent_size(t);
        float *pixels = xmalloc((size_t)s * s * 3 * sizeof *pixels);
        set->mean = xmalloc(per * n * copies * sizeof(float));
        set->logvar = xmalloc(per * n * copies * sizeof(float));
        for (int i = 0; i < n && rc == 0; i++)
            for (int c = 0; c < copies && rc == 0; c++) {
                rc = load_pixels(t, set->ds.images[i].path, c == 1, NULL, pixels);
                if (rc == 0) encode(t, pixels, set->mean + (i * copies + c) * per, set->logvar + (i * copies + c) * per);
            }
        free(pixels);
    }
    return rc;
}

static void free_set(image_set *set) {
    if (set->context)
        for (int i = 0; i < set->ds.n_images; i++) tensor_free(set->context[i]);
    free(set->context), free(set->ids), free(set->mean), free(set->logvar), free(set->order);
    dataset_free(&set->ds);
    *set = (image_set){0};
}

// The next image of the set in its epoch order.
static int next_index(image_set *set) {
    int64_t epoch = set->pos / set->ds.n_items;
    if (epoch != set->order_epoch) {
        dataset_epoch_order(&set->ds, set->order_seed, (uint32_t)epoch, set->order);
        set->order_epoch = epoch;
    }
    return set->order[set->pos++ % set->ds.n_items];
}

// Scaled latents of image i: mean + std * eps from the noise stream (diffusers
// samples the latent distribution every step), times the VAE's scaling factor.
static int sample_latents(trainer *t, image_set *set, int i, float *out) {
    size_t per = latent_size(t);
    float *mean = NULL, *logvar = NULL, *own = NULL;
    if (set->cached) {
        int copy = 0;
        if (t->cfg->data.random_flip) copy = (int)rng_below(&t->aug_rng, 2);
        mean = set->mean + (i * (t->cfg->data.random_flip ? 2 : 1) + copy) * per;
        logvar = set->logvar + (i * (t->cfg->data.random_flip ? 2 : 1) + copy) * per;
    } else {
        int s = t->cfg->data.resolution;
        float *pixels = xmalloc((size_t)s * s * 3 * sizeof *pixels);
        own = xmalloc(2 * per * sizeof *own);
        int rc = load_pixels(t, set->ds.images[i].path, false, &t->aug_rng, pixels);
        if (rc == 0) encode(t, pixels, own, own + per);
        free(pixels);
        if (rc) {
            free(own);
            return -1;
        }
        mean = own, logvar = own + per;
    }
    rng_fill_normal(&t->noise_rng, out, per);
    float scale = t->p.model.vae_cfg.scaling_factor;
    for (size_t k = 0; k < per; k++) out[k] = (mean[k] + expf(0.5f * logvar[k]) * out[k]) * scale;
    free(own);
    return 0;
}

// --- class images -----------------------------------------------------------------------------------

static int count_images(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        const char *dot = strrchr(e->d_name, '.');
        if (e->d_name[0] != '.' && dot && (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg")))
            n++;
    }
    closedir(d);
    return n;
}

// Renders the class images the folder lacks with the base model (no adapters yet).
static int generate_class_images(trainer *t, const char *dir, const char *prompt) {
    const run_config *c = t->cfg;
    int have = count_images(dir), want = c->prior.num_class_images;
    if (have >= want) return 0;
    if (make_dir(dir)) return -1;
    log_info("prior: %d class images in %s, generating %d with \"%s\"", have, dir, want - have, prompt);
    render_params rp;
    if (run_config_render_params(&rp, &t->p, c)) return -1;
    rp.prompt = prompt;
    rp.width = rp.height = c->data.resolution;
    rp.batch = 1;
    for (int i = have; i < want; i++) {
        // Seeds of their own, so the class set does not depend on the training seed's use.
        rp.seed = (uint64_t)c->train.seed + 1000003u + (uint64_t)i;
        float *pixels;
        if (pipeline_render(&t->p, &rp, NULL, NULL, &pixels)) return -1;
        image_u8 img = image_from_float(pixels, rp.height, rp.width);
        free(pixels);
        char path[4200];
        snprintf(path, sizeof path, "%s/class-%05d.png", dir, i);
        char *params = pipeline_a1111_parameters(&t->p, &rp, rp.seed, NULL, NULL);
        const char *key = "parameters";
        int rc = png_write(path, &img, 1, &key, (const char *const *)&params);
        free(params);
        image_free(&img);
        if (rc) return -1;
    }
    return 0;
}

// --- saving -------------------------------------------------------------------------------------

static int save_adapters(trainer *t, const char *stem) {
    const run_config *c = t->cfg;
    char path[4096], rank[16], alpha[32], dropout[32], steps[16];
    snprintf(rank, sizeof rank, "%d", c->lora.rank);
    snprintf(alpha, sizeof alpha, "%g", c->lora.alpha);
    snprintf(dropout, sizeof dropout, "%g", c->lora.dropout);
    snprintf(steps, sizeof steps, "%d", t->step);
    // The config as it determines the adapters, without where this run keeps its files
    // or how it was resumed: a run and its resume write the same bytes wherever they live.
    run_config recorded = *c;
    recorded.train.resume = NULL;
    recorded.output.dir = NULL;
    char *yaml = config_to_yaml(&run_config_schema, &recorded);
    // peft's input dropout, not kohya's ss_network_dropout (which drops the down
    // projection's output), hence our own key for it.
    // The adapters record their targets themselves (sdft_targets, sdft_text_encoder_targets).
    const char *keys[] = {"sdft_rank",  "sdft_alpha", "sdft_dropout", "sdft_base_model_hash",
                          "sdft_steps", "sdft_config", "ss_base_model_version"};
    const char *values[] = {rank, alpha, dropout, t->hash, steps, yaml, "sd_v1"};
    const int n_keys = sizeof keys / sizeof *keys;
    snprintf(path, sizeof path, "%s/%s.safetensors", c->output.dir, stem);
    int rc = train_adapters_save_peft(&t->adapters, path, n_keys - 1, keys, values);  // without kohya's key
    snprintf(path, sizeof path, "%s/%s_kohya.safetensors", c->output.dir, stem);
    if (rc == 0) rc = train_adapters_save_kohya(&t->adapters, path, n_keys, keys, values);
    free(yaml);
    return rc;
}

// The training state: adapters, AdamW moments, and where every stream and order stands.
static int save_state(trainer *t) {
    st_writer *w = st_writer_new();
    char key[64], value[32];
#define META(name, fmt, v)                       \
    snprintf(value, sizeof value, fmt, v);       \
    st_writer_meta(w, name, value)
    META("step", "%d", t->step);
    META("adam_step", "%lld", (long long)t->adam.step);
    META("noise_offset", "%llu", (unsigned long long)t->noise_rng.offset);
    META("time_offset", "%llu", (unsigned long long)t->time_rng.offset);
    META("aug_offset", "%llu", (unsigned long long)t->aug_rng.offset);
    META("instance_pos", "%lld", (long long)t->instances.pos);
    META("class_pos", "%lld", (long long)t->classes.pos);
#undef META
    for (int i = 0; i < t->adam.count; i++) {
        snprintf(key, sizeof key, "param.%05d", i);
        st_writer_add(w, key, t->adam.params[i]);
        snprintf(key, sizeof key, "m.%05d", i);
        st_writer_add(w, key, t->adam.m[i]);
        snprintf(key, sizeof key, "v.%05d", i);
        st_writer_add(w, key, t->adam.v[i]);
    }
    tensor *losses = tensor_from_f32(DT_F32, DEV_CPU, SHAPE(t->step > 0 ? t->step : 1), t->losses);
    st_writer_add(w, "losses", losses);
    tensor_free(losses);
    char path[4096];
    snprintf(path, sizeof path, "%s/state-%06d.safetensors", t->cfg->output.dir, t->step);
    int rc = st_writer_save(w, path);
    st_writer_free(w);
    return rc;
}

// The newest state-NNNNNN.safetensors in dir, or "" when none.
static void latest_state(const char *dir, char *out, size_t len) {
    out[0] = '\0';
    DIR *d = opendir(dir);
    if (!d) return;
    int best = -1;
    for (struct dirent *e; (e = readdir(d));) {
        int step;
        char tail[32];
        if (sscanf(e->d_name, "state-%d.%31s", &step, tail) == 2 && strcmp(tail, "safetensors") == 0 && step > best) {
            best = step;
            snprintf(out, len, "%s/%s", dir, e->d_name);
        }
    }
    closedir(d);
}

static int meta_u64(st_file *f, const char *path, const char *key, unsigned long long *v) {
    const char *s = st_meta(f, key);
    if (!s || sscanf(s, "%llu", v) != 1) {
        err_set("%s: training state without \"%s\"", path, key);
        return -1;
    }
    return 0;
}

static int load_state(trainer *t, const char *path) {
    st_file *f = st_open(path);
    if (!f) return -1;
    unsigned long long step, adam, no, to, ao, ip, cp;
    int rc = meta_u64(f, path, "step", &step) || meta_u64(f, path, "adam_step", &adam) ||
             meta_u64(f, path, "noise_offset", &no) || meta_u64(f, path, "time_offset", &to) ||
             meta_u64(f, path, "aug_offset", &ao) || meta_u64(f, path, "instance_pos", &ip) ||
             meta_u64(f, path, "class_pos", &cp) ? -1 : 0;
    for (int i = 0; i < t->adam.count && rc == 0; i++) {
        tensor *dst[3] = {t->adam.params[i], t->adam.m[i], t->adam.v[i]};
        const char *kind[3] = {"param", "m", "v"};
        for (int k = 0; k < 3 && rc == 0; k++) {
            char key[64];
            snprintf(key, sizeof key, "%s.%05d", kind[k], i);
            tensor *src = st_load(f, key, DT_F32, DEV_CPU);
            if (!src || !tensor_same_shape(src, dst[k])) {
                if (src) err_set("%s: %s does not fit this run's adapters (different rank or targets?)", path, key);
                rc = -1;
            } else {
                tensor_copy_from_f32(dst[k], tensor_data(src), (size_t)tensor_numel(src));
            }
            tensor_free(src);
        }
    }
    if (rc == 0 && (int)step > t->cfg->train.steps) {
        err_set("%s: the state is at step %llu, past train.steps = %d", path, step, t->cfg->train.steps);
        rc = -1;
    }
    if (rc == 0 && step > 0) {
        tensor *losses = st_load(f, "losses", DT_F32, DEV_CPU);
        if (losses && tensor_numel(losses) >= (int64_t)step) memcpy(t->losses, tensor_data(losses), step * sizeof(float));
        tensor_free(losses);
    }
    if (rc == 0) {
        t->step = (int)step, t->adam.step = (int64_t)adam;
        t->noise_rng.offset = no, t->time_rng.offset = to, t->aug_rng.offset = ao;
        t->instances.pos = (int64_t)ip, t->classes.pos = (int64_t)cp;
        log_info("resumed from %s at step %d", path, t->step);
    }
    st_close(f);
    return rc;
}

// --- metrics ----------------------------------------------------------------------------------

// Keeps the lines of steps up to `step` (a resumed run writes the later ones again)
// and drops the rest, through a temporary renamed over the file, so a failure leaves
// it whole. Only a regular file is cut: a link or device is appended to as it is.
static int cut_metrics(const char *path, int step) {
    struct stat st;
    if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
    char *text;
    size_t len, keep = 0;
    if (read_text_file(path, &text, &len)) return -1;
    for (const char *line = text; line < text + len;) {
        const char *end = memchr(line, '\n', (size_t)(text + len - line));
        int s;
        if (!end || sscanf(line, "{\"step\": %d", &s) != 1 || s > step) break;
        line = end + 1;
        keep = (size_t)(line - text);
    }
    int rc = 0;
    if (keep < len) {
        file_replacement out;
        rc = file_replace_begin(&out, path);
        if (rc == 0) rc = file_replace_end(&out, fwrite(text, 1, keep, out.fp) == keep ? 0 : errno ? errno : EIO);
    }
    free(text);
    return rc;
}

// metrics.jsonl: appended to after a resume (cut back to the resumed step), else new.
static int open_metrics(trainer *t) {
    snprintf(t->metrics_path, sizeof t->metrics_path, "%s/metrics.jsonl", t->cfg->output.dir);
    if (t->step && cut_metrics(t->metrics_path, t->step)) return -1;
    t->metrics = fopen(t->metrics_path, t->step ? "a" : "w");
    if (!t->metrics) {
        err_set("%s: cannot write: %s", t->metrics_path, strerror(errno));
        return -1;
    }
    return 0;
}

// One line per step, flushed, so a full disk stops the run at once.
static int write_metrics(trainer *t, const loss_parts *sum, const double lr[2], double norm, double seconds) {
    if (fprintf(t->metrics,
                "{\"step\": %d, \"loss\": %.7g, \"instance_loss\": %.7g, \"prior_loss\": %.7g, \"lr\": %.7g, "
                "\"text_encoder_lr\": %.7g, \"grad_norm\": %.7g, \"seconds\": %.4f}\n",
                t->step, sum->loss, sum->instance, sum->prior, lr[0], lr[1], norm, seconds) < 0 ||
        fflush(t->metrics) != 0) {
        err_set("%s: cannot write: %s", t->metrics_path, strerror(errno));
        return -1;
    }
    return 0;
}

// --- validation ---------------------------------------------------------------------------------

static int validate(trainer *t) {
    const run_sample_section *v = &t->cfg->validation;
    if (v->prompts.count == 0) return 0;  // validation off
    render_params rp;
    if (run_config_render_params(&rp, &t->p, t->cfg)) return -1;
    int n = v->prompts.count * v->images_per_prompt, k = 0, rc = 0;
    image_u8 *images = xcalloc((size_t)n, sizeof *images);
    // Each tile's caption: its prompt, and the step and seed.
    char **prompts = xcalloc((size_t)v->prompts.count, sizeof *prompts), **notes = xcalloc((size_t)n, sizeof *notes);
    const char **captions = xcalloc((size_t)n, sizeof *captions);
    for (int i = 0; i < v->prompts.count && rc == 0; i++) {
        prompts[i] = expand(t, v->prompts.items[i]);
        rp.prompt = prompts[i];
        rp.seed = (uint64_t)v->seed;
        float *pixels;
        rc = pipeline_render(&t->p, &rp, NULL, NULL, &pixels);
        for (int b = 0; rc == 0 && b < rp.batch; b++, k++) {
            images[k] = image_from_float(pixels + (size_t)b * rp.width * rp.height * 3, rp.height, rp.width);
            captions[k] = prompts[i];
            notes[k] = xmalloc(64);
            snprintf(notes[k], 64, "step %d, seed %llu", t->step, (unsigned long long)rp.seed + (unsigned)b);
        }
        if (rc == 0) free(pixels);
    }
    if (rc == 0) {
        const image_u8 **tiles = xmalloc((size_t)n * sizeof *tiles);
        for (int i = 0; i < n; i++) tiles[i] = &images[i];
        image_u8 grid = image_grid_captioned(tiles, captions, (const char *const *)notes, n,
                                             v->images_per_prompt > 1 ? v->images_per_prompt : (n < 4 ? n : 4), 8, 255);
        char dir[4096], path[4200];
        snprintf(dir, sizeof dir, "%s/validation", t->cfg->output.dir);
        rc = make_dir(dir);
        snprintf(path, sizeof path, "%s/step-%06d.png", dir, t->step);
        if (rc == 0) rc = png_write(path, &grid, 0, NULL, NULL);
        if (rc == 0) log_info("validation grid: %s", path);
        image_free(&grid);
        free(tiles);
    }
    for (int i = 0; i < k; i++) image_free(&images[i]), free(notes[i]);
    for (int i = 0; i < v->prompts.count; i++) free(prompts[i]);
    free(images), free(prompts), free(notes), free(captions);
    return rc;
}

// The learning-rate schedule of the UNet's adapters (the text encoder's differs in its
// base rate only).
static lr_schedule unet_lr_schedule(const run_train_section *tr) {
    return (lr_schedule){.kind = (lr_kind)tr->lr_scheduler, .base_lr = tr->learning_rate,
                         .warmup_steps = tr->lr_warmup_steps, .total_steps = tr->steps,
                         .num_cycles = tr->lr_scheduler == LR_COSINE ? 0.5 : tr->lr_num_cycles,
                         .power = tr->lr_power, .lr_end = 1e-7};
}

// loss.png: the loss of every step so far, its moving average and the learning rate.
static int save_loss_plot(trainer *t) {
    if (t->step < 1) return 0;
    lr_schedule schedule = unet_lr_schedule(&t->cfg->train);
    double *lr = xmalloc((size_t)t->step * sizeof *lr);
    for (int i = 0; i < t->step; i++) lr[i] = lr_at(&schedule, i);
    char title[256], range[128], path[4096];
    snprintf(title, sizeof title, "%s: training loss, steps 1-%d of %d", t->cfg->output.name, t->step,
             t->cfg->train.steps);
    image_u8 img = plot_loss(t->losses, lr, t->step, 900, 450, 0.9f, title);
    free(lr);
    float lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < t->step; i++) lo = fminf(lo, t->losses[i]), hi = fmaxf(hi, t->losses[i]);
    snprintf(range, sizeof range, "steps 1-%d, loss from %.6g to %.6g", t->step, lo, hi);
    const char *key = "Description";
    const char *value = range;
    snprintf(path, sizeof path, "%s/loss.png", t->cfg->output.dir);
    int rc = png_write(path, &img, 1, &key, &value);
    image_free(&img);
    return rc;
}

// --- the loop -----------------------------------------------------------------------------------

// One batch's loss, with instance rows then class rows, backpropagated (scaled for
// accumulation).
// Micro-step `draw` (step * gradient_accumulation + its index in the step): the
// dropout masks are addressed by it, so a resumed run draws the same ones.
static int micro_step(trainer *t, uint64_t draw, loss_parts *parts) {
    const run_config *c = t->cfg;
    const bool prior = c->prior.enabled;
    const int bs = c->train.batch_size, B = prior ? 2 * bs : bs, len = clip_tokenizer_max_length(t->p.tokenizer);
    const size_t per = latent_size(t);
    const int C = t->p.model.vae_cfg.latent_channels;
    float *latents = xmalloc(per * B * sizeof *latents), *noise = xmalloc(per * B * sizeof *noise);
    int *timesteps = xmalloc((size_t)B * sizeof *timesteps);
    int32_t *ids = xmalloc((size_t)B * len * sizeof *ids);
    tensor **ctx_rows = xcalloc((size_t)B, sizeof *ctx_rows);
    int rc = 0;
    for (int r = 0; r < B && rc == 0; r++) {
        image_set *set = r < bs ? &t->instances : &t->classes;
        int i = next_index(set);
        rc = sample_latents(t, set, i, latents + r * per);
        memcpy(ids + (size_t)r * len, set->ids + (size_t)i * len, (size_t)len * sizeof *ids);
        if (set->context) ctx_rows[r] = set->context[i];
    }
    if (rc) goto done;
    rng_fill_normal(&t->noise_rng, noise, per * B);
    if (c->train.noise_offset > 0) {
        // diffusers: noise += offset * randn(B, C, 1, 1), one value per sample and channel.
        float *off = xmalloc((size_t)B * C * sizeof *off);
        rng_fill_normal(&t->noise_rng, off, (size_t)B * C);
        for (int r = 0; r < B; r++)
            for (size_t k = 0; k < per; k++) noise[r * per + k] += (float)c->train.noise_offset * off[r * C + k % C];
        free(off);
    }
    for (int r = 0; r < B; r++) timesteps[r] = (int)rng_below(&t->time_rng, (uint32_t)t->p.schedule.num_train_timesteps);
    tensor *context = NULL;
    if (!c->lora.text_encoder) context = op_concat(B, ctx_rows, 0);
    train_batch tb = {.batch = B, .n_instance = bs, .height = t->latent_h, .width = t->latent_w, .latents = latents,
                      .noise = noise, .timesteps = timesteps, .ids = ids, .clip_skip = run_config_clip_skip(c),
                      .context = context};
    loss_config lc = {.snr_gamma = (float)c->train.snr_gamma, .prior_loss_weight = (float)c->prior.prior_loss_weight};
    // Dropout stays on through the backward, whose checkpoint recomputes redraw the masks.
    train_adapters_set_dropout(&t->adapters, (float)c->lora.dropout, (uint64_t)c->train.seed + STREAM_DROPOUT, draw);
    tensor *loss = dreambooth_loss(&t->p.model, &t->p.schedule, &tb, &lc, parts);
    if (c->train.gradient_accumulation > 1) loss = nn_replace(loss, op_scale(loss, 1.0f / c->train.gradient_accumulation));
    autograd_backward(loss, NULL);
    train_adapters_set_dropout(&t->adapters, 0, 0, 0);  // validation renders without it
    tensor_free(loss);
    tensor_free(context);
done:
    free(latents), free(noise), free(timesteps), free(ids), free(ctx_rows);
    return rc;
}

static void progress_line(const trainer *t, double started, int first_step, float avg, double lr) {
    if (!t->opt->show_progress) return;
    double elapsed = now_seconds() - started, rate = (t->step - first_step) / elapsed;
    double eta = rate > 0 ? (t->cfg->train.steps - t->step) / rate : 0;
    fprintf(stderr, "\rstep %d/%d  %.2f it/s  loss %.4f  lr %.3g  ETA %.0fs   ", t->step, t->cfg->train.steps, rate, avg,
            lr, eta);
    if (t->step == t->cfg->train.steps) fputc('\n', stderr);
    fflush(stderr);
}

static int train_loop(trainer *t) {
    const run_config *c = t->cfg;
    const run_train_section *tr = &c->train;
    lr_schedule unet_lr = unet_lr_schedule(tr);
    lr_schedule te_lr = unet_lr;
    te_lr.base_lr = tr->text_encoder_lr;
    adamw_config ac = {.beta1 = (float)tr->adam_beta1, .beta2 = (float)tr->adam_beta2, .eps = (float)tr->adam_epsilon,
                       .weight_decay = (float)tr->adam_weight_decay};
    double started = now_seconds(), t0;
    int first = t->step, stop = t->opt->stop_after > 0 ? t->step + t->opt->stop_after : tr->steps;
    if (stop > tr->steps) stop = tr->steps;
    float avg = t->step ? t->losses[t->step - 1] : 0;
    while (t->step < stop) {
        t0 = now_seconds();
        adamw_zero_grad(&t->adam);
        loss_parts sum = {0}, parts;
        for (int a = 0; a < tr->gradient_accumulation; a++) {
            if (micro_step(t, (uint64_t)t->step * tr->gradient_accumulation + a, &parts)) return -1;
            sum.loss += parts.loss / tr->gradient_accumulation;
            sum.instance += parts.instance / tr->gradient_accumulation;
            sum.prior += parts.prior / tr->gradient_accumulation;
        }
        double lr[2] = {lr_at(&unet_lr, t->step), lr_at(&te_lr, t->step)};
        double norm = adamw_clip_and_step(&t->adam, &ac, lr, tr->max_grad_norm);
        t->losses[t->step] = sum.loss;
        t->step++;
        avg = t->step == 1 ? sum.loss : 0.95f * avg + 0.05f * sum.loss;
        if (write_metrics(t, &sum, lr, norm, now_seconds() - t0)) return -1;
        progress_line(t, started, first, avg, lr[0]);
        bool last = t->step == tr->steps;
        if (c->output.save_every > 0 && t->step % c->output.save_every == 0 && !last) {
            char stem[256];
            snprintf(stem, sizeof stem, "%s-step%06d", c->output.name, t->step);
            if (save_adapters(t, stem) || save_state(t)) return -1;
        }
        if (c->validation.every > 0 && t->step % c->validation.every == 0 && !last && validate(t)) return -1;
    }
    return 0;
}

static int setup(trainer *t) {
    const run_config *c = t->cfg;
    if (!c->data.instance_dir) {
        err_set("data.instance_dir is not set: the folder of the subject's photos");
        return -1;
    }
    if (prepare_output(c)) return -1;
    if (run_config_open_pipeline(&t->p, c)) return -1;
    sd_model_print_report(&t->p.model);
    t->p.show_progress = false;
    if (pipeline_model_hash(c->model.path, t->hash)) return -1;
    t->p.model.unet.checkpoint = c->train.gradient_checkpointing;
    const uint64_t seed = (uint64_t)c->train.seed;
    t->noise_rng = (rng_stream){.seed = seed + STREAM_NOISE};
    t->time_rng = (rng_stream){.seed = seed + STREAM_TIME};
    t->aug_rng = (rng_stream){.seed = seed + STREAM_AUG};

    // Class images first: they come from the base model, before any adapter.
    char class_dir[4096];
    class_folder(c, class_dir, sizeof class_dir);
    char *class_prompt = expand(t, c->prior.class_prompt);
    int rc = c->prior.enabled ? generate_class_images(t, class_dir, class_prompt) : 0;
    char *instance_prompt = expand(t, c->data.instance_prompt);
    bool frozen_te = !c->lora.text_encoder;
    if (rc == 0)
        rc = prepare_set(t, &t->instances, c->data.instance_dir, instance_prompt, c->data.repeats, frozen_te,
                         seed + STREAM_INSTANCE_ORDER);
    if (rc == 0 && c->prior.enabled)
        rc = prepare_set(t, &t->classes, class_dir, class_prompt, 1, frozen_te, seed + STREAM_CLASS_ORDER);
    free(class_prompt), free(instance_prompt);
    if (rc) return -1;

    rng_stream init = {.seed = seed + STREAM_INIT};
    if (train_adapters_init(&t->adapters, &t->p.model, &c->lora.targets,
                            c->lora.text_encoder ? &c->lora.te_targets : NULL, c->lora.rank, (float)c->lora.alpha, &init))
        return -1;
    int n = 2 * t->adapters.count;
    tensor **params = xmalloc((size_t)n * sizeof *params);
    bool *te = xmalloc((size_t)n * sizeof *te);
    int *group = xmalloc((size_t)n * sizeof *group);
    train_adapters_tensors(&t->adapters, params, te);
    for (int i = 0; i < n; i++) group[i] = te[i];
    adamw_init(&t->adam, n, params, group);
    free(params), free(te), free(group);
    log_info("training %d adapters (rank %d, alpha %g) on %d photos%s", t->adapters.count, c->lora.rank, c->lora.alpha,
             t->instances.ds.n_images, c->prior.enabled ? " with prior preservation" : "");
    return 0;
}

int train_run(const run_config *cfg, const train_options *opt) {
    trainer t = {.cfg = cfg, .opt = opt};
    t.losses = xcalloc((size_t)cfg->train.steps, sizeof *t.losses);
    int rc = setup(&t);
    char path[4096];
    if (rc == 0 && cfg->train.resume && *cfg->train.resume) {
        if (strcmp(cfg->train.resume, "latest") == 0) latest_state(cfg->output.dir, path, sizeof path);
        else snprintf(path, sizeof path, "%s", cfg->train.resume);
        if (path[0]) rc = load_state(&t, path);
        else log_info("resume: latest: no training state in %s, starting fresh", cfg->output.dir);
    }
    if (rc == 0) rc = open_metrics(&t);
    if (rc == 0) rc = train_loop(&t);
    bool finished = t.step == cfg->train.steps;
    if (rc == 0) rc = save_adapters(&t, finished ? cfg->output.name : "interrupted");
    if (rc == 0) rc = save_state(&t);
    if (rc == 0) rc = save_loss_plot(&t);
    if (rc == 0 && finished) rc = validate(&t);
    if (t.metrics && fclose(t.metrics) != 0 && rc == 0) {
        err_set("%s: cannot write: %s", t.metrics_path, strerror(errno));
        rc = -1;
    }
    // Every free below is safe on what a failed setup left (zeroed or already freed).
    adamw_free(&t.adam);
    train_adapters_free(&t.adapters);
    free_set(&t.instances);
    free_set(&t.classes);
    pipeline_close(&t.p);
    free(t.losses);
    return rc;
}
