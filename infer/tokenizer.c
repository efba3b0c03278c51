// CLIP's BPE tokenizer: the steps of transformers' slow CLIPTokenizer without ftfy
// (tokenization_clip.py with BasicTokenizer(strip_accents=False, do_split_on_punc=False)),
// in the same order, on code points. See tokenizer.h for the outline.
#include "infer/tokenizer.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/files.h"
#include "infer/unicode_tables.h"

// transformers reads merges.txt's lines 1 .. 49152-256-2 (after the "#version" line)
// and ignores the rest.
#define MAX_MERGES (49152 - 256 - 2)
// CLIP's position count, for a folder that does not say (transformers' "no limit").
#define DEFAULT_MAX_LENGTH 77
#define START_TEXT "<|startoftext|>"
#define END_TEXT "<|endoftext|>"
#define EMPTY_PAIR UINT64_MAX

// --- growable arrays ----------------------------------------------------------------

typedef struct {
    uint32_t *v;
    size_t n, cap;
} cpbuf;

typedef struct {
    int32_t *v;
    size_t n, cap;
} idbuf;

static void *grown(void *p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return p;
    size_t cap2 = *cap ? *cap : 64;
    while (cap2 < need) cap2 *= 2;
    void *q = realloc(p, cap2 * elem);
    CHECK(q, "out of memory growing a buffer to %zu elements", cap2);
    *cap = cap2;
    return q;
}

static void cp_push(cpbuf *b, uint32_t c) {
    b->v = grown(b->v, &b->cap, b->n + 1, sizeof *b->v);
    b->v[b->n++] = c;
}

static void id_push(idbuf *b, int32_t id) {
    b->v = grown(b->v, &b->cap, b->n + 1, sizeof *b->v);
    b->v[b->n++] = id;
}

// --- UTF-8 ----------------------------------------------------------------------------

// Python's decode("utf-8", "replace"): each maximal ill-formed subsequence becomes
// one U+FFFD and decoding resumes at the byte that broke it.
static void decode_utf8(const char *text, cpbuf *out) {
    const unsigned char *p = (const unsigned char *)text;
    while (*p) {
        uint32_t c = *p;
        if (c < 0x80) {
            cp_push(out, c);
            p++;
            continue;
        }
        int need;
        unsigned lo = 0x80, hi = 0xBF;  // the range of the next byte
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1, c &= 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2, c &= 0x0F;
            lo = c == 0 ? 0xA0 : 0x80;    // no overlong forms
            hi = c == 0xD ? 0x9F : 0xBF;  // no surrogates
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3, c &= 0x07;
            lo = c == 0 ? 0x90 : 0x80;
            hi = c == 4 ? 0x8F : 0xBF;  // nothing above U+10FFFF
        } else {
            cp_push(out, 0xFFFD);
            p++;
            continue;
        }
        p++;
        int k = 0;
        for (; k < need && p[k] >= lo && p[k] <= hi; k++) {  // stops at the NUL too
            c = c << 6 | (p[k] & 0x3F);
            lo = 0x80, hi = 0xBF;
        }
        cp_push(out, k == need ? c : 0xFFFD);
        p += k;
    }
}

// Writes c as UTF-8; returns the byte count.
static size_t utf8_put(char *out, uint32_t c) {
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xC0 | c >> 6);
        out[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | c >> 12);
        out[1] = (char)(0x80 | (c >> 6 & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | c >> 18);
    out[1] = (char)(0x80 | (c >> 12 & 0x3F));
    out[2] = (char)(0x80 | (c >> 6 & 0x3F));
    out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

// --- the tokenizer ------------------------------------------------------------------

typedef struct {
    const char *key;  // NULL: empty slot
    size_t len;
    int32_t id;
} vocab_slot;

typedef struct {
    uint64_t pair;  // left id << 32 | right id; EMPTY_PAIR: empty slot
    int32_t rank, merged;
} merge_slot;

// A token cut out of the raw text before anything else (transformers' added tokens).
typedef struct {
    char *text;
    uint32_t *cp;  // text decoded
    size_t n;
    int32_t id;
} added_token;

struct clip_tokenizer {
    vocab_slot *vocab;
    size_t vocab_mask;
    char *keys;  // the vocab's strings, back to back
    merge_slot *merges;
    size_t merge_mask;
    int32_t byte_sym[256], byte_sym_end[256];  // a byte's symbol, and with "</w>"
    added_token *added;
    int n_added;
    int32_t bos, eos, pad, unk;
    int max_length;
};

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static uint64_t hash_pair(uint64_t pair) {
    pair ^= pair >> 33;
    pair *= 0xff51afd7ed558ccdull;
    return pair ^ (pair >> 33);
}

static size_t table_size(size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    return cap;
}

static vocab_slot *vocab_find(const clip_tokenizer *tok, const char *s, size_t n) {
    for (size_t i = hash_bytes(s, n) & tok->vocab_mask;; i = (i + 1) & tok->vocab_mask) {
        vocab_slot *slot = &tok->vocab[i];
        if (!slot->key || (slot->len == n && memcmp(slot->key, s, n) == 0)) return slot;
    }
}

static int32_t vocab_id(const clip_tokenizer *tok, const char *s, size_t n) {
    const vocab_slot *slot = vocab_find(tok, s, n);
    return slot->key ? slot->id : -1;
}

static uint64_t pair_key(int32_t left, int32_t right) {
    return (uint64_t)left << 32 | (uint32_t)right;
}

// The slot of the pair, or the empty slot where it would go.
static merge_slot *merge_find(const clip_tokenizer *tok, int32_t left, int32_t right) {
    uint64_t pair = pair_key(left, right);
    for (size_t i = hash_pair(pair) & tok->merge_mask;; i = (i + 1) & tok->merge_mask) {
        merge_slot *slot = &tok->merges[i];
        if (slot->pair == pair || slot->pair == EMPTY_PAIR) return slot;
    }
}

void clip_tokenizer_free(clip_tokenizer *tok) {
    if (!tok) return;
    for (int i = 0; i < tok->n_added; i++) free(tok->added[i].text), free(tok->added[i].cp);
    free(tok->added);
    free(tok->vocab);
    free(tok->keys);
    free(tok->merges);
    free(tok);
}

// --- reading the folder -------------------------------------------------------------

static void path_in(char *out, size_t size, const char *dir, const char *name) {
    int n = snprintf(out, size, "%s/%s", dir, name);
    CHECK(n > 0 && (size_t)n < size, "path too long: %s/%s", dir, name);
}

// Parses the file, which must hold a JSON object, into *root: 0 (*root NULL when
// optional and absent), or -1 with err_set.
static int read_json(const char *path, bool optional, cJSON **root) {
    int rc = read_json_object(path, root);
    return rc == 1 && optional ? 0 : rc ? -1 : 0;
}

// GPT-2's reversible byte-to-character map: the printable Latin-1 bytes stand for
// themselves, the other 68 for U+0100 onwards in byte order.
static uint32_t byte_char(int b) {
    bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    if (printable) return (uint32_t)b;
    uint32_t n = 0;
    for (int x = 0; x < b; x++)
        n += !((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE);
    return 256 + n;
}

static int load_vocab(clip_tokenizer *tok, const char *dir) {
    char path[PATH_MAX];
    path_in(path, sizeof path, dir, "vocab.json");
    cJSON *root;
    if (read_json(path, false, &root)) return -1;
    size_t n = 0, bytes = 0;
    for (const cJSON *e = root->child; e; e = e->next, n++) {
        double id = cJSON_IsNumber(e) ? e->valuedouble : -1;
        if (id < 0 || id > INT32_MAX || id != floor(id)) {
            err_set("%s: token \"%s\" has no valid id (a non-negative integer)", path, e->string);
            cJSON_Delete(root);
            return -1;
        }
        bytes += strlen(e->string);
    }
    size_t cap = table_size(n);
    tok->vocab = xcalloc(cap, sizeof *tok->vocab);
    tok->vocab_mask = cap - 1;
    tok->keys = xmalloc(bytes);
    char *key = tok->keys;
    // A repeated key keeps its last id, as Python's json.load does.
    for (const cJSON *e = root->child; e; e = e->next) {
        size_t len = strlen(e->string);
        memcpy(key, e->string, len);
        vocab_slot *slot = vocab_find(tok, key, len);
        *slot = (vocab_slot){key, len, (int32_t)e->valuedouble};
        key += len;
    }
    cJSON_Delete(root);
    for (int b = 0; b < 256; b++) {
        char sym[8];
        size_t len = utf8_put(sym, byte_char(b));
        memcpy(sym + len, "</w>", 4);
        tok->byte_sym[b] = vocab_id(tok, sym, len);
        tok->byte_sym_end[b] = vocab_id(tok, sym, len + 4);
        if (tok->byte_sym[b] < 0 || tok->byte_sym_end[b] < 0) {
            err_set("%s: lacks the token \"%.*s\" of byte 0x%02x", path,
                    (int)(tok->byte_sym[b] < 0 ? len : len + 4), sym, b);
            return -1;
        }
    }
    return 0;
}

static bool is_blank(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

// One merges.txt line "left right": its rank goes to the pair of their ids.
static int add_merge(clip_tokenizer *tok, const char *path, int line_no, const char *line,
                     size_t len, int32_t rank) {
    const char *part[3];
    size_t part_len[3];
    int parts = 0;
    for (size_t i = 0; i < len;) {
        while (i < len && is_blank(line[i])) i++;
        if (i == len) break;
        size_t start = i;
        while (i < len && !is_blank(line[i])) i++;
        if (parts < 3) part[parts] = line + start, part_len[parts] = i - start;
        parts++;
    }
    if (parts != 2) {
        err_set("%s:%d: expected two tokens, found %d", path, line_no, parts);
        return -1;
    }
    int32_t id[2];
    for (int k = 0; k < 2; k++) {
        id[k] = vocab_id(tok, part[k], part_len[k]);
        if (id[k] < 0) {
            err_set("%s:%d: \"%.*s\" is not in vocab.json", path, line_no, (int)part_len[k],
                    part[k]);
            return -1;
        }
    }
    char joined[1024];
    if (part_len[0] + part_len[1] > sizeof joined) {
        err_set("%s:%d: token too long", path, line_no);
        return -1;
    }
    memcpy(joined, part[0], part_len[0]);
    memcpy(joined + part_len[0], part[1], part_len[1]);
    int32_t merged = vocab_id(tok, joined, part_len[0] + part_len[1]);
    if (merged < 0) {
        err_set("%s:%d: the merged token \"%.*s\" is not in vocab.json", path, line_no,
                (int)(part_len[0] + part_len[1]), joined);
        return -1;
    }
    merge_slot *slot = merge_find(tok, id[0], id[1]);
    slot->pair = pair_key(id[0], id[1]);
    slot->rank = rank;  // a repeated pair keeps its last rank, as the reference's dict does
    slot->merged = merged;
    return 0;
}

static int load_merges(clip_tokenizer *tok, const char *dir) {
    char path[PATH_MAX];
    path_in(path, sizeof path, dir, "merges.txt");
    size_t len;
    char *text;
    if (read_text_file(path, &text, &len)) return -1;
    size_t cap = table_size(MAX_MERGES);
    tok->merges = xmalloc(cap * sizeof *tok->merges);
    for (size_t i = 0; i < cap; i++) tok->merges[i].pair = EMPTY_PAIR;
    tok->merge_mask = cap - 1;
    // As the reference: the file stripped of surrounding whitespace, its first line
    // (the "#version" header) skipped.
    while (len > 0 && (is_blank(text[len - 1]) || text[len - 1] == '\n')) len--;
    const char *p = text, *end = text + len;
    int line_no = 1;
    for (; p < end && (is_blank(*p) || *p == '\n'); p++) line_no += *p == '\n';
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    p = nl ? nl + 1 : end;
    int rc = 0;
    for (int32_t rank = 0; p < end && rank < MAX_MERGES && rc == 0; rank++) {
        nl = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = nl ? nl : end;
        rc = add_merge(tok, path, ++line_no, p, (size_t)(line_end - p), rank);
        p = nl ? nl + 1 : end;
    }
    free(text);
    return rc;
}

// A token setting: a string, or an object with "content" (transformers' AddedToken).
static const char *token_text(const cJSON *v) {
    if (cJSON_IsString(v)) return v->valuestring;
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(v, "content");
    return cJSON_IsObject(v) && cJSON_IsString(content) ? content->valuestring : NULL;
}

// Adds an added token unless its text is one already (or empty: transformers skips those).
static void add_token(clip_tokenizer *tok, const char *text, int32_t id) {
    for (int i = 0; i < tok->n_added; i++)
        if (strcmp(tok->added[i].text, text) == 0) return;
    if (!*text) return;
    tok->added = realloc(tok->added, (size_t)(tok->n_added + 1) * sizeof *tok->added);
    CHECK(tok->added, "out of memory");
    cpbuf cp = {0};
    decode_utf8(text, &cp);
    added_token *a = &tok->added[tok->n_added++];
    *a = (added_token){strdup(text), cp.v, cp.n, id};
    CHECK(a->text, "out of memory");
}

// transformers' added_tokens_decoder: {"49406": {"content": "<|startoftext|>", ...}}.
static int load_added_tokens(clip_tokenizer *tok, const char *path, const cJSON *decoder) {
    if (!cJSON_IsObject(decoder)) {
        err_set("%s: added_tokens_decoder is not an object", path);
        return -1;
    }
    for (const cJSON *e = decoder->child; e; e = e->next) {
        char *end;
        long id = strtol(e->string, &end, 10);
        const char *text = token_text(e);
        if (*end || end == e->string || id < 0 || id > INT32_MAX || !text || !*text) {
            err_set("%s: added_tokens_decoder entry \"%s\" is not an id with a token", path,
                    e->string);
            return -1;
        }
        add_token(tok, text, (int32_t)id);
    }
    return 0;
}

static int load_specials(clip_tokenizer *tok, const char *dir) {
    char config_path[PATH_MAX], map_path[PATH_MAX], vocab_path[PATH_MAX];
    path_in(config_path, sizeof config_path, dir, "tokenizer_config.json");
    path_in(map_path, sizeof map_path, dir, "special_tokens_map.json");
    path_in(vocab_path, sizeof vocab_path, dir, "vocab.json");
    cJSON *config, *map = NULL;
    if (read_json(config_path, true, &config)) return -1;
    const cJSON *decoder = cJSON_GetObjectItemCaseSensitive(config, "added_tokens_decoder");
    // transformers reads special_tokens_map.json only for folders saved before
    // added_tokens_decoder existed; there it overrides tokenizer_config.json.
    int rc =
        decoder ? load_added_tokens(tok, config_path, decoder) : read_json(map_path, true, &map);

    tok->max_length = DEFAULT_MAX_LENGTH;
    const cJSON *max_len = cJSON_GetObjectItemCaseSensitive(config, "model_max_length");
    if (rc == 0 && max_len) {
        double v = cJSON_IsNumber(max_len) ? max_len->valuedouble : 0;
        if (!isfinite(v) || v < 2 || v != floor(v)) {
            err_set("%s: model_max_length is not a finite integer of at least 2", config_path);
            rc = -1;
        } else if (v <= INT_MAX) {
            tok->max_length = (int)v;
        }  // larger: transformers' "no limit" (1e30); CLIP's 77 stands
    }

    static const char *const names[4] = {"bos_token", "eos_token", "unk_token", "pad_token"};
    static const char *const defaults[4] = {START_TEXT, END_TEXT, END_TEXT, END_TEXT};
    int32_t *ids[4] = {&tok->bos, &tok->eos, &tok->unk, &tok->pad};
    for (int i = 0; i < 4 && rc == 0; i++) {
        const char *from = vocab_path, *text = defaults[i];
        for (int k = 0; k < 2; k++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(k ? map : config, names[i]);
            if (!v || cJSON_IsNull(v)) continue;
            from = k ? map_path : config_path;
            text = token_text(v);
            if (!text) {
                err_set("%s: %s is neither a string nor an object with \"content\"", from,
                        names[i]);
                rc = -1;
                break;
            }
        }
        if (rc) break;
        *ids[i] = clip_tokenizer_id(tok, text);
        if (*ids[i] < 0) {
            if (from == vocab_path)
                err_set("%s: lacks the default %s \"%s\"", from, names[i], text);
            else
                err_set("%s: %s \"%s\" is not in vocab.json", from, names[i], text);
            rc = -1;
        } else {
            add_token(tok, text, *ids[i]);
        }
    }
    cJSON_Delete(config);
    cJSON_Delete(map);
    return rc;
}

clip_tokenizer *clip_tokenizer_load(const char *dir) {
    clip_tokenizer *tok = xcalloc(1, sizeof *tok);
    if (load_vocab(tok, dir) || load_merges(tok, dir) || load_specials(tok, dir)) {
        clip_tokenizer_free(tok);
        return NULL;
    }
    return tok;
}

int clip_tokenizer_max_length(const clip_tokenizer *tok) { return tok->max_length; }

int32_t clip_tokenizer_id(const clip_tokenizer *tok, const char *token) {
    // Added tokens first, as transformers' convert_tokens_to_ids.
    for (int i = 0; i < tok->n_added; i++)
        if (strcmp(tok->added[i].text, token) == 0) return tok->added[i].id;
    return vocab_id(tok, token, strlen(token));
}

// --- Unicode ------------------------------------------------------------------------

static uint8_t flags_of(uint32_t c) {
    int lo = 0, hi = uc_flag_runs - 1;  // the last run starting at or before c
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (uc_flag_start[mid] <= c)
            lo = mid;
        else
            hi = mid - 1;
    }
    return uc_flags[lo];
}

static uint8_t ccc_of(uint32_t c) {
    if (c < 0x300) return 0;
    int lo = 0, hi = uc_ccc_run_count - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (c < uc_ccc_runs[mid].first)
            hi = mid - 1;
        else if (c > uc_ccc_runs[mid].last)
            lo = mid + 1;
        else
            return uc_ccc_runs[mid].ccc;
    }
    return 0;
}

// transformers' BasicTokenizer._is_chinese_char: the CJK ideograph blocks (not kana
// or hangul, which are written with spaces between words).
static bool is_cjk(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

// BasicTokenizer._clean_text, then _tokenize_chinese_chars.
static void clean(const uint32_t *in, size_t n, cpbuf *out) {
    for (size_t i = 0; i < n; i++) {
        uint8_t f = flags_of(in[i]);
        if (f & UC_REMOVED) continue;
        bool cjk = is_cjk(in[i]);
        if (cjk) cp_push(out, ' ');
        cp_push(out, f & UC_CLEAN_SPACE ? ' ' : in[i]);
        if (cjk) cp_push(out, ' ');
    }
}

// --- NFC ----------------------------------------------------------------------------

enum { HANGUL_S = 0xAC00, HANGUL_L = 0x1100, HANGUL_V = 0x1161, HANGUL_T = 0x11A7 };
enum { HANGUL_NV = 21, HANGUL_NT = 28, HANGUL_COUNT = 19 * 21 * 28 };

static const uc_decomp *decomp_of(uint32_t c) {
    int lo = 0, hi = uc_decomp_count - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (uc_decomps[mid].cp == c) return &uc_decomps[mid];
        if (uc_decomps[mid].cp < c)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

static void decompose(uint32_t c, cpbuf *out) {
    if (c >= HANGUL_S && c < HANGUL_S + HANGUL_COUNT) {
        uint32_t s = c - HANGUL_S;
        cp_push(out, HANGUL_L + s / (HANGUL_NV * HANGUL_NT));
        cp_push(out, HANGUL_V + s % (HANGUL_NV * HANGUL_NT) / HANGUL_NT);
        if (s % HANGUL_NT) cp_push(out, HANGUL_T + s % HANGUL_NT);
        return;
    }
    const uc_decomp *d = c >= 0xC0 ? decomp_of(c) : NULL;
    if (!d) {
        cp_push(out, c);
        return;
    }
    decompose(d->first, out);
    if (d->second) decompose(d->second, out);
}

// The primary composite of a + b, or 0.
static uint32_t compose(uint32_t a, uint32_t b) {
    if (a >= HANGUL_L && a < HANGUL_L + 19 && b >= HANGUL_V && b < HANGUL_V + HANGUL_NV)
        return HANGUL_S + ((a - HANGUL_L) * HANGUL_NV + (b - HANGUL_V)) * HANGUL_NT;
    if (a >= HANGUL_S && a < HANGUL_S + HANGUL_COUNT && (a - HANGUL_S) % HANGUL_NT == 0 &&
        b > HANGUL_T && b < HANGUL_T + HANGUL_NT)
        return a + (b - HANGUL_T);
    int lo = 0, hi = uc_comp_count - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const uc_comp *m = &uc_comps[mid];
        if (m->first == a && m->second == b) return m->composite;
        if (m->first < a || (m->first == a && m->second < b))
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return 0;
}

// Canonical decomposition, canonical ordering, canonical composition (UAX #15).
static void nfc(const uint32_t *in, size_t n, cpbuf *out) {
    cpbuf d = {0};
    for (size_t i = 0; i < n; i++) decompose(in[i], &d);
    uint8_t *ccc = xmalloc(d.n + 1);
    for (size_t i = 0; i < d.n; i++) {
        ccc[i] = ccc_of(d.v[i]);
        // A stable insertion sort of each run of non-starters by combining class.
        for (size_t j = i; j > 0 && ccc[j] && ccc[j - 1] > ccc[j]; j--) {
            uint32_t c = d.v[j];
            d.v[j] = d.v[j - 1], d.v[j - 1] = c;
            uint8_t k = ccc[j];
            ccc[j] = ccc[j - 1], ccc[j - 1] = k;
        }
    }
    // A character joins the last starter unless something between them blocks it: a
    // character of class 0 or of a class at least its own.
    size_t starter = SIZE_MAX;
    int last_ccc = 0;  // of the last character kept after the starter
    for (size_t i = 0; i < d.n; i++) {
        size_t kept = out->n;
        if (starter != SIZE_MAX && (kept == starter + 1 || (last_ccc && last_ccc < ccc[i]))) {
            uint32_t c = compose(out->v[starter], d.v[i]);
            if (c) {
                out->v[starter] = c;
                continue;
            }
        }
        if (ccc[i] == 0) starter = kept;
        last_ccc = ccc[i];
        cp_push(out, d.v[i]);
    }
    free(ccc);
    free(d.v);
}

// --- lower case ---------------------------------------------------------------------

// Python's Final_Sigma: after a cased letter (skipping case-ignorable ones) and not
// before one.
static bool final_sigma(const uint32_t *w, size_t n, size_t i) {
    size_t j = i;
    while (j > 0 && (flags_of(w[j - 1]) & UC_CASE_IGNORABLE)) j--;
    if (j == 0 || !(flags_of(w[j - 1]) & UC_CASED)) return false;
    for (j = i + 1; j < n && (flags_of(w[j]) & UC_CASE_IGNORABLE);) j++;
    return j == n || !(flags_of(w[j]) & UC_CASED);
}

// The lower case of c when it is one code point.
static uint32_t lower_simple(uint32_t c) {
    int lo = 0, hi = uc_lower_run_count - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const uc_lower_run *r = &uc_lower_runs[mid];
        if (c < r->first)
            hi = mid - 1;
        else if (c > r->last)
            lo = mid + 1;
        else
            return (c - r->first) % r->stride ? c : (uint32_t)((int32_t)c + r->delta);
    }
    return c;
}

// str.lower() of the word w[0..n).
static void lower_word(const uint32_t *w, size_t n, cpbuf *out) {
    for (size_t i = 0; i < n; i++) {
        uint32_t c = w[i];
        const uc_lower_full *full = NULL;
        for (int k = 0; k < uc_lower_full_count; k++)
            if (uc_lower_fulls[k].cp == c) full = &uc_lower_fulls[k];
        if (c == 0x3A3)
            cp_push(out, final_sigma(w, n, i) ? 0x3C2 : 0x3C3);
        else if (full)
            for (int k = 0; full->to[k]; k++) cp_push(out, full->to[k]);
        else
            cp_push(out, lower_simple(c));
    }
}

// whitespace_tokenize, each word lower-cased, joined by single spaces.
static void lower_words(const uint32_t *in, size_t n, cpbuf *out) {
    for (size_t i = 0; i < n;) {
        if (flags_of(in[i]) & UC_SPACE) {
            i++;
            continue;
        }
        size_t start = i;
        while (i < n && !(flags_of(in[i]) & UC_SPACE)) i++;
        if (out->n) cp_push(out, ' ');
        lower_word(in + start, i - start, out);
    }
}

// --- CLIP's pattern and BPE -----------------------------------------------------------

// Whether c matches the lower-case ASCII letter under the pattern's IGNORECASE.
static bool letter_is(uint32_t c, char letter) {
    if (c == (uint32_t)letter || c == (uint32_t)letter - 32) return true;
    for (int i = 0; i < uc_fold_count; i++)
        if (uc_folds[i].cp == c) return uc_folds[i].letter == letter;
    return false;
}

// The length of the literal s (case-insensitive) at t[0..n), or 0.
static size_t literal_at(const uint32_t *t, size_t n, const char *s) {
    size_t len = strlen(s);
    if (len > n) return 0;
    for (size_t i = 0; i < len; i++) {
        bool letter = s[i] >= 'a' && s[i] <= 'z';
        if (letter ? !letter_is(t[i], s[i]) : t[i] != (uint32_t)s[i]) return 0;
    }
    return len;
}

static size_t run_of(const uint32_t *t, size_t n, uint8_t flag) {
    size_t len = 0;
    while (len < n && (flags_of(t[len]) & flag)) len++;
    return len;
}

// The length of the match of CLIP's pattern at t[0..n) (the first alternative that
// matches, as the regex engine tries them), or 0.
static size_t match_at(const uint32_t *t, size_t n) {
    static const char *const literals[] = {START_TEXT, END_TEXT, "'s",  "'t", "'re",
                                           "'ve",      "'m",     "'ll", "'d"};
    for (size_t k = 0; k < sizeof literals / sizeof literals[0]; k++) {
        size_t len = literal_at(t, n, literals[k]);
        if (len) return len;
    }
    uint8_t f = flags_of(t[0]);
    if (f & UC_LETTER) return run_of(t, n, UC_LETTER);
    if (f & UC_NUMBER) return 1;  // [\p{N}] without '+': digits one by one
    if (f & UC_PUNCT) return run_of(t, n, UC_PUNCT);
    return 0;
}

// --- BPE ------------------------------------------------------------------------------

// Pair lookups by this thread's tokenizations (clip_tokenizer_pair_lookups).
static _Thread_local uint64_t pair_lookups;

uint64_t clip_tokenizer_pair_lookups(void) { return pair_lookups; }

// The rank and merged symbol of a pair of symbols; false when the pair has no rank.
static bool pair_rank(const clip_tokenizer *tok, int32_t left, int32_t right, int32_t *rank, int32_t *merged) {
    pair_lookups++;
    const merge_slot *m = merge_find(tok, left, right);
    if (m->pair == EMPTY_PAIR) return false;
    *rank = m->rank, *merged = m->merged;
    return true;
}

// A pair waiting to be merged: the symbols it was made of, at the place of the left one.
typedef struct {
    int32_t rank, at, left, right, merged;
} bpe_pair;

static bool pair_before(const bpe_pair *a, const bpe_pair *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->at < b->at;
}

static void heap_push(bpe_pair *heap, size_t *n, bpe_pair p) {
    size_t i = (*n)++;
    for (; i > 0 && pair_before(&p, &heap[(i - 1) / 2]); i = (i - 1) / 2) heap[i] = heap[(i - 1) / 2];
    heap[i] = p;
}

static bpe_pair heap_pop(bpe_pair *heap, size_t *n) {
    bpe_pair top = heap[0], last = heap[--*n];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= *n) break;
        if (child + 1 < *n && pair_before(&heap[child + 1], &heap[child])) child++;
        if (!pair_before(&heap[child], &last)) break;
        heap[i] = heap[child];
        i = child;
    }
    if (*n) heap[i] = last;
    return top;
}

// The BPE ids of one piece's UTF-8 bytes, merged as the reference merges them: every
// byte a symbol (the last with "</w>"); then, round by round, the pair of lowest rank
// merged at each of its places, left to right, until no pair has a rank. The
// reference rescans the whole word each round (quadratic in a long word); here the
// pairs wait in a heap ordered by rank, then place, so a round pops just its own
// places, and the pairs a merge makes join the heap when its round ends (the
// reference looks at them in the next one). Symbols live in a linked list; a heap
// entry whose symbols a merge has changed since is stale and skipped.
static void bpe(const clip_tokenizer *tok, const unsigned char *bytes, size_t n, idbuf *out) {
    CHECK(n < INT32_MAX, "a word of %zu bytes", n);
    int32_t *sym = xmalloc(3 * n * sizeof *sym), *next = sym + n, *prev = next + n;  // -1: none
    for (size_t i = 0; i < n; i++) {
        sym[i] = i + 1 < n ? tok->byte_sym[bytes[i]] : tok->byte_sym_end[bytes[i]];
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
        prev[i] = (int32_t)i - 1;
    }
    // At most n - 1 pairs at the start and 2 more per merge, each in the heap or
    // waiting for its round to end.
    bpe_pair *heap = xmalloc(3 * n * sizeof *heap), *waiting = xmalloc(2 * n * sizeof *waiting);
    size_t n_heap = 0, n_waiting = 0;
    bpe_pair p;
    for (size_t i = 0; i + 1 < n; i++)
        if (pair_rank(tok, sym[i], sym[i + 1], &p.rank, &p.merged))
            heap_push(heap, &n_heap, (bpe_pair){p.rank, (int32_t)i, sym[i], sym[i + 1], p.merged});
    while (n_heap) {
        const int32_t round = heap[0].rank;
        while (n_heap && heap[0].rank == round) {
            p = heap_pop(heap, &n_heap);
            int32_t a = p.at, b = next[a];
            if (sym[a] != p.left || b < 0 || sym[b] != p.right) continue;  // stale
            sym[a] = p.merged;
            sym[b] = -1;
            next[a] = next[b];
            if (next[b] >= 0) prev[next[b]] = a;
            bpe_pair q;
            if (prev[a] >= 0 && pair_rank(tok, sym[prev[a]], sym[a], &q.rank, &q.merged))
                waiting[n_waiting++] = (bpe_pair){q.rank, prev[a], sym[prev[a]], sym[a], q.merged};
            if (next[a] >= 0 && pair_rank(tok, sym[a], sym[next[a]], &q.rank, &q.merged))
                waiting[n_waiting++] = (bpe_pair){q.rank, a, sym[a], sym[next[a]], q.merged};
        }
        for (size_t i = 0; i < n_waiting; i++) heap_push(heap, &n_heap, waiting[i]);
        n_waiting = 0;
    }
    for (int32_t i = n ? 0 : -1; i >= 0; i = next[i]) id_push(out, sym[i]);
    free(heap);
    free(waiting);
    free(sym);
}

// One piece the pattern matched: the pattern's own special-token alternatives map to
// those tokens (the reference's BPE cache holds them), anything else goes through BPE.
static void encode_match(const clip_tokenizer *tok, const uint32_t *t, size_t n, idbuf *out,
                         char **buf, size_t *cap) {
    *buf = grown(*buf, cap, 4 * n + 1, 1);
    size_t len = 0;
    for (size_t i = 0; i < n; i++) len += utf8_put(*buf + len, t[i]);
    if ((len == strlen(START_TEXT) && memcmp(*buf, START_TEXT, len) == 0) ||
        (len == strlen(END_TEXT) && memcmp(*buf, END_TEXT, len) == 0)) {
        (*buf)[len] = 0;
        int32_t id = clip_tokenizer_id(tok, *buf);
        id_push(out, id >= 0 ? id : tok->unk);
        return;
    }
    bpe(tok, (const unsigned char *)*buf, len, out);
}

// CLIPTokenizer._tokenize of the text between two added tokens.
static void encode_piece(const clip_tokenizer *tok, const uint32_t *in, size_t n, idbuf *out) {
    cpbuf cleaned = {0}, normal = {0}, lower = {0};
    clean(in, n, &cleaned);
    nfc(cleaned.v, cleaned.n, &normal);
    lower_words(normal.v, normal.n, &lower);
    char *buf = NULL;
    size_t cap = 0;
    for (size_t i = 0; i < lower.n;) {
        size_t len = match_at(lower.v + i, lower.n - i);
        if (len) encode_match(tok, lower.v + i, len, out, &buf, &cap);
        i += len ? len : 1;  // findall skips what matches nowhere (spaces)
    }
    free(buf);
    free(cleaned.v);
    free(normal.v);
    free(lower.v);
}

// The added token that starts at t[0..n) (the longest, as transformers' trie), or NULL.
static const added_token *added_at(const clip_tokenizer *tok, const uint32_t *t, size_t n) {
    const added_token *best = NULL;
    for (int i = 0; i < tok->n_added; i++) {
        const added_token *a = &tok->added[i];
        if (a->n <= n && memcmp(a->cp, t, a->n * sizeof *t) == 0 && (!best || a->n > best->n))
            best = a;
    }
    return best;
}

static void encode(const clip_tokenizer *tok, const char *text, idbuf *out) {
    CHECK(text, "NULL prompt");
    cpbuf raw = {0};
    decode_utf8(text, &raw);
    size_t start = 0;
    for (size_t i = 0; i < raw.n;) {
        const added_token *a = added_at(tok, raw.v + i, raw.n - i);
        if (!a) {
            i++;
            continue;
        }
        encode_piece(tok, raw.v + start, i - start, out);
        id_push(out, a->id);
        i += a->n;
        start = i;
    }
    encode_piece(tok, raw.v + start, raw.n - start, out);
    free(raw.v);
}

int clip_tokenize(const clip_tokenizer *tok, const char *text, int32_t **ids) {
    idbuf out = {0};
    encode(tok, text, &out);
    CHECK(out.n <= INT_MAX, "prompt of %zu tokens", out.n);
    *ids = out.v ? out.v : xmalloc(sizeof **ids);
    return (int)out.n;
}

int clip_tokenize_padded(const clip_tokenizer *tok, const char *text, int32_t *ids, int max_len) {
    CHECK(max_len >= 2, "max_len %d leaves no room for BOS and EOS", max_len);
    int32_t *body;
    int n = clip_tokenize(tok, text, &body);
    int kept = n < max_len - 2 ? n : max_len - 2;
    ids[0] = tok->bos;
    memcpy(ids + 1, body, (size_t)kept * sizeof *ids);
    ids[kept + 1] = tok->eos;
    for (int i = kept + 2; i < max_len; i++) ids[i] = tok->pad;
    free(body);
    return n;
}
