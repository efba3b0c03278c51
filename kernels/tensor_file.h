// Tensors from and to safetensors files: the layer between the format
// (core/safetensors.h: entries, metadata, raw bytes) and the tensors the ops work on.
#pragma once
#include "core/safetensors.h"
#include "kernels/tensor.h"

// A CPU tensor of the entry: zero-copy over the mapped bytes when the address is
// aligned to the element size (treat it as read-only: the mapping is), otherwise
// an owned copy. NULL + err_msg() when the entry's dtype is not one we compute with.
tensor *st_tensor(st_file *f, const st_entry *e);
// An owned copy converted to dt on dev: float dtypes convert among f32, f16 and
// bf16; integer tensors load only as their own dtype. NULL + err_msg() naming the
// tensor and the file when the tensor is absent or cannot convert.
tensor *st_load(st_file *f, const char *name, dtype dt, device dev);

// Adds t (any device, any strides) to the writer: a contiguous CPU tensor is
// written from its own memory, kept alive until st_writer_free; any other is
// gathered into a host copy now. A name added twice is a program bug and aborts.
void st_writer_add(st_writer *w, const char *name, tensor *t);
