#include "kernels/ops/common.h"

#include <stdarg.h>
#include <stdlib.h>

tensor *op_input(tensor *x) {
    if (dtype_is_float(x->dtype) && !(be_of(x)->native_floats & (1u << x->dtype)))
        return op_cast(x, DT_F32);
    return op_contiguous(x);
}

tensor *op_input_like(tensor *x, const tensor *first) {
    if (!x) return NULL;
    CHECK(x->dev == first->dev, "operands on %s and %s", device_name(x->dev),
          device_name(first->dev));
    if (dtype_is_float(x->dtype) && x->dtype != first->dtype) return op_cast(x, first->dtype);
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
