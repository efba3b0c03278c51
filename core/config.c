// YAML configs bound to structs by a schema (see config.h for the rules).
//
// libyaml's document loader parses the whole file into a node graph (resolving
// aliases) with each node's line; the binder then walks that graph beside the
// schema. Overrides and schema defaults go through the same binder: their value
// text is parsed as a one-value YAML document.
#include "core/config.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "core/check.h"
#include "core/files.h"

#define NAME_LEN 256  // dotted field names ("data.sets[3].path") in messages

// --- messages -------------------------------------------------------------------------------

// Where the values being bound come from, for messages.
typedef struct {
    const char *file;      // the YAML file, or NULL for an override or a default
    char what[320];        // otherwise how messages start: `override "ARG"`
    yaml_document_t *doc;  // the document whose nodes are being bound
} reader;

static int fail(const reader *r, const yaml_mark_t *at, const char *fmt, ...) PRINTF_LIKE(3, 4);
static int fail(const reader *r, const yaml_mark_t *at, const char *fmt, ...) {
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (r->file)
        err_set("%s:%zu: %s", r->file, at ? at->line + 1 : 1, msg);
    else
        err_set("%s: %s", r->what, msg);
    return -1;
}

// User text as a message shows it: at most 48 bytes, cut at a UTF-8 character
// boundary, with control characters as spaces so the message stays one line.
static const char *shown(const char *s, char buf[64]) {
    size_t n = strlen(s), keep = n > 48 ? 48 : n;
    while (keep < n && keep > 0 && ((unsigned char)s[keep] & 0xC0) == 0x80) keep--;
    for (size_t i = 0; i < keep; i++) buf[i] = (unsigned char)s[i] < 0x20 ? ' ' : s[i];
    strcpy(buf + keep, keep < n ? "..." : "");
    return buf;
}

// where.key; names too long end in "..." (only messages show them whole).
static void join(char out[NAME_LEN], const char *where, const char *key) {
    if (snprintf(out, NAME_LEN, "%s%s%s", where, *where ? "." : "", key) >= NAME_LEN)
        strcpy(out + NAME_LEN - 4, "...");
}

// " in train" for a nested section, nothing at the top.
static const char *in_section(const char *where, char buf[NAME_LEN + 8]) {
    snprintf(buf, NAME_LEN + 8, "%s%s", *where ? " in " : "", where);
    return buf;
}

// "a, b, c" into buf (truncated to fit).
static const char *list_names(char *buf, size_t cap, const char *const *names, int n) {
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%s", i ? ", " : "", names[i]);
    return buf;
}

// --- the nearest name, for "did you mean" -----------------------------------------------------

// Damerau-Levenshtein distance in its optimal-string-alignment form (an adjacent
// transposition costs 1, as in "rnak"), for names up to 63 bytes.
static int edit_distance(const char *a, const char *b) {
    int n = (int)strlen(a), m = (int)strlen(b);
    if (n > 63 || m > 63) return INT_MAX / 2;
    int d[64][64];
    for (int i = 0; i <= n; i++) d[i][0] = i;
    for (int j = 0; j <= m; j++) d[0][j] = j;
    for (int i = 1; i <= n; i++)
        for (int j = 1; j <= m; j++) {
            int best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    return d[n][m];
}

// Whether typed is name's initials, as "lr" is learning_rate's.
static bool is_initials(const char *typed, const char *name) {
    if (strlen(typed) < 2) return false;
    for (const char *c = name; *c; c++) {
        if (c != name && c[-1] != '_') continue;
        if (*c != *typed++) return false;
    }
    return *typed == '\0';
}

// The name typed most likely meant, or NULL: the nearest by edit distance when it is
// within max(2, length/3) and less than the name's length (so "ab" suggests no "lr"),
// else the first whose initials or beginning (3 or more characters) were typed.
static const char *nearest(const char *typed, const char *const *names, int n) {
    const char *best = NULL;
    int best_d = INT_MAX;
    for (int i = 0; i < n; i++) {
        int d = edit_distance(typed, names[i]), len = (int)strlen(names[i]);
        if (d <= (len / 3 > 2 ? len / 3 : 2) && d < len && d < best_d) best = names[i], best_d = d;
    }
    for (int i = 0; i < n && !best; i++)
        if (is_initials(typed, names[i]) ||
            (strlen(typed) >= 3 && strncmp(names[i], typed, strlen(typed)) == 0))
            best = names[i];
    return best;
}

// --- scalars --------------------------------------------------------------------------------

static bool in_list(const char *s, const char *const *list) {
    for (; *list; list++)
        if (strcmp(s, *list) == 0) return true;
    return false;
}

static bool is_null_text(const char *s) {
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
    return in_list(s, nulls);
}

// 1 or 0 for YAML 1.1's booleans as PyYAML reads them (not y/n), -1 otherwise.
static int bool_value(const char *s) {
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", NULL};
    static const char *const no[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF", NULL};
    return in_list(s, yes) ? 1 : in_list(s, no) ? 0 : -1;
}

// 0 and *v for a decimal integer, -1 for other text, 1 beyond int64.
static int parse_int(const char *s, int64_t *v) {
    const char *digits = s + (*s == '+' || *s == '-');
    size_t n = strspn(digits, "0123456789");
    if (n == 0 || digits[n] || (n > 1 && digits[0] == '0')) return -1;
    errno = 0;
    *v = strtoll(s, NULL, 10);
    return errno == ERANGE ? 1 : 0;
}

static bool parse_float(const char *s, double *v) {
    static const char *const infs[] = {".inf", ".Inf", ".INF", NULL}, *const nans[] = {".nan", ".NaN", ".NAN",
                                                                                       NULL};
    const char *p = s + (*s == '+' || *s == '-');
    if (in_list(p, infs)) {
        *v = *s == '-' ? -INFINITY : INFINITY;
        return true;
    }
    if (in_list(s, nans)) {
        *v = NAN;
        return true;
    }
    size_t digits = strspn(p, "0123456789");
    p += digits;
    if (*p == '.') {
        size_t frac = strspn(p + 1, "0123456789");
        p += 1 + frac;
        digits += frac;
    }
    if (digits == 0) return false;
    if (*p == 'e' || *p == 'E') {
        p += 1 + (p[1] == '+' || p[1] == '-');
        size_t exp = strspn(p, "0123456789");
        if (exp == 0) return false;
        p += exp;
    }
    if (*p) return false;
    *v = strtod(s, NULL);
    return true;
}

// Whether a plain scalar with this text reads back as a string, here and in other
// YAML 1.1 readers (PyYAML also reads hex, sexagesimal and `_` numbers, dates, `<<`
// and `=`; some read y/n as booleans), so config_to_yaml quotes the rest, along with
// all text that starts like a number: a digit, a sign or a point.
static bool reads_as_string(const char *s) {
    static const char *const special[] = {"<<", "=", "y", "Y", "n", "N", NULL};
    return !is_null_text(s) && bool_value(s) < 0 && !strchr("0123456789+-.", s[0]) && !in_list(s, special);
}

static char *copy_string(const char *s) {
    size_t n = strlen(s) + 1;
    return memcpy(xmalloc(n), s, n);
}

static void set_string(char **dst, const char *s) {
    free(*dst);
    *dst = copy_string(s);
}

// libyaml's emitter writes only UTF-8; its scalar event runs the same check, so the
// text that config_set takes verbatim is refused there, where the message can say so.
static bool valid_utf8(const char *s) {
    yaml_event_t ev;
    if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, -1, 1, 1, YAML_ANY_SCALAR_STYLE))
        return false;
    yaml_event_delete(&ev);
    return true;
}

// --- nodes ----------------------------------------------------------------------------------

static const char *text_of(const yaml_node_t *n) { return (const char *)n->data.scalar.value; }

static bool is_plain(const yaml_node_t *n) { return n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE; }

static bool is_null(const yaml_node_t *n) {
    return n->type == YAML_SCALAR_NODE && is_plain(n) && is_null_text(text_of(n));
}

// How an error shows the value it refused.
static const char *describe(const yaml_node_t *n, char buf[96]) {
    char s[64];
    if (n->type == YAML_SEQUENCE_NODE) return "a list";
    if (n->type == YAML_MAPPING_NODE) return "a mapping";
    if (is_null(n)) return "null";
    snprintf(buf, 96, "%s\"%s\"", is_plain(n) ? "" : "the quoted string ", shown(text_of(n), s));
    return buf;
}

// The tag libyaml gives a node written without one; the loader cannot tell `!!str`
// from no tag, so only other tags are seen (and refused).
static bool has_explicit_tag(const yaml_node_t *n) {
    const char *tag = (const char *)n->tag;
    const char *implicit = n->type == YAML_SCALAR_NODE     ? YAML_DEFAULT_SCALAR_TAG
                           : n->type == YAML_SEQUENCE_NODE ? YAML_DEFAULT_SEQUENCE_TAG
                                                           : YAML_DEFAULT_MAPPING_TAG;
    return tag && strcmp(tag, implicit) != 0;
}

static yaml_node_t *node_at(const reader *r, int index) { return yaml_document_get_node(r->doc, index); }

static const cfg_field *find_field(const cfg_schema *s, const char *key) {
    for (int i = 0; i < s->n_fields; i++)
        if (strcmp(s->fields[i].key, key) == 0) return &s->fields[i];
    return NULL;
}

static int unknown_key(const reader *r, const yaml_mark_t *at, const char *key, const cfg_schema *s,
                       const char *where) {
    const char **keys = xmalloc((size_t)s->n_fields * sizeof *keys);
    for (int i = 0; i < s->n_fields; i++) keys[i] = s->fields[i].key;
    const char *near = nearest(key, keys, s->n_fields);
    char k[64], in[NAME_LEN + 8], all[560], hint[600];
    if (near)
        snprintf(hint, sizeof hint, "did you mean \"%s\"?", near);
    else
        snprintf(hint, sizeof hint, "the keys are %s", list_names(all, sizeof all, keys, s->n_fields));
    free(keys);
    return fail(r, at, "unknown key \"%s\"%s; %s", shown(key, k), in_section(where, in), hint);
}

// --- binding nodes to fields ----------------------------------------------------------------

static void apply_defaults(const cfg_schema *s, char *base, const char *where);
static void free_fields(const cfg_schema *s, char *base);
static int bind_value(reader *r, yaml_node_t *n, const cfg_field *f, char *base, const char *name);

static void free_strings(cfg_strings *l) {
    for (int i = 0; i < l->count; i++) free(l->items[i]);
    free(l->items);
    *l = (cfg_strings){0};
}

static void free_items(const cfg_schema *s, cfg_list *l) {
    for (int i = 0; i < l->count; i++) free_fields(s, (char *)l->items + (size_t)i * s->size);
    free(l->items);
    *l = (cfg_list){0};
}

static int bind_mapping(reader *r, yaml_node_t *n, const cfg_schema *s, char *base, const char *where) {
    char got[96], k[64], in[NAME_LEN + 8];
    if (n->type != YAML_MAPPING_NODE)
        return fail(r, &n->start_mark, "%s: expected a mapping, got %s", where, describe(n, got));
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *key = node_at(r, p->key);
        if (key->type != YAML_SCALAR_NODE)
            return fail(r, &key->start_mark, "keys%s must be names, got %s", in_section(where, in),
                        describe(key, got));
        const char *name = text_of(key);
        if (is_plain(key) && strcmp(name, "<<") == 0)
            return fail(r, &key->start_mark, "merge keys (<<) are not supported");
        const cfg_field *f = find_field(s, name);
        if (!f) return unknown_key(r, &key->start_mark, name, s, where);
        // Every earlier key is a distinct field's (or this would have failed), so
        // this looks at most at the schema's few keys.
        for (yaml_node_pair_t *q = n->data.mapping.pairs.start; q < p; q++) {
            const yaml_node_t *earlier = node_at(r, q->key);
            char first[40] = "";
            if (strcmp(text_of(earlier), name) != 0) continue;
            if (r->file) snprintf(first, sizeof first, " (first on line %zu)", earlier->start_mark.line + 1);
            return fail(r, &key->start_mark, "duplicate key \"%s\"%s%s", shown(name, k),
                        in_section(where, in), first);
        }
        char full[NAME_LEN];
        join(full, where, name);
        if (bind_value(r, node_at(r, p->value), f, base, full)) return -1;
    }
    return 0;
}

// The scalar's text, or NULL after a message when n is a list or a mapping.
static const char *scalar(const reader *r, const yaml_node_t *n, const char *name, const char *expected) {
    char got[96];
    if (n->type == YAML_SCALAR_NODE) return text_of(n);
    fail(r, &n->start_mark, "%s: expected %s, got %s", name, expected, describe(n, got));
    return NULL;
}

static int bind_string(const reader *r, const yaml_node_t *n, char **dst, const char *name) {
    const char *s = scalar(r, n, name, "a string");
    if (!s) return -1;
    // A double-quoted "\0" yields a NUL that C strings cannot hold.
    if (strlen(s) != n->data.scalar.length)
        return fail(r, &n->start_mark, "%s: a string cannot contain a NUL character", name);
    set_string(dst, s);
    return 0;
}

static bool in_range(const cfg_field *f, double v) {
    return (f->above_min ? v > f->min : v >= f->min) && (f->below_max ? v < f->max : v <= f->max);
}

static int bind_number(const reader *r, const yaml_node_t *n, const cfg_field *f, char *dst,
                       const char *name) {
    const char *expected = f->type == CFG_FLOAT ? "a number" : "an integer";
    const char *s = scalar(r, n, name, expected);
    if (!s) return -1;
    char got[96];
    double v = 0;
    int64_t i = 0;
    int rc = f->type == CFG_FLOAT ? (parse_float(s, &v) ? 0 : -1) : parse_int(s, &i);
    if (rc < 0 || !is_plain(n))
        return fail(r, &n->start_mark, "%s: expected %s, got %s", name, expected, describe(n, got));
    if (rc > 0 || (f->type == CFG_INT && (i < INT_MIN || i > INT_MAX)))
        return fail(r, &n->start_mark, "%s: %s is out of range for %s", name, s,
                    f->type == CFG_INT ? "an int" : "a 64-bit integer");
    if (f->type != CFG_FLOAT) v = (double)i;
    // .nan, .inf and decimals beyond a double (1e999) would reach the model as NaN or
    // infinity, whatever the field's range.
    if (!isfinite(v)) return fail(r, &n->start_mark, "%s: %s is not a finite number", name, s);
    if (!in_range(f, v))
        return fail(r, &n->start_mark, "%s: %s is out of range %c%g, %g%c", name, s, f->above_min ? '(' : '[',
                    f->min, f->max, f->below_max ? ')' : ']');
    if (f->type == CFG_INT)
        *(int *)dst = (int)i;
    else if (f->type == CFG_INT64)
        *(int64_t *)dst = i;
    else
        *(double *)dst = v;
    return 0;
}

static int bind_bool(const reader *r, const yaml_node_t *n, bool *dst, const char *name) {
    const char *s = scalar(r, n, name, "true or false");
    if (!s) return -1;
    char got[96];
    int b = bool_value(s);
    if (b < 0 || !is_plain(n))
        return fail(r, &n->start_mark, "%s: expected true or false, got %s", name, describe(n, got));
    *dst = b;
    return 0;
}

static int bind_enum(const reader *r, const yaml_node_t *n, const cfg_field *f, int *dst, const char *name) {
    const char *s = scalar(r, n, name, "a name");
    if (!s) return -1;
    int count = 0;
    while (f->choices[count]) count++;
    for (int i = 0; i < count; i++)
        if (strcmp(s, f->choices[i]) == 0) {
            *dst = i;
            return 0;
        }
    char v[64], choices[600], hint[128] = "";
    const char *near = nearest(s, f->choices, count);
    if (near) snprintf(hint, sizeof hint, "; did you mean \"%s\"?", near);
    return fail(r, &n->start_mark, "%s: \"%s\" is not one of %s%s", name, shown(s, v),
                list_names(choices, sizeof choices, f->choices, count), hint);
}

static int bind_string_list(reader *r, const yaml_node_t *n, cfg_strings *dst, const char *name) {
    char got[96];
    if (n->type != YAML_SEQUENCE_NODE)
        return fail(r, &n->start_mark, "%s: expected a list of strings ([a, b]), got %s", name,
                    describe(n, got));
    int count = (int)(n->data.sequence.items.top - n->data.sequence.items.start);
    cfg_strings list = {xcalloc((size_t)count, sizeof(char *)), 0};
    for (; list.count < count; list.count++) {
        const yaml_node_t *item = node_at(r, n->data.sequence.items.start[list.count]);
        char item_name[NAME_LEN + 16];
        snprintf(item_name, sizeof item_name, "%s[%d]", name, list.count);
        int rc = is_null(item) ? fail(r, &item->start_mark, "%s: expected a string, got null", item_name)
                               : bind_string(r, item, &list.items[list.count], item_name);
        if (rc) {
            free_strings(&list);
            return -1;
        }
    }
    free_strings(dst);
    *dst = list;
    return 0;
}

static int bind_section_list(reader *r, const yaml_node_t *n, const cfg_schema *s, cfg_list *dst,
                             const char *name) {
    char got[96];
    if (n->type != YAML_SEQUENCE_NODE)
        return fail(r, &n->start_mark, "%s: expected a list of mappings, got %s", name, describe(n, got));
    int count = (int)(n->data.sequence.items.top - n->data.sequence.items.start);
    cfg_list list = {xcalloc((size_t)count, s->size), 0};
    for (; list.count < count; list.count++) {
        char *item = (char *)list.items + (size_t)list.count * s->size;
        char item_name[NAME_LEN];
        snprintf(item_name, sizeof item_name, "%s[%d]", name, list.count);
        apply_defaults(s, item, item_name);
        if (bind_mapping(r, node_at(r, n->data.sequence.items.start[list.count]), s, item, item_name)) {
            list.count++;  // the failed item holds defaults and part of its values
            free_items(s, &list);
            return -1;
        }
    }
    free_items(s, dst);
    *dst = list;
    return 0;
}

static int bind_value(reader *r, yaml_node_t *n, const cfg_field *f, char *base, const char *name) {
    if (is_null(n)) return 0;
    if (has_explicit_tag(n))
        return fail(r, &n->start_mark, "%s: tags (%s) are not supported", name, (const char *)n->tag);
    char *dst = base + f->offset;
    switch (f->type) {
        case CFG_STRING: return bind_string(r, n, (char **)dst, name);
        case CFG_INT:
        case CFG_INT64:
        case CFG_FLOAT: return bind_number(r, n, f, dst, name);
        case CFG_BOOL: return bind_bool(r, n, (bool *)dst, name);
        case CFG_ENUM: return bind_enum(r, n, f, (int *)dst, name);
        case CFG_STRING_LIST: return bind_string_list(r, n, (cfg_strings *)dst, name);
        case CFG_SECTION: return bind_mapping(r, n, f->section, dst, name);
        case CFG_SECTION_LIST: return bind_section_list(r, n, f->section, (cfg_list *)dst, name);
    }
    DIE("field %s: unknown type %d", name, (int)f->type);
}

// --- text values: overrides and defaults ----------------------------------------------------

// libyaml's message for a failed load, and its line (1-based). Reader errors (text
// that is not UTF-8) carry a byte offset rather than a mark.
static size_t yaml_problem(const yaml_parser_t *p, const char *text, bool with_context, char *buf,
                           size_t cap) {
    size_t line = p->problem_mark.line + 1;
    if (p->error == YAML_READER_ERROR) {
        line = 1;
        for (size_t i = 0; i < p->problem_offset && text[i]; i++) line += text[i] == '\n';
    }
    const char *problem = p->problem ? p->problem : "out of memory";
    if (with_context && p->context)
        snprintf(buf, cap, "%s (%s at line %zu)", problem, p->context, p->context_mark.line + 1);
    else
        snprintf(buf, cap, "%s", problem);
    return line;
}

// Binds the value written as text to field f: a string verbatim, others as YAML.
static int set_from_text(reader *r, const cfg_field *f, char *base, const char *name, const char *text) {
    if (f->type == CFG_STRING) {
        if (!valid_utf8(text)) return fail(r, NULL, "%s: the value is not valid UTF-8", name);
        set_string((char **)(base + f->offset), text);
        return 0;
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    CHECK(yaml_parser_initialize(&parser), "out of memory");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    int rc = 0;
    if (!yaml_parser_load(&parser, &doc)) {
        char problem[300];
        yaml_problem(&parser, text, false, problem, sizeof problem);
        rc = fail(r, NULL, "%s: YAML syntax error: %s", name, problem);
    } else {
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        r->doc = &doc;
        if (root) rc = bind_value(r, root, f, base, name);
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    return rc;
}

static void apply_defaults(const cfg_schema *s, char *base, const char *where) {
    for (int i = 0; i < s->n_fields; i++) {
        const cfg_field *f = &s->fields[i];
        char name[NAME_LEN];
        join(name, where, f->key);
        bool number = f->type == CFG_INT || f->type == CFG_INT64 || f->type == CFG_FLOAT;
        CHECK(!number || f->min < f->max, "schema field %s: a number needs a range (min < max)", name);
        if (f->type == CFG_SECTION) {
            apply_defaults(f->section, base + f->offset, name);
        } else if (f->def) {
            reader r = {0};
            snprintf(r.what, sizeof r.what, "the schema's default \"%.200s\"", f->def);
            CHECK(set_from_text(&r, f, base, name, f->def) == 0, "%s", err_msg());
        }
    }
}

void config_init(const cfg_schema *schema, void *out) {
    memset(out, 0, schema->size);
    apply_defaults(schema, out, "");
}

int config_set(const char *assignment, const cfg_schema *schema, void *out) {
    reader r = {0};
    snprintf(r.what, sizeof r.what, "override \"%.280s\"", assignment);
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment)
        return fail(&r, NULL, "expected key=value, such as train.learning_rate=1e-4");
    const cfg_schema *s = schema;
    char *base = out, where[NAME_LEN] = "";
    for (const char *key = assignment;;) {
        const char *dot = memchr(key, '.', (size_t)(eq - key)), *end = dot ? dot : eq;
        char part[NAME_LEN], name[NAME_LEN];
        if (end == key || end - key >= NAME_LEN)
            return fail(&r, NULL, "expected key=value, such as train.learning_rate=1e-4");
        memcpy(part, key, (size_t)(end - key));
        part[end - key] = '\0';
        const cfg_field *f = find_field(s, part);
        if (!f) return unknown_key(&r, NULL, part, s, where);
        join(name, where, part);
        if (!dot) return set_from_text(&r, f, base, name, eq + 1);
        if (f->type != CFG_SECTION) return fail(&r, NULL, "%s is not a section", name);
        s = f->section;
        base += f->offset;
        strcpy(where, name);
        key = dot + 1;
    }
}

// --- files ----------------------------------------------------------------------------------

static int syntax_error(const reader *r, const yaml_parser_t *parser, const char *text) {
    char problem[300];
    size_t line = yaml_problem(parser, text, true, problem, sizeof problem);
    err_set("%s:%zu: YAML syntax error: %s", r->file, line, problem);
    return -1;
}

// The parser holds the file's text; binds its one document (if any) onto out.
static int bind_file(reader *r, yaml_parser_t *parser, const char *text, const cfg_schema *s, void *out) {
    yaml_document_t doc, next;
    if (!yaml_parser_load(parser, &doc)) return syntax_error(r, parser, text);
    r->doc = &doc;
    int rc = 0;
    // A second document would be ignored silently by a reader of the first only.
    if (!yaml_parser_load(parser, &next)) {
        rc = syntax_error(r, parser, text);
    } else {
        if (yaml_document_get_root_node(&next))
            rc = fail(r, &next.start_mark, "a second YAML document; a config is one mapping");
        yaml_document_delete(&next);
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (rc == 0 && root && !is_null(root))
        rc = root->type == YAML_MAPPING_NODE ? bind_mapping(r, root, s, out, "")
                                             : fail(r, &root->start_mark, "not a YAML mapping at the top");
    yaml_document_delete(&doc);
    return rc;
}

int config_load(const char *path, const cfg_schema *schema, void *out) {
    char *text;
    size_t len;
    if (read_text_file(path, &text, &len)) return -1;
    yaml_parser_t parser;
    CHECK(yaml_parser_initialize(&parser), "out of memory");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    reader r = {.file = path};
    int rc = bind_file(&r, &parser, text, schema, out);
    yaml_parser_delete(&parser);
    free(text);
    return rc;
}

// --- freeing ----------------------------------------------------------------------------------

static void free_fields(const cfg_schema *s, char *base) {
    for (int i = 0; i < s->n_fields; i++) {
        const cfg_field *f = &s->fields[i];
        char *p = base + f->offset;
        if (f->type == CFG_STRING) {
            free(*(char **)p);
            *(char **)p = NULL;
        } else if (f->type == CFG_STRING_LIST) {
            free_strings((cfg_strings *)p);
        } else if (f->type == CFG_SECTION) {
            free_fields(f->section, p);
        } else if (f->type == CFG_SECTION_LIST) {
            free_items(f->section, (cfg_list *)p);
        }
    }
}

void config_free(const cfg_schema *schema, void *out) { free_fields(schema, out); }

// --- writing YAML -----------------------------------------------------------------------------

typedef struct {
    char *data;
    size_t len, cap;
} text_buffer;

static int append(void *data, unsigned char *bytes, size_t size) {
    text_buffer *b = data;
    if (b->len + size + 1 > b->cap) {
        while (b->len + size + 1 > b->cap) b->cap = b->cap ? 2 * b->cap : 1024;
        b->data = realloc(b->data, b->cap);
        CHECK(b->data, "out of memory");
    }
    memcpy(b->data + b->len, bytes, size);
    b->len += size;
    return 1;
}

// Every event here is well formed, so a refusal is a bug (or a caller's string that
// is not UTF-8).
static void emit(yaml_emitter_t *e, int initialized, yaml_event_t *ev) {
    CHECK(initialized, "config_to_yaml: a value is not valid UTF-8");
    CHECK(yaml_emitter_emit(e, ev), "config_to_yaml: %s", e->problem ? e->problem : "out of memory");
}

// plain_ok false makes libyaml quote the text, which would otherwise read as
// something else than a string.
static void emit_scalar(yaml_emitter_t *e, const char *text, bool plain_ok) {
    yaml_event_t ev;
    emit(e,
         yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)text, -1, plain_ok, 1,
                                      YAML_ANY_SCALAR_STYLE),
         &ev);
}

static void emit_string(yaml_emitter_t *e, const char *s) {
    emit_scalar(e, s ? s : "null", !s || reads_as_string(s));
}

// The shortest text that reads back as v, with a point so every YAML reader takes
// it as a float (PyYAML needs one): 0.0001 -> "0.0001", 100 -> "100.0",
// 1e-20 -> "1.0e-20".
static void format_float(char buf[40], double v) {
    if (isnan(v) || isinf(v)) {
        strcpy(buf, isnan(v) ? ".nan" : v > 0 ? ".inf" : "-.inf");
        return;
    }
    for (int digits = 1; digits <= 17; digits++) {
        snprintf(buf, 40, "%.*g", digits, v);
        if (strtod(buf, NULL) == v) break;
    }
    // %g writes an exponent when it has fewer digits than the point needs: 100 is
    // "1e+02". Below 1e17, write enough digits to reach the point.
    char *exp = strchr(buf, 'e');
    int x = exp ? atoi(exp + 1) : -1;
    if (x >= 0 && x < 17) snprintf(buf, 40, "%.*g", x + 1, v);
    if (strchr(buf, '.')) return;
    exp = strchr(buf, 'e');
    if (!exp) exp = buf + strlen(buf);
    memmove(exp + 2, exp, strlen(exp) + 1);
    memcpy(exp, ".0", 2);
}

static void emit_sequence_start(yaml_emitter_t *e, int count) {
    yaml_event_t ev;
    emit(e,
         yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
                                              count ? YAML_BLOCK_SEQUENCE_STYLE : YAML_FLOW_SEQUENCE_STYLE),
         &ev);
}

static void emit_sequence_end(yaml_emitter_t *e) {
    yaml_event_t ev;
    emit(e, yaml_sequence_end_event_initialize(&ev), &ev);
}

static void emit_fields(yaml_emitter_t *e, const cfg_schema *s, const char *base);

static void emit_value(yaml_emitter_t *e, const cfg_field *f, const char *p) {
    char num[40];
    switch (f->type) {
        case CFG_STRING: emit_string(e, *(char *const *)p); return;
        case CFG_INT: snprintf(num, sizeof num, "%d", *(const int *)p); break;
        case CFG_INT64: snprintf(num, sizeof num, "%" PRId64, *(const int64_t *)p); break;
        case CFG_FLOAT: format_float(num, *(const double *)p); break;
        case CFG_BOOL: strcpy(num, *(const bool *)p ? "true" : "false"); break;
        case CFG_ENUM: {
            int v = *(const int *)p, count = 0;
            while (f->choices[count]) count++;
            CHECK(v >= 0 && v < count, "config_to_yaml: %s holds %d, not an index of its choices", f->key, v);
            emit_scalar(e, f->choices[v], reads_as_string(f->choices[v]));
            return;
        }
        case CFG_STRING_LIST: {
            const cfg_strings *l = (const cfg_strings *)p;
            emit_sequence_start(e, l->count);
            for (int i = 0; i < l->count; i++) emit_string(e, l->items[i]);
            emit_sequence_end(e);
            return;
        }
        case CFG_SECTION: emit_fields(e, f->section, p); return;
        case CFG_SECTION_LIST: {
            const cfg_list *l = (const cfg_list *)p;
            emit_sequence_start(e, l->count);
            for (int i = 0; i < l->count; i++)
                emit_fields(e, f->section, (const char *)l->items + (size_t)i * f->section->size);
            emit_sequence_end(e);
            return;
        }
    }
    emit_scalar(e, num, true);
}

static void emit_fields(yaml_emitter_t *e, const cfg_schema *s, const char *base) {
    yaml_event_t ev;
    emit(e,
         yaml_mapping_start_event_initialize(
             &ev, NULL, NULL, 1, s->n_fields ? YAML_BLOCK_MAPPING_STYLE : YAML_FLOW_MAPPING_STYLE),
         &ev);
    for (int i = 0; i < s->n_fields; i++) {
        emit_scalar(e, s->fields[i].key, true);
        emit_value(e, &s->fields[i], base + s->fields[i].offset);
    }
    emit(e, yaml_mapping_end_event_initialize(&ev), &ev);
}

char *config_to_yaml(const cfg_schema *schema, const void *in) {
    text_buffer out = {0};
    yaml_emitter_t e;
    yaml_event_t ev;
    CHECK(yaml_emitter_initialize(&e), "out of memory");
    yaml_emitter_set_output(&e, append, &out);
    yaml_emitter_set_unicode(&e, 1);  // prompts stay readable, not \u-escaped
    yaml_emitter_set_width(&e, -1);   // and on one line each
    emit(&e, yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING), &ev);
    emit(&e, yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1), &ev);
    emit_fields(&e, schema, in);
    emit(&e, yaml_document_end_event_initialize(&ev, 1), &ev);
    emit(&e, yaml_stream_end_event_initialize(&ev), &ev);
    yaml_emitter_delete(&e);
    out.data[out.len] = '\0';
    return out.data;
}

// --- help -------------------------------------------------------------------------------------

static void print_help(FILE *fp, const cfg_schema *s, const char *where) {
    static const char *const type_names[] = {
        [CFG_STRING] = "string",    [CFG_INT] = "int",           [CFG_INT64] = "int",
        [CFG_FLOAT] = "float",      [CFG_BOOL] = "bool",         [CFG_ENUM] = "choice",
        [CFG_STRING_LIST] = "list", [CFG_SECTION_LIST] = "list",
    };
    for (int i = 0; i < s->n_fields; i++) {
        const cfg_field *f = &s->fields[i];
        char name[NAME_LEN + 2];
        join(name, where, f->key);
        if (f->type == CFG_SECTION) {
            print_help(fp, f->section, name);
            continue;
        }
        bool more = f->help || f->type == CFG_ENUM || f->def;
        fprintf(fp, "  %-32s %-*s", name, more ? 7 : 0, type_names[f->type]);
        if (f->help) fprintf(fp, " %s", f->help);
        if (f->type == CFG_ENUM) {
            int count = 0;
            while (f->choices[count]) count++;
            char choices[600];
            fprintf(fp, " (%s)", list_names(choices, sizeof choices, f->choices, count));
        }
        if (f->def) fprintf(fp, " [default: %s]", f->def);
        fputc('\n', fp);
        if (f->type == CFG_SECTION_LIST) print_help(fp, f->section, strcat(name, "[]"));
    }
}

void config_print_help(FILE *f, const cfg_schema *schema) { print_help(f, schema, ""); }
