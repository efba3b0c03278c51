// Element types and the most dims a shape has: what tensors (kernels/tensor.h) store
// and what the file formats in core/ describe, so a file's entries are checked
// against them without reaching up to the tensor code.
#pragma once
#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TENSOR_MAX_DIMS 6

typedef enum { DT_F32, DT_F16, DT_BF16, DT_I32, DT_I64, DT_COUNT } dtype;

size_t dtype_size(dtype dt);
const char *dtype_name(dtype dt);
bool dtype_is_float(dtype dt);

#ifdef __cplusplus
}
#endif
