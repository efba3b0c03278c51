#include "core/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/check.h"
#include "core/files.h"
#include "core/utf8.h"

// The Python package refuses larger headers; a bigger one is garbage, not a model.
#define MAX_HEADER_BYTES 100000000u
// cJSON hands numbers over as doubles, which hold every integer up to 2^53 exactly;
// no real offset or dimension comes near it.
#define MAX_JSON_INTEGER 9007199254740992.0

// Every dtype of the format, in the order of the reference implementation's enum.
// The writer sorts tensors by this order, last first, as the Python package does.
static const struct {
    const char *name;
    int bits;  // F4 and F6 pack several elements into a byte
    int ours;  // our dtype value, or -1
} formats[] = {
    {"BOOL", 8, -1},     {"F4", 4, -1},          {"F6_E2M3", 6, -1},     {"F6_E3M2", 6, -1},
    {"U8", 8, -1},       {"I8", 8, -1},          {"F8_E5M2", 8, -1},     {"F8_E4M3", 8, -1},
    {"F8_E8M0", 8, -1},  {"F8_E4M3FNUZ", 8, -1}, {"F8_E5M2FNUZ", 8, -1}, {"I16", 16, -1},
    {"U16", 16, -1},     {"F16", 16, DT_F16},    {"BF16", 16, DT_BF16},  {"I32", 32, DT_I32},
    {"U32", 32, -1},     {"F32", 32, DT_F32},    {"C64", 64, -1},        {"F64", 64, -1},
    {"I64", 64, DT_I64}, {"U64", 64, -1},
};
#define N_FORMATS ((int)(sizeof formats / sizeof formats[0]))

static int format_by_name(const char *name) {
    for (int i = 0; i < N_FORMATS; i++)
        if (strcmp(formats[i].name, name) == 0) return i;
    return -1;
}

static int format_of(dtype dt) {
    for (int i = 0; i < N_FORMATS; i++)
        if (formats[i].ours == (int)dt) return i;
    DIE("dtype %s has no safetensors name", dtype_name(dt));
}

typedef struct {
    char *key, *value;
} meta_pair;

struct st_file {
    char *label;                // the path, or st_parse's label: the start of every message
    const unsigned char *base;  // the whole file
    size_t len;
    bool mapped;  // base is our mmap, unmapped with the last reference
    uint64_t header_len;
    const unsigned char *data;  // the data section
    uint64_t data_len;
    int refs;
    int count;
    st_entry *entries;         // by data offset
    const st_entry **by_name;  // sorted by name, for st_find
    int meta_count;
    meta_pair *meta;  // in header order
};

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    return memcpy(xmalloc(n), s, n);
}

static void file_destroy(st_file *f) {
    for (int i = 0; i < f->count; i++) free(f->entries[i].name);
    for (int i = 0; i < f->meta_count; i++) {
        free(f->meta[i].key);
        free(f->meta[i].value);
    }
    free(f->entries);
    free(f->by_name);
    free(f->meta);
    if (f->mapped) munmap((void *)f->base, f->len);
    free(f->label);
    free(f);
}

// --- header checks ---------------------------------------------------------------

st_shown st_show(const char *s) {
    st_shown out;
    size_t used = 0;
    while (*s) {
        unsigned char c = (unsigned char)*s;
        size_t n = 1;  // bytes of this character
        while (c >= 0x80 && ((unsigned char)s[n] & 0xc0) == 0x80) n++;
        bool control = c < 0x20 || c == 0x7f;
        size_t width = control ? 4 : n;
        if (used + width > 100) {
            memcpy(out.s + used, "...", 3);
            used += 3;
            break;
        }
        if (control)
            snprintf(out.s + used, 5, "\\x%02x", c);
        else
            memcpy(out.s + used, s, n);
        used += width;
        s += n;
    }
    out.s[used] = '\0';
    return out;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_number_char(char c) {
    return is_digit(c) || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

// cJSON reads "2.0", "2e0" and "02" all as the integer 2, but shapes and offsets are
// written as plain integers, so look at the text of every number outside strings
// (which, once the structure has passed, are all shape dims or offsets). Returns
// false and the offending token when one is not a plain non-negative integer.
static bool numbers_are_plain(const char *h, size_t n, size_t *at, size_t *len) {
    bool in_string = false;
    for (size_t i = 0; i < n; i++) {
        if (in_string) {
            if (h[i] == '\\')
                i++;
            else if (h[i] == '"')
                in_string = false;
            continue;
        }
        if (h[i] == '"') {
            in_string = true;
            continue;
        }
        if (!is_number_char(h[i])) continue;
        size_t end = i;
        bool plain = true;
        while (end < n && is_number_char(h[end])) plain &= is_digit(h[end++]);
        if (!plain || (h[i] == '0' && end - i > 1)) {
            *at = i;
            *len = end - i;
            return false;
        }
        i = end - 1;
    }
    return true;
}

static int compare_strings(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

// A key that occurs twice among the object's members (cJSON keeps both), or NULL.
static const char *duplicate_key(const cJSON *object) {
    int n = cJSON_GetArraySize(object);
    const char **keys = xmalloc((size_t)n * sizeof *keys);
    int k = 0;
    for (const cJSON *it = object->child; it; it = it->next) keys[k++] = it->string;
    qsort(keys, (size_t)n, sizeof *keys, compare_strings);
    const char *dup = NULL;
    for (int i = 1; i < n && !dup; i++)
        if (strcmp(keys[i - 1], keys[i]) == 0) dup = keys[i];
    free(keys);
    return dup;
}

// A JSON number that is a whole value in [0, 2^53].
static bool json_count(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return false;
    double v = item->valuedouble;
    if (!(v >= 0 && v <= MAX_JSON_INTEGER) || v != floor(v)) return false;
    *out = (uint64_t)v;
    return true;
}

static bool read_metadata(st_file *f, const cJSON *meta) {
    if (!cJSON_IsObject(meta)) {
        err_set("%s: __metadata__ is not an object", f->label);
        return false;
    }
    const char *dup = duplicate_key(meta);
    if (dup) {
        err_set("%s: __metadata__ has the key '%s' twice", f->label, st_show(dup).s);
        return false;
    }
    int n = cJSON_GetArraySize(meta);
    f->meta = xcalloc((size_t)n, sizeof *f->meta);
    for (const cJSON *it = meta->child; it; it = it->next) {
        if (!cJSON_IsString(it)) {
            err_set("%s: __metadata__ value of '%s' is not a string", f->label,
                    st_show(it->string).s);
            return false;
        }
        f->meta[f->meta_count++] = (meta_pair){xstrdup(it->string), xstrdup(it->valuestring)};
    }
    return true;
}

// The member key of a tensor entry, or NULL with the "missing" message.
static const cJSON *entry_field(const st_file *f, const cJSON *entry, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(entry, key);
    if (!item) err_set("%s: tensor '%s': missing \"%s\"", f->label, st_show(entry->string).s, key);
    return item;
}

// Fills e from one tensor entry of the header: types, dtype and the byte size its
// shape implies. Where it lies in the data section is checked once all are read.
static bool read_entry(const st_file *f, const cJSON *entry, st_entry *e) {
    const char *L = f->label;
    st_shown name = st_show(entry->string);
    if (!cJSON_IsObject(entry)) {
        err_set("%s: tensor '%s': entry is not an object", L, name.s);
        return false;
    }
    const char *dup = duplicate_key(entry);
    if (dup) {
        err_set("%s: tensor '%s': key \"%s\" appears twice", L, name.s, st_show(dup).s);
        return false;
    }
    const cJSON *dtype_item = entry_field(f, entry, "dtype");
    const cJSON *shape = entry_field(f, entry, "shape");
    const cJSON *offsets = entry_field(f, entry, "data_offsets");
    if (!dtype_item || !shape || !offsets) return false;

    if (!cJSON_IsString(dtype_item)) {
        err_set("%s: tensor '%s': \"dtype\" is not a string", L, name.s);
        return false;
    }
    int format = format_by_name(dtype_item->valuestring);
    if (format < 0) {
        err_set("%s: tensor '%s': unknown dtype \"%s\"", L, name.s,
                st_show(dtype_item->valuestring).s);
        return false;
    }
    e->dtype_str = formats[format].name;
    e->dtype = formats[format].ours;

    if (!cJSON_IsArray(shape)) {
        err_set("%s: tensor '%s': \"shape\" is not an array", L, name.s);
        return false;
    }
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > TENSOR_MAX_DIMS) {
        err_set("%s: tensor '%s': shape has %d dims, more than %d", L, name.s, ndim,
                TENSOR_MAX_DIMS);
        return false;
    }
    // Tensor code multiplies dims in every order (numel, strides); keeping the
    // product of the non-zero dims within int64 keeps every partial product there.
    e->ndim = 0;
    uint64_t extent = 1;
    bool overflow = false, has_zero = false;
    for (const cJSON *it = shape->child; it; it = it->next) {
        uint64_t dim;
        if (!json_count(it, &dim)) {
            err_set("%s: tensor '%s': shape[%d] is not a non-negative integer", L, name.s, e->ndim);
            return false;
        }
        e->shape[e->ndim++] = (int64_t)dim;
        has_zero |= dim == 0;
        if (dim) overflow |= __builtin_mul_overflow(extent, dim, &extent) || extent > INT64_MAX;
    }
    uint64_t numel = has_zero ? 0 : extent;

    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2) {
        err_set("%s: tensor '%s': \"data_offsets\" is not an array of 2 integers", L, name.s);
        return false;
    }
    if (!json_count(offsets->child, &e->begin) || !json_count(offsets->child->next, &e->end)) {
        err_set("%s: tensor '%s': data_offsets are not non-negative integers", L, name.s);
        return false;
    }
    if (e->begin > e->end) {
        err_set("%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] end before they begin", L,
                name.s, e->begin, e->end);
        return false;
    }
    if (e->end > f->data_len) {
        err_set("%s: tensor '%s': data_offsets end %" PRIu64 " is past the %" PRIu64
                "-byte data section",
                L, name.s, e->end, f->data_len);
        return false;
    }

    char dims[160];
    format_shape(dims, sizeof dims, e->ndim, e->shape);
    uint64_t bits;
    if (overflow || __builtin_mul_overflow(numel, (uint64_t)formats[format].bits, &bits)) {
        err_set("%s: tensor '%s': shape %s is too large", L, name.s, dims);
        return false;
    }
    if (bits % 8) {
        err_set("%s: tensor '%s': shape %s of %s does not fill whole bytes", L, name.s, dims,
                e->dtype_str);
        return false;
    }
    if (bits / 8 != e->end - e->begin) {
        err_set("%s: tensor '%s': shape %s of %s is %" PRIu64
                " bytes but data_offsets span %" PRIu64,
                L, name.s, dims, e->dtype_str, bits / 8, e->end - e->begin);
        return false;
    }
    e->name = xstrdup(entry->string);
    return true;
}

static int compare_by_offset(const void *a, const void *b) {
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

// The entries, sorted by offset, must tile the data section: no overlaps, no gaps.
static bool check_coverage(const st_file *f) {
    uint64_t pos = 0;
    for (int i = 0; i < f->count; i++) {
        const st_entry *e = &f->entries[i];
        if (e->begin < pos) {
            const st_entry *prev = &f->entries[i - 1];
            err_set("%s: tensors '%s' [%" PRIu64 ", %" PRIu64 ") and '%s' [%" PRIu64 ", %" PRIu64
                    ") overlap",
                    f->label, st_show(prev->name).s, prev->begin, prev->end, st_show(e->name).s,
                    e->begin, e->end);
            return false;
        }
        if (e->begin > pos) {
            err_set("%s: bytes [%" PRIu64 ", %" PRIu64 ") of the data section belong to no tensor",
                    f->label, pos, e->begin);
            return false;
        }
        pos = e->end;
    }
    if (pos != f->data_len) {
        err_set("%s: bytes [%" PRIu64 ", %" PRIu64 ") after the last tensor belong to no tensor",
                f->label, pos, f->data_len);
        return false;
    }
    return true;
}

static int compare_by_name(const void *a, const void *b) {
    return strcmp((*(const st_entry *const *)a)->name, (*(const st_entry *const *)b)->name);
}

static bool read_tensors(st_file *f, const cJSON *root) {
    int n = cJSON_GetArraySize(root);
    f->entries = xcalloc((size_t)n, sizeof *f->entries);
    for (const cJSON *it = root->child; it; it = it->next) {
        if (strcmp(it->string, "__metadata__") == 0) continue;
        if (!read_entry(f, it, &f->entries[f->count])) return false;
        f->count++;
    }
    qsort(f->entries, (size_t)f->count, sizeof *f->entries, compare_by_offset);
    if (!check_coverage(f)) return false;
    f->by_name = xmalloc((size_t)f->count * sizeof *f->by_name);
    for (int i = 0; i < f->count; i++) f->by_name[i] = &f->entries[i];
    qsort(f->by_name, (size_t)f->count, sizeof *f->by_name, compare_by_name);
    return true;
}

static void set_too_short(const char *label, size_t len) {
    err_set("%s: file is %zu bytes, too short for the 8-byte header length", label, len);
}

// The parsed header: nothing but spaces after it, unique keys, then metadata,
// tensors and the spelling of their numbers. json_end is where the object ended.
static bool read_root(st_file *f, const cJSON *root, const char *header, size_t n,
                      size_t json_end) {
    const char *L = f->label;
    size_t trailing = json_end + strspn(header + json_end, " \t\n\r");
    if (trailing != n) {
        err_set("%s: header has bytes after the JSON object (at byte %zu)", L, trailing);
        return false;
    }
    const char *dup = duplicate_key(root);
    if (dup) {
        if (strcmp(dup, "__metadata__") == 0)
            err_set("%s: __metadata__ appears twice", L);
        else
            err_set("%s: duplicate tensor name '%s'", L, st_show(dup).s);
        return false;
    }
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
    if (meta && !read_metadata(f, meta)) return false;
    if (!read_tensors(f, root)) return false;
    size_t at, len;
    if (!numbers_are_plain(header, n, &at, &len)) {
        err_set("%s: header number \"%.*s\" is not a plain non-negative integer", L, (int)len,
                header + at);
        return false;
    }
    return true;
}

// header is a NUL-terminated copy of the n header bytes.
static bool read_json(st_file *f, const char *header, size_t n) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(header, n, &end, false);
    if (!root) {
        err_set("%s: header is not valid JSON (error near byte %td)", f->label, end - header);
        return false;
    }
    bool ok = read_root(f, root, header, n, (size_t)(end - header));
    cJSON_Delete(root);
    return ok;
}

static bool read_header(st_file *f) {
    const char *L = f->label;
    if (f->len < 8) {
        set_too_short(L, f->len);
        return false;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | f->base[i];
    // A file of another kind fails here first, so the message says what that means.
    if (n > MAX_HEADER_BYTES) {
        err_set("%s: not a safetensors file (header length %" PRIu64 " is over the %u-byte limit)", L, n,
                MAX_HEADER_BYTES);
        return false;
    }
    if (n > f->len - 8) {
        err_set("%s: header length %" PRIu64 " runs past the end of the %zu-byte file", L, n,
                f->len);
        return false;
    }
    f->header_len = n;
    f->data = f->base + 8 + n;
    f->data_len = f->len - 8 - n;

    const char *header = (const char *)f->base + 8;
    if (n == 0 || header[0] != '{') {
        err_set("%s: header does not start with '{'", L);
        return false;
    }
    size_t bad = utf8_valid_prefix(header, n);  // the format requires UTF-8; cJSON does not check it
    if (bad < n) {
        err_set("%s: header is not valid UTF-8 (byte %zu)", L, bad);
        return false;
    }
    // cJSON gets a NUL-terminated copy: a mapped header is not terminated, and the
    // parser should have no way to wander past the header.
    char *copy = memcpy(xmalloc(n + 1), header, n);
    copy[n] = '\0';
    bool ok = read_json(f, copy, n);
    free(copy);
    return ok;
}

// --- reading ---------------------------------------------------------------------

static st_file *file_new(const void *base, size_t len, const char *label, bool mapped) {
    st_file *f = xcalloc(1, sizeof *f);
    f->label = xstrdup(label);
    f->base = base;
    f->len = len;
    f->mapped = mapped;
    f->refs = 1;
    if (!read_header(f)) {
        file_destroy(f);
        return NULL;
    }
    return f;
}

st_file *st_parse(const void *buf, size_t len, const char *label) {
    return file_new(buf, len, label, false);
}

st_file *st_open(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err_set("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        err_set("%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    size_t len = (size_t)sb.st_size;
    if (len < 8) {  // checked before mmap, which refuses empty files
        set_too_short(path, len);
        close(fd);
        return NULL;
    }
    void *base = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (base == MAP_FAILED) {
        err_set("%s: cannot mmap %zu bytes: %s", path, len, strerror(map_errno));
        return NULL;
    }
    return file_new(base, len, path, true);
}

st_file *st_retain(st_file *f) {
    f->refs++;
    return f;
}

void st_close(st_file *f) {
    if (f && --f->refs == 0) file_destroy(f);
}

const char *st_label(const st_file *f) { return f->label; }

int st_count(const st_file *f) { return f->count; }

const st_entry *st_entry_at(const st_file *f, int i) {
    CHECK(i >= 0 && i < f->count, "entry %d of %d", i, f->count);
    return &f->entries[i];
}

const st_entry *st_find(const st_file *f, const char *name) {
    int lo = 0, hi = f->count;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        const st_entry *e = f->by_name[mid];
        int c = strcmp(name, e->name);
        if (c == 0) return e;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

int st_meta_count(const st_file *f) { return f->meta_count; }

const char *st_meta_key(const st_file *f, int i) {
    CHECK(i >= 0 && i < f->meta_count, "metadata %d of %d", i, f->meta_count);
    return f->meta[i].key;
}

const char *st_meta(const st_file *f, const char *key) {
    for (int i = 0; i < f->meta_count; i++)
        if (strcmp(f->meta[i].key, key) == 0) return f->meta[i].value;
    return NULL;
}

const void *st_data(const st_file *f, const st_entry *e) { return f->data + e->begin; }
uint64_t st_data_size(const st_file *f) { return f->data_len; }
uint64_t st_header_size(const st_file *f) { return f->header_len; }

// --- writing ---------------------------------------------------------------------

// One tensor to write: its descriptor and borrowed bytes.
typedef struct {
    char *name;
    dtype dt;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    size_t nbytes;
    const void *data;
    void *owner;
    void (*release)(void *owner);
} named_tensor;

struct st_writer {
    named_tensor *tensors;
    int count, cap;
    meta_pair *meta;
    int meta_count, meta_cap;
};

// Room for one more element in an array of *cap elements holding count.
static void *grow(void *array, int count, int *cap, size_t elem) {
    if (count < *cap) return array;
    *cap = *cap ? 2 * *cap : 8;
    array = realloc(array, (size_t)*cap * elem);
    CHECK(array, "out of memory growing an array to %d elements", *cap);
    return array;
}

st_writer *st_writer_new(void) { return xcalloc(1, sizeof(st_writer)); }

void st_writer_meta(st_writer *w, const char *key, const char *value) {
    for (int i = 0; i < w->meta_count; i++) {
        if (strcmp(w->meta[i].key, key) == 0) {
            free(w->meta[i].value);
            w->meta[i].value = xstrdup(value);
            return;
        }
    }
    w->meta = grow(w->meta, w->meta_count, &w->meta_cap, sizeof *w->meta);
    w->meta[w->meta_count++] = (meta_pair){xstrdup(key), xstrdup(value)};
}

void st_writer_add_bytes(st_writer *w, const char *name, dtype dt, int ndim,
                         const int64_t *shape, const void *data, void *owner,
                         void (*release)(void *owner)) {
    CHECK(strcmp(name, "__metadata__") != 0, "__metadata__ is not a tensor name");
    CHECK(ndim >= 0 && ndim <= TENSOR_MAX_DIMS, "tensor '%s': %d dims", name, ndim);
    for (int i = 0; i < w->count; i++)
        CHECK(strcmp(w->tensors[i].name, name) != 0, "tensor '%s' added twice", name);
    named_tensor t = {xstrdup(name), dt, ndim, {0}, dtype_size(dt), data, owner, release};
    for (int d = 0; d < ndim; d++) {
        t.shape[d] = shape[d];
        t.nbytes *= (size_t)shape[d];
    }
    w->tensors = grow(w->tensors, w->count, &w->cap, sizeof *w->tensors);
    w->tensors[w->count++] = t;
}

void st_writer_free(st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->count; i++) {
        free(w->tensors[i].name);
        if (w->tensors[i].release) w->tensors[i].release(w->tensors[i].owner);
    }
    for (int i = 0; i < w->meta_count; i++) {
        free(w->meta[i].key);
        free(w->meta[i].value);
    }
    free(w->tensors);
    free(w->meta);
    free(w);
}

// A growing string for the header.
typedef struct {
    char *s;
    size_t len, cap;
} strbuf;

static void sb_add(strbuf *t, const char *s, size_t n) {
    if (t->len + n + 1 > t->cap) {
        t->cap = 2 * (t->len + n + 1);
        t->s = realloc(t->s, t->cap);
        CHECK(t->s, "out of memory building a %zu-byte header", t->cap);
    }
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = '\0';
}

static void sb_str(strbuf *t, const char *s) { sb_add(t, s, strlen(s)); }

static void sb_u64(strbuf *t, uint64_t v) {
    char buf[24];
    sb_add(t, buf, (size_t)snprintf(buf, sizeof buf, "%" PRIu64, v));
}

// A JSON string, escaped the way serde_json (the Python package) escapes it.
static void sb_json_string(strbuf *t, const char *s) {
    sb_add(t, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        const char *short_form = c == '"'    ? "\\\""
                                 : c == '\\' ? "\\\\"
                                 : c == '\n' ? "\\n"
                                 : c == '\r' ? "\\r"
                                 : c == '\t' ? "\\t"
                                 : c == '\b' ? "\\b"
                                 : c == '\f' ? "\\f"
                                             : NULL;
        if (short_form) {
            sb_str(t, short_form);
        } else if (c < 0x20) {
            char buf[8];
            sb_add(t, buf, (size_t)snprintf(buf, sizeof buf, "\\u%04x", c));
        } else {
            sb_add(t, (const char *)&c, 1);
        }
    }
    sb_add(t, "\"", 1);
}

static int compare_for_layout(const void *a, const void *b) {
    const named_tensor *x = a, *y = b;
    int fx = format_of(x->dt), fy = format_of(y->dt);
    if (fx != fy) return fy - fx;
    return strcmp(x->name, y->name);
}

// The header for tensors already in layout order, padded with spaces to 8 bytes.
static strbuf build_header(const st_writer *w, const named_tensor *order) {
    strbuf h = {0};
    sb_str(&h, "{");
    if (w->meta_count) {
        sb_str(&h, "\"__metadata__\":{");
        for (int i = 0; i < w->meta_count; i++) {
            if (i) sb_str(&h, ",");
            sb_json_string(&h, w->meta[i].key);
            sb_str(&h, ":");
            sb_json_string(&h, w->meta[i].value);
        }
        sb_str(&h, "}");
    }
    uint64_t offset = 0;
    for (int i = 0; i < w->count; i++) {
        const named_tensor *t = &order[i];
        if (i || w->meta_count) sb_str(&h, ",");
        sb_json_string(&h, order[i].name);
        sb_str(&h, ":{\"dtype\":\"");
        sb_str(&h, formats[format_of(t->dt)].name);
        sb_str(&h, "\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            if (d) sb_str(&h, ",");
            sb_u64(&h, (uint64_t)t->shape[d]);
        }
        sb_str(&h, "],\"data_offsets\":[");
        sb_u64(&h, offset);
        sb_str(&h, ",");
        offset += t->nbytes;
        sb_u64(&h, offset);
        sb_str(&h, "]}");
    }
    sb_str(&h, "}");
    while (h.len % 8) sb_str(&h, " ");
    return h;
}

static bool write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t done = write(fd, p, n);
        if (done < 0 && errno == EINTR) continue;
        if (done < 0) return false;
        p += done;
        n -= (size_t)done;
    }
    return true;
}

// The whole file into fd: length, header, tensors in layout order.
static bool write_file(int fd, const strbuf *header, const named_tensor *order, int count) {
    unsigned char len_bytes[8];
    for (int i = 0; i < 8; i++) len_bytes[i] = (unsigned char)((uint64_t)header->len >> (8 * i));
    bool ok = write_all(fd, len_bytes, 8) && write_all(fd, header->s, header->len);
    for (int i = 0; i < count && ok; i++) ok = write_all(fd, order[i].data, order[i].nbytes);
    return ok;
}

int st_writer_save(st_writer *w, const char *path) {
    named_tensor *order = xmalloc((size_t)w->count * sizeof *order);
    if (w->count) memcpy(order, w->tensors, (size_t)w->count * sizeof *order);
    qsort(order, (size_t)w->count, sizeof *order, compare_for_layout);
    strbuf header = build_header(w, order);
    int result = -1;
    file_replacement out;
    if (header.len > MAX_HEADER_BYTES) {
        err_set("%s: header of %zu bytes is over the %u-byte limit", path, header.len,
                MAX_HEADER_BYTES);
        goto done;
    }
    if (file_replace_begin(&out, path)) goto done;
    bool written = write_file(fileno(out.fp), &header, order, w->count);
    if (file_replace_end(&out, written ? 0 : errno)) goto done;
    result = 0;
done:
    free(header.s);
    free(order);
    return result;
}
