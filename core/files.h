// Reading whole input files (configs, vocabularies, JSON indexes) with one-line
// errors that name the file.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

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

// A file replaced whole or not at all. The bytes go to a temporary "<path>.tmp.<pid>"
// (FILE_TEMP_MARK: the trainer knows a dead process's leftovers by it), which is
// synced and renamed over path, and path's folder synced, so a crash leaves the old
// file or the whole new one, never a half-written one.
#define FILE_TEMP_MARK ".tmp."
typedef struct {
    const char *path;
    char *tmp;
    FILE *fp;  // write here (or to fileno(fp))
} file_replacement;
// 0, or -1 with err_msg naming path.
int file_replace_begin(file_replacement *r, const char *path);
// Syncs, closes and renames the temporary over path. write_errno: the errno of a
// failed write of the caller's (0 when all went well, -1 for a failure without one,
// whose message the caller has set). 0, or -1 with err_msg naming path; the temporary
// is gone either way.
int file_replace_end(file_replacement *r, int write_errno);

// Whether path names an existing folder (a link to one counts).
bool is_dir(const char *path);
// Whether s ends with suffix.
bool ends_with(const char *s, const char *suffix);

#ifdef __cplusplus
}
#endif
