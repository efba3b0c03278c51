#include "kernels/ops/common.h"

#include <stdarg.h>
#include <stdlib.h>

tensor *op_input(tensor *x) {
    dtype want = be_of(x)->compute_dtype;
    if (dtype_is_float(x->dtype) && x->dtype != want) return op_cast(x, want);
    return op_contiguous(x);
}

void shape_fail_at(const char *file, int line, const char *op, const tensor *t, const char *fmt,
                   ...) {
    char desc[128];
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s:%d: %s: ", file, line, op);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, ", got %s\n", tensor_describe(t, desc, sizeof desc));
    va_end(ap);
    abort();
}
