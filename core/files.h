// Reading whole input files (configs, vocabularies, JSON indexes) with one-line
// errors that name the file.
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#ifdef __cplusplus
extern "C" {
#endif

// Reads the whole file, NUL-terminated, into *text (caller frees); *len may be NULL.
// 0; 1 when the file does not exist; -1 when it cannot be read (err_msg names it).
int read_text_file(const char *path, char **text, size_t *len);
// Parses a file that must hold one JSON object into *root (caller cJSON_Deletes).
// 0; 1 when the file does not exist; -1 when unreadable or not a JSON object, with
// "path:line: ..." in err_msg.
int read_json_object(const char *path, cJSON **root);

// "<the running program's folder>/<name>" into out (the build folder holds files made
// at build time beside the programs: the tokenizer, the SD1.5 configs). Returns out.
const char *path_beside_program(char *out, size_t len, const char *name);

// Whether path names an existing folder (a link to one counts).
bool is_dir(const char *path);
// Whether s ends with suffix.
bool ends_with(const char *s, const char *suffix);

#ifdef __cplusplus
}
#endif
