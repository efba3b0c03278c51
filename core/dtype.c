#include "core/dtype.h"

#include <inttypes.h>
#include <stdio.h>

#include "core/check.h"

size_t dtype_size(dtype dt) {
    static const size_t sizes[DT_COUNT] = {4, 2, 2, 4, 8};
    CHECK(dt < DT_COUNT, "bad dtype %d", dt);
    return sizes[dt];
}

const char *dtype_name(dtype dt) {
    static const char *names[DT_COUNT] = {"f32", "f16", "bf16", "i32", "i64"};
    return dt < DT_COUNT ? names[dt] : "?";
}

bool dtype_is_float(dtype dt) { return dt == DT_F32 || dt == DT_F16 || dt == DT_BF16; }

const char *format_shape(char *buf, size_t len, int ndim, const int64_t *shape) {
    size_t used = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < ndim && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (used < len) snprintf(buf + used, len - used, "]");
    return buf;
}
