// The safetensors format: an 8-byte little-endian header length, a JSON header
// (optional "__metadata__" of string values, then one entry per tensor with its
// dtype, shape and byte range) and a packed data section. Checkpoints from the
// Hugging Face ecosystem come this way; we read them zero-copy through mmap and
// write our own in the layout the reference Python package produces.
//
// Reading validates everything before handing out a single entry: a file that
// st_open accepts has every tensor inside the data section, sized by its shape,
// with no overlaps, gaps or duplicate names. Failures leave a one-line err_msg()
// that starts with the path (or the label given to st_parse).
//
// This is the format only: entries, metadata and raw bytes. Tensors made from a
// file and tensors written to one go through kernels/tensor_file.h.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"

typedef struct {
    char *name;
    const char *dtype_str;  // as in the file: "F32", "BF16", ...
    // A dtype value, or -1 for a valid safetensors dtype that we do not compute
    // with (F64, U8, BOOL, F8_E4M3, ...).
    int dtype;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    uint64_t begin, end;  // byte offsets in the data section
} st_entry;

// Holds the mapping (or borrowed buffer), the entries, the metadata and a
// reference count: views of its bytes (st_tensor's) keep their file alive.
typedef struct st_file st_file;

// mmap + validate. NULL and err_msg() on failure.
st_file *st_open(const char *path);
// Validates a buffer in memory without copying it; the caller keeps buf alive while
// the st_file and its tensors live. label names the buffer in messages.
st_file *st_parse(const void *buf, size_t len, const char *label);
// Adds a reference (for a view of the file's bytes) and returns f.
st_file *st_retain(st_file *f);
// Drops a reference.
void st_close(st_file *f);
// The path, or st_parse's label: how messages about the file start.
const char *st_label(const st_file *f);

int st_count(const st_file *f);
// Entries in file order, by data offset.
const st_entry *st_entry_at(const st_file *f, int i);
const st_entry *st_find(const st_file *f, const char *name);  // NULL if absent
int st_meta_count(const st_file *f);
const char *st_meta_key(const st_file *f, int i);        // in header order
const char *st_meta(const st_file *f, const char *key);  // NULL if absent
// The entry's raw little-endian bytes (end - begin of them).
const void *st_data(const st_file *f, const st_entry *e);
// Size of the data section in bytes, and of the JSON header (with its padding).
uint64_t st_data_size(const st_file *f);
uint64_t st_header_size(const st_file *f);

// A string from a file (a tensor name, a metadata value) as it goes into a one-line
// message: control characters escaped, a long one cut at a character boundary.
typedef struct {
    char s[128];
} st_shown;
st_shown st_show(const char *s);

// Writing. The output matches the Python package's: "__metadata__" first, tensors
// ordered by dtype (widest first, so every tensor stays aligned to its element
// size) and then by name, data packed in that order, the header padded with
// spaces to a multiple of 8 bytes.
typedef struct st_writer st_writer;
st_writer *st_writer_new(void);
// Sets a metadata entry; setting a key again replaces its value.
void st_writer_meta(st_writer *w, const char *key, const char *value);
// Adds a tensor as raw bytes: row-major, little-endian, numel * dtype_size(dt) of
// them at data, borrowed until st_writer_free, which then calls release(owner)
// (release may be NULL). A name added twice is a program bug and aborts.
// (kernels/tensor_file.h's st_writer_add adds a tensor.)
void st_writer_add_bytes(st_writer *w, const char *name, dtype dt, int ndim,
                         const int64_t *shape, const void *data, void *owner,
                         void (*release)(void *owner));
// 0, or -1 with err_msg(). Atomic: writes "<path>.tmp.<pid>", fsyncs it, renames
// it over path and fsyncs the directory; on failure the temporary file is removed
// and whatever was at path is left untouched.
int st_writer_save(st_writer *w, const char *path);
void st_writer_free(st_writer *w);
