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
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "kernels/tensor.h"

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
// reference count: tensors made by st_tensor keep their file alive.
typedef struct st_file st_file;

// mmap + validate. NULL and err_msg() on failure.
st_file *st_open(const char *path);
// Validates a buffer in memory without copying it; the caller keeps buf alive while
// the st_file and its tensors live. label names the buffer in messages.
st_file *st_parse(const void *buf, size_t len, const char *label);
// Drops the caller's reference.
void st_close(st_file *f);

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

// A CPU tensor of the entry: zero-copy over the mapped bytes when the address is
// aligned to the element size (treat it as read-only: the mapping is), otherwise
// an owned copy. NULL + err_msg() when the entry's dtype is not one we compute with.
tensor *st_tensor(st_file *f, const st_entry *e);
// An owned copy converted to dt on dev: float dtypes convert among f32, f16 and
// bf16; integer tensors load only as their own dtype. NULL + err_msg() naming the
// tensor and the file when the tensor is absent or cannot convert.
tensor *st_load(st_file *f, const char *name, dtype dt, device dev);

// Writing. The output matches the Python package's: "__metadata__" first, tensors
// ordered by dtype (widest first, so every tensor stays aligned to its element
// size) and then by name, data packed in that order, the header padded with
// spaces to a multiple of 8 bytes.
typedef struct st_writer st_writer;
st_writer *st_writer_new(void);
// Sets a metadata entry; setting a key again replaces its value.
void st_writer_meta(st_writer *w, const char *key, const char *value);
// Keeps a reference to t (any device, any strides) until st_writer_free. A name
// added twice is a program bug and aborts.
void st_writer_add(st_writer *w, const char *name, tensor *t);
// 0, or -1 with err_msg(). Atomic: writes "<path>.tmp.<pid>", fsyncs it, renames
// it over path and fsyncs the directory; on failure the temporary file is removed
// and whatever was at path is left untouched.
int st_writer_save(st_writer *w, const char *path);
void st_writer_free(st_writer *w);
