// YAML configuration files bound to C structs by a schema (libyaml underneath).
//
// A schema lists a struct's fields: key, type, offset, default and help. The trainer
// and the sampler declare theirs and read settings with:
//
//     train_config cfg;
//     config_init(&train_schema, &cfg);                          // schema defaults
//     if (config_load(path, &train_schema, &cfg)) fail(err_msg());
//     for (each "key=value" argument)
//         if (config_set(arg, &train_schema, &cfg)) fail(err_msg());
//     ...
//     config_free(&train_schema, &cfg);
//
// A schema, for a struct { double learning_rate; int scheduler; } train_section:
//
//     static const char *const schedulers[] = {"constant", "cosine", NULL};
//     static const cfg_field train_fields[] = {
//         {"learning_rate", CFG_FLOAT, offsetof(train_section, learning_rate),
//          .def = "1e-4", .min = 0, .max = 1, .help = "peak learning rate"},
//         {"scheduler", CFG_ENUM, offsetof(train_section, scheduler),
//          .choices = schedulers, .def = "constant", .help = "learning-rate schedule"},
//     };
//     static const cfg_schema train_schema = CFG_SCHEMA(train_section, train_fields);
//
// (A field with no designated member, such as .help, draws -Wextra's
// missing-field-initializers warning.)
//
// What a value may be (YAML 1.1 as PyYAML reads it, with the exceptions noted):
//   string       any scalar, taken as text: `name: 5` is "5". A plain `~`, `null`,
//                `Null`, `NULL` or nothing is null (below); write '' for "".
//   int, int64   decimal, optional sign; no leading zeros (YAML 1.1 would read 010
//                as octal), no `_`, no hex. A quoted "8" is a string, refused.
//   float        decimal with optional point and exponent: 1e-4, 5.0e-5, .5, 3, -2.;
//                .inf, -.inf and .nan read as YAML defines them, and are refused as
//                values: a number must be finite and in its field's range. (PyYAML
//                wants a point and a signed exponent and reads 1e-4 as a string; we
//                accept it as the number it means.)
//   bool         true/false, yes/no, on/off, each as lower, Capitalised or UPPER
//                case; y/n are not booleans (as in PyYAML).
//   enum         one of the field's choices, exactly; stored as its index (int).
//   string list  a sequence of scalars: `[a, b]` or a block list; replaces the list.
//   section      a mapping: its keys set the nested struct's fields, others keep theirs.
//   section list a sequence of mappings; each item starts from its schema's defaults;
//                replaces the list.
// A null value (`key:`, `key: ~`) is the same as leaving the key out: the field keeps
// its value (write `[]` to empty a list). Anchors and aliases work (libyaml resolves
// them); an error inside aliased content names the anchor's line. Merge keys (`<<`),
// explicit tags (`!!int`, `!custom`; libyaml cannot tell `!!str` from no tag) and
// more than one document are refused.
//
// Ownership: every string and list in a bound struct is malloc'd and owned by it;
// config_free frees them all. A caller that sets a string itself must strdup it.
//
// Errors are one line in err_msg, naming the file and line, or the override:
//   configs/x.yaml:12: unknown key "lerning_rate" in train; did you mean "learning_rate"?
//   configs/x.yaml:7: lora.rank: expected an integer, got "eight"
//   override "train.lr=x": unknown key "lr" in train; did you mean "learning_rate"?
//   override "train.zzz=1": unknown key "zzz" in train; the keys are learning_rate, steps
// The suggestion is the key nearest by Damerau-Levenshtein distance when that is at
// most max(2, length/3), else one whose initials ("lr") or first 3+ letters were typed.
// After an error the struct holds what was bound before it, and is still valid for
// config_set, config_free and the rest.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    CFG_STRING,        // char *, NULL when unset
    CFG_INT,           // int
    CFG_INT64,         // int64_t (seeds)
    CFG_FLOAT,         // double
    CFG_BOOL,          // bool
    CFG_ENUM,          // int: index into choices
    CFG_STRING_LIST,   // cfg_strings
    CFG_SECTION,       // a nested struct, described by section
    CFG_SECTION_LIST,  // cfg_list of structs, each described by section
} cfg_type;

typedef struct {
    char **items;
    int count;
} cfg_strings;

typedef struct {
    void *items;  // count structs of section->size bytes each
    int count;
} cfg_list;

typedef struct cfg_schema cfg_schema;

typedef struct {
    const char *key;
    cfg_type type;
    size_t offset;               // offsetof the field in the bound struct
    const cfg_schema *section;   // CFG_SECTION, CFG_SECTION_LIST: the nested schema
    const char *const *choices;  // CFG_ENUM: the names, NULL-terminated
    // The default as a value would be written on the command line ("1e-4", "true",
    // "cosine", "[a, b]", a string verbatim); NULL: zero, false, NULL or empty.
    const char *def;
    // Numbers: every number field has a range, min < max, and a value outside it (or
    // not finite: .nan, .inf, 1e999) is an error naming the key. The range is [min, max],
    // or open at an end that above_min / below_max exclude: (0, 1] for an epsilon.
    double min, max;
    bool above_min, below_max;
    const char *help;  // one line, for --help
} cfg_field;

struct cfg_schema {
    const cfg_field *fields;
    int n_fields;
    size_t size;  // sizeof the bound struct (config_init, section lists)
};

#define CFG_SCHEMA(type, field_array) \
    {(field_array), (int)(sizeof(field_array) / sizeof *(field_array)), sizeof(type)}

// Zeroes *out (schema->size bytes) and sets every field's default.
void config_init(const cfg_schema *schema, void *out);
// Binds the YAML file at path onto *out: the keys present replace their fields'
// values. An empty file (or one of comments only) changes nothing. 0, or -1 with
// "path:line: ..." in err_msg.
int config_load(const char *path, const cfg_schema *schema, void *out);
// Applies one command-line override "section.key=value" (dots name nested sections).
// The value is read as YAML (`lora.rank=8`, `train.lr=1e-4`, `prompts=[a, b]`,
// `lora={rank: 8, alpha: 8}`), except that a string field takes the text verbatim,
// so `prompt=a dog: on a beach, #1` needs no quoting; an empty value for any other
// type changes nothing. A list of sections is replaced whole
// (`data.sets=[{path: a}, {path: b}]`); its items have no keys of their own.
// 0, or -1 with `override "ARG": ...` in err_msg.
int config_set(const char *assignment, const cfg_schema *schema, void *out);
// Frees every string and list in *out and zeroes those fields.
void config_free(const cfg_schema *schema, void *out);
// The whole config as YAML, every field in schema order (malloc'd; caller frees).
// config_load of the text into a fresh config_init'd struct gives back *in.
char *config_to_yaml(const cfg_schema *schema, const void *in);
// One line per field: "  train.learning_rate  float  peak learning rate (default 1e-4)".
void config_print_help(FILE *f, const cfg_schema *schema);

#ifdef __cplusplus
}
#endif
