// sdft-sample: one-off renders from the command line.
//
//   build/sdft-sample --model DIR_OR_FILE --prompt "a photo of a dog" [options]
//
// Writes one PNG per image with A1111's "parameters" text chunk. `--help` lists the
// options.
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/check.h"
#include "core/png.h"
#include "core/sha256.h"
#include "infer/lora.h"
#include "infer/pipeline.h"
#include "kernels/backend.h"

#define MAX_LORAS 16

typedef struct {
    const char *path;
    float scale;
} lora_arg;

typedef struct {
    const char *model, *tokenizer, *scheduler_config, *config_dir, *out;
    const char *prompt, *negative, *sampler;
    int steps, width, height, batch, clip_skip;
    float cfg;
    unsigned long long seed;
    device dev;
    dtype dt;
    lora_arg loras[MAX_LORAS];
    int n_loras;
    lora_mode lora_mode;
    bool lenient, progress, hash;
} options;

static void usage(FILE *f) {
    fputs("usage: sdft-sample --model PATH --prompt TEXT [options]\n"
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
          "  --help                  this text\n",
          f);
}

static int parse_int(const char *opt, const char *v, int lo, int *out) {
    char *end;
    long x = strtol(v, &end, 10);
    if (*v == '\0' || *end || x < lo || x > 1 << 30) {
        fprintf(stderr, "sdft-sample: %s: expected an integer >= %d, got \"%s\"\n", opt, lo, v);
        return -1;
    }
    *out = (int)x;
    return 0;
}

static int parse_options(int argc, char **argv, options *o) {
    *o = (options){.out = "sample.png", .steps = 20, .width = 512, .height = 512, .batch = 1,
                   .clip_skip = 1, .cfg = 7.5f, .dev = DEV_CPU, .dt = DT_F32, .progress = true,
                   .hash = true, .lora_mode = LORA_MERGE, .negative = ""};
    enum { O_NEG = 256, O_STEPS, O_CFG, O_SEED, O_SAMPLER, O_W, O_H, O_BATCH, O_SKIP, O_LORA,
           O_LORA_MODE, O_LENIENT, O_DEVICE, O_DTYPE, O_TOK, O_SCHED, O_CFGDIR, O_NOHASH, O_QUIET };
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
        {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "m:p:o:h", longopts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'p': o->prompt = optarg; break;
        case 'o': o->out = optarg; break;
        case 'h': usage(stdout); exit(0);
        case O_NEG: o->negative = optarg; break;
        case O_STEPS: if (parse_int("--steps", optarg, 1, &o->steps)) return -1; break;
        case O_W: if (parse_int("--width", optarg, 8, &o->width)) return -1; break;
        case O_H: if (parse_int("--height", optarg, 8, &o->height)) return -1; break;
        case O_BATCH: if (parse_int("--batch", optarg, 1, &o->batch)) return -1; break;
        case O_SKIP: if (parse_int("--clip-skip", optarg, 1, &o->clip_skip)) return -1; break;
        case O_CFG:
            o->cfg = strtof(optarg, &end);
            if (*end || !*optarg) {
                fprintf(stderr, "sdft-sample: --cfg: expected a number, got \"%s\"\n", optarg);
                return -1;
            }
            break;
        case O_SEED:
            o->seed = strtoull(optarg, &end, 10);
            if (*end || !*optarg) {
                fprintf(stderr, "sdft-sample: --seed: expected an integer, got \"%s\"\n", optarg);
                return -1;
            }
            break;
        case O_SAMPLER: o->sampler = optarg; break;
        case O_LORA: {
            if (o->n_loras == MAX_LORAS) {
                fprintf(stderr, "sdft-sample: at most %d --lora\n", MAX_LORAS);
                return -1;
            }
            lora_arg *l = &o->loras[o->n_loras++];
            l->path = optarg;
            l->scale = 1.0f;
            // FILE:SCALE, where the part after the last ':' parses as a number.
            char *colon = strrchr(optarg, ':');
            if (colon) {
                float s = strtof(colon + 1, &end);
                if (colon[1] && !*end) {
                    *colon = '\0';
                    l->scale = s;
                }
            }
            break;
        }
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
        default: usage(stderr); return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sdft-sample: unexpected argument \"%s\" (see --help)\n", argv[optind]);
        return -1;
    }
    if (!o->model || !o->prompt) {
        fprintf(stderr, "sdft-sample: --model and --prompt are required (see --help)\n");
        return -1;
    }
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

// A1111's model hash: the first 10 hex digits of the checkpoint's SHA-256; for a
// diffusers folder, of its UNet weights.
static int model_hash(const char *model, char out[11]) {
    struct stat s;
    char path[4096];
    snprintf(path, sizeof path, "%s", model);
    if (stat(model, &s) == 0 && S_ISDIR(s.st_mode)) {
        snprintf(path, sizeof path, "%s/unet/diffusion_pytorch_model.safetensors", model);
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

int main(int argc, char **argv) {
    options o;
    if (parse_options(argc, argv, &o)) return 2;
    pipeline p;
    sd_load_options lo = {.dt = o.dt, .dev = o.dev, .config_dir = o.config_dir};
    if (pipeline_open(&p, o.model, o.tokenizer, o.scheduler_config, &lo)) {
        fprintf(stderr, "sdft-sample: %s\n", err_msg());
        return 1;
    }
    sd_model_print_report(&p.model);
    p.show_progress = o.progress;
    int rc = 0;
    lora_set loras = {0};
    for (int i = 0; i < o.n_loras && rc == 0; i++) {
        lora_report rep;
        rc = lora_load(&loras, &p.model, o.loras[i].path, o.loras[i].scale, o.lora_mode, o.lenient, &rep);
        if (rc) fprintf(stderr, "sdft-sample: %s\n", err_msg());
        else
            fprintf(stderr, "lora %s (%s, scale %g): %d modules adapted, %d skipped%s%s\n",
                    o.loras[i].path, rep.format, o.loras[i].scale, rep.applied, rep.skipped,
                    rep.skipped ? "; first: " : "", rep.first_skipped);
    }
    render_params rp;
    render_params_default(&rp, &p);
    rp.prompt = o.prompt;
    rp.negative_prompt = o.negative;
    rp.steps = o.steps;
    rp.cfg_scale = o.cfg;
    rp.seed = o.seed;
    rp.width = o.width;
    rp.height = o.height;
    rp.batch = o.batch;
    rp.clip_skip = o.clip_skip - 1;
    if (rc == 0 && o.sampler && sampler_from_name(o.sampler, &rp.sampler)) {
        fprintf(stderr, "sdft-sample: --sampler: %s\n", err_msg());
        rc = 1;
    }
    float *images = NULL;
    if (rc == 0 && pipeline_render(&p, &rp, NULL, NULL, &images)) {
        fprintf(stderr, "sdft-sample: %s\n", err_msg());
        rc = 1;
    }
    char hash[11] = "";
    if (rc == 0 && o.hash && model_hash(o.model, hash)) {
        fprintf(stderr, "sdft-sample: warning: no model hash: %s\n", err_msg());
        hash[0] = '\0';
    }
    char *extra = rc == 0 ? lora_hashes(&o) : NULL;
    for (int i = 0; rc == 0 && i < o.batch; i++) {
        image_u8 img = image_from_float(images + (size_t)i * o.width * o.height * 3, o.height, o.width);
        char *params = pipeline_a1111_parameters(&p, &rp, o.seed + (uint64_t)i, hash[0] ? hash : NULL, extra);
        char path[4096];
        output_path(path, sizeof path, o.out, i);
        const char *key = "parameters";
        if (png_write(path, &img, 1, &key, (const char *const *)&params)) {
            fprintf(stderr, "sdft-sample: %s\n", err_msg());
            rc = 1;
        } else {
            printf("%s\n", path);
        }
        free(params);
        image_free(&img);
    }
    free(extra);
    free(images);
    lora_set_free(&loras);
    pipeline_close(&p);
    return rc ? 1 : 0;
}
