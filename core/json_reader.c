#include "core/json_reader.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/check.h"
#include "core/files.h"

int json_reader_open(json_reader *r, const char *path) {
    *r = (json_reader){.path = path};
    return read_json_object(path, &r->root) ? -1 : 0;
}

int json_reader_close(json_reader *r) {
    cJSON_Delete(r->root);
    r->root = NULL;
    return r->failed ? -1 : 0;
}

void json_reader_fail(json_reader *r, const char *key, const char *what) {
    if (!r->failed) err_set("%s: key \"%s\": %s", r->path, key, what);
    r->failed = true;
}

const cJSON *json_item(json_reader *r, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->root, key);
    if (!v || cJSON_IsNull(v)) return NULL;
    for (const cJSON *d = r->defaulted ? r->defaulted->child : NULL; d; d = d->next)
        if (cJSON_IsString(d) && strcmp(d->valuestring, key) == 0) return NULL;
    return v;
}

bool json_bool(json_reader *r, const char *key, bool *out) {
    const cJSON *v = json_item(r, key);
    if (!v) return false;
    if (!cJSON_IsBool(v)) return json_reader_fail(r, key, "expected true or false"), false;
    if (!r->failed) *out = cJSON_IsTrue(v);
    return true;
}

bool json_number(json_reader *r, const char *key, double lo, double hi, double *out) {
    const cJSON *v = json_item(r, key);
    if (!v) return false;
    if (!cJSON_IsNumber(v)) return json_reader_fail(r, key, "expected a number"), false;
    // cJSON reads 1e999 (and read_json_object Python's Infinity) as an infinity.
    double d = v->valuedouble;
    if (!(isfinite(d) && d >= lo && d <= hi)) {
        char what[128];
        snprintf(what, sizeof what, "expected a finite number from %g to %g, got %g", lo, hi, d);
        return json_reader_fail(r, key, what), false;
    }
    if (!r->failed) *out = d;
    return true;
}

bool json_float(json_reader *r, const char *key, float lo, float hi, float *out) {
    double d;
    if (!json_number(r, key, lo, hi, &d)) return false;
    if (!r->failed) *out = (float)d;
    return true;
}

static bool int_in_range(const cJSON *v, int lo, int hi, int *out) {
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!(d == floor(d) && d >= lo && d <= hi)) return false;
    *out = (int)d;
    return true;
}

static void fail_range(json_reader *r, const char *key, const char *what, int lo, int hi) {
    char text[96];
    snprintf(text, sizeof text, "expected %s from %d to %d", what, lo, hi);
    json_reader_fail(r, key, text);
}

bool json_int(json_reader *r, const char *key, int lo, int hi, int *out) {
    const cJSON *v = json_item(r, key);
    if (!v) return false;
    int x;
    if (!int_in_range(v, lo, hi, &x)) return fail_range(r, key, "an integer", lo, hi), false;
    if (!r->failed) *out = x;
    return true;
}

bool json_string(json_reader *r, const char *key, const char **out) {
    const cJSON *v = json_item(r, key);
    if (!v) return false;
    if (!cJSON_IsString(v)) return json_reader_fail(r, key, "expected a string"), false;
    if (!r->failed) *out = v->valuestring;
    return true;
}

bool json_choice(json_reader *r, const char *key, const char *const *choices, int *index) {
    const char *s;
    if (!json_string(r, key, &s) || r->failed) return false;
    char what[256];
    int n = snprintf(what, sizeof what, "\"%.60s\" is not supported (", s);
    for (const char *const *c = choices; *c; c++) {
        if (strcmp(s, *c) == 0) {
            *index = (int)(c - choices);
            return true;
        }
        if (n < (int)sizeof what)
            n += snprintf(what + n, sizeof what - (size_t)n, "%s%s", c == choices ? "" : ", ", *c);
    }
    if (n < (int)sizeof what) snprintf(what + n, sizeof what - (size_t)n, ")");
    json_reader_fail(r, key, what);
    return false;
}

bool json_int_or_list(json_reader *r, const char *key, int n, int lo, int hi, int *out) {
    const cJSON *v = json_item(r, key);
    if (!v) return false;
    int vals[64], x = 0;
    CHECK(n <= 64, "json_int_or_list: %d values", n);
    bool ok = cJSON_IsNumber(v) ? int_in_range(v, lo, hi, &x) : cJSON_IsArray(v) && cJSON_GetArraySize(v) == n;
    for (int i = 0; ok && i < n; i++) ok = cJSON_IsNumber(v) ? (vals[i] = x, true)
                                                             : int_in_range(cJSON_GetArrayItem(v, i), lo, hi, &vals[i]);
    if (!ok) {
        char what[96];
        snprintf(what, sizeof what, "expected an integer or a list of %d integers from %d to %d", n, lo, hi);
        return json_reader_fail(r, key, what), false;
    }
    if (!r->failed) memcpy(out, vals, (size_t)n * sizeof *out);
    return true;
}

int json_int_list(json_reader *r, const char *key, int max, int lo, int hi, int *out) {
    const cJSON *v = json_item(r, key);
    int n = v && cJSON_IsArray(v) ? cJSON_GetArraySize(v) : -1;
    bool ok = n >= 1 && n <= max;
    int vals[64];
    CHECK(max <= 64, "json_int_list: %d values", max);
    for (int i = 0; ok && i < n; i++) ok = int_in_range(cJSON_GetArrayItem(v, i), lo, hi, &vals[i]);
    if (!ok) {
        char what[96];
        snprintf(what, sizeof what, "expected a list of 1 to %d integers from %d to %d", max, lo, hi);
        json_reader_fail(r, key, what);
        return 0;
    }
    if (r->failed) return 0;
    memcpy(out, vals, (size_t)n * sizeof *out);
    return n;
}

void json_require_absent(json_reader *r, const char *key, const char *why) {
    if (json_item(r, key)) json_reader_fail(r, key, why);
}

void json_require_false(json_reader *r, const char *key, const char *why) {
    bool on = false;
    if (json_bool(r, key, &on) && on) json_reader_fail(r, key, why);
}

void json_require_string(json_reader *r, const char *key, const char *only) {
    const char *s;
    if (json_string(r, key, &s) && !r->failed && strcmp(s, only) != 0) {
        char what[160];
        snprintf(what, sizeof what, "\"%.60s\" is not supported (only \"%s\")", s, only);
        json_reader_fail(r, key, what);
    }
}

void json_require_number(json_reader *r, const char *key, double only) {
    double v;
    if (json_number(r, key, -DBL_MAX, DBL_MAX, &v) && !r->failed && v != only) {
        char what[64];
        snprintf(what, sizeof what, "is not supported (only %g)", only);
        json_reader_fail(r, key, what);
    }
}
