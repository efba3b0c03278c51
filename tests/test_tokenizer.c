// The CLIP tokenizer: every prompt of tests/fixtures/tokenizer/clip_ids.json (written by
// tools/golden/tokenizer.py from transformers' CLIPTokenizer) gives the reference's
// padded and untruncated ids; BOS/EOS/padding/truncation around 77; the pad token
// read from the folder; each malformed folder refused with a one-line message naming
// the file; invalid UTF-8.
//
// The vocabulary is made at build time (make runs tools/clip_vocab.py into
// $(BUILD)/clip-tokenizer, beside the test binary): it is derived from OpenAI's file,
// which is never committed.
#include <cjson/cJSON.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/files.h"
#include "infer/tokenizer.h"
#include "infer/unicode_tables.h"
#include "tests/test.h"

#define FIXTURE "tests/fixtures/tokenizer/clip_ids.json"
#define FIXTURE_FORMAT_VERSION 1
#define MAX_LEN 77
#define BOS 49406
#define EOS 49407

// --- helpers ---------------------------------------------------------------------

// $(BUILD)/clip-tokenizer: the folder beside this binary, so build-asan/run_tests reads
// what `make BUILD=build-asan test` made.
static const char *vocab_dir(void) {
    static char dir[1024];
    if (!dir[0]) path_beside_program(dir, sizeof dir, "clip-tokenizer");
    return dir;
}

// Whether the build folder has the vocabulary; fails the current test when not.
static bool have_vocab(void) {
    char vocab[1100];
    snprintf(vocab, sizeof vocab, "%s/vocab.json", vocab_dir());
    bool ok = access(vocab, R_OK) == 0;
    EXPECT(ok, "%s is missing: run make (it makes the tokenizer folder with tools/clip_vocab.py)",
           vocab);
    return ok;
}

// The tokenizer of the build folder, or NULL after failing the current test.
static clip_tokenizer *load_reference(void) {
    if (!have_vocab()) return NULL;
    clip_tokenizer *tok = clip_tokenizer_load(vocab_dir());
    EXPECT(tok, "cannot load %s: %s", vocab_dir(), err_msg());
    return tok;
}

static char *read_text(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = xmalloc((size_t)n + 1);
    CHECK(fread(buf, 1, (size_t)n, fp) == (size_t)n, "cannot read %s", path);
    buf[n] = 0;
    fclose(fp);
    return buf;
}

static void write_text(const char *path, const char *text) {
    FILE *fp = fopen(path, "wb");
    CHECK(fp && fputs(text, fp) >= 0 && fclose(fp) == 0, "cannot write %s", path);
}

// A prompt for a failure message: printable ASCII as is, other bytes as \xNN, cut short.
static const char *shown(const char *s) {
    static char out[256];
    size_t n = 0;
    for (; *s && n + 5 < sizeof out; s++) {
        unsigned char c = (unsigned char)*s;
        n += (size_t)(c >= 0x20 && c < 0x7F ? snprintf(out + n, 2, "%c", c)
                                            : snprintf(out + n, 5, "\\x%02x", c));
    }
    out[n] = 0;
    return out;
}

static bool ids_equal(const int32_t *ours, int n, const cJSON *ref) {
    if (cJSON_GetArraySize(ref) != n) return false;
    int i = 0;
    for (const cJSON *e = ref->child; e; e = e->next, i++)
        if (!cJSON_IsNumber(e) || ours[i] != (int32_t)e->valuedouble) return false;
    return true;
}

// A fresh folder under the scratch directory with the build folder's vocab.json and
// merges.txt (as links) and the given files; returns its path.
static const char *make_folder(const char *name, const char *const *files) {
    static char dir[4][512];
    static int next;
    char *out = dir[next++ % 4];
    snprintf(out, sizeof dir[0], "%s/%s", scratch_dir(), name);
    CHECK(mkdir(out, 0755) == 0, "cannot make %s", out);
    char from[1100], to[1100];
    for (const char *const *base = (const char *const[]){"vocab.json", "merges.txt", NULL}; *base;
         base++) {
        snprintf(from, sizeof from, "%s/%s", vocab_dir(), *base);
        snprintf(to, sizeof to, "%s/%s", out, *base);
        CHECK(symlink(from, to) == 0, "cannot link %s", to);
    }
    for (; files && files[0]; files += 2) {
        snprintf(to, sizeof to, "%s/%s", out, files[0]);
        unlink(to);
        if (files[1]) write_text(to, files[1]);
    }
    return out;
}

// --- the fixture -----------------------------------------------------------------

// The first ids of a list, for a failure message.
static const char *ids_shown(const int32_t *ids, int n) {
    static char out[2][64];
    static int next;
    char *o = out[next++ % 2];
    int k = 0;
    for (int i = 0; i < n && i < 8; i++)
        k += snprintf(o + k, sizeof out[0] - (size_t)k, "%d ", ids[i]);
    snprintf(o + k, sizeof out[0] - (size_t)k, "%s", n > 8 ? "..." : "");
    return o;
}

// Whether the prompt gives the fixture's ids; the first ten that do not are reported.
static bool check_case(const clip_tokenizer *tok, const cJSON *c, int *reported) {
    const char *prompt = cJSON_GetObjectItem(c, "prompt")->valuestring;
    const cJSON *ref_ids = cJSON_GetObjectItem(c, "ids");
    int32_t *ids, padded[MAX_LEN];
    int n = clip_tokenize(tok, prompt, &ids);
    int count = clip_tokenize_padded(tok, prompt, padded, MAX_LEN);
    bool ok = ids_equal(ids, n, ref_ids) && count == n &&
              ids_equal(padded, MAX_LEN, cJSON_GetObjectItem(c, "padded"));
    if (!ok && (*reported)++ < 10) {
        int32_t ref[9];  // one more than shown, for the "..."
        int k = 0;
        for (const cJSON *e = ref_ids->child; e && k < 9; e = e->next)
            ref[k++] = (int32_t)e->valuedouble;
        EXPECT(ok, "\"%s\": %d tokens [%s], reference %d [%s]", shown(prompt), n, ids_shown(ids, n),
               cJSON_GetArraySize(ref_ids), ids_shown(ref, k));
    }
    free(ids);
    return ok;
}

// Whether the fixture is the one this test reads; fails the test when not.
static bool fixture_is_current(const cJSON *root) {
    const cJSON *version = cJSON_GetObjectItem(root, "format_version");
    const cJSON *max_len = cJSON_GetObjectItem(root, "max_length");
    const cJSON *versions = cJSON_GetObjectItem(root, "versions");
    const cJSON *ucd = cJSON_GetObjectItem(versions, "unicodedata");
    const cJSON *re = cJSON_GetObjectItem(versions, "regex");
    EXPECT(root && cJSON_IsArray(cJSON_GetObjectItem(root, "cases")), "cannot read %s", FIXTURE);
    if (!root) return false;
    EXPECT(cJSON_IsNumber(version) && version->valuedouble == FIXTURE_FORMAT_VERSION,
           "%s is not format %d: run tools/golden/tokenizer.py", FIXTURE, FIXTURE_FORMAT_VERSION);
    EXPECT(cJSON_IsNumber(max_len) && max_len->valuedouble == MAX_LEN,
           "%s pads to another length than %d", FIXTURE, MAX_LEN);
    EXPECT(cJSON_IsString(ucd) && strcmp(ucd->valuestring, UC_UNICODE_VERSION) == 0 &&
               cJSON_IsString(re) && strcmp(re->valuestring, UC_REGEX_VERSION) == 0,
           "%s was made with other Unicode data than infer/unicode_tables.h (Unicode %s, "
           "regex %s): regenerate both in one environment",
           FIXTURE, UC_UNICODE_VERSION, UC_REGEX_VERSION);
    return test_ok();
}

static double seconds_since(const struct timespec *t0) {
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0->tv_nsec);
}

static void test_fixture(void) {
    test_begin("tokenizer/fixture: every prompt gives the reference's ids");
    char *text = read_text(repo_path(FIXTURE));
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    clip_tokenizer *tok = load_reference();
    if (tok && fixture_is_current(root)) {
        const cJSON *cases = cJSON_GetObjectItem(root, "cases");
        int n = cJSON_GetArraySize(cases), differ = 0, reported = 0;
        EXPECT(n >= 2000, "only %d prompts", n);
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (const cJSON *c = cases->child; c; c = c->next)
            differ += !check_case(tok, c, &reported);
        double ms = 1e3 * seconds_since(&t0) / (2.0 * n);  // two calls per prompt
        EXPECT(differ == 0, "%d of %d prompts differ", differ, n);
        printf("  %d prompts, %.4f ms per prompt\n", n, ms);
#if !defined(__SANITIZE_ADDRESS__)
        EXPECT(ms < 1.0, "%.3f ms per prompt", ms);
#endif
    }
    clip_tokenizer_free(tok);
    cJSON_Delete(root);
    test_end();
}

// --- long words ----------------------------------------------------------------------

// One word of 130,000 random letters (a caption file can hold anything): BPE's work
// is counted in merge-table lookups, not timed, so the bound holds on a busy machine
// and under sanitizers alike. Merging round by round with a rescan of the word, the
// reference's way, takes about 10^9 lookups here (10 s); the heap takes at most 3 per
// byte: one per starting pair, two per merge.
static void test_long_word(void) {
    test_begin("tokenizer/long word: 130,000 letters cost at most 3 pair lookups per byte");
    clip_tokenizer *tok = load_reference();
    if (tok) {
        const size_t n = 130000;
        char *word = xmalloc(n + 1);
        uint32_t state = 12345;
        for (size_t i = 0; i < n; i++) {
            state = state * 1664525u + 1013904223u;
            word[i] = (char)('a' + (state >> 16) % 26);
        }
        word[n] = 0;
        int32_t *ids, padded[MAX_LEN];
        uint64_t before = clip_tokenizer_pair_lookups();
        int count = clip_tokenize(tok, word, &ids);
        uint64_t lookups = clip_tokenizer_pair_lookups() - before;
        EXPECT(lookups <= 3 * n, "%llu pair lookups for %zu bytes", (unsigned long long)lookups, n);
        EXPECT(count > 0 && count < (int)n, "%d tokens", count);
        printf("  %llu pair lookups, %d tokens\n", (unsigned long long)lookups, count);
        // Truncated to the first 75 of the same tokens, as the pipeline pads it.
        EXPECT(clip_tokenize_padded(tok, word, padded, MAX_LEN) == count && padded[0] == BOS &&
                   memcmp(padded + 1, ids, (MAX_LEN - 2) * sizeof *ids) == 0 && padded[MAX_LEN - 1] == EOS,
               "padded ids differ from the first of the whole word's");
        free(ids);
        free(word);
    }
    clip_tokenizer_free(tok);
    test_end();
}

// --- BOS, EOS, padding and truncation -------------------------------------------------

// "cat cat ... cat", words times: one token per word.
static void test_length(const clip_tokenizer *tok, int words) {
    test_begin("tokenizer/padded: %d tokens", words);
    char *prompt = xmalloc((size_t)words * 4 + 1);
    for (int i = 0; i < words; i++) memcpy(prompt + 4 * i, "cat ", 4);
    prompt[words * 4] = 0;
    int32_t cat = clip_tokenizer_id(tok, "cat</w>"), ids[MAX_LEN];
    EXPECT(cat >= 0, "no cat</w> in the vocab");
    int n = clip_tokenize_padded(tok, prompt, ids, MAX_LEN);
    EXPECT(n == words, "%d tokens counted, want %d", n, words);
    int kept = words < MAX_LEN - 2 ? words : MAX_LEN - 2;
    EXPECT(ids[0] == BOS, "ids[0] = %d, want BOS", ids[0]);
    for (int i = 1; i <= kept; i++) EXPECT(ids[i] == cat, "ids[%d] = %d, want %d", i, ids[i], cat);
    EXPECT(ids[kept + 1] == EOS, "ids[%d] = %d, want EOS", kept + 1, ids[kept + 1]);
    for (int i = kept + 2; i < MAX_LEN; i++)
        EXPECT(ids[i] == EOS, "ids[%d] = %d, want the pad", i, ids[i]);
    free(prompt);
    test_end();
}

static void test_basics(void) {
    test_begin("tokenizer/load: ids of specials and tokens, max length");
    clip_tokenizer *tok = load_reference();
    if (tok) {
        EXPECT(clip_tokenizer_max_length(tok) == MAX_LEN, "max length %d",
               clip_tokenizer_max_length(tok));
        EXPECT(clip_tokenizer_id(tok, "<|startoftext|>") == BOS, "BOS id");
        EXPECT(clip_tokenizer_id(tok, "<|endoftext|>") == EOS, "EOS id");
        EXPECT(clip_tokenizer_id(tok, "a</w>") == 320, "a</w> is %d",
               clip_tokenizer_id(tok, "a</w>"));
        EXPECT(clip_tokenizer_id(tok, "no such token") == -1, "found an absent token");
        int32_t *ids;
        int n = clip_tokenize(tok, "", &ids);
        EXPECT(n == 0, "the empty prompt has %d tokens", n);
        free(ids);
    }
    test_end();
    if (!tok) return;
    for (const int *w = (const int[]){0, 1, 74, 75, 76, 77, 200, -1}; *w >= 0; w++)
        test_length(tok, *w);
    clip_tokenizer_free(tok);
}

// --- the pad token from the folder ----------------------------------------------------

// Loads the folder, expects pad id want_pad and the given ids for "a cat!".
static void expect_pad(const char *dir, int32_t want_pad, const int32_t *want, int n_want) {
    clip_tokenizer *tok = clip_tokenizer_load(dir);
    EXPECT(tok, "cannot load %s: %s", dir, err_msg());
    if (!tok) return;
    int32_t ids[MAX_LEN];
    int n = clip_tokenize_padded(tok, "a cat!", ids, MAX_LEN);
    EXPECT(n == n_want, "\"a cat!\" has %d tokens, want %d", n, n_want);
    for (int i = 0; i < n_want && i < n; i++)
        EXPECT(ids[1 + i] == want[i], "token %d is %d, want %d", i, ids[1 + i], want[i]);
    EXPECT(ids[n + 1] == EOS && ids[MAX_LEN - 1] == want_pad, "ends %d ... %d, want EOS ... %d",
           ids[n + 1], ids[MAX_LEN - 1], want_pad);
    EXPECT(clip_tokenizer_max_length(tok) == MAX_LEN, "max length %d",
           clip_tokenizer_max_length(tok));
    clip_tokenizer_free(tok);
}

static void test_pad_token(void) {
    // "a cat!" with "!" an ordinary character, and with "!" the pad token: then it is an
    // added token, cut out of the text and given its own id (as transformers does for
    // SD2's tokenizer, which pads with "!").
    const int32_t plain[] = {320, 2368, 256}, bang[] = {320, 2368, 0};
    test_begin("tokenizer/pad: defaults without configs");
    if (have_vocab()) expect_pad(make_folder("no-config", NULL), EOS, plain, 3);
    test_end();

    test_begin("tokenizer/pad: \"!\" from special_tokens_map.json (SD2)");
    const char *sd2[] = {
        "special_tokens_map.json",
        "{\"bos_token\": {\"content\": \"<|startoftext|>\"}, \"pad_token\": \"!\"}",
        "tokenizer_config.json", "{\"model_max_length\": 77, \"pad_token\": \"<|endoftext|>\"}",
        NULL};
    if (have_vocab()) expect_pad(make_folder("sd2", sd2), 0, bang, 3);
    test_end();

    test_begin("tokenizer/pad: \"!\" from tokenizer_config.json");
    const char *config[] = {"tokenizer_config.json",
                            "{\"model_max_length\": 77, \"pad_token\": {\"__type\": "
                            "\"AddedToken\", \"content\": \"!\"}}",
                            NULL};
    if (have_vocab()) expect_pad(make_folder("config-pad", config), 0, bang, 3);
    test_end();

    test_begin("tokenizer/pad: special_tokens_map.json ignored beside added_tokens_decoder");
    const char *decoder[] = {
        "special_tokens_map.json", "{\"pad_token\": \"!\"}", "tokenizer_config.json",
        "{\"model_max_length\": 77, \"added_tokens_decoder\": {\"49406\": "
        "{\"content\": \"<|startoftext|>\"}, \"49407\": {\"content\": \"<|endoftext|>\"}}}",
        NULL};
    if (have_vocab()) expect_pad(make_folder("decoder", decoder), EOS, plain, 3);
    test_end();
}

// --- malformed folders ------------------------------------------------------------------

// The folder must fail to load with a one-line message naming the file and saying want.
static void expect_refused(const char *what, const char *folder, const char *const *files,
                           const char *file, const char *want) {
    test_begin("tokenizer/refuses: %s", what);
    if (have_vocab()) {
        const char *dir = make_folder(folder, files);
        err_set("%s", "");
        clip_tokenizer *tok = clip_tokenizer_load(dir);
        EXPECT(!tok, "loaded a folder with %s", what);
        clip_tokenizer_free(tok);
        char path[1100];
        snprintf(path, sizeof path, "%s/%s", dir, file);
        EXPECT(strncmp(err_msg(), path, strlen(path)) == 0, "message does not name %s: %s", path,
               err_msg());
        EXPECT(strstr(err_msg(), want), "message \"%s\" lacks \"%s\"", err_msg(), want);
        EXPECT(!strchr(err_msg(), '\n'), "message spans lines: %s", err_msg());
    }
    test_end();
}

static void test_refused(void) {
    expect_refused("no vocab.json", "no-vocab", (const char *[]){"vocab.json", NULL, NULL},
                   "vocab.json", "cannot open");
    expect_refused("no merges.txt", "no-merges", (const char *[]){"merges.txt", NULL, NULL},
                   "merges.txt", "cannot open");
    expect_refused("malformed vocab.json", "bad-vocab",
                   (const char *[]){"vocab.json", "{\"a\": 1,", NULL}, "vocab.json",
                   "malformed JSON");
    expect_refused("vocab.json not an object", "vocab-list",
                   (const char *[]){"vocab.json", "[1, 2]", NULL}, "vocab.json",
                   "not a JSON object");
    expect_refused("a token with a fractional id", "vocab-id",
                   (const char *[]){"vocab.json", "{\"a\": 1.5}", NULL}, "vocab.json",
                   "\"a\" has no valid id");
    expect_refused("a vocab without byte tokens", "vocab-bytes",
                   (const char *[]){"vocab.json", "{\"a\": 0}", NULL}, "vocab.json",
                   "lacks the token");
    expect_refused("malformed tokenizer_config.json", "bad-config",
                   (const char *[]){"tokenizer_config.json", "{\"pad_token\": }", NULL},
                   "tokenizer_config.json", "malformed JSON");
    expect_refused("tokenizer_config.json not an object", "config-list",
                   (const char *[]){"tokenizer_config.json", "[]", NULL}, "tokenizer_config.json",
                   "not a JSON object");
    expect_refused(
        "added_tokens_decoder not an object", "decoder-list",
        (const char *[]){"tokenizer_config.json", "{\"added_tokens_decoder\": [1]}", NULL},
        "tokenizer_config.json", "added_tokens_decoder is not an object");
    expect_refused("malformed special_tokens_map.json", "bad-map",
                   (const char *[]){"special_tokens_map.json", "not json", NULL},
                   "special_tokens_map.json", "malformed JSON");
    expect_refused("a merge naming a token not in vocab", "merge-unknown",
                   (const char *[]){"merges.txt", "#version: 0.2\ni n\nq zzzzqqq\n", NULL},
                   "merges.txt:3", "\"zzzzqqq\" is not in vocab.json");
    expect_refused("a merge whose result is not in vocab", "merge-result",
                   (const char *[]){"merges.txt", "#version: 0.2\n\xc4\x80 \xc4\x80\n", NULL},
                   "merges.txt:2", "merged token");
    expect_refused("a merge line of three tokens", "merge-three",
                   (const char *[]){"merges.txt", "#version: 0.2\ni n\nt h e\n", NULL},
                   "merges.txt:3", "expected two tokens");
    expect_refused(
        "a pad token not in vocab", "pad-missing",
        (const char *[]){"special_tokens_map.json", "{\"pad_token\": \"<|pad|>\"}", NULL},
        "special_tokens_map.json", "pad_token \"<|pad|>\" is not in vocab.json");
    expect_refused("a bos token that is neither string nor object", "bos-number",
                   (const char *[]){"tokenizer_config.json", "{\"bos_token\": 5}", NULL},
                   "tokenizer_config.json", "bos_token is neither");
    expect_refused(
        "a bad model_max_length", "max-length",
        (const char *[]){"tokenizer_config.json", "{\"model_max_length\": \"77\"}", NULL},
        "tokenizer_config.json", "model_max_length");
    expect_refused("an infinite model_max_length", "max-length-inf",
                   (const char *[]){"tokenizer_config.json", "{\"model_max_length\": 1e999}", NULL},
                   "tokenizer_config.json", "model_max_length is not a finite integer");
}

// --- invalid UTF-8 ------------------------------------------------------------------------

// Invalid bytes decode to U+FFFD, which the cleanup removes: each prompt must give the
// ids of its valid counterpart.
static void test_invalid_utf8(void) {
    test_begin("tokenizer/invalid UTF-8 tokenizes as its valid remainder");
    clip_tokenizer *tok = load_reference();
    static const char *const pairs[][2] = {
        {"a\xff"
         "b",
         "ab"},
        {"\xe4\xb8"
         "a",
         "a"},
        {"caf\xc3", "caf"},
        {"\xed\xa0\x80x", "x"},
        {"\xf4\x90\x80\x80y", "y"},
        {"\xc0\xaf"
         "z",
         "z"},
        {"\xf0\x9f\x98"
         " cat",
         " cat"},
        {"\x80\x80\x80", ""},
        {"\xe2\x82\xac\xe2\x82", "\xe2\x82\xac"},
        {"<|endof\xfftext|>", "<|endoftext|>"},
    };
    for (size_t i = 0; tok && i < sizeof pairs / sizeof pairs[0]; i++) {
        int32_t *a, *b;
        int na = clip_tokenize(tok, pairs[i][0], &a), nb = clip_tokenize(tok, pairs[i][1], &b);
        EXPECT(na == nb && memcmp(a, b, (size_t)na * sizeof *a) == 0,
               "\"%s\": %d tokens, \"%s\": %d", shown(pairs[i][0]), na, pairs[i][1], nb);
        free(a);
        free(b);
    }
    clip_tokenizer_free(tok);
    test_end();
}

void suite_tokenizer(void) {
    test_basics();
    test_fixture();
    test_long_word();
    test_pad_token();
    test_refused();
    test_invalid_utf8();
}
