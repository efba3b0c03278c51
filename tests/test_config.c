// suite_config: YAML configs bound to structs (core/config.h).
//
// A small schema shaped like the trainer's (sections, a list of sections, an enum,
// a string list, ranges) is loaded from files written to the scratch folder and
// changed by overrides. Every error is checked by its whole text, line included.
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "tests/test.h"

// --- the example schema -----------------------------------------------------------------------

enum { SCHED_CONSTANT, SCHED_LINEAR, SCHED_COSINE };
static const char *const schedulers[] = {"constant", "linear", "cosine", NULL};

typedef struct {
    char *base, *vae;
    bool fp16;
} ex_model;
typedef struct {
    char *path, *caption;
    int repeats;
} ex_set;
typedef struct {
    cfg_list sets;  // ex_set
    int resolution;
    bool flip;
} ex_data;
typedef struct {
    int rank;
    double alpha;
} ex_lora;
typedef struct {
    double learning_rate;
    int steps, scheduler;
    int64_t seed;
} ex_train;
typedef struct {
    cfg_strings prompts;
    int every;
} ex_validation;
typedef struct {
    ex_model model;
    ex_data data;
    ex_lora lora;
    ex_train train;
    ex_validation validation;
    char *output;
} ex_config;

static const cfg_field model_fields[] = {
    {"base", CFG_STRING, offsetof(ex_model, base), .help = "checkpoint to fine-tune"},
    {"vae", CFG_STRING, offsetof(ex_model, vae), .help = "a VAE to use instead of the checkpoint's"},
    {"fp16", CFG_BOOL, offsetof(ex_model, fp16), .help = "keep frozen weights in f16"},
};
static const cfg_schema model_schema = CFG_SCHEMA(ex_model, model_fields);

static const cfg_field set_fields[] = {
    {"path", CFG_STRING, offsetof(ex_set, path), .help = "image folder"},
    {"caption", CFG_STRING, offsetof(ex_set, caption), .def = "a photo of sks dog",
     .help = "instance prompt"},
    {"repeats", CFG_INT, offsetof(ex_set, repeats), .def = "1", .min = 1, .max = 1000,
     .help = "times per epoch"},
};
static const cfg_schema set_schema = CFG_SCHEMA(ex_set, set_fields);

static const cfg_field data_fields[] = {
    {"sets", CFG_SECTION_LIST, offsetof(ex_data, sets), .section = &set_schema, .help = "image sets"},
    {"resolution", CFG_INT, offsetof(ex_data, resolution), .def = "512", .min = 64, .max = 4096},
    {"flip", CFG_BOOL, offsetof(ex_data, flip), .def = "false", .help = "random horizontal flips"},
};
static const cfg_schema data_schema = CFG_SCHEMA(ex_data, data_fields);

static const cfg_field lora_fields[] = {
    {"rank", CFG_INT, offsetof(ex_lora, rank), .def = "4", .min = 1, .max = 1024, .help = "LoRA rank"},
    {"alpha", CFG_FLOAT, offsetof(ex_lora, alpha), .def = "4.0", .min = -DBL_MAX, .max = DBL_MAX,
     .help = "LoRA alpha"},
};
static const cfg_schema lora_schema = CFG_SCHEMA(ex_lora, lora_fields);

static const cfg_field train_fields[] = {
    {"learning_rate", CFG_FLOAT, offsetof(ex_train, learning_rate), .def = "1e-4", .min = 0, .max = 1,
     .above_min = true},
    {"steps", CFG_INT, offsetof(ex_train, steps), .def = "1000", .min = 1, .max = INT_MAX,
     .help = "optimizer steps"},
    {"seed", CFG_INT64, offsetof(ex_train, seed), .def = "42", .min = (double)INT64_MIN, .max = (double)INT64_MAX},
    {"scheduler", CFG_ENUM, offsetof(ex_train, scheduler), .choices = schedulers, .def = "constant",
     .help = "learning-rate schedule"},
};
static const cfg_schema train_schema = CFG_SCHEMA(ex_train, train_fields);

static const cfg_field validation_fields[] = {
    {"prompts", CFG_STRING_LIST, offsetof(ex_validation, prompts),
     .def = "[a sks dog, 'sks dog: on a beach']"},
    {"every", CFG_INT, offsetof(ex_validation, every), .def = "100", .min = 0, .max = INT_MAX},
};
static const cfg_schema validation_schema = CFG_SCHEMA(ex_validation, validation_fields);

static const cfg_field config_fields[] = {
    {"model", CFG_SECTION, offsetof(ex_config, model), .section = &model_schema},
    {"data", CFG_SECTION, offsetof(ex_config, data), .section = &data_schema},
    {"lora", CFG_SECTION, offsetof(ex_config, lora), .section = &lora_schema},
    {"train", CFG_SECTION, offsetof(ex_config, train), .section = &train_schema},
    {"validation", CFG_SECTION, offsetof(ex_config, validation), .section = &validation_schema},
    {"output", CFG_STRING, offsetof(ex_config, output), .def = "runs/latest", .help = "run folder"},
};
static const cfg_schema schema = CFG_SCHEMA(ex_config, config_fields);

// --- helpers --------------------------------------------------------------------------------

// Writes text to NAME in the scratch folder; returns the path (static, per name slot).
static const char *write_yaml(const char *name, const char *text) {
    static char path[4][512];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, sizeof path[0], "%s/%s", scratch_dir(), name);
    FILE *f = fopen(p, "wb");
    CHECK(f && fwrite(text, 1, strlen(text), f) == strlen(text) && fclose(f) == 0, "cannot write %s", p);
    return p;
}

// A fresh config with the file holding text loaded over its defaults.
static int load_text(const char *text, ex_config *c) {
    config_init(&schema, c);
    return config_load(write_yaml("t.yaml", text), &schema, c);
}

// Loading text fails with exactly "PATH:" followed by want ("4: unknown key ...").
#define EXPECT_LOAD_ERROR(text, want)                                                                     \
    do {                                                                                                  \
        ex_config c_;                                                                                     \
        int rc_ = load_text((text), &c_);                                                                 \
        char full_[1024];                                                                                 \
        snprintf(full_, sizeof full_, "%s/t.yaml:%s", scratch_dir(), (want));                             \
        EXPECT(rc_ == -1 && strcmp(err_msg(), full_) == 0, "rc %d, message\n    %s\n  want\n    %s", rc_, \
               err_msg(), full_);                                                                         \
        config_free(&schema, &c_);                                                                        \
    } while (0)

// An override on a fresh config fails with exactly `override "ARG": ` followed by want.
#define EXPECT_SET_ERROR(arg, want)                                                                       \
    do {                                                                                                  \
        ex_config c_;                                                                                     \
        config_init(&schema, &c_);                                                                        \
        int rc_ = config_set((arg), &schema, &c_);                                                        \
        char full_[1024];                                                                                 \
        snprintf(full_, sizeof full_, "override \"%s\": %s", (arg), (want));                              \
        EXPECT(rc_ == -1 && strcmp(err_msg(), full_) == 0, "rc %d, message\n    %s\n  want\n    %s", rc_, \
               err_msg(), full_);                                                                         \
        config_free(&schema, &c_);                                                                        \
    } while (0)

static bool same_string(const char *a, const char *b) { return a == b || (a && b && strcmp(a, b) == 0); }

static bool same_double(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

static bool same_config(const ex_config *a, const ex_config *b) {
    bool same = same_string(a->model.base, b->model.base) && same_string(a->model.vae, b->model.vae) &&
                a->model.fp16 == b->model.fp16 && a->data.sets.count == b->data.sets.count &&
                a->data.resolution == b->data.resolution && a->data.flip == b->data.flip &&
                a->lora.rank == b->lora.rank && same_double(a->lora.alpha, b->lora.alpha) &&
                same_double(a->train.learning_rate, b->train.learning_rate) &&
                a->train.steps == b->train.steps && a->train.seed == b->train.seed &&
                a->train.scheduler == b->train.scheduler &&
                a->validation.prompts.count == b->validation.prompts.count &&
                a->validation.every == b->validation.every && same_string(a->output, b->output);
    for (int i = 0; same && i < a->data.sets.count; i++) {
        const ex_set *x = (const ex_set *)a->data.sets.items + i, *y = (const ex_set *)b->data.sets.items + i;
        same =
            same_string(x->path, y->path) && same_string(x->caption, y->caption) && x->repeats == y->repeats;
    }
    for (int i = 0; same && i < a->validation.prompts.count; i++)
        same = strcmp(a->validation.prompts.items[i], b->validation.prompts.items[i]) == 0;
    return same;
}

// config_to_yaml of c, loaded into a fresh config, gives c back, and writes the
// same text again.
static void expect_round_trip(const ex_config *c) {
    char *yaml = config_to_yaml(&schema, c);
    ex_config back;
    int rc = load_text(yaml, &back);
    EXPECT(rc == 0, "%s\n%s", err_msg(), yaml);
    EXPECT(rc != 0 || same_config(c, &back), "the config read back differs; YAML:\n%s", yaml);
    char *again = config_to_yaml(&schema, &back);
    EXPECT(strcmp(yaml, again) == 0, "written twice:\n%s\nthen\n%s", yaml, again);
    free(again);
    free(yaml);
    config_free(&schema, &back);
}

static const ex_set *set_at(const ex_config *c, int i) { return (const ex_set *)c->data.sets.items + i; }

// --- loading --------------------------------------------------------------------------------

static void test_defaults(void) {
    test_begin("config: config_init sets the schema's defaults");
    ex_config c;
    config_init(&schema, &c);
    EXPECT(!c.model.base && !c.model.vae && !c.model.fp16, "model section not zero");
    EXPECT(c.data.sets.count == 0 && !c.data.sets.items && c.data.resolution == 512 && !c.data.flip, "data");
    EXPECT(c.lora.rank == 4 && c.lora.alpha == 4.0, "lora %d %g", c.lora.rank, c.lora.alpha);
    EXPECT(c.train.learning_rate == 1e-4 && c.train.steps == 1000 && c.train.seed == 42 &&
               c.train.scheduler == SCHED_CONSTANT,
           "train");
    EXPECT(c.validation.prompts.count == 2 && strcmp(c.validation.prompts.items[0], "a sks dog") == 0 &&
               strcmp(c.validation.prompts.items[1], "sks dog: on a beach") == 0 && c.validation.every == 100,
           "validation");
    EXPECT(same_string(c.output, "runs/latest"), "output %s", c.output);
    config_free(&schema, &c);
    test_end();
}

static void test_load(void) {
    test_begin("config: a file sets the keys it has; absent and null keys keep their defaults");
    ex_config c;
    int rc = load_text(
        "# a comment\n"
        "model:\n"
        "  base: models/sd15   # trailing comment\n"
        "  fp16: yes\n"
        "data:\n"
        "  sets:\n"
        "    - path: images/dog\n"
        "      repeats: 10\n"
        "    - {path: images/reg, caption: a dog}\n"
        "  resolution: 768\n"
        "lora: {rank: 16}\n"
        "train:\n"
        "  learning_rate: 5.0e-5\n"
        "  seed: 12345678901\n"
        "  scheduler: cosine\n"
        "  steps: ~\n"
        "validation:\n"
        "  prompts:\n"
        "    - a sks dog in a bucket\n"
        "    - 42\n"
        "  every:\n"
        "output: 'null'\n",
        &c);
    EXPECT(rc == 0, "%s", err_msg());
    EXPECT(same_string(c.model.base, "models/sd15") && !c.model.vae && c.model.fp16, "model");
    EXPECT(c.data.sets.count == 2 && same_string(set_at(&c, 0)->path, "images/dog") &&
               set_at(&c, 0)->repeats == 10 && same_string(set_at(&c, 0)->caption, "a photo of sks dog") &&
               same_string(set_at(&c, 1)->path, "images/reg") && set_at(&c, 1)->repeats == 1 &&
               same_string(set_at(&c, 1)->caption, "a dog"),
           "data.sets");
    EXPECT(c.data.resolution == 768 && !c.data.flip, "data");
    EXPECT(c.lora.rank == 16 && c.lora.alpha == 4.0, "lora");
    EXPECT(c.train.learning_rate == 5e-5 && c.train.seed == 12345678901LL &&
               c.train.scheduler == SCHED_COSINE && c.train.steps == 1000,
           "train");
    EXPECT(c.validation.prompts.count == 2 &&
               same_string(c.validation.prompts.items[0], "a sks dog in a bucket") &&
               same_string(c.validation.prompts.items[1], "42") && c.validation.every == 100,
           "validation");
    EXPECT(same_string(c.output, "null"), "a quoted 'null' is the string: %s", c.output);

    // Loading a second file over the first replaces what it names, lists whole.
    const char *second =
        write_yaml("second.yaml", "data:\n  sets: []\nvalidation: {prompts: [one]}\nlora:\n");
    EXPECT(config_load(second, &schema, &c) == 0, "%s", err_msg());
    EXPECT(c.data.sets.count == 0 && c.validation.prompts.count == 1 && c.lora.rank == 16 &&
               same_string(c.model.base, "models/sd15"),
           "second file");
    config_free(&schema, &c);
    test_end();

    test_begin("config: an empty file, comments only, or an empty document change nothing");
    const char *empties[] = {"", "# nothing here\n\n", "---\n", "--- ~\n"};
    for (size_t i = 0; i < sizeof empties / sizeof *empties; i++) {
        ex_config d, e;
        config_init(&schema, &d);
        EXPECT(load_text(empties[i], &e) == 0 && same_config(&d, &e), "\"%s\": %s", empties[i], err_msg());
        config_free(&schema, &d);
        config_free(&schema, &e);
    }
    test_end();
}

static void test_scalars(void) {
    test_begin("config: numbers, booleans and strings read as documented");
    struct {
        const char *text;
        double want;
    } floats[] = {{"1e-4", 1e-4}, {"5.0e-5", 5e-5}, {".5", 0.5},    {"-2.", -2.0},      {"+3", 3.0},
                  {"1E3", 1e3},   {"2.5e+2", 250},  {"0", 0},       {"1e-999", 0},      {"0x10", NAN},
                  {"1_000", NAN}, {"1e", NAN},      {"e5", NAN},    {".", NAN},         {"Infinity", NAN},
                  {"inf", NAN},   {"nan", NAN},     {"1.2.3", NAN}, {"1e-4x", NAN},     {"'1.5'", NAN}};
    for (size_t i = 0; i < sizeof floats / sizeof *floats; i++) {
        ex_config c;
        config_init(&schema, &c);
        char arg[64];
        snprintf(arg, sizeof arg, "lora.alpha=%s", floats[i].text);
        int rc = config_set(arg, &schema, &c);
        if (isnan(floats[i].want))
            EXPECT(rc == -1 && strstr(err_msg(), "lora.alpha: expected a number, got "), "%s: %s", arg,
                   err_msg());
        else
            EXPECT(rc == 0 && c.lora.alpha == floats[i].want, "%s: %s, got %g", arg, err_msg(), c.lora.alpha);
        config_free(&schema, &c);
    }
    // YAML's infinities and NaN, and decimals beyond a double, are numbers no field takes.
    const char *non_finite[] = {".inf", "-.Inf", "+.INF", ".nan", ".NaN", "1e999", "-1e999"};
    for (size_t i = 0; i < sizeof non_finite / sizeof *non_finite; i++) {
        ex_config c;
        config_init(&schema, &c);
        char arg[64], want[160];
        snprintf(arg, sizeof arg, "lora.alpha=%s", non_finite[i]);
        snprintf(want, sizeof want, "override \"%s\": lora.alpha: %s is not a finite number", arg, non_finite[i]);
        EXPECT(config_set(arg, &schema, &c) == -1 && strcmp(err_msg(), want) == 0 && c.lora.alpha == 4.0,
               "%s: %s", arg, err_msg());
        config_free(&schema, &c);
    }
    struct {
        const char *text;
        int64_t want;  // -1: refused
    } ints[] = {{"7", 7},     {"+7", 7},   {"-0", 0},   {"010", -1}, {"1.0", -1},
                {"0x10", -1}, {"1e3", -1}, {"1_0", -1}, {"'7'", -1}, {"9223372036854775807", INT64_MAX}};
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        ex_config c;
        config_init(&schema, &c);
        char arg[64];
        snprintf(arg, sizeof arg, "train.seed=%s", ints[i].text);
        int rc = config_set(arg, &schema, &c);
        if (ints[i].want == -1)
            EXPECT(rc == -1 && strstr(err_msg(), "train.seed: expected an integer, got "), "%s: %s", arg,
                   err_msg());
        else
            EXPECT(rc == 0 && c.train.seed == ints[i].want, "%s: %s", arg, err_msg());
        config_free(&schema, &c);
    }
    const char *yes[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
    const char *no[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"};
    const char *neither[] = {"y", "n", "tRUE", "1", "0", "'true'", "enabled"};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
        ex_config c;
        config_init(&schema, &c);
        char arg[64];
        snprintf(arg, sizeof arg, "data.flip=%s", yes[i]);
        EXPECT(config_set(arg, &schema, &c) == 0 && c.data.flip, "%s: %s", arg, err_msg());
        snprintf(arg, sizeof arg, "data.flip=%s", no[i]);
        EXPECT(config_set(arg, &schema, &c) == 0 && !c.data.flip, "%s: %s", arg, err_msg());
        config_free(&schema, &c);
    }
    for (size_t i = 0; i < sizeof neither / sizeof *neither; i++) {
        ex_config c;
        config_init(&schema, &c);
        char arg[64];
        snprintf(arg, sizeof arg, "data.flip=%s", neither[i]);
        EXPECT(config_set(arg, &schema, &c) == -1 &&
                   strstr(err_msg(), "data.flip: expected true or false, got "),
               "%s: %s", arg, err_msg());
        config_free(&schema, &c);
    }
    // In a file a string field takes any scalar's text; null keeps the default.
    struct {
        const char *yaml;
        const char *want;
    } strings[] = {{"5", "5"},
                   {"yes", "yes"},
                   {"1e-4", "1e-4"},
                   {"''", ""},
                   {"\"\\u00e9t\\u00e9\"", "été"},
                   {"~", "runs/latest"},
                   {"null", "runs/latest"},
                   {"", "runs/latest"},
                   {"|\n  two\n  lines\n", "two\nlines\n"}};
    for (size_t i = 0; i < sizeof strings / sizeof *strings; i++) {
        char text[128];
        snprintf(text, sizeof text, "output: %s\n", strings[i].yaml);
        ex_config c;
        EXPECT(load_text(text, &c) == 0 && same_string(c.output, strings[i].want), "%s: %s -> %s", text,
               err_msg(), c.output);
        config_free(&schema, &c);
    }
    test_end();
}

static void test_anchors(void) {
    test_begin("config: anchors and aliases are resolved; an error in aliased text names the anchor's line");
    ex_config c;
    int rc = load_text(
        "data:\n"
        "  sets:\n"
        "    - &dog {path: images/dog, repeats: 5}\n"
        "    - *dog\n"
        "validation:\n"
        "  prompts: &p [a, b]\n",
        &c);
    EXPECT(rc == 0 && c.data.sets.count == 2 && same_string(set_at(&c, 1)->path, "images/dog") &&
               set_at(&c, 1)->repeats == 5 && set_at(&c, 0)->path != set_at(&c, 1)->path,
           "%s", err_msg());
    config_free(&schema, &c);
    EXPECT_LOAD_ERROR("lora:\n  alpha: &n 2.5\ntrain:\n  steps: *n\n",
                      "2: train.steps: expected an integer, got \"2.5\"");
    EXPECT_LOAD_ERROR("lora:\n  rank: *nothing\n", "2: YAML syntax error: found undefined alias");
    test_end();
}

// --- errors in files --------------------------------------------------------------------------

static void test_file_errors(void) {
    test_begin("config: unknown keys name the line and the nearest key, or list the keys");
    EXPECT_LOAD_ERROR("model:\n  base: sd15\ntrain:\n  lerning_rate: 1e-4\n",
                      "4: unknown key \"lerning_rate\" in train; did you mean \"learning_rate\"?");
    EXPECT_LOAD_ERROR("lroa:\n  rank: 4\n", "1: unknown key \"lroa\"; did you mean \"lora\"?");
    EXPECT_LOAD_ERROR("lora:\n  zzz: 1\n", "2: unknown key \"zzz\" in lora; the keys are rank, alpha");
    EXPECT_LOAD_ERROR("data:\n  sets:\n    - pth: images\n",
                      "3: unknown key \"pth\" in data.sets[0]; did you mean \"path\"?");
    EXPECT_LOAD_ERROR("seeds: 1\n",
                      "1: unknown key \"seeds\"; the keys are model, data, lora, train, validation, output");
    EXPECT_LOAD_ERROR("lora:\n  <<: {rank: 4}\n", "2: merge keys (<<) are not supported");
    EXPECT_LOAD_ERROR("? [a, b]\n: 1\n", "1: keys must be names, got a list");
    test_end();

    test_begin("config: wrong types name the line, the field and the value");
    EXPECT_LOAD_ERROR("lora:\n  rank: eight\n", "2: lora.rank: expected an integer, got \"eight\"");
    EXPECT_LOAD_ERROR("lora:\n  rank: \"8\"\n",
                      "2: lora.rank: expected an integer, got the quoted string \"8\"");
    EXPECT_LOAD_ERROR("lora:\n\n  rank: [1, 2]\n", "3: lora.rank: expected an integer, got a list");
    EXPECT_LOAD_ERROR("train:\n  learning_rate: fast\n",
                      "2: train.learning_rate: expected a number, got \"fast\"");
    EXPECT_LOAD_ERROR("model:\n  fp16: maybe\n", "2: model.fp16: expected true or false, got \"maybe\"");
    EXPECT_LOAD_ERROR("output: {a: 1}\n", "1: output: expected a string, got a mapping");
    EXPECT_LOAD_ERROR("lora: 8\n", "1: lora: expected a mapping, got \"8\"");
    EXPECT_LOAD_ERROR("validation:\n  prompts: a dog\n",
                      "2: validation.prompts: expected a list of strings ([a, b]), got \"a dog\"");
    EXPECT_LOAD_ERROR("validation:\n  prompts:\n    - a\n    - ~\n",
                      "4: validation.prompts[1]: expected a string, got null");
    EXPECT_LOAD_ERROR("validation:\n  prompts:\n    - a\n    - {b: c}\n",
                      "4: validation.prompts[1]: expected a string, got a mapping");
    EXPECT_LOAD_ERROR("data:\n  sets: {path: x}\n",
                      "2: data.sets: expected a list of mappings, got a mapping");
    EXPECT_LOAD_ERROR("data:\n  sets:\n    - path: a\n    - path: b\n      repeats: many\n",
                      "5: data.sets[1].repeats: expected an integer, got \"many\"");
    EXPECT_LOAD_ERROR("data:\n  sets:\n    - path: a\n    - ~\n",
                      "4: data.sets[1]: expected a mapping, got null");
    EXPECT_LOAD_ERROR("output: \"a\\0b\"\n", "1: output: a string cannot contain a NUL character");
    EXPECT_LOAD_ERROR("lora:\n  rank: !!int 8\n",
                      "2: lora.rank: tags (tag:yaml.org,2002:int) are not supported");
    EXPECT_LOAD_ERROR("output: !path runs\n", "1: output: tags (!path) are not supported");
    // Long values are cut, and line breaks in them do not break the message's line.
    EXPECT_LOAD_ERROR("lora:\n  rank: \"first line\\nsecond line, and then a long tail of words\"\n",
                      "2: lora.rank: expected an integer, got the quoted string \"first line second line, "
                      "and then a long tail of ...\"");
    test_end();

    test_begin("config: out-of-range numbers and unknown choices");
    EXPECT_LOAD_ERROR("lora:\n  rank: 0\n", "2: lora.rank: 0 is out of range [1, 1024]");
    EXPECT_LOAD_ERROR("train:\n  learning_rate: 2.5\n", "2: train.learning_rate: 2.5 is out of range (0, 1]");
    EXPECT_LOAD_ERROR("train:\n  learning_rate: 0\n", "2: train.learning_rate: 0 is out of range (0, 1]");
    EXPECT_LOAD_ERROR("train:\n  learning_rate: -1e-4\n",
                      "2: train.learning_rate: -1e-4 is out of range (0, 1]");
    EXPECT_LOAD_ERROR("train:\n  learning_rate: .nan\n", "2: train.learning_rate: .nan is not a finite number");
    EXPECT_LOAD_ERROR("\ntrain:\n  learning_rate: .inf\n", "3: train.learning_rate: .inf is not a finite number");
    EXPECT_LOAD_ERROR("lora:\n  alpha: -.inf\n", "2: lora.alpha: -.inf is not a finite number");
    EXPECT_LOAD_ERROR("lora:\n  alpha: 1e999\n", "2: lora.alpha: 1e999 is not a finite number");
    EXPECT_LOAD_ERROR("lora:\n  rank: 1025\n", "2: lora.rank: 1025 is out of range [1, 1024]");
    EXPECT_LOAD_ERROR("train:\n  steps: -3\n", "2: train.steps: -3 is out of range [1, 2.14748e+09]");
    EXPECT_LOAD_ERROR("train:\n  steps: 3000000000\n",
                      "2: train.steps: 3000000000 is out of range for an int");
    EXPECT_LOAD_ERROR("train:\n  seed: 99999999999999999999\n",
                      "2: train.seed: 99999999999999999999 is out of range for a 64-bit integer");
    EXPECT_LOAD_ERROR(
        "train:\n  scheduler: cosin\n",
        "2: train.scheduler: \"cosin\" is not one of constant, linear, cosine; did you mean \"cosine\"?");
    EXPECT_LOAD_ERROR("train:\n  scheduler: warmup\n",
                      "2: train.scheduler: \"warmup\" is not one of constant, linear, cosine");
    EXPECT_LOAD_ERROR("train:\n  scheduler: [cosine]\n", "2: train.scheduler: expected a name, got a list");
    test_end();

    test_begin("config: duplicate keys, a non-mapping top, YAML syntax errors, two documents");
    EXPECT_LOAD_ERROR("model:\n  base: a\nlora:\n  rank: 4\nmodel:\n  base: b\n",
                      "5: duplicate key \"model\" (first on line 1)");
    EXPECT_LOAD_ERROR("lora:\n  rank: 4\n  alpha: 1\n  rank: 8\n",
                      "4: duplicate key \"rank\" in lora (first on line 2)");
    EXPECT_LOAD_ERROR("- a\n- b\n", "1: not a YAML mapping at the top");
    EXPECT_LOAD_ERROR("# config\n\njust text\n", "3: not a YAML mapping at the top");
    EXPECT_LOAD_ERROR(
        "model:\n  base: a\n lora: x\n",
        "3: YAML syntax error: did not find expected key (while parsing a block mapping at line 1)");
    EXPECT_LOAD_ERROR(
        "validation:\n  prompts: [a, b\nlora: {}\n",
        "3: YAML syntax error: did not find expected ',' or ']' (while parsing a flow sequence at line 2)");
    EXPECT_LOAD_ERROR(
        "lora:\n\trank: 4\n",
        "2: YAML syntax error: found character that cannot start any token (while scanning for the next "
        "token at line 2)");
    EXPECT_LOAD_ERROR("model:\n  base: caf\xc3\n", "2: YAML syntax error: invalid trailing UTF-8 octet");
    EXPECT_LOAD_ERROR("lora:\n  rank: 4\n---\nlora:\n  rank: 8\n",
                      "3: a second YAML document; a config is one mapping");
    EXPECT_LOAD_ERROR("lora:\n  rank: 4\n---\n[\n",
                      "5: YAML syntax error: did not find expected node content "
                      "(while parsing a flow node at line 5)");

    ex_config c;
    config_init(&schema, &c);
    char missing[512];
    snprintf(missing, sizeof missing, "%s/missing.yaml", scratch_dir());
    EXPECT(config_load(missing, &schema, &c) == -1 && strstr(err_msg(), missing) &&
               strstr(err_msg(), "No such file"),
           "%s", err_msg());
    config_free(&schema, &c);
    test_end();
}

// --- overrides ------------------------------------------------------------------------------

static void test_overrides(void) {
    test_begin("config: overrides set nested keys of every type");
    ex_config c;
    config_init(&schema, &c);
    const char *args[] = {
        "train.learning_rate=5e-5",
        "lora.rank=8",
        "train.seed=12345678901",
        "model.fp16=yes",
        "train.scheduler=linear",
        "validation.prompts=[a dog, \"b: c\", 'd, e']",
        "output=runs/x: y #1",  // strings verbatim: no YAML comment, no mapping
        "data.sets=[{path: a, repeats: 3}, {path: b}]",
        "lora={rank: 16, alpha: 8}",
        "train.steps=",  // empty: unchanged
        "model.base=",   // a string: empty
    };
    for (size_t i = 0; i < sizeof args / sizeof *args; i++)
        EXPECT(config_set(args[i], &schema, &c) == 0, "%s", err_msg());
    EXPECT(c.train.learning_rate == 5e-5 && c.train.seed == 12345678901LL &&
               c.train.scheduler == SCHED_LINEAR && c.train.steps == 1000,
           "train");
    EXPECT(c.lora.rank == 16 && c.lora.alpha == 8.0 && c.model.fp16, "lora / model");
    EXPECT(c.validation.prompts.count == 3 && same_string(c.validation.prompts.items[1], "b: c") &&
               same_string(c.validation.prompts.items[2], "d, e"),
           "prompts");
    EXPECT(same_string(c.output, "runs/x: y #1") && same_string(c.model.base, ""), "output %s", c.output);
    EXPECT(c.data.sets.count == 2 && set_at(&c, 0)->repeats == 3 && same_string(set_at(&c, 1)->path, "b") &&
               set_at(&c, 1)->repeats == 1 && same_string(set_at(&c, 1)->caption, "a photo of sks dog"),
           "data.sets");
    config_free(&schema, &c);
    test_end();

    test_begin("config: bad overrides name the argument; a failed one changes nothing");
    EXPECT_SET_ERROR("train.lerning_rate=1",
                     "unknown key \"lerning_rate\" in train; did you mean \"learning_rate\"?");
    EXPECT_SET_ERROR("train.lr=x", "unknown key \"lr\" in train; did you mean \"learning_rate\"?");
    EXPECT_SET_ERROR("trian.steps=1", "unknown key \"trian\"; did you mean \"train\"?");
    EXPECT_SET_ERROR("train.zzz=1",
                     "unknown key \"zzz\" in train; the keys are learning_rate, steps, seed, scheduler");
    EXPECT_SET_ERROR("lora.rank=eight", "lora.rank: expected an integer, got \"eight\"");
    EXPECT_SET_ERROR("lora.rank=\"8\"", "lora.rank: expected an integer, got the quoted string \"8\"");
    EXPECT_SET_ERROR("lora.rank=0", "lora.rank: 0 is out of range [1, 1024]");
    EXPECT_SET_ERROR(
        "train.scheduler=cosin",
        "train.scheduler: \"cosin\" is not one of constant, linear, cosine; did you mean \"cosine\"?");
    EXPECT_SET_ERROR("train.learning_rate.x=1", "train.learning_rate is not a section");
    EXPECT_SET_ERROR("lora.rank", "expected key=value, such as train.learning_rate=1e-4");
    EXPECT_SET_ERROR("=5", "expected key=value, such as train.learning_rate=1e-4");
    EXPECT_SET_ERROR("train..steps=1", "expected key=value, such as train.learning_rate=1e-4");
    EXPECT_SET_ERROR("validation.prompts=[a, b",
                     "validation.prompts: YAML syntax error: did not find expected ',' or ']'");
    EXPECT_SET_ERROR("validation.prompts=a dog",
                     "validation.prompts: expected a list of strings ([a, b]), got \"a dog\"");
    EXPECT_SET_ERROR("lora={rank: 8, rank: 9}", "duplicate key \"rank\" in lora");
    EXPECT_SET_ERROR("data.sets=[{path: a}, {path: b, repeats: 0}]",
                     "data.sets[1].repeats: 0 is out of range [1, 1000]");
    EXPECT_SET_ERROR("output=caf\xc3", "output: the value is not valid UTF-8");

    ex_config c2;
    config_init(&schema, &c2);
    EXPECT(config_set("data.sets=[{path: a}]", &schema, &c2) == 0, "%s", err_msg());
    EXPECT(config_set("data.sets=[{path: b}, {path: c, repeats: x}]", &schema, &c2) == -1 &&
               config_set("lora.rank=2000", &schema, &c2) == -1,
           "bad overrides accepted");
    EXPECT(c2.data.sets.count == 1 && same_string(set_at(&c2, 0)->path, "a") && c2.lora.rank == 4,
           "a failed override changed the config");
    config_free(&schema, &c2);
    test_end();
}

static void test_nearest_key(void) {
    test_begin("config: the nearest key: typos, transpositions, case, separators, initials, prefixes");
    struct {
        const char *section, *typed, *want;  // want NULL: no suggestion, the keys are listed
    } cases[] = {
        {"lora", "rnak", "rank"},
        {"lora", "Rank", "rank"},
        {"lora", "rankk", "rank"},
        {"lora", "alhpa", "alpha"},
        {"lora", "ab", NULL},
        {"lora", "x", NULL},
        {"train", "learning-rate", "learning_rate"},
        {"train", "learningrate", "learning_rate"},
        {"train", "LearningRate", "learning_rate"},
        {"train", "learn", "learning_rate"},
        {"train", "lr", "learning_rate"},
        {"train", "step", "steps"},
        {"train", "sed", "seed"},
        {"train", "sceduler", "scheduler"},
        {"train", "schedule", "scheduler"},
        {"train", "optimizer", NULL},
        {"train", "rate", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *section = cases[i].section;
        char arg[128], want[256];
        snprintf(arg, sizeof arg, "%s.%s=1", section, cases[i].typed);
        if (cases[i].want)
            snprintf(want, sizeof want, "unknown key \"%s\" in %s; did you mean \"%s\"?", cases[i].typed,
                     section, cases[i].want);
        else
            snprintf(want, sizeof want, "unknown key \"%s\" in %s; the keys are %s", cases[i].typed, section,
                     strcmp(section, "lora") == 0 ? "rank, alpha" : "learning_rate, steps, seed, scheduler");
        EXPECT_SET_ERROR(arg, want);
    }
    test_end();
}

// --- writing --------------------------------------------------------------------------------

static void test_to_yaml(void) {
    test_begin("config: config_to_yaml writes every field in schema order");
    ex_config c;
    config_init(&schema, &c);
    char *yaml = config_to_yaml(&schema, &c);
    const char *want =
        "model:\n"
        "  base: null\n"
        "  vae: null\n"
        "  fp16: false\n"
        "data:\n"
        "  sets: []\n"
        "  resolution: 512\n"
        "  flip: false\n"
        "lora:\n"
        "  rank: 4\n"
        "  alpha: 4.0\n"
        "train:\n"
        "  learning_rate: 0.0001\n"
        "  steps: 1000\n"
        "  seed: 42\n"
        "  scheduler: constant\n"
        "validation:\n"
        "  prompts:\n"
        "  - a sks dog\n"
        "  - 'sks dog: on a beach'\n"
        "  every: 100\n"
        "output: runs/latest\n";
    EXPECT(strcmp(yaml, want) == 0, "got\n%s", yaml);
    free(yaml);
    config_free(&schema, &c);
    test_end();

    test_begin("config: load -> config_to_yaml -> load gives the same struct");
    ex_config d;
    config_init(&schema, &d);
    expect_round_trip(&d);
    config_free(&schema, &d);
    EXPECT(load_text(
               "model: {base: models/sd15, vae: vae.safetensors, fp16: on}\n"
               "data:\n  sets:\n    - {path: a, repeats: 3}\n    - {path: 'b c', caption: ''}\n  flip: true\n"
               "train: {learning_rate: 3e-6, seed: -5, scheduler: cosine}\n"
               "validation: {prompts: [], every: 7}\n",
               &d) == 0,
           "%s", err_msg());
    expect_round_trip(&d);
    config_free(&schema, &d);

    // Strings that would read back as something else, or need quoting or escapes.
    const char *tricky[] = {
        "null",      "~",           "",       "yes",  "No",     "on",      "5",          "-3",
        "1e-4",      ".5",          ".inf",   "a: b", "#x",     "- dash",  "[x]",        "{y}",
        "'q'",       "\"dq\"",      "@at",    "%pct", "  lead", "trail  ", "two\nlines", "tab\there",
        "café 犬 🐕", "back\\slash", "colon:", "?",    "*star",  "&amp",    "!bang",      "|pipe",
        ">fold",     "a,b",         "0x10",   "010",  "---",    "..."};
    int n = (int)(sizeof tricky / sizeof *tricky);
    config_init(&schema, &d);
    free(d.validation.prompts.items[0]);
    free(d.validation.prompts.items[1]);
    free(d.validation.prompts.items);
    d.validation.prompts.items = calloc((size_t)n, sizeof(char *));
    for (d.validation.prompts.count = 0; d.validation.prompts.count < n; d.validation.prompts.count++)
        d.validation.prompts.items[d.validation.prompts.count] = strdup(tricky[d.validation.prompts.count]);
    free(d.output);
    d.output = strdup("yes");
    expect_round_trip(&d);
    config_free(&schema, &d);

    // Doubles come back bit for bit, written with a point (PyYAML reads 1e-20 as a string).
    const double values[] = {1e-4, 0.1, 1.0 / 3, 5e-324, 1.7976931348623157e308, -0.0, 1e21, 123456789.0,
                             100,  2.5e-7, -1e-20, -1.7976931348623157e308};
    for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
        config_init(&schema, &d);
        d.lora.alpha = values[i];
        expect_round_trip(&d);
        char *text = config_to_yaml(&schema, &d), *alpha = strstr(text, "alpha: ");
        EXPECT(alpha && strcspn(alpha, ".") < strcspn(alpha, "\n"), "alpha %g written without a point:\n%s",
               values[i], text);
        free(text);
        config_free(&schema, &d);
    }
    // A NaN a caller put in is written as YAML's .nan, which reading refuses.
    config_init(&schema, &d);
    d.lora.alpha = NAN;
    char *text = config_to_yaml(&schema, &d);
    ex_config back;
    EXPECT(load_text(text, &back) == -1 && strstr(err_msg(), "lora.alpha: .nan is not a finite number"),
           "NaN: %s", err_msg());
    free(text);
    config_free(&schema, &back);
    config_free(&schema, &d);
    test_end();
}

static void test_free_and_help(void) {
    test_begin("config: config_free frees what loads, overrides and failed loads left, and zeroes it");
    ex_config c;
    EXPECT(load_text("model: {base: a, vae: b}\ndata: {sets: [{path: x}, {path: y}]}\noutput: o\n", &c) == 0,
           "%s", err_msg());
    // A second load and overrides replace strings and lists (the old ones are freed).
    EXPECT(config_load(write_yaml("again.yaml", "model: {base: c}\ndata: {sets: [{path: z}]}\n"), &schema,
                       &c) == 0,
           "%s", err_msg());
    EXPECT(config_set("validation.prompts=[p, q, r]", &schema, &c) == 0 &&
               config_set("output=o2", &schema, &c) == 0,
           "%s", err_msg());
    // Failing half way, in a list item and after some keys were set.
    EXPECT(config_load(write_yaml("half.yaml",
                                  "model: {base: d}\ndata:\n  sets:\n    - {path: w, caption: v}\n"
                                  "    - {path: u, repeats: no}\n"),
                       &schema, &c) == -1,
           "the bad file loaded");
    EXPECT(same_string(c.model.base, "d") && c.data.sets.count == 1, "state after a failed load");
    config_free(&schema, &c);
    EXPECT(!c.model.base && !c.model.vae && !c.output && !c.data.sets.items && c.data.sets.count == 0 &&
               !c.validation.prompts.items && c.validation.prompts.count == 0,
           "config_free left pointers behind");
    config_free(&schema, &c);  // harmless on a freed config
    test_end();

    test_begin("config: config_print_help lists every field with its type, help and default");
    char *help = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&help, &len);
    config_print_help(f, &schema);
    fclose(f);
    int lines = 0;
    for (const char *p = help; *p; p++) lines += *p == '\n';
    EXPECT(lines == 18, "%d lines:\n%s", lines, help);
    const char *want[] = {
        "  model.base                       string  checkpoint to fine-tune\n",
        "  data.sets                        list    image sets\n",
        "  data.resolution                  int     [default: 512]\n",
        "  data.sets[].repeats              int     times per epoch [default: 1]\n",
        "  train.scheduler                  choice  learning-rate schedule (constant, linear, cosine) "
        "[default: constant]\n",
        "  output                           string  run folder [default: runs/latest]\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        EXPECT(strstr(help, want[i]), "no line\n%s in\n%s", want[i], help);
    free(help);
    test_end();
}

void suite_config(void) {
    test_defaults();
    test_load();
    test_scalars();
    test_anchors();
    test_file_errors();
    test_overrides();
    test_nearest_key();
    test_to_yaml();
    test_free_and_help();
}
