#include "core/args.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"

// The argument as an error shows it: at most 40 bytes, control characters as '?',
// so that the message stays one line.
static const char *shown(char out[48], const char *text) {
    size_t n = 0;
    for (; text[n] && n < 40; n++) out[n] = (unsigned char)text[n] < 0x20 || text[n] == 0x7f ? '?' : text[n];
    strcpy(out + n, text[n] ? "..." : "");
    return out;
}

// Only what a decimal number is written with: strtod alone would also take "nan",
// "inf", hexadecimal and leading spaces.
static bool decimal_chars(const char *text, bool integer) {
    if (!*text) return false;
    for (const char *c = text; *c; c++) {
        bool digit = *c >= '0' && *c <= '9', sign = *c == '-' || *c == '+';
        bool fraction = !integer && (*c == '.' || *c == 'e' || *c == 'E');
        if (!digit && !sign && !fraction) return false;
    }
    return true;
}

static int out_of_range(const char *name, const char *text, const char *kind, const char *range) {
    char buf[48];
    err_set("%s: expected %s %s, got \"%s\"", name, kind, range, shown(buf, text));
    return -1;
}

// "from LO to HI", or with an open end "above LO and at most HI" and the like.
static void range_text(char *out, size_t len, double lo, double hi, bool above_lo, bool below_hi) {
    snprintf(out, len, "%s %.10g %s %.10g", above_lo ? "above" : "from", lo,
             below_hi ? (above_lo ? "and below" : "to below") : (above_lo ? "and at most" : "to"), hi);
}

static int parse_double(double *out, const char *name, const char *text, double lo, double hi, bool above_lo,
                        bool below_hi) {
    char range[96];
    range_text(range, sizeof range, lo, hi, above_lo, below_hi);
    char *end;
    double v = decimal_chars(text, false) ? strtod(text, &end) : NAN;
    if (!isfinite(v) || *end || v < lo || v > hi || (above_lo && v == lo) || (below_hi && v == hi))
        return out_of_range(name, text, "a number", range);
    *out = v;
    return 0;
}

int arg_double(double *out, const char *name, const char *text, double lo, double hi) {
    return parse_double(out, name, text, lo, hi, false, false);
}

int arg_int64(int64_t *out, const char *name, const char *text, int64_t lo, int64_t hi) {
    char range[96];
    snprintf(range, sizeof range, "from %lld to %lld", (long long)lo, (long long)hi);
    char *end = NULL;
    errno = 0;
    long long v = decimal_chars(text, true) ? strtoll(text, &end, 10) : 0;
    if (!end || *end || errno == ERANGE || v < lo || v > hi) return out_of_range(name, text, "an integer", range);
    *out = v;
    return 0;
}

int arg_int(int *out, const char *name, const char *text, int lo, int hi) {
    int64_t v;
    if (arg_int64(&v, name, text, lo, hi)) return -1;
    *out = (int)v;
    return 0;
}

int arg_field(void *out, const char *name, const char *text, const cfg_field *f) {
    switch (f->type) {
    case CFG_FLOAT: return parse_double(out, name, text, f->min, f->max, f->above_min, f->below_max);
    case CFG_INT64: return arg_int64(out, name, text, (int64_t)f->min + f->above_min, (int64_t)f->max - f->below_max);
    case CFG_INT: return arg_int(out, name, text, (int)f->min + f->above_min, (int)f->max - f->below_max);
    default: DIE("arg_field: %s is not a number field", f->key);
    }
}
