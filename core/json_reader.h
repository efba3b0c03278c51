// Reading the keys of a JSON config file (diffusers' and transformers' config.json,
// scheduler_config.json) with one-line errors that name the file and the key. The
// first error wins: later reads see `failed` and leave their outputs alone, so a
// loader reads every key and checks once, at json_reader_close.
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

typedef struct {
    const char *path;
    cJSON *root;
    // Keys listed here read as absent: diffusers' `_use_default_values`, the keys a
    // config took from a class's defaults rather than from the user.
    const cJSON *defaulted;
    bool failed;
} json_reader;

// 0, or -1 with err_msg() (missing file, malformed JSON, not an object).
int json_reader_open(json_reader *r, const char *path);
// Frees the document; 0 unless some read failed.
int json_reader_close(json_reader *r);
// Records "<path>: key "<key>": <what>" unless an earlier error was recorded.
void json_reader_fail(json_reader *r, const char *key, const char *what);

// The key's value, or NULL when absent, null or defaulted.
const cJSON *json_item(json_reader *r, const char *key);
// Each reader leaves *out alone and returns false when the key is absent (or on a
// type error, which it records).
bool json_bool(json_reader *r, const char *key, bool *out);
// Numbers must be finite and in [lo, hi] (an infinity, as 1e999 reads, is refused).
bool json_number(json_reader *r, const char *key, double lo, double hi, double *out);
bool json_float(json_reader *r, const char *key, float lo, float hi, float *out);
bool json_int(json_reader *r, const char *key, int lo, int hi, int *out);
bool json_string(json_reader *r, const char *key, const char **out);  // borrowed
// A string that must be one of `choices` (NULL-terminated); *index gets its position.
bool json_choice(json_reader *r, const char *key, const char *const *choices, int *index);
// A number, or a list of n numbers (a per-block setting); integers in [lo, hi].
bool json_int_or_list(json_reader *r, const char *key, int n, int lo, int hi, int *out);
// A list of 1 to max integers in [lo, hi]; returns its length (0 when absent or bad).
int json_int_list(json_reader *r, const char *key, int max, int lo, int hi, int *out);

// Options that would change the results and are not implemented: the key must be
// absent/null, false, or the one supported value.
void json_require_absent(json_reader *r, const char *key, const char *why);
void json_require_false(json_reader *r, const char *key, const char *why);
void json_require_string(json_reader *r, const char *key, const char *only);
void json_require_number(json_reader *r, const char *key, double only);
