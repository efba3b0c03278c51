// sdft-sample: renders with Stable Diffusion 1.x plus adapters, to PNG files carrying
// A1111's "parameters" text chunk.
//
//   build/sdft-sample --model DIR_OR_FILE --prompt "a photo of a dog" [options]
//   build/sdft-sample --config configs/x.yaml [section.key=value ...]   (make sample)
//
// The second form renders the config's validation prompts, with the run's adapter
// when <output.dir>/<output.name>.safetensors exists, into <output.dir>/samples/ plus
// a contact sheet, grid.png. `--help` lists the options.
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/args.h"
#include "core/check.h"
#include "core/png.h"
#include "core/sha256.h"
#include "core/utf8.h"
#include "infer/lora.h"
#include "infer/pipeline.h"
#include "train/run_config.h"
#include "kernels/backend.h"

#define MAX_LORAS 16

typedef struct {
    const char *path;
    float scale;
} lora_arg;

typedef struct {
    const char *config;  // --config: the run-config mode
    char **overrides;    // its section.key=value arguments
    int n_overrides;
    const char *model, *tokenizer, *scheduler_config, *config_dir, *out;
    const char *prompt, *negative;
    bool has_sampler;  // --sampler given; else the model's scheduler decides
    sampler_kind sampler;
    int steps, width, height, batch, clip_skip;
    double cfg;
    int64_t seed;
    device dev;
    dtype dt;
    lora_arg loras[MAX_LORAS];
    int n_loras;
    lora_mode lora_mode;
    bool lenient, progress, hash;
} options;

static void usage(FILE *f) {
    fputs("usage: sdft-sample --model PATH --prompt TEXT [options]\n"
          "       sdft-sample --config FILE [section.key=value ...]\n"
          "\n"
          "Renders images with Stable Diffusion 1.x (plus LoRA adapters) to PNG files that\n"
          "carry their settings in an A1111-style \"parameters\" text chunk.\n"
          "\n"
          "  --model PATH            diffusers folder or original single-file .safetensors\n"
          "  --prompt TEXT           what to render\n"
          "  --negative-prompt TEXT  what to steer away from (default: empty)\n"
          "  --steps N               sampler steps (20)\n"
          "  --cfg X                 classifier-free guidance scale (7.5; 1 turns it off)\n"
          "  --seed N                seed of the first image; image i uses seed + i (0)\n"
          "  --sampler NAME          ddpm, ddim, pndm, euler, euler_a, dpmpp_2m,\n"
          "                          dpmpp_2m_karras (default: the model's scheduler)\n"
          "  --width N, --height N   image size, multiples of 8 (512)\n"
          "  --batch N               images to render (1)\n"
          "  --clip-skip N           A1111's clip skip: 1 = last text-encoder layer (1)\n"
          "  --lora FILE[:SCALE]     an adapter (PEFT/diffusers or kohya), repeatable (scale 1)\n"
          "  --lora-mode MODE        merge (into the weights, default) or runtime\n"
          "  --lenient               skip adapter tensors that fit no module, with a count\n"
          "  --out PATH              output PNG (sample.png); batches add -1, -2, ...\n"
          "  --device cpu|cuda       where to compute (cpu)\n"
          "  --dtype f32|bf16        compute dtype of the weights (f32; bf16 on cuda)\n"
          "  --tokenizer DIR         tokenizer folder (default: the model's, or the build's)\n"
          "  --scheduler-config FILE scheduler_config.json (default: the model's, or SD1.5's)\n"
          "  --config-dir DIR        single files: a folder of component config.json files\n"
          "  --no-hash               skip the model's SHA-256 in the metadata\n"
          "  --quiet                 no progress bar\n"
          "  --config FILE           render a run config's validation prompts (make sample)\n"
          "  --help                  this text\n",
          f);
}

// A number option with the type and range of the config key it stands for.
static int parse_number(void *out, const char *opt, const char *text, const char *key) {
    if (arg_field(out, opt, text, run_config_field(key)) == 0) return 0;
    fprintf(stderr, "sdft-sample: %s\n", err_msg());
    return -1;
}

// --lora FILE[:SCALE]: a name that exists is the file; else the part after the last
// ':' is the scale, which must then be a number in validation.lora_scale's range.
static int parse_lora(lora_arg *l, char *text) {
    l->path = text;
    l->scale = 1.0f;
    char *colon = strrchr(text, ':');
    if (access(text, F_OK) == 0 || !colon || strchr(colon, '/')) return 0;
    double scale;
    if (parse_number(&scale, "--lora FILE:SCALE", colon + 1, "validation.lora_scale")) return -1;
    *colon = '\0';
    l->scale = (float)scale;
    return 0;
}

// Text that goes into the PNG's metadata: checked before any work, not at the end.
static int check_text(const char *opt, const char *text) {
    size_t bad;
    if (utf8_valid(text, &bad)) return 0;
    fprintf(stderr, "sdft-sample: %s: not valid UTF-8 text (byte %zu)\n", opt, bad);
    return -1;
}

static int parse_options(int argc, char **argv, options *o) {
    *o = (options){.out = "sample.png", .steps = 20, .width = 512, .height = 512, .batch = 1,
                   .clip_skip = 1, .cfg = 7.5f, .dev = DEV_CPU, .dt = DT_F32, .progress = true,
                   .hash = true, .lora_mode = LORA_MERGE, .negative = ""};
    enum { O_NEG = 256, O_STEPS, O_CFG, O_SEED, O_SAMPLER, O_W, O_H, O_BATCH, O_SKIP, O_LORA,
           O_LORA_MODE, O_LENIENT, O_DEVICE, O_DTYPE, O_TOK, O_SCHED, O_CFGDIR, O_NOHASH, O_QUIET,
           O_CONFIG };
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'},     {"prompt", required_argument, 0, 'p'},
        {"negative-prompt", required_argument, 0, O_NEG}, {"steps", required_argument, 0, O_STEPS},
        {"cfg", required_argument, 0, O_CFG},     {"seed", required_argument, 0, O_SEED},
        {"sampler", required_argument, 0, O_SAMPLER}, {"width", required_argument, 0, O_W},
        {"height", required_argument, 0, O_H},    {"batch", required_argument, 0, O_BATCH},
        {"clip-skip", required_argument, 0, O_SKIP}, {"lora", required_argument, 0, O_LORA},
        {"lora-mode", required_argument, 0, O_LORA_MODE}, {"lenient", no_argument, 0, O_LENIENT},
        {"out", required_argument, 0, 'o'},       {"device", required_argument, 0, O_DEVICE},
        {"dtype", required_argument, 0, O_DTYPE}, {"tokenizer", required_argument, 0, O_TOK},
        {"scheduler-config", required_argument, 0, O_SCHED},
        {"config-dir", required_argument, 0, O_CFGDIR}, {"no-hash", no_argument, 0, O_NOHASH},
        {"quiet", no_argument, 0, O_QUIET},       {"help", no_argument, 0, 'h'},
        {"config", required_argument, 0, O_CONFIG},
        {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "m:p:o:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'p': o->prompt = optarg; break;
        case 'o': o->out = optarg; break;
        case 'h': usage(stdout); exit(0);
        case O_NEG: o->negative = optarg; break;
        // Each number option takes the range of the config key it stands for.
        case O_STEPS: if (parse_number(&o->steps, "--steps", optarg, "validation.steps")) return -1; break;
        case O_W: if (parse_number(&o->width, "--width", optarg, "validation.width")) return -1; break;
        case O_H: if (parse_number(&o->height, "--height", optarg, "validation.height")) return -1; break;
        case O_BATCH: if (parse_number(&o->batch, "--batch", optarg, "validation.images_per_prompt")) return -1; break;
        case O_SKIP: if (parse_number(&o->clip_skip, "--clip-skip", optarg, "model.clip_skip")) return -1; break;
        case O_CFG: if (parse_number(&o->cfg, "--cfg", optarg, "validation.cfg")) return -1; break;
        case O_SEED: if (parse_number(&o->seed, "--seed", optarg, "validation.seed")) return -1; break;
        case O_SAMPLER:
            if (sampler_from_name(optarg, &o->sampler)) {
                fprintf(stderr, "sdft-sample: --sampler: %s\n", err_msg());
                return -1;
            }
            o->has_sampler = true;
            break;
        case O_LORA:
            if (o->n_loras == MAX_LORAS) {
                fprintf(stderr, "sdft-sample: at most %d --lora\n", MAX_LORAS);
                return -1;
            }
            if (parse_lora(&o->loras[o->n_loras++], optarg)) return -1;
            break;
        case O_LORA_MODE:
            if (strcmp(optarg, "merge") == 0) o->lora_mode = LORA_MERGE;
            else if (strcmp(optarg, "runtime") == 0) o->lora_mode = LORA_RUNTIME;
            else {
                fprintf(stderr, "sdft-sample: --lora-mode: merge or runtime, got \"%s\"\n", optarg);
                return -1;
            }
            break;
        case O_LENIENT: o->lenient = true; break;
        case O_DEVICE:
            if (strcmp(optarg, "cpu") == 0) o->dev = DEV_CPU;
            else if (strcmp(optarg, "cuda") == 0) o->dev = DEV_CUDA;
            else {
                fprintf(stderr, "sdft-sample: --device: cpu or cuda, got \"%s\"\n", optarg);
                return -1;
            }
            break;
        case O_DTYPE:
            if (strcmp(optarg, "f32") == 0) o->dt = DT_F32;
            else if (strcmp(optarg, "bf16") == 0) o->dt = DT_BF16;
            else {
                fprintf(stderr, "sdft-sample: --dtype: f32 or bf16, got \"%s\"\n", optarg);
                return -1;
            }
            break;
        case O_TOK: o->tokenizer = optarg; break;
        case O_SCHED: o->scheduler_config = optarg; break;
        case O_CFGDIR: o->config_dir = optarg; break;
        case O_NOHASH: o->hash = false; break;
        case O_QUIET: o->progress = false; break;
        case O_CONFIG: o->config = optarg; break;
        default: usage(stderr); return -1;
        }
    }
    if (o->config) {  // the rest are the config's overrides
        o->overrides = argv + optind;
        o->n_overrides = argc - optind;
        return 0;
    }
    if (optind < argc) {
        fprintf(stderr, "sdft-sample: unexpected argument \"%s\" (see --help)\n", argv[optind]);
        return -1;
    }
    if (!o->model || !o->prompt) {
        fprintf(stderr, "sdft-sample: --model and --prompt are required (see --help)\n");
        return -1;
    }
    if (check_text("--prompt", o->prompt) || check_text("--negative-prompt", o->negative)) return -1;
    if (o->dev == DEV_CUDA && !backend_available(DEV_CUDA)) {
        fprintf(stderr, "sdft-sample: --device cuda: no CUDA device (or a CPU-only build)\n");
        return -1;
    }
    if (o->dt == DT_BF16 && o->dev == DEV_CPU) {
        fprintf(stderr, "sdft-sample: --dtype bf16 needs --device cuda (the CPU computes in f32)\n");
        return -1;
    }
    return 0;
}

// "Lora hashes: "name: 0123456789ab, ..."" as A1111 lists the adapters it applied.
static char *lora_hashes(const options *o) {
    if (!o->n_loras) return NULL;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    fputs("Lora hashes: \"", f);
    for (int i = 0; i < o->n_loras; i++) {
        uint8_t h[32];
        char hex[65] = "unknown";
        if (sha256_file(o->loras[i].path, h) == 0) sha256_hex(h, hex);
        hex[12] = '\0';
        const char *name = strrchr(o->loras[i].path, '/');
        fprintf(f, "%s%s: %s", i ? ", " : "", name ? name + 1 : o->loras[i].path, hex);
    }
    fputc('"', f);
    fclose(f);
    return text;
}

// out.png -> out-1.png for image i > 0 of a batch.
static void output_path(char *buf, size_t len, const char *out, int i) {
    if (i == 0) {
        snprintf(buf, len, "%s", out);
        return;
    }
    const char *dot = strrchr(out, '.');
    if (!dot || strchr(dot, '/')) dot = out + strlen(out);
    snprintf(buf, len, "%.*s-%d%s", (int)(dot - out), out, i, dot);
}

// Loads each adapter onto the pipeline's model, reporting what it applied.
static int load_adapters(pipeline *p, lora_set *set, const options *o) {
    for (int i = 0; i < o->n_loras; i++) {
        lora_report rep;
        if (lora_load(set, &p->model, o->loras[i].path, o->loras[i].scale, o->lora_mode, o->lenient, &rep)) {
            fprintf(stderr, "sdft-sample: %s\n", err_msg());
            return -1;
        }
        fprintf(stderr, "lora %s (%s, scale %g): %d modules adapted, %d skipped%s%s\n", o->loras[i].path,
                rep.format, o->loras[i].scale, rep.applied, rep.skipped, rep.skipped ? "; first: " : "",
                rep.first_skipped);
    }
    return 0;
}

// Renders rp's batch and writes image i to path_of(i); keeps the images for a grid
// when kept is not NULL (rp->batch slots). 0, or -1 after printing the error.
static int render_and_write(pipeline *p, const render_params *rp, const char *hash, const char *extra,
                            const char *out_pattern, image_u8 *kept) {
    float *images = NULL;
    if (pipeline_render(p, rp, NULL, NULL, &images)) {
        fprintf(stderr, "sdft-sample: %s\n", err_msg());
        return -1;
    }
    int rc = 0;
    for (int i = 0; rc == 0 && i < rp->batch; i++) {
        image_u8 img = image_from_float(images + (size_t)i * rp->width * rp->height * 3, rp->height, rp->width);
        char *params = pipeline_a1111_parameters(p, rp, rp->seed + (uint64_t)i, hash[0] ? hash : NULL, extra);
        char path[4096];
        output_path(path, sizeof path, out_pattern, i);
        const char *key = "parameters";
        if (png_write(path, &img, 1, &key, (const char *const *)&params)) {
            fprintf(stderr, "sdft-sample: %s\n", err_msg());
            rc = -1;
        } else {
            printf("%s\n", path);
        }
        free(params);
        if (kept) kept[i] = img;
        else image_free(&img);
    }
    free(images);
    return rc;
}

static void model_hash_or_warn(const char *model, bool enabled, char hash[11]) {
    hash[0] = '\0';
    if (enabled && pipeline_model_hash(model, hash)) {
        fprintf(stderr, "sdft-sample: warning: no model hash: %s\n", err_msg());
        hash[0] = '\0';
    }
}

static int one_off(const options *o) {
    pipeline p;
    sd_load_options lo = {.dt = o->dt, .dev = o->dev, .config_dir = o->config_dir};
    if (pipeline_open(&p, o->model, o->tokenizer, o->scheduler_config, &lo)) {
        fprintf(stderr, "sdft-sample: %s\n", err_msg());
        return 1;
    }
    sd_model_print_report(&p.model);
    p.show_progress = o->progress && isatty(STDERR_FILENO);
    lora_set loras = {0};
    int rc = load_adapters(&p, &loras, o);
    render_params rp;
    render_params_default(&rp, &p);
    rp.prompt = o->prompt;
    rp.negative_prompt = o->negative;
    rp.steps = o->steps;
    rp.cfg_scale = (float)o->cfg;
    rp.seed = (uint64_t)o->seed;
    rp.width = o->width;
    rp.height = o->height;
    rp.batch = o->batch;
    rp.clip_skip = o->clip_skip - 1;
    if (o->has_sampler) rp.sampler = o->sampler;
    char hash[11];
    char *extra = NULL;
    if (rc == 0) {
        model_hash_or_warn(o->model, o->hash, hash);
        extra = lora_hashes(o);
        rc = render_and_write(&p, &rp, hash, extra, o->out, NULL);
    }
    free(extra);
    lora_set_free(&loras);
    pipeline_close(&p);
    return rc ? 1 : 0;
}

// "a photo of sks dog, on the beach" -> "a-photo-of-sks-dog-on-the-beach" (40 chars).
static void slug(char *out, size_t len, const char *text) {
    size_t n = 0;
    bool dash = false;
    for (const char *c = text; *c && n + 2 < len && n < 40; c++) {
        bool alnum = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9');
        if (alnum) {
            if (dash && n) out[n++] = '-';
            out[n++] = *c;
            dash = false;
        } else {
            dash = true;
        }
    }
    out[n] = '\0';
}

static int from_config(options *o) {
    run_config cfg;
    if (run_config_read(&cfg, o->config, o->n_overrides, o->overrides)) {
        fprintf(stderr, "sdft-sample: %s\n", err_msg());
        config_free(&run_config_schema, &cfg);
        return 2;
    }
    const run_sample_section *v = &cfg.validation;
    pipeline p;
    if (run_config_open_pipeline(&p, &cfg)) {
        fprintf(stderr, "sdft-sample: %s: %s\n", o->config, err_msg());
        config_free(&run_config_schema, &cfg);
        return 1;
    }
    sd_model_print_report(&p.model);
    p.show_progress = o->progress && isatty(STDERR_FILENO);

    // The run's adapter, when training has written one.
    char adapter[4096], dir[4096];
    snprintf(adapter, sizeof adapter, "%s/%s.safetensors", cfg.output.dir, cfg.output.name);
    if (access(adapter, R_OK) == 0) {
        o->loras[0] = (lora_arg){adapter, (float)v->lora_scale};
        o->n_loras = 1;
    } else {
        fprintf(stderr, "sdft-sample: no adapter at %s: rendering the base model\n", adapter);
    }
    lora_set loras = {0};
    int rc = load_adapters(&p, &loras, o);
    snprintf(dir, sizeof dir, "%s/samples", cfg.output.dir);
    if (rc == 0 && mkdir(cfg.output.dir, 0777) && errno != EEXIST) rc = -1;
    if (rc == 0 && mkdir(dir, 0777) && errno != EEXIST) rc = -1;
    if (rc) fprintf(stderr, "sdft-sample: cannot create %s: %s\n", dir, strerror(errno));

    render_params rp;
    if (rc == 0 && run_config_render_params(&rp, &p, &cfg)) {
        fprintf(stderr, "sdft-sample: %s: %s\n", o->config, err_msg());
        rc = -1;
    }
    char hash[11] = "";
    char *extra = NULL;
    if (rc == 0) {
        model_hash_or_warn(cfg.model.path, o->hash, hash);
        extra = lora_hashes(o);
    }
    int n_prompts = v->prompts.count, per = v->images_per_prompt, n_images = 0;
    image_u8 *images = xcalloc((size_t)n_prompts * per, sizeof *images);
    char **prompts = xcalloc((size_t)n_prompts, sizeof *prompts);  // kept for the grid's captions
    for (int i = 0; rc == 0 && i < n_prompts; i++) {
        char *prompt = prompts[i] = run_config_expand(&cfg, v->prompts.items[i]);
        char name[64], path[4096 + 128];
        slug(name, sizeof name, prompt);
        snprintf(path, sizeof path, "%s/%02d-%s.png", dir, i, name);
        rp.prompt = prompt;
        rp.seed = (uint64_t)v->seed;
        rc = render_and_write(&p, &rp, hash, extra, path, images + n_images);
        if (rc == 0) n_images += per;
    }
    if (rc == 0 && n_images) {
        const image_u8 **tiles = xmalloc((size_t)n_images * sizeof *tiles);
        for (int i = 0; i < n_images; i++) tiles[i] = &images[i];
        int cols = per > 1 ? per : n_images < 4 ? n_images : 4;
        // Each tile captioned with its prompt and seed (image b of a prompt has seed + b).
        const char **captions = xmalloc((size_t)n_images * sizeof *captions);
        char(*seeds)[32] = xmalloc((size_t)n_images * sizeof *seeds);
        const char **notes = xmalloc((size_t)n_images * sizeof *notes);
        for (int i = 0; i < n_images; i++) {
            captions[i] = prompts[i / per];
            snprintf(seeds[i], sizeof seeds[i], "seed %llu", (unsigned long long)v->seed + (unsigned)(i % per));
            notes[i] = seeds[i];
        }
        image_u8 grid = image_grid_captioned(tiles, captions, notes, n_images, cols, 8, 255);
        free(captions), free(seeds), free(notes);
        char path[4096 + 16];
        snprintf(path, sizeof path, "%s/grid.png", dir);
        if (png_write(path, &grid, 0, NULL, NULL)) {
            fprintf(stderr, "sdft-sample: %s\n", err_msg());
            rc = -1;
        } else {
            printf("%s\n", path);
        }
        image_free(&grid);
        free(tiles);
    }
    for (int i = 0; i < n_prompts * per; i++) image_free(&images[i]);
    for (int i = 0; i < n_prompts; i++) free(prompts[i]);
    free(images), free(prompts);
    free(extra);
    lora_set_free(&loras);
    pipeline_close(&p);
    config_free(&run_config_schema, &cfg);
    return rc ? 1 : 0;
}

int main(int argc, char **argv) {
    options o;
    if (parse_options(argc, argv, &o)) return 2;
    return o.config ? from_config(&o) : one_off(&o);
}
