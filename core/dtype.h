// Element types and shapes: what tensors (kernels/tensor.h) store and what the file
// formats in core/ describe, so a file's entries are checked against them without
// reaching up to the tensor code.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TENSOR_MAX_DIMS 6

typedef enum { DT_F32, DT_F16, DT_BF16, DT_I32, DT_I64, DT_COUNT } dtype;

size_t dtype_size(dtype dt);
const char *dtype_name(dtype dt);
bool dtype_is_float(dtype dt);

// "[2, 3, 4]" into buf (cut short when len is too small); returns buf.
const char *format_shape(char *buf, size_t len, int ndim, const int64_t *shape);

#ifdef __cplusplus
}
#endif
