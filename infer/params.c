#include "infer/params.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/log.h"

// --- the registry ---------------------------------------------------------------------------

void params_init(param_set *ps, dtype dt, device dev) {
    *ps = (param_set){.dt = dt, .dev = dev};
}

void params_free(param_set *ps) {
    for (int i = 0; i < ps->count; i++) {
        tensor_free(*ps->items[i].slot);
        *ps->items[i].slot = NULL;
        free(ps->items[i].name);
    }
    free(ps->items);
    *ps = (param_set){0};
}

void params_push(param_set *ps, const char *fmt, ...) {
    CHECK(ps->depth < PARAM_DEPTH_MAX, "modules nested deeper than %d", PARAM_DEPTH_MAX);
    size_t len = strlen(ps->prefix);
    ps->prefix_len[ps->depth++] = (int)len;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(ps->prefix + len, sizeof ps->prefix - len, fmt, ap);
    va_end(ap);
    CHECK(n >= 0 && len + (size_t)n + 1 < sizeof ps->prefix, "module name too long: %s", ps->prefix);
    strcat(ps->prefix, ".");
}

void params_pop(param_set *ps) {
    CHECK(ps->depth > 0, "params_pop without params_push");
    ps->prefix[ps->prefix_len[--ps->depth]] = '\0';
}

param *params_add(param_set *ps, tensor **slot, param_kind kind, const char *name, int ndim,
                  const int64_t *shape) {
    CHECK(ndim >= 1 && ndim <= 4, "parameter %s%s: %d dims", ps->prefix, name, ndim);
    if (ps->count == ps->cap) {
        ps->cap = ps->cap ? 2 * ps->cap : 256;
        ps->items = realloc(ps->items, (size_t)ps->cap * sizeof *ps->items);
        CHECK(ps->items, "out of memory");
    }
    param *p = &ps->items[ps->count++];
    *p = (param){.slot = slot, .kind = kind, .ndim = ndim};
    size_t len = strlen(ps->prefix) + strlen(name) + 1;
    p->name = xmalloc(len);
    snprintf(p->name, len, "%s%s", ps->prefix, name);
    memcpy(p->shape, shape, (size_t)ndim * sizeof *shape);
    *slot = NULL;
    return p;
}

const param *params_find(const param_set *ps, const char *name) {
    for (int i = 0; i < ps->count; i++)
        if (strcmp(ps->items[i].name, name) == 0) return &ps->items[i];
    return NULL;
}

int64_t params_numel(const param_set *ps) {
    int64_t n = 0;
    for (int i = 0; i < ps->count; i++) {
        int64_t e = 1;
        for (int d = 0; d < ps->items[i].ndim; d++) e *= ps->items[i].shape[d];
        n += e;
    }
    return n;
}

// --- the weight index -------------------------------------------------------------------------

void weight_index_init(weight_index *wi) { *wi = (weight_index){0}; }

void weight_index_free(weight_index *wi) {
    for (int i = 0; i < wi->count; i++) free(wi->refs[i].name);
    for (int i = 0; i < wi->n_unmapped; i++) free(wi->unmapped[i]);
    for (int i = 0; i < wi->n_files; i++) {
        st_close(wi->files[i]);
        free(wi->paths[i]);
        free(wi->prefixes[i]);
    }
    free(wi->refs);
    free(wi->unmapped);
    free(wi->files);
    free(wi->paths);
    free(wi->prefixes);
    *wi = (weight_index){0};
}

// Keeps the file (and copies of its path and prefix) for the index's lifetime;
// returns the path copy.
static const char *keep_file(weight_index *wi, st_file *f, const char *path, const char *prefix) {
    size_t n = (size_t)(wi->n_files + 1);
    wi->files = realloc(wi->files, n * sizeof *wi->files);
    wi->paths = realloc(wi->paths, n * sizeof *wi->paths);
    wi->prefixes = realloc(wi->prefixes, n * sizeof *wi->prefixes);
    CHECK(wi->files && wi->paths && wi->prefixes, "out of memory");
    wi->files[wi->n_files] = f;
    wi->paths[wi->n_files] = strdup(path);
    wi->prefixes[wi->n_files] = strdup(prefix);
    return wi->paths[wi->n_files++];
}

static void add_ref(weight_index *wi, const char *name, st_file *f, const st_entry *e,
                    const char *path) {
    if (wi->count == wi->cap) {
        wi->cap = wi->cap ? 2 * wi->cap : 1024;
        wi->refs = realloc(wi->refs, (size_t)wi->cap * sizeof *wi->refs);
        CHECK(wi->refs, "out of memory");
    }
    wi->refs[wi->count++] = (weight_ref){.name = strdup(name), .file = f, .entry = e,
                                         .file_path = path};
    wi->sorted = false;
}

int weight_index_add_file(weight_index *wi, const char *path, const char *prefix) {
    st_file *f = st_open(path);
    if (!f) return -1;
    const char *kept = keep_file(wi, f, path, prefix);
    char name[PARAM_NAME_MAX];
    for (int i = 0; i < st_count(f); i++) {
        const st_entry *e = st_entry_at(f, i);
        snprintf(name, sizeof name, "%s%s", prefix, e->name);
        add_ref(wi, name, f, e, kept);
    }
    return 0;
}

void weight_index_add_mapped(weight_index *wi, st_file *f, const char *path, name_map *nm) {
    const char *kept = keep_file(wi, f, path, "");
    for (int i = 0; i < st_count(f); i++) {
        const st_entry *e = st_entry_at(f, i);
        const char *name = name_map_lookup(nm, e->name);
        if (name) {
            add_ref(wi, name, f, e, kept);
        } else {
            wi->unmapped = realloc(wi->unmapped, (size_t)(wi->n_unmapped + 1) * sizeof(char *));
            CHECK(wi->unmapped, "out of memory");
            wi->unmapped[wi->n_unmapped++] = strdup(e->name);
        }
    }
}

// --- name maps --------------------------------------------------------------------------------

void name_map_add(name_map *nm, const char *file_key, const char *canonical) {
    if (nm->count == nm->cap) {
        nm->cap = nm->cap ? 2 * nm->cap : 1024;
        nm->pairs = realloc(nm->pairs, (size_t)nm->cap * sizeof *nm->pairs);
        CHECK(nm->pairs, "out of memory");
    }
    nm->pairs[nm->count++] = (name_pair){strdup(file_key), strdup(canonical)};
    nm->sorted = false;
}

static int compare_pairs(const void *a, const void *b) {
    return strcmp(((const name_pair *)a)->file_key, ((const name_pair *)b)->file_key);
}

const char *name_map_lookup(name_map *nm, const char *file_key) {
    if (!nm->sorted) {
        qsort(nm->pairs, (size_t)nm->count, sizeof *nm->pairs, compare_pairs);
        nm->sorted = true;
    }
    name_pair key = {.file_key = (char *)file_key};
    const name_pair *p = bsearch(&key, nm->pairs, (size_t)nm->count, sizeof *nm->pairs, compare_pairs);
    return p ? p->canonical : NULL;
}

void name_map_free(name_map *nm) {
    for (int i = 0; i < nm->count; i++) {
        free(nm->pairs[i].file_key);
        free(nm->pairs[i].canonical);
    }
    free(nm->pairs);
    *nm = (name_map){0};
}

static int compare_refs(const void *a, const void *b) {
    return strcmp(((const weight_ref *)a)->name, ((const weight_ref *)b)->name);
}

const weight_ref *weight_index_find(weight_index *wi, const char *name) {
    if (!wi->sorted) {
        qsort(wi->refs, (size_t)wi->count, sizeof *wi->refs, compare_refs);
        wi->sorted = true;
    }
    weight_ref key = {.name = (char *)name};
    return bsearch(&key, wi->refs, (size_t)wi->count, sizeof *wi->refs, compare_refs);
}

// --- loading ---------------------------------------------------------------------------------

static bool shape_fits(const param *p, const st_entry *e) {
    bool same = e->ndim == p->ndim;
    for (int d = 0; same && d < p->ndim; d++) same = e->shape[d] == p->shape[d];
    if (same) return true;
    // A linear layer stored as a 1x1 convolution (SD1 proj_in/proj_out, the VAE's
    // attention in original checkpoints).
    return p->kind == PARAM_LINEAR && e->ndim == 4 && e->shape[0] == p->shape[0] &&
           e->shape[1] == p->shape[1] && e->shape[2] == 1 && e->shape[3] == 1;
}

// [Cout, Cin, KH, KW] -> [Cout, KH, KW, Cin], on the host in f32.
static void permute_conv(float *dst, const float *src, const int64_t *s) {
    int64_t co = s[0], ci = s[1], kk = s[2] * s[3];
    for (int64_t o = 0; o < co; o++)
        for (int64_t i = 0; i < ci; i++)
            for (int64_t k = 0; k < kk; k++) dst[(o * kk + k) * ci + i] = src[(o * ci + i) * kk + k];
}

// The parameter's tensor in our layout, dtype and device; NULL + err_msg().
static tensor *load_param(const param_set *ps, const param *p, const weight_ref *r) {
    tensor *host = st_tensor(r->file, r->entry);
    if (!host) return NULL;
    if (!dtype_is_float(host->dtype)) {
        err_set("%s: tensor %s is %s; the model needs a float tensor there", r->file_path,
                r->entry->name, dtype_name(host->dtype));
        tensor_free(host);
        return NULL;
    }
    int64_t n = tensor_numel(host);
    float *f32 = xmalloc((size_t)n * sizeof(float));
    tensor_copy_to_f32(host, f32, (size_t)n);
    tensor_free(host);
    int64_t shape[4];
    int ndim = p->ndim;
    memcpy(shape, p->shape, sizeof shape);
    if (p->kind == PARAM_CONV) {
        float *permuted = xmalloc((size_t)n * sizeof(float));
        permute_conv(permuted, f32, p->shape);
        free(f32);
        f32 = permuted;
        shape[1] = p->shape[2];
        shape[2] = p->shape[3];
        shape[3] = p->shape[1];
    }
    tensor *t = tensor_from_f32(ps->dt, ps->dev, ndim, shape, f32);
    free(f32);
    return t;
}

static bool under(const char *name, const char *prefix) {
    return strncmp(name, prefix, strlen(prefix)) == 0;
}

// The file that should have held the parameter `name`: the one indexed under a prefix
// of it (a component's file, or a single file that holds them all), and how many
// more do (shards).
static void file_for(const weight_index *wi, const char *name, char *out, size_t len) {
    int first = -1, n = 0;
    for (int i = 0; i < wi->n_files; i++)
        if (under(name, wi->prefixes[i]) && n++ == 0) first = i;
    if (first < 0) snprintf(out, len, "the checkpoint");
    else if (n == 1) snprintf(out, len, "%s", wi->paths[first]);
    else snprintf(out, len, "%s (and %d more shards)", wi->paths[first], n - 1);
}

int params_load(param_set *ps, weight_index *wi, const char *prefix, load_report *rep) {
    *rep = (load_report){0};
    char want[96], got[96];
    for (int i = 0; i < ps->count; i++) {
        param *p = &ps->items[i];
        if (!under(p->name, prefix)) continue;
        const weight_ref *r = weight_index_find(wi, p->name);
        if (!r) {
            if (!rep->missing++) snprintf(rep->first_missing, sizeof rep->first_missing, "%s", p->name);
            continue;
        }
        ((weight_ref *)r)->used = true;
        if (!shape_fits(p, r->entry)) {
            format_shape(want, sizeof want, p->ndim, p->shape);
            format_shape(got, sizeof got, r->entry->ndim, r->entry->shape);
            err_set("%s: tensor %s has shape %s, the model config needs %s", r->file_path,
                    r->entry->name, got, want);
            return -1;
        }
        tensor *t = load_param(ps, p, r);
        if (!t) return -1;
        tensor_free(*p->slot);
        *p->slot = t;
        rep->used++;
    }
    for (int i = 0; i < wi->count; i++) {
        if (wi->refs[i].used || !under(wi->refs[i].name, prefix)) continue;
        if (!rep->unexpected++)
            snprintf(rep->first_unexpected, sizeof rep->first_unexpected, "%s", wi->refs[i].name);
    }
    if (!*prefix) {
        for (int i = 0; i < wi->n_unmapped; i++)
            if (!rep->unexpected++)
                snprintf(rep->first_unexpected, sizeof rep->first_unexpected, "%s", wi->unmapped[i]);
    }
    if (rep->missing) {
        char file[PATH_MAX + 64];
        file_for(wi, rep->first_missing, file, sizeof file);
        err_set("%s: %d tensor%s missing (first: %s)", file, rep->missing, rep->missing == 1 ? "" : "s",
                rep->first_missing);
        return -1;
    }
    return 0;
}

void load_report_print(const load_report *rep, const char *what) {
    if (rep->unexpected)
        log_info("%s: %d tensors used, %d missing, %d unexpected (first: %s)", what, rep->used,
                 rep->missing, rep->unexpected, rep->first_unexpected);
    else
        log_info("%s: %d tensors used, %d missing, 0 unexpected", what, rep->used, rep->missing);
}
